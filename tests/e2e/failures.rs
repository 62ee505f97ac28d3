//! Failures are recorded, retried when they may pass, dead-lettered when they
//! will not, and runs with a loop stop at their guards.

use std::time::Duration;

use eddy_protocol::{FunctionConfig, InvocationStatus, RunLimits, RunStatus};
use eddy_tests::*;

fn quick_retries(max_retries: u32) -> FunctionConfig {
    FunctionConfig {
        max_retries,
        backoff_base_ms: 50,
        backoff_max_ms: 200,
        ..FunctionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_dead_letters_and_redrive() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    deploy(&q, &t, "flaky", "fx-flaky", quick_retries(3)).await;
    deploy(&q, &t, "job", "fx-fail", quick_retries(2)).await;
    let cache = tempfile::tempdir().unwrap();
    let _w = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);

    // Fails on attempts 1 and 2, succeeds on 3.
    let id = invoke(&q, &t, "flaky", "{}").await;
    let run = finished_run(&q, &t, &id, Duration::from_secs(20)).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    let rec = q.invocation(&t, &id).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.attempt, rec.completions),
        (InvocationStatus::Succeeded, 3, 1)
    );
    assert_eq!(rec.output.as_deref(), Some(&br#"{"attempt":3}"#[..]));

    // Always fails: 1 + 2 retries, then the dead-letter stream.
    let id = invoke(&q, &t, "job", r#"{"order":7}"#).await;
    let run = finished_run(&q, &t, &id, Duration::from_secs(20)).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!((run.total, run.dead, run.outstanding), (1, 1, 0));
    let rec = q.invocation(&t, &id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt), (InvocationStatus::Dead, 3));
    let error = rec.outcome.error.unwrap();
    assert_eq!(error.class, eddy_protocol::ErrorClass::ProcessorError);
    assert_eq!(
        error.message,
        "processor error `always-fails`: this processor always fails"
    );
    assert_eq!(error.code.as_deref(), Some("always-fails"));
    let dead = q.dead_letters(&t, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let dl = &dead[0];
    assert_eq!(dl.invocation_id, id);
    assert_eq!(
        (dl.status.as_str(), dl.class.as_str()),
        ("dead", "processor-error")
    );
    assert_eq!(
        dl.error,
        "processor error `always-fails`: this processor always fails"
    );
    assert_eq!(dl.attempts, Some(3));
    assert_eq!(dl.function.as_deref(), Some("job"));

    // Deploy a fix and redrive: the same invocation runs again and its run
    // reopens and finishes.
    deploy(&q, &t, "job", "echo", quick_retries(2)).await;
    assert_eq!(
        q.redrive(&t, &dl.entry_id).await.unwrap().as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        q.redrive(&t, &dl.entry_id).await.unwrap(),
        None,
        "redriven once"
    );
    let run = wait_until(Duration::from_secs(20), "the redriven run", || async {
        q.run(&t, &id)
            .await
            .unwrap()
            .filter(|r| r.status == RunStatus::Succeeded)
    })
    .await;
    assert_eq!(
        (run.total, run.succeeded, run.dead, run.outstanding),
        (1, 1, 0, 0)
    );
    let rec = q.invocation(&t, &id).await.unwrap().unwrap();
    assert_eq!(rec.status, InvocationStatus::Succeeded);
    assert_eq!(rec.output.as_deref(), Some(&br#"{"order":7}"#[..]));
    assert!(q.dead_letters(&t, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_failures_are_final_at_once() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    let config = FunctionConfig {
        memory_mb: 16,
        ..quick_retries(3)
    };
    deploy(&q, &t, "hog", "fx-memhog", config).await;
    let mut shaper = quick_retries(3);
    shaper.values.insert("notify".into(), "nowhere".into());
    deploy(&q, &t, "shaper", "webhook-shaper", shaper).await;
    let cache = tempfile::tempdir().unwrap();
    let _w = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);

    let id = invoke(&q, &t, "hog", "{}").await;
    finished_run(&q, &t, &id, Duration::from_secs(20)).await;
    let rec = q.invocation(&t, &id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt), (InvocationStatus::Failed, 1));
    assert_eq!(
        rec.outcome.error.unwrap().message,
        "out of memory: the processor tried to grow its memory past the limit of 16777216 bytes (all its memories and tables together)"
    );

    // A follow-up to a function that does not exist fails the invocation:
    // nothing is enqueued, the error says where it went.
    let id = invoke(&q, &t, "shaper", r#"{"ref":"refs/heads/main","repository":{"full_name":"a/b"},"pusher":{"name":"x"},"commits":[]}"#).await;
    let run = finished_run(&q, &t, &id, Duration::from_secs(20)).await;
    assert_eq!(
        (run.status, run.total, run.failed),
        (RunStatus::Failed, 1, 1)
    );
    let rec = q.invocation(&t, &id).await.unwrap().unwrap();
    let error = rec.outcome.error.unwrap();
    assert_eq!(
        (error.class.as_str(), error.message.as_str()),
        ("unknown-function", "emit to unknown function `nowhere`")
    );
    assert!(rec.outcome.follow_ups.is_empty());
    assert_eq!(redis.cli(&["EXISTS", "eddy:{t:acme}:q:nowhere"]), "0");
    let dead = q.dead_letters(&t, 10).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.status.as_str()).collect::<Vec<_>>(),
        ["failed", "failed"]
    );
}

/// The default config with these run limits.
fn run_limits(max_depth: u32, max_invocations: u64) -> FunctionConfig {
    FunctionConfig {
        run: RunLimits {
            max_depth,
            max_invocations,
        },
        ..FunctionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loops_stops_at_its_guards() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    let deep = run_limits(10, 1_000);
    deploy(&q, &t, "forever", "fx-emit-self", deep).await;
    let wide = run_limits(32, 100);
    deploy(&q, &t, "fanout", "fanout", wide).await;
    let flat = run_limits(0, 1_000);
    deploy(&q, &t, "flat", "fanout", flat).await;
    let cache = tempfile::tempdir().unwrap();
    let _w = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);

    // A root that may not fan out at all: its run ends with it, and since it
    // never fanned out, its record is the run's (no run record is written).
    let id = invoke(&q, &t, "flat", r#"{"branch":2,"depth":1}"#).await;
    let run = finished_run(&q, &t, &id, Duration::from_secs(30)).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        (run.total, run.succeeded, run.failed, run.outstanding),
        (1, 0, 1, 0)
    );
    assert_eq!((run.max_depth, run.max_invocations), (0, 1_000));
    assert_eq!(
        run.error.as_deref(),
        Some("run depth limit: a follow-up at depth 1 exceeds the maximum depth of 0")
    );
    assert_eq!(
        redis.cli(&["EXISTS", &eddy_protocol::keys::run(&t, &id)]),
        "0"
    );

    // Emits itself forever: the depth guard ends it.
    let id = invoke(&q, &t, "forever", "{}").await;
    let run = finished_run(&q, &t, &id, Duration::from_secs(30)).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        (run.total, run.succeeded, run.failed, run.outstanding),
        (11, 10, 1, 0)
    );
    assert_eq!(
        run.error.as_deref(),
        Some("run depth limit: a follow-up at depth 11 exceeds the maximum depth of 10")
    );

    // 4^6 fan-out in a run capped at 100 invocations: the size guard ends it.
    let id = invoke(&q, &t, "fanout", r#"{"branch":4,"depth":6}"#).await;
    let run = finished_run(&q, &t, &id, Duration::from_secs(30)).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.total <= 100, "{run:?}");
    assert_eq!(run.outstanding, 0);
    let error = run.error.unwrap();
    assert!(error.starts_with("run size limit: 4 more follow-ups would exceed the maximum of 100 invocations in the run ("), "{error}");
}

/// A worker that dies between a completion that scheduled a retry and its
/// mark in the retries' due index leaves the retry unmarked; the audit
/// finds it (late, never lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_due_mark_was_lost_is_found_by_the_audit() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    let slow = FunctionConfig {
        max_retries: 3,
        backoff_base_ms: 1_500,
        backoff_max_ms: 1_500,
        ..FunctionConfig::default()
    };
    deploy(&q, &t, "flaky", "fx-flaky", slow).await;
    let cache = tempfile::tempdir().unwrap();
    let _w = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);
    let id = invoke(&q, &t, "flaky", "{}").await;
    wait_until(
        Duration::from_secs(10),
        "the first attempt to fail",
        || async {
            let rec = q.invocation(&t, &id).await.unwrap()?;
            (rec.status == InvocationStatus::Retrying).then_some(())
        },
    )
    .await;
    redis.cli(&["DEL", eddy_protocol::keys::DUE_RETRIES]);
    assert_eq!(
        redis
            .cli(&["ZCARD", &eddy_protocol::keys::delayed(&t)])
            .trim(),
        "1",
        "the retry waits, unmarked"
    );
    let run = finished_run(&q, &t, &id, Duration::from_secs(20)).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    let rec = q.invocation(&t, &id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempt), (InvocationStatus::Succeeded, 3));
}
