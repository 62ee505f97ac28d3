//! One delivery: run it, decide its disposition, build the completion.

use std::sync::Arc;
use std::time::Duration;

use eddy_protocol::{ErrorClass, ErrorInfo, FunctionName, LogEntry, Outcome, PhaseTimings};
use eddy_queue::{Completion, Delivery, Disposition, FollowUp};
use eddy_runtime::{Input, InvokeError};
use rand::Rng;

use crate::fair::Executor;
use crate::functions::{LoadFailure, Loaded};

/// Exponential backoff with full jitter in [0.5, 1.5) of the step, capped.
pub(crate) fn backoff(attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    let step = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(max_ms);
    let jitter: f64 = rand::rng().random_range(0.5..1.5);
    ((step as f64) * jitter) as u64
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
pub(crate) async fn run(
    runtime: &Arc<eddy_runtime::Runtime>,
    loaded: &Loaded,
    delivery: &Delivery,
    load_time: Option<Duration>,
    worker: &str,
    traceparent: Option<&str>,
    executor: &Executor,
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
        ..Outcome::default()
    };
    let config = &loaded.spec.config;
    let disposition = match report.result {
        Ok(out) => {
            let mut follow_ups = Vec::with_capacity(report.emits.len());
            let mut bad_target = None;
            for emit in report.emits {
                match FunctionName::new(emit.function) {
                    Ok(target) => {
                        let mut envelope = env.follow_up(target, emit.content_type);
                        // Each follow-up is a child of this invocation's span.
                        if let Some(tp) = traceparent {
                            envelope.traceparent = Some(tp.to_string());
                        }
                        follow_ups.push(FollowUp {
                            envelope,
                            payload: emit.payload,
                        })
                    }
                    Err(e) => {
                        bad_target = Some(e);
                        break;
                    }
                }
            }
            match bad_target {
                Some(e) => {
                    outcome.error = Some(final_error(
                        ErrorClass::UnknownFunction,
                        format!("emit: {e}"),
                    ));
                    Disposition::Failed
                }
                None => {
                    outcome.follow_ups = follow_ups.iter().map(|f| f.envelope.id.clone()).collect();
                    Disposition::Succeeded {
                        output: out.payload,
                        content_type: out.content_type,
                        follow_ups,
                    }
                }
            }
        }
        Err(e) => {
            let info = error_info(&e);
            outcome.error = Some(info);
            if !e.is_retryable() {
                Disposition::Failed
            } else if env.attempt <= config.max_retries {
                Disposition::Retry {
                    at_ms: eddy_protocol::now_ms()
                        + backoff(env.attempt, config.backoff_base_ms, config.backoff_max_ms),
                }
            } else {
                Disposition::Dead
            }
        }
    };
    Completion {
        disposition,
        outcome,
        traceparent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..100 {
            let b1 = backoff(1, 100, 10_000);
            assert!((50..150).contains(&b1), "{b1}");
            let b3 = backoff(3, 100, 10_000);
            assert!((200..600).contains(&b3), "{b3}");
            let capped = backoff(40, 100, 1_000);
            assert!((500..1500).contains(&capped), "{capped}");
        }
    }
}
