//! Nothing accepted is lost: a worker SIGKILLed mid-load three times, Redis
//! SIGKILLed and restarted mid-load. Every invocation completes exactly once,
//! as its record says, and no follow-up is enqueued twice.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use eddy_protocol::{FunctionConfig, InvocationStatus, RunStatus, TenantId, keys};
use eddy_queue::Queue;
use eddy_tests::*;

/// Fast reclaim, and enough deliveries that three crashes never dead-letter.
const WORKER_ENV: &[(&str, &str)] = &[
    ("EDDY_LEASE_MS", "1000"),
    ("EDDY_MAX_DELIVERIES", "20"),
    ("EDDY_CONCURRENCY", "16"),
];

/// Walks every run from its root through the follow-ups and checks each
/// invocation succeeded exactly once. Returns the number of invocations.
async fn check_runs(q: &Queue, t: &TenantId, roots: &[(String, u64)]) -> usize {
    let mut seen = HashSet::new();
    for (root, expected) in roots {
        let run = finished_run(q, t, root, Duration::from_secs(120)).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        assert_eq!(
            (run.total, run.succeeded, run.outstanding),
            (*expected, *expected, 0),
            "{run:?}"
        );
        let mut queue = VecDeque::from([root.clone()]);
        let mut in_run = 0;
        while let Some(id) = queue.pop_front() {
            let rec = q.invocation(t, &id).await.unwrap().unwrap();
            assert_eq!(rec.status, InvocationStatus::Succeeded, "{id}");
            assert_eq!(
                rec.completions, 1,
                "{id} completed {} times",
                rec.completions
            );
            assert!(seen.insert(id.clone()), "{id} twice");
            in_run += 1;
            queue.extend(rec.outcome.follow_ups);
        }
        assert_eq!(in_run, *expected, "run {root}");
    }
    seen.len()
}

fn entries_added(redis: &RedisServer, stream: &str) -> u64 {
    let info = redis.cli(&["XINFO", "STREAM", stream]);
    let lines: Vec<&str> = info.lines().collect();
    let at = lines.iter().position(|l| *l == "entries-added").unwrap();
    lines[at + 1].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_invocations_survive_three_worker_crashes() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    deploy(&q, &t, "fanout", "fanout", FunctionConfig::default()).await;
    deploy(&q, &t, "wordcount", "wordcount", FunctionConfig::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let _w1 = EddyProcess::worker(&redis.url(), cache.path(), "w1", WORKER_ENV);
    let mut w2 = EddyProcess::worker(&redis.url(), cache.path(), "w2-0", WORKER_ENV);

    // 20 runs of fanout B=4 D=4 (341 each) + 3,180 wordcount = 10,000,
    // enqueued over about two seconds while w2 is killed and restarted.
    let producer = {
        let q = q.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let mut roots = Vec::new();
            for i in 0..3_200usize {
                if i % 160 == 0 {
                    roots.push((
                        invoke(&q, &t, "fanout", r#"{"branch":4,"depth":4}"#).await,
                        341,
                    ));
                } else {
                    let text = format!(
                        r#"{{"text":"invocation {i} of the crash test, words words words"}}"#
                    );
                    roots.push((invoke(&q, &t, "wordcount", &text).await, 1));
                }
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
            }
            roots
        })
    };
    let streams = [
        keys::stream(&t, &function("fanout")),
        keys::stream(&t, &function("wordcount")),
    ];
    let mut held_at_kill = 0;
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Kill w2 the moment it holds work, so every crash is mid-work.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        'busy: while std::time::Instant::now() < deadline {
            for s in &streams {
                if q.pending_of(s, &w2.name).await.unwrap() > 0 {
                    break 'busy;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        w2.kill();
        for s in &streams {
            held_at_kill += q.pending_of(s, &w2.name).await.unwrap();
        }
        w2 = EddyProcess::worker(
            &redis.url(),
            cache.path(),
            &format!("w2-{round}"),
            WORKER_ENV,
        );
    }
    let roots = producer.await.unwrap();
    assert_eq!(roots.iter().map(|r| r.1).sum::<u64>(), 10_000);

    let total = check_runs(&q, &t, &roots).await;
    assert_eq!(total, 10_000);
    assert!(held_at_kill > 0, "the kills must hit work in flight");
    // The outbox held: every follow-up was appended exactly once.
    assert_eq!(entries_added(&redis, &streams[0]), 20 * 341);
    assert_eq!(entries_added(&redis, &streams[1]), 3_180);
    eprintln!("crash test: {held_at_kill} deliveries were in flight at the three kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_load_loses_nothing() {
    let mut redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    deploy(&q, &t, "fanout", "fanout", FunctionConfig::default()).await;
    deploy(&q, &t, "wordcount", "wordcount", FunctionConfig::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let mut w1 = EddyProcess::worker(&redis.url(), cache.path(), "w1", WORKER_ENV);
    let mut w2 = EddyProcess::worker(&redis.url(), cache.path(), "w2", WORKER_ENV);
    let pids = (w1.pid(), w2.pid());

    // A client that keeps invoking through the outage. What Redis refused
    // was never accepted; everything it accepted must complete.
    let producer = {
        let q = q.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let spec = q
                .function(&t, &function("wordcount"), None)
                .await
                .unwrap()
                .unwrap();
            let fan = q
                .function(&t, &function("fanout"), None)
                .await
                .unwrap()
                .unwrap();
            let mut accepted = Vec::new();
            let mut refused = 0;
            for i in 0..2_000usize {
                let (f, spec, payload, size) = if i % 200 == 0 {
                    ("fanout", &fan, r#"{"branch":4,"depth":3}"#.to_string(), 85)
                } else {
                    (
                        "wordcount",
                        &spec,
                        format!(r#"{{"text":"restart test {i}"}}"#),
                        1,
                    )
                };
                let mut env = eddy_protocol::Envelope::root(
                    t.clone(),
                    function(f),
                    "application/json".into(),
                );
                env.version = Some(spec.version);
                match q
                    .enqueue(&env, payload.as_bytes(), spec.config.run, None)
                    .await
                {
                    Ok(e) => accepted.push((e.id, size)),
                    Err(_) => refused += 1,
                }
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            (accepted, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let (accepted, refused) = producer.await.unwrap();
    eprintln!(
        "redis restart: {} accepted, {refused} refused during the outage",
        accepted.len()
    );
    assert!(accepted.len() > 1_000);

    let total = check_runs(&q, &t, &accepted).await;
    assert_eq!(total as u64, accepted.iter().map(|a| a.1).sum::<u64>());
    // The same worker processes carried on: they reconnected by themselves.
    assert_eq!((w1.pid(), w2.pid()), pids);
    assert!(w1.terminate(Duration::from_secs(10)).unwrap().success());
    assert!(w2.terminate(Duration::from_secs(10)).unwrap().success());
}
