//! Every misbehaving fixture ends in its exact, classified error, and the
//! engine keeps serving good invocations afterwards.

use std::time::{Duration, Instant};

use eddy_runtime::{ErrorClass, InvokeError, LimitKind, Limits};

use crate::support::{invoke, output_json, short};

/// Scheduling slack for wall-clock bounds on a loaded CI machine.
const SLACK_MS: u64 = 250;

/// Runs `fixture` and returns its error, checking nothing leaked out of it.
async fn fail(fixture: &str, limits: &Limits) -> InvokeError {
    let report = invoke(fixture, "{}", limits).await;
    assert!(report.emits.is_empty(), "a failed invocation must not emit");
    report.result.expect_err("the fixture must fail")
}

/// A good invocation still works (run after each misbehaving one).
async fn still_serving() {
    let report = invoke(
        "wordcount",
        r#"{"text":"still serving still"}"#,
        &Limits::default(),
    )
    .await;
    assert_eq!(output_json(&report)["words"], 3);
}

#[tokio::test]
async fn infinite_loop_times_out_within_twice_the_limit() {
    for ms in [50, 200] {
        let start = Instant::now();
        let err = fail("fx-loop", &short(ms)).await;
        let took = start.elapsed();
        assert_eq!(
            err,
            InvokeError::Timeout {
                limit: Duration::from_millis(ms)
            }
        );
        assert_eq!(
            err.to_string(),
            format!("timeout: exceeded the limit of {ms} ms")
        );
        assert!(err.is_retryable());
        assert!(took >= Duration::from_millis(ms), "{took:?}");
        // Within 2x the limit on a quiet machine (measured: bench/RESULTS.md,
        // 1.08x); the slack keeps a loaded 2-core CI machine, where the guest
        // and the epoch ticker compete with the other tests, from flaking.
        assert!(
            took < Duration::from_millis(2 * ms + SLACK_MS),
            "trapped after {took:?} for a {ms} ms limit"
        );
    }
    still_serving().await;
}

#[tokio::test]
async fn guest_blocked_in_a_host_call_hits_the_async_timeout() {
    let start = Instant::now();
    let err = fail("fx-sleep", &short(200)).await;
    assert_eq!(err.to_string(), "timeout: exceeded the limit of 200 ms");
    assert!(
        start.elapsed() < Duration::from_millis(400 + SLACK_MS),
        "{:?}",
        start.elapsed()
    );
    still_serving().await;
}

#[tokio::test]
async fn memory_hog_is_out_of_memory() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let err = fail("fx-memhog", &limits).await;
    assert_eq!(
        err,
        InvokeError::OutOfMemory {
            limit_bytes: 32 << 20
        }
    );
    assert_eq!(
        err.to_string(),
        "out of memory: the processor tried to grow its memory past the limit of 33554432 bytes \
         (all its memories and tables together)"
    );
    assert!(!err.is_retryable());
    still_serving().await;
}

#[tokio::test]
async fn unbounded_recursion_is_a_stack_overflow() {
    let err = fail("fx-stack", &Limits::default()).await;
    assert_eq!(err, InvokeError::StackOverflow);
    assert_eq!(
        err.to_string(),
        "stack overflow: the processor exhausted its wasm stack"
    );
    still_serving().await;
}

#[tokio::test]
async fn panic_is_a_trap_with_the_guest_message_and_a_backtrace() {
    let err = fail("fx-panic", &Limits::default()).await;
    let InvokeError::Trap {
        trap,
        guest_message,
        backtrace,
    } = &err
    else {
        panic!("expected a trap, got {err:?}");
    };
    assert_eq!(trap, "wasm `unreachable` instruction executed");
    assert_eq!(
        guest_message.as_deref(),
        Some("boom: processor panicked on purpose (panicked at fixtures/panic/src/lib.rs:11:5)")
    );
    assert!(
        backtrace
            .as_deref()
            .unwrap_or("")
            .contains("fx_panic.wasm!handle"),
        "{backtrace:?}"
    );
    assert_eq!(
        err.to_string(),
        "trap: wasm `unreachable` instruction executed: boom: processor panicked on purpose \
         (panicked at fixtures/panic/src/lib.rs:11:5)"
    );
    assert_eq!(err.class(), ErrorClass::Trap);
    still_serving().await;
}

#[tokio::test]
async fn emit_bomb_hits_the_emit_limit() {
    let err = fail("fx-emitbomb", &Limits::default()).await;
    assert_eq!(
        err,
        InvokeError::LimitExceeded {
            limit: LimitKind::Emits,
            detail: "the processor emitted more than 1000 follow-ups".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "limit exceeded: emits: the processor emitted more than 1000 follow-ups"
    );
    // The byte budget is checked too.
    let limits = Limits {
        max_emit_bytes: 10_000,
        ..Limits::default()
    };
    let err = fail("fx-emitbomb", &limits).await;
    assert_eq!(
        err.to_string(),
        "limit exceeded: emit-bytes: the processor's follow-ups total more than 10000 bytes"
    );
    still_serving().await;
}

#[tokio::test]
async fn oversized_output_hits_the_output_limit() {
    let err = fail("fx-bigoutput", &Limits::default()).await;
    assert_eq!(
        err.to_string(),
        "limit exceeded: output-bytes: the output is 16777216 bytes, more than the limit of 4194304 bytes"
    );
    assert!(!err.is_retryable());
    still_serving().await;
}

#[tokio::test]
async fn stdout_flood_hits_the_log_limit_and_keeps_what_fit() {
    let limits = Limits {
        max_log_bytes: 4096,
        ..Limits::default()
    };
    let report = crate::support::invoke("fx-stdout-flood", "{}", &limits).await;
    let err = report.result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "limit exceeded: log-bytes: the processor's logs (log calls, stdout and stderr) exceed \
         the limit of 4096 bytes, each line counting 32 bytes more than its text"
    );
    let kept: usize = report
        .logs
        .iter()
        .map(|l| l.message.len() + 1 + eddy_runtime::LOG_LINE_COST)
        .sum();
    assert!(kept > 0 && kept <= 4096, "kept {kept} bytes of logs");
    still_serving().await;
}

#[tokio::test]
async fn processor_errors_are_data_and_say_whether_to_retry() {
    let err = fail("fx-flaky", &Limits::default()).await;
    assert_eq!(
        err,
        InvokeError::Processor {
            code: "flaky".into(),
            message: "attempt 1 failed".into(),
            retryable: true
        }
    );
    assert_eq!(err.to_string(), "processor error `flaky`: attempt 1 failed");
    let err = fail("fx-fail", &Limits::default()).await;
    assert_eq!(
        err.to_string(),
        "processor error `always-fails`: this processor always fails"
    );
    // wordcount's own bad-input error is not retryable.
    let report = invoke("wordcount", "not json", &Limits::default()).await;
    let err = report.result.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ProcessorError);
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn many_failures_at_once_do_not_disturb_good_invocations() {
    let mut tasks = Vec::new();
    for i in 0..24 {
        tasks.push(tokio::spawn(async move {
            match i % 4 {
                0 => invoke("fx-panic", "{}", &Limits::default())
                    .await
                    .result
                    .is_err(),
                1 => invoke("fx-stack", "{}", &Limits::default())
                    .await
                    .result
                    .is_err(),
                2 => invoke("fx-loop", "{}", &short(30)).await.result.is_err(),
                _ => invoke("wordcount", r#"{"text":"a b"}"#, &Limits::default())
                    .await
                    .result
                    .is_ok(),
            }
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    still_serving().await;
}
