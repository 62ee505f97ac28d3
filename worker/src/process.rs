//! One delivery: run it, decide its disposition, build the completion.

use std::sync::Arc;
use std::time::Duration;

use eddy_protocol::{
    Envelope, ErrorClass, ErrorInfo, FunctionConfig, FunctionName, LogEntry, Outcome, PhaseTimings,
};
use eddy_queue::{Completion, Delivery, Disposition, FollowUp};
use eddy_runtime::{Emit, Input, InvokeError, Output};
use rand::Rng;

use crate::fair::Executor;
use crate::functions::{LoadFailure, Loaded};

/// Exponential backoff, capped, times `jitter` (drawn in [0.5, 1.5) by the
/// callers, so that retries of a burst spread out).
pub(crate) fn backoff(attempt: u32, base_ms: u64, max_ms: u64, jitter: f64) -> u64 {
    let step = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(max_ms);
    ((step as f64) * jitter) as u64
}

/// A jitter for [`backoff`].
pub(crate) fn jitter() -> f64 {
    rand::rng().random_range(0.5..1.5)
}

/// A final error that is nobody's processor's fault.
pub(crate) fn final_error(class: ErrorClass, message: String) -> ErrorInfo {
    ErrorInfo {
        class,
        message,
        retryable: false,
        code: None,
    }
}

/// The final error of a load failure, or the reason to try again later.
pub(crate) fn load_failure(failure: LoadFailure) -> Result<ErrorInfo, String> {
    match failure {
        LoadFailure::Missing(m) => Ok(final_error(ErrorClass::UnknownFunction, m)),
        LoadFailure::Lost(m) => Ok(final_error(ErrorClass::HostError, m)),
        LoadFailure::Invalid(m) => Ok(final_error(
            ErrorClass::InvalidModule,
            format!("invalid module: {m}"),
        )),
        LoadFailure::Transient(reason) => Err(reason),
    }
}

/// Completion of a delivery that failed for good before running.
pub(crate) fn failed(error: ErrorInfo, dead: bool, worker: &str) -> Completion {
    Completion {
        disposition: if dead {
            Disposition::Dead
        } else {
            Disposition::Failed
        },
        outcome: Outcome {
            error: Some(error),
            worker: Some(worker.to_string()),
            ..Outcome::default()
        },
        traceparent: None,
    }
}

fn error_info(e: &InvokeError) -> ErrorInfo {
    ErrorInfo {
        class: e.class(),
        message: e.to_string(),
        retryable: e.is_retryable(),
        code: match e {
            InvokeError::Processor { code, .. } => Some(code.clone()),
            _ => None,
        },
    }
}

/// Runs `delivery` on `loaded` and decides what becomes of it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    runtime: &Arc<eddy_runtime::Runtime>,
    loaded: &Loaded,
    delivery: &Delivery,
    load_time: Option<Duration>,
    worker: &str,
    traceparent: Option<&str>,
    executor: &Executor,
    variables: Arc<dyn eddy_runtime::VariableSource>,
) -> Completion {
    let env = &delivery.envelope;
    let queue_wait_ms = eddy_protocol::now_ms().saturating_sub(env.enqueued_at_ms);
    let input = Input {
        id: env.id.clone(),
        run_id: env.run_id.clone(),
        function: env.function.to_string(),
        attempt: env.attempt,
        depth: env.depth,
        content_type: env.content_type.clone(),
        payload: delivery.payload.clone(),
        config: loaded.config.clone(),
        tenant: env.tenant.to_string(),
        version: loaded.spec.version,
        traceparent: traceparent.map(str::to_string),
        variables: Some(variables),
    };
    // The CPU part: once this tenant's turn for an execution slot comes
    // (tenants take turns); see `fair.rs` for where it runs.
    let (rt, processor, limits) = (
        runtime.clone(),
        loaded.processor.clone(),
        loaded.limits.clone(),
    );
    // Waiting for the slot (and, when isolated, the hand-off to an execution
    // thread) is measured from here to the guest's start.
    let asked = std::time::Instant::now();
    // The instance pool first (a tenant past its share waits here, holding
    // no execution slot), then the CPU.
    let admission = runtime.admit(env.tenant.as_str(), &limits).await;
    let ran = executor
        .run(env.tenant.as_str(), loaded.typical_run_us(), async move {
            let slot_wait = asked.elapsed();
            (
                rt.invoke(&processor, input, &limits, admission).await,
                slot_wait,
            )
        })
        .await;
    let (report, slot_wait) = match ran {
        Ok(ran) => ran,
        Err(message) => return failed(final_error(ErrorClass::HostError, message), false, worker),
    };
    loaded.observe_run(report.timings.run.as_micros() as u64);
    // Guest logs become events of the execution span (exported only when
    // tracing is on; the record keeps them either way).
    for l in &report.logs {
        tracing::info!(
            target: eddy_protocol::trace::TARGET,
            log_level = l.level.as_str(),
            log_source = l.source.as_str(),
            "{}",
            l.message
        );
    }
    let mut outcome = Outcome {
        timings: PhaseTimings {
            queue_wait_us: queue_wait_ms.saturating_mul(1000),
            slot_wait_us: slot_wait.as_micros() as u64,
            load_us: load_time.map(|d| d.as_micros() as u64).unwrap_or(0),
            instantiate_us: report.timings.instantiate.as_micros() as u64,
            run_us: report.timings.run.as_micros() as u64,
            cold: load_time.is_some(),
            epoch_ticks: report.epoch_ticks,
        },
        logs: report
            .logs
            .iter()
            .map(|l| LogEntry {
                level: l.level.as_str().to_string(),
                source: l.source.as_str().to_string(),
                message: l.message.clone(),
            })
            .collect(),
        worker: Some(worker.to_string()),
        outbound: report.outbound.iter().map(|o| o.call.clone()).collect(),
        ..Outcome::default()
    };
    if traceparent.is_some() {
        for o in &report.outbound {
            crate::telemetry::outbound_span(o);
        }
    }
    let disposition = decide(
        env,
        &loaded.spec.config,
        report.result,
        report.emits,
        traceparent,
        eddy_protocol::now_ms(),
        jitter(),
        &mut outcome,
    );
    Completion {
        disposition,
        outcome,
        traceparent: None,
    }
}

