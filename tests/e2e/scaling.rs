//! The controller: warm capacity follows the backlog, an idle function goes
//! to zero (its memory released) and wakes at its next invocation, and a
//! dead worker's share moves to the living while its work is reclaimed.

use std::time::{Duration, Instant};

use eddy_protocol::control::ControllerState;
use eddy_protocol::{FunctionConfig, InvocationStatus, keys};
use eddy_queue::Queue;
use eddy_tests::*;

async fn state(q: &Queue) -> ControllerState {
    wait_until(Duration::from_secs(20), "a controller decision", || async {
        q.controller_state().await.unwrap()
    })
    .await
}

async fn finished(
    q: &Queue,
    t: &eddy_protocol::TenantId,
    id: &str,
) -> eddy_protocol::InvocationRecord {
    wait_until(
        Duration::from_secs(30),
        "the invocation to finish",
        || async {
            q.invocation(t, id)
                .await
                .unwrap()
                .filter(|r| r.status.is_final())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_function_scales_to_zero_and_wakes_at_once() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    let config = FunctionConfig {
        idle_timeout_ms: 3_000,
        ..FunctionConfig::default()
    };
    deploy(&q, &t, "wordcount", "wordcount", config).await;
    let stream = keys::stream(&t, &function("wordcount"));
    let cache = tempfile::tempdir().unwrap();
    let _c = EddyProcess::controller(&redis.url(), &[]);
    let _w = EddyProcess::worker(
        &redis.url(),
        cache.path(),
        "w1",
        &[("EDDY_CONCURRENCY", "8")],
    );
    state(&q).await;

    // The gateway marks activity and wakes consumers; here the test does
    // what the gateway does after an enqueue.
    let id = invoke(&q, &t, "wordcount", r#"{"text":"warm up"}"#).await;
    q.touch(std::slice::from_ref(&stream)).await.unwrap();
    let rec = finished(&q, &t, &id).await;
    assert_eq!(rec.status, InvocationStatus::Succeeded);
    assert!(
        rec.outcome.timings.cold,
        "the first invocation loads the function"
    );

    // Warm while recently active: capacity decided, the artifact loaded.
    wait_until(Duration::from_secs(10), "warm capacity", || async {
        let s = q.controller_state().await.unwrap()?;
        let warm = s
            .functions
            .iter()
            .any(|f| f.stream == stream && f.concurrency >= 1);
        let loaded = s.workers.iter().any(|w| w.id == "w1" && w.warm >= 1);
        (warm && loaded).then_some(())
    })
    .await;

    // Idle past its timeout: zero warm capacity, unassigned, released.
    let s = wait_until(Duration::from_secs(15), "scale to zero", || async {
        let s = q.controller_state().await.unwrap()?;
        let f = s.functions.iter().find(|f| f.stream == stream)?;
        let released = s.workers.iter().any(|w| w.id == "w1" && w.warm == 0);
        (f.concurrency == 0 && f.workers.is_empty() && released).then_some(s)
    })
    .await;
    let f = s.functions.iter().find(|f| f.stream == stream).unwrap();
    assert!(f.reason.starts_with("idle "), "{}", f.reason);
    assert!(q.assignment("w1").await.unwrap().is_empty());

    // The next invocation wakes it at once, without waiting for a tick.
    let start = Instant::now();
    let id = invoke(&q, &t, "wordcount", r#"{"text":"cold again"}"#).await;
    q.touch(std::slice::from_ref(&stream)).await.unwrap();
    let rec = finished(&q, &t, &id).await;
    let took = start.elapsed();
    assert_eq!(rec.status, InvocationStatus::Succeeded);
    assert!(
        rec.outcome.timings.cold,
        "scaled to zero means loaded again"
    );
    assert!(
        took < Duration::from_secs(2),
        "cold invocation took {took:?}"
    );
    eprintln!(
        "cold invocation after scale-to-zero: {took:?} (record: {:?})",
        rec.outcome.timings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_share_moves_and_its_work_is_reclaimed() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    let config = FunctionConfig {
        max_concurrency: 8,
        ..FunctionConfig::default()
    };
    deploy(&q, &t, "busy", "fx-busy", config).await;
    let stream = keys::stream(&t, &function("busy"));
    let cache = tempfile::tempdir().unwrap();
    let env = [
        ("EDDY_CONCURRENCY", "4"),
        ("EDDY_LEASE_MS", "1000"),
        ("EDDY_MAX_DELIVERIES", "20"),
    ];
    let _c = EddyProcess::controller(&redis.url(), &[]);
    let _w1 = EddyProcess::worker(&redis.url(), cache.path(), "w1", &env);
    let mut w2 = EddyProcess::worker(&redis.url(), cache.path(), "w2", &env);
    state(&q).await;

    let mut ids = Vec::new();
    for _ in 0..400 {
        ids.push(invoke(&q, &t, "busy", r#"{"ms":50}"#).await);
    }
    q.touch(std::slice::from_ref(&stream)).await.unwrap();
    // The backlog gets the function's whole max_concurrency, spread over
    // both workers.
    wait_until(Duration::from_secs(10), "both workers assigned", || async {
        let s = q.controller_state().await.unwrap()?;
        let f = s.functions.iter().find(|f| f.stream == stream)?;
        (f.concurrency == 8 && f.workers.len() == 2).then_some(())
    })
    .await;
    assert_eq!(q.assignment("w1").await.unwrap().get(&stream), Some(&4));

    w2.kill();
    let s = wait_until(Duration::from_secs(15), "w2's share to move", || async {
        let s = q.controller_state().await.unwrap()?;
        let f = s.functions.iter().find(|f| f.stream == stream)?;
        (f.workers == ["w1"] && s.workers.iter().all(|w| w.id != "w2")).then_some(s)
    })
    .await;
    assert_eq!(s.current_replicas, 1);
    for id in &ids {
        let rec = finished(&q, &t, id).await;
        assert_eq!(
            (rec.status, rec.completions),
            (InvocationStatus::Succeeded, 1),
            "{id}"
        );
    }
}

/// A backlog whose activity mark is old (lost to a crash or an outage
/// between the enqueue and its mark) is not live for the controller, which
/// reads only new marks; its sweep of the window, a few streams a second,
/// finds the backlog and the work runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_without_a_recent_mark_is_found_by_the_sweep() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    let config = FunctionConfig {
        idle_timeout_ms: 1_000,
        ..FunctionConfig::default()
    };
    deploy(&q, &t, "wordcount", "wordcount", config).await;
    let stream = keys::stream(&t, &function("wordcount"));
    let id = invoke(&q, &t, "wordcount", r#"{"text":"nobody marked me"}"#).await;
    // The mark says an hour ago.
    let old = (eddy_protocol::now_ms() - 3_600_000).to_string();
    redis.cli(&["ZADD", keys::ACTIVE, &old, &stream]);
    let cache = tempfile::tempdir().unwrap();
    let _c = EddyProcess::controller(&redis.url(), &[]);
    let _w = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);
    let rec = finished(&q, &t, &id).await;
    assert_eq!(rec.status, InvocationStatus::Succeeded);
}
