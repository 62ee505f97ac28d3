//! The happy path: enqueue → worker → record; follow-ups grow a run that
//! knows when it is finished.

use std::time::Duration;

use eddy_protocol::{FunctionConfig, InvocationStatus, RunStatus};
use eddy_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_and_fanout_run_complete_with_exact_counts() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    deploy(&q, &t, "wordcount", "wordcount", FunctionConfig::default()).await;
    deploy(&q, &t, "fanout", "fanout", FunctionConfig::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let _w = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);

    let id = invoke(&q, &t, "wordcount", r#"{"text":"a b a"}"#).await;
    let run = finished_run(&q, &t, &id, Duration::from_secs(20)).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!((run.total, run.succeeded, run.outstanding), (1, 1, 0));
    let rec = q.invocation(&t, &id).await.unwrap().unwrap();
    assert_eq!(rec.status, InvocationStatus::Succeeded);
    assert_eq!(rec.completions, 1);
    let out: serde_json::Value = serde_json::from_slice(rec.output.as_ref().unwrap()).unwrap();
    assert_eq!(out["words"], 3);
    assert!(rec.outcome.timings.run_us > 0);
    assert_eq!(rec.outcome.worker.as_deref(), Some("w1"));
    // A run that never fanned out is its root alone: no record of its own.
    let run_key = |id: &str| eddy_protocol::keys::run(&t, id);
    assert_eq!(redis.cli(&["EXISTS", &run_key(&id)]), "0");

    // B=4, D=4: 1 + 4 + 16 + 64 + 256 = 341 invocations.
    let root = invoke(&q, &t, "fanout", r#"{"branch":4,"depth":4}"#).await;
    let run = finished_run(&q, &t, &root, Duration::from_secs(60)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        (
            run.total,
            run.succeeded,
            run.failed,
            run.dead,
            run.outstanding
        ),
        (341, 341, 0, 0, 0)
    );
    assert_eq!(redis.cli(&["EXISTS", &run_key(&root)]), "1");
    let rec = q.invocation(&t, &root).await.unwrap().unwrap();
    assert_eq!(rec.outcome.follow_ups.len(), 4);
    let child = q
        .invocation(&t, &rec.outcome.follow_ups[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.parent_id.as_deref(), Some(root.as_str()));
    assert_eq!((child.depth, child.run_id.as_str()), (1, root.as_str()));
    assert_eq!(child.status, InvocationStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_function_and_idempotency_key() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    deploy(&q, &t, "echo", "echo", FunctionConfig::default()).await;
    let mut env =
        eddy_protocol::Envelope::root(t.clone(), function("nope"), "application/json".into());
    let err = q
        .enqueue(&env, b"{}", Default::default(), None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "function `nope` not found");

    env.function = function("echo");
    env.idempotency_key = Some("order-42".into());
    let first = q
        .enqueue(&env, b"{}", Default::default(), None)
        .await
        .unwrap();
    let mut again =
        eddy_protocol::Envelope::root(t.clone(), function("echo"), "application/json".into());
    again.idempotency_key = Some("order-42".into());
    let second = q
        .enqueue(&again, b"{}", Default::default(), None)
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(second.id, first.id);
    assert_eq!(redis.cli(&["XLEN", "eddy:{t:acme}:q:echo"]), "1");
}

/// The gateway reads the current spec from a copy kept beside the `current`
/// pointer. A pointer moved without the copy (a binary from before the copy
/// existed, in a rolling upgrade) must still win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_spec_follows_the_pointer_even_without_its_copy() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    let f = function("echo");
    deploy(&q, &t, "echo", "echo", FunctionConfig::default()).await;
    deploy(&q, &t, "echo", "echo", FunctionConfig::default()).await;
    let current = |q: &eddy_queue::Queue| {
        let (q, t, f) = (q.clone(), t.clone(), f.clone());
        async move { q.function(&t, &f, None).await.unwrap().unwrap().version }
    };
    assert_eq!(current(&q).await, 2);
    assert!(q.set_current(&t, &f, 1).await.unwrap());
    assert_eq!(current(&q).await, 1);
    // An older binary's rollback: the pointer only.
    redis.cli(&[
        "HSET",
        &eddy_protocol::keys::function(&t, &f),
        "current",
        "2",
    ]);
    assert_eq!(current(&q).await, 2);
    // And a hash with no copy at all.
    redis.cli(&["HDEL", &eddy_protocol::keys::function(&t, &f), "spec"]);
    assert_eq!(current(&q).await, 2);
}