/// What becomes of a delivery that ran, given what the guest did: the
/// whole retry / fail / dead-letter rule, with no clock or randomness of its
/// own (`now_ms`, and `jitter` in [0.5, 1.5)), so that a table test pins it.
/// Sets `outcome.error` or `outcome.follow_ups`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide(
    env: &Envelope,
    config: &FunctionConfig,
    result: Result<Output, InvokeError>,
    emits: Vec<Emit>,
    traceparent: Option<&str>,
    now_ms: u64,
    jitter: f64,
    outcome: &mut Outcome,
) -> Disposition {
    match result {
        Ok(out) => {
            let mut follow_ups = Vec::with_capacity(emits.len());
            for emit in emits {
                let target = match FunctionName::new(emit.function) {
                    Ok(target) => target,
                    // One bad target fails the invocation: none of its
                    // follow-ups is committed.
                    Err(e) => {
                        outcome.error = Some(final_error(
                            ErrorClass::UnknownFunction,
                            format!("emit: {e}"),
                        ));
                        return Disposition::Failed;
                    }
                };
                let mut envelope = env.follow_up(target, emit.content_type);
                // Each follow-up is a child of this invocation's span.
                if let Some(tp) = traceparent {
                    envelope.traceparent = Some(tp.to_string());
                }
                follow_ups.push(FollowUp {
                    envelope,
                    payload: emit.payload,
                });
            }
            outcome.follow_ups = follow_ups.iter().map(|f| f.envelope.id.clone()).collect();
            Disposition::Succeeded {
                output: out.payload,
                content_type: out.content_type,
                follow_ups,
            }
        }
        Err(e) => {
            let retryable = e.is_retryable();
            outcome.error = Some(error_info(&e));
            if !retryable {
                Disposition::Failed
            } else if env.attempt <= config.max_retries {
                Disposition::Retry {
                    at_ms: now_ms
                        + backoff(
                            env.attempt,
                            config.backoff_base_ms,
                            config.backoff_max_ms,
                            jitter,
                        ),
                }
            } else {
                Disposition::Dead
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1, 100, 10_000, 1.0), 100);
        assert_eq!(backoff(3, 100, 10_000, 1.0), 400);
        assert_eq!(backoff(3, 100, 10_000, 0.5), 200);
        assert_eq!(backoff(40, 100, 1_000, 1.0), 1_000);
        assert_eq!(backoff(u32::MAX, u64::MAX, u64::MAX, 1.0), u64::MAX);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..1.5).contains(&j), "{j}");
        }
    }

    fn emit(function: &str) -> Emit {
        Emit {
            function: function.into(),
            payload: b"{}".to_vec(),
            content_type: "application/json".into(),
        }
    }

    fn processor_error(retryable: bool) -> InvokeError {
        InvokeError::Processor {
            code: "e".into(),
            message: "m".into(),
            retryable,
        }
    }

    /// Every rule of [`decide`], one row each: what the guest did, the
    /// attempt, and what becomes of the delivery.
    #[test]
    fn the_decision_table() {
        #[derive(Debug, PartialEq)]
        enum Expect {
            Succeeded { follow_ups: usize },
            Failed(ErrorClass),
            Retry { at_ms: u64 },
            Dead(ErrorClass),
        }
        use Expect::*;
        let ok = || {
            Ok(Output {
                content_type: "application/json".into(),
                payload: b"1".to_vec(),
            })
        };
        let timeout = || InvokeError::Timeout {
            limit: Duration::from_millis(5),
        };
        // (name, result, emits, attempt, expected); max_retries 2, backoff
        // 100 ms doubling to at most 300 ms, jitter 1.0, now 1,000.
        type Row = (
            &'static str,
            Result<Output, InvokeError>,
            Vec<Emit>,
            u32,
            Expect,
        );
        let rows: Vec<Row> = vec![
            ("ok", ok(), vec![], 1, Succeeded { follow_ups: 0 }),
            (
                "ok with follow-ups",
                ok(),
                vec![emit("a"), emit("b")],
                1,
                Succeeded { follow_ups: 2 },
            ),
            (
                "a bad emit target fails it all",
                ok(),
                vec![emit("a"), emit("Not Valid!")],
                1,
                Failed(ErrorClass::UnknownFunction),
            ),
            (
                "processor error, final",
                Err(processor_error(false)),
                vec![],
                1,
                Failed(ErrorClass::ProcessorError),
            ),
            (
                "processor error, retryable",
                Err(processor_error(true)),
                vec![],
                1,
                Retry { at_ms: 1_100 },
            ),
            (
                "second attempt backs off twice as long",
                Err(processor_error(true)),
                vec![],
                2,
                Retry { at_ms: 1_200 },
            ),
            (
                "the last retry",
                Err(timeout()),
                vec![],
                3,
                Dead(ErrorClass::Timeout),
            ),
            (
                "out of memory is final",
                Err(InvokeError::OutOfMemory { limit_bytes: 1 }),
                vec![],
                1,
                Failed(ErrorClass::OutOfMemory),
            ),
            (
                "a trap is retried",
                Err(InvokeError::Trap {
                    trap: "unreachable".into(),
                    guest_message: None,
                    backtrace: None,
                }),
                vec![],
                1,
                Retry { at_ms: 1_100 },
            ),
            (
                "a host error is retried",
                Err(InvokeError::Host("disk".into())),
                vec![],
                2,
                Retry { at_ms: 1_200 },
            ),
            (
                "an invalid module is final",
                Err(InvokeError::InvalidModule("x".into())),
                vec![],
                1,
                Failed(ErrorClass::InvalidModule),
            ),
        ];
        let config = FunctionConfig {
            max_retries: 2,
            backoff_base_ms: 100,
            backoff_max_ms: 300,
            ..FunctionConfig::default()
        };
        let tenant = eddy_protocol::TenantId::new("t").unwrap();
        let f = FunctionName::new("f").unwrap();
        for (name, result, emits, attempt, want) in rows {
            let retryable = result.as_ref().err().map(InvokeError::is_retryable);
            let mut env = Envelope::root(tenant.clone(), f.clone(), "application/json".into());
            env.attempt = attempt;
            let mut outcome = Outcome::default();
            let d = decide(
                &env,
                &config,
                result,
                emits,
                Some("00-tp-01"),
                1_000,
                1.0,
                &mut outcome,
            );
            let class = || outcome.error.as_ref().map(|e| e.class).unwrap();
            let got = match &d {
                Disposition::Succeeded { follow_ups, .. } => {
                    for fu in follow_ups {
                        assert_eq!(
                            fu.envelope.parent_id.as_deref(),
                            Some(env.id.as_str()),
                            "{name}"
                        );
                        assert_eq!(
                            fu.envelope.traceparent.as_deref(),
                            Some("00-tp-01"),
                            "{name}"
                        );
                        assert_eq!(fu.envelope.depth, env.depth + 1, "{name}");
                    }
                    assert_eq!(outcome.follow_ups.len(), follow_ups.len(), "{name}");
                    assert!(outcome.error.is_none(), "{name}");
                    Succeeded {
                        follow_ups: follow_ups.len(),
                    }
                }
                Disposition::Failed => Failed(class()),
                Disposition::Retry { at_ms } => Retry { at_ms: *at_ms },
                Disposition::Dead => Dead(class()),
            };
            assert_eq!(got, want, "{name}");
            if let Some(retryable) = retryable {
                assert_eq!(
                    outcome.error.as_ref().map(|e| e.retryable),
                    Some(retryable),
                    "{name}"
                );
            }
        }
    }
}
