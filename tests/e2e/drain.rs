//! SIGTERM drains a worker: it stops reading, finishes what it started, gives
//! back what it had not, leaves the group, and exits 0.

use std::time::Duration;

use eddy_protocol::{FunctionConfig, InvocationStatus, keys};
use eddy_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_and_leaves_nothing_pending() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    deploy(&q, &t, "busy", "fx-busy", FunctionConfig::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let mut w1 = EddyProcess::worker(
        &redis.url(),
        cache.path(),
        "w1",
        &[("EDDY_CONCURRENCY", "4")],
    );

    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(invoke(&q, &t, "busy", r#"{"ms":300}"#).await);
    }
    let stream = keys::stream(&t, &function("busy"));
    // Wait until w1 is mid-work: four started, none finished yet.
    wait_until(Duration::from_secs(10), "w1 to hold work", || async {
        (q.pending_of(&stream, "w1").await.unwrap() > 0).then_some(())
    })
    .await;
    let status = w1
        .terminate(Duration::from_secs(10))
        .expect("the worker must exit by itself");
    assert!(status.success(), "drain exits 0, got {status:?}");
    assert_eq!(
        q.pending_of(&stream, "w1").await.unwrap(),
        0,
        "nothing left pending for w1"
    );
    assert!(
        !redis.cli(&["XINFO", "CONSUMERS", &stream]).contains("w1"),
        "w1 left the group"
    );

    // What w1 started finished; the rest waits for the next worker.
    let mut done = 0;
    for id in &ids {
        let rec = q.invocation(&t, id).await.unwrap().unwrap();
        match rec.status {
            InvocationStatus::Succeeded => done += 1,
            InvocationStatus::Queued => {}
            other => panic!("{id} is {other:?}"),
        }
    }
    assert!(
        (1..40).contains(&done),
        "{done} finished before the drain ended"
    );

    let _w2 = EddyProcess::worker(
        &redis.url(),
        cache.path(),
        "w2",
        &[("EDDY_CONCURRENCY", "8")],
    );
    for id in &ids {
        let rec = wait_until(Duration::from_secs(30), "every invocation", || async {
            q.invocation(&t, id)
                .await
                .unwrap()
                .filter(|r| r.status == InvocationStatus::Succeeded)
        })
        .await;
        assert_eq!(rec.completions, 1);
    }
}
