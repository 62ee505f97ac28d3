//! The worker's metrics: counters per function, phase histograms, memory.

use super::*;

/// The counters of one function, each registered on its first use: a
/// registry lookup with label strings on every invocation cost more than
/// the rest of its bookkeeping.
#[derive(Default)]
pub(super) struct FnMetrics {
    counters: [std::sync::OnceLock<metrics::Counter>; Count::ALL.len()],
}

/// The counters a function has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    /// `eddy_invocations_total{outcome=...}`
    Succeeded,
    Retried,
    Failed,
    Dead,
    /// `eddy_retries_total`
    Retries,
    /// `eddy_dead_letters_total`
    DeadLetters,
    /// `eddy_cold_starts_total`
    ColdStarts,
    /// `eddy_outbound_requests_total{result=...}`: a response came, or not
    /// (refused, limit, timeout, I/O).
    OutboundOk,
    OutboundFailed,
}

impl Count {
    const ALL: [Count; 9] = [
        Count::Succeeded,
        Count::Retried,
        Count::Failed,
        Count::Dead,
        Count::Retries,
        Count::DeadLetters,
        Count::ColdStarts,
        Count::OutboundOk,
        Count::OutboundFailed,
    ];
}

impl FnMetrics {
    pub(super) fn counter(
        &self,
        c: Count,
        tenant: &TenantId,
        function: &FunctionName,
    ) -> &metrics::Counter {
        self.counters[c as usize].get_or_init(|| {
            let (t, f) = eddy_protocol::labels::of(tenant, function);
            let outcome = |o: &'static str| {
                metrics::counter!("eddy_invocations_total", "tenant" => t.clone(),
                    "function" => f.clone(), "outcome" => o)
            };
            match c {
                Count::Succeeded => outcome("succeeded"),
                Count::Retried => outcome("retried"),
                Count::Failed => outcome("failed"),
                Count::Dead => outcome("dead"),
                Count::Retries => {
                    metrics::counter!("eddy_retries_total", "tenant" => t, "function" => f)
                }
                Count::DeadLetters => {
                    metrics::counter!("eddy_dead_letters_total", "tenant" => t, "function" => f)
                }
                Count::ColdStarts => {
                    metrics::counter!("eddy_cold_starts_total", "tenant" => t, "function" => f)
                }
                Count::OutboundOk => metrics::counter!("eddy_outbound_requests_total",
                    "tenant" => t, "function" => f, "result" => "ok"),
                Count::OutboundFailed => metrics::counter!("eddy_outbound_requests_total",
                    "tenant" => t, "function" => f, "result" => "failed"),
            }
        })
    }
}

/// The phase histograms (`eddy_phase_seconds`), registered once.
pub(super) struct Phases {
    cold_start: metrics::Histogram,
    queue_wait: metrics::Histogram,
    slot_wait: metrics::Histogram,
    instantiate: metrics::Histogram,
    run: metrics::Histogram,
    /// `eddy_outbound_seconds`: each outbound request, request to the end
    /// of its response.
    outbound: metrics::Histogram,
}

impl Phases {
    pub(super) fn new() -> Self {
        let h = |phase: &'static str| metrics::histogram!("eddy_phase_seconds", "phase" => phase);
        Phases {
            cold_start: h("cold_start"),
            queue_wait: h("queue_wait"),
            slot_wait: h("slot_wait"),
            instantiate: h("instantiate"),
            run: h("run"),
            outbound: metrics::histogram!("eddy_outbound_seconds"),
        }
    }
}

/// Metric handles: per function, the phases, and the worker's own.
pub(super) struct Meters {
    functions: Mutex<HashMap<(TenantId, FunctionName), Arc<FnMetrics>>>,
    phases: Phases,
    /// `eddy_worker_in_flight`, set on the maintenance tick.
    pub(super) in_flight: metrics::Gauge,
    /// `eddy_redis_roundtrip_seconds{op="complete"}`.
    pub(super) complete_roundtrip: metrics::Histogram,
    /// `eddy_worker_lane_handoffs_total`: sync invocations the reader read
    /// and handed to the interactive lane.
    pub(super) lane_handoffs: metrics::Counter,
    /// `eddy_worker_lane_held_reads_total`: deliveries the lane's held
    /// read got.
    pub(super) lane_held_reads: metrics::Counter,
}

impl Meters {
    pub(super) fn new() -> Self {
        Meters {
            functions: Mutex::default(),
            phases: Phases::new(),
            in_flight: metrics::gauge!("eddy_worker_in_flight"),
            complete_roundtrip: metrics::histogram!("eddy_redis_roundtrip_seconds", "op" => "complete"),
            lane_handoffs: metrics::counter!("eddy_worker_lane_handoffs_total"),
            lane_held_reads: metrics::counter!("eddy_worker_lane_held_reads_total"),
        }
    }

    /// Counts one finished attempt: outcome, phases, cold starts, retries,
    /// dead letters.
    pub(super) fn record(&self, d: &Delivery, c: &Completion) {
        let env = &d.envelope;
        let f = self
            .functions
            .lock()
            .entry((env.tenant.clone(), env.function.clone()))
            .or_default()
            .clone();
        let count = |i: Count| f.counter(i, &env.tenant, &env.function).increment(1);
        match &c.disposition {
            eddy_queue::Disposition::Succeeded { .. } => count(Count::Succeeded),
            eddy_queue::Disposition::Retry { .. } => {
                count(Count::Retried);
                count(Count::Retries);
            }
            eddy_queue::Disposition::Failed => {
                count(Count::Failed);
                count(Count::DeadLetters);
            }
            eddy_queue::Disposition::Dead => {
                count(Count::Dead);
                count(Count::DeadLetters);
            }
        }
        let t = &c.outcome.timings;
        let p = &self.phases;
        if t.cold {
            count(Count::ColdStarts);
            p.cold_start.record(t.load_us as f64 / 1e6);
        }
        p.queue_wait.record(t.queue_wait_us as f64 / 1e6);
        p.slot_wait.record(t.slot_wait_us as f64 / 1e6);
        p.instantiate.record(t.instantiate_us as f64 / 1e6);
        p.run.record(t.run_us as f64 / 1e6);
        for o in &c.outcome.outbound {
            count(if o.error.is_none() {
                Count::OutboundOk
            } else {
                Count::OutboundFailed
            });
            p.outbound.record(o.duration_us as f64 / 1e6);
        }
    }

    /// Forgets the handles of a released function (they live on in the
    /// recorder).
    pub(super) fn forget(&self, tenant: &TenantId, function: &FunctionName) {
        self.functions
            .lock()
            .remove(&(tenant.clone(), function.clone()));
    }
}

impl std::fmt::Debug for Meters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meters")
    }
}

/// Resident memory of this process, bytes (Linux).
pub(super) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}
