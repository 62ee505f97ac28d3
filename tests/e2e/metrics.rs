//! `/metrics` on every role, scraped, with the names operators alert on.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::gateway::Platform;
use eddy_protocol::FunctionConfig;
use eddy_tests::*;

/// `GET /metrics` of an `eddy up`, as text (the admin key's: the public
/// port's metrics are the operator's).
async fn scrape(p: &Platform) -> String {
    p.req(Method::GET, "/metrics", crate::gateway::ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_prometheus_metrics() {
    // `eddy up`: all roles in one process, one registry, served by the gateway.
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    p.deploy(&key, "wordcount", "wordcount", "").await;
    p.deploy(
        &key,
        "flaky",
        "fx-flaky",
        "?backoff_base_ms=10&backoff_max_ms=20",
    )
    .await;
    let r = p
        .req(Method::POST, "/invoke/wordcount", &key)
        .body(r#"{"text":"m"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = p
        .req(Method::POST, "/invoke/flaky", &key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Not public: they name every tenant and function.
    let r = p
        .http
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "missing_key"
    );
    let r = p.req(Method::GET, "/metrics", &key).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"code": "forbidden", "message": "only the admin key may read this gateway's metrics"})
    );
    let text = wait_until(
        Duration::from_secs(10),
        "the controller's gauges",
        || async {
            let t = scrape(&p).await;
            t.contains("eddy_warm_concurrency").then_some(t)
        },
    )
    .await;
    for name in [
        r#"eddy_invocations_total{tenant="acme",function="wordcount",outcome="succeeded"} 1"#,
        r#"eddy_invocations_total{tenant="acme",function="flaky",outcome="retried"} 2"#,
        r#"eddy_retries_total{tenant="acme",function="flaky"} 2"#,
        r#"eddy_invocations_accepted_total{tenant="acme",function="wordcount",mode="sync"} 1"#,
        r#"eddy_cold_starts_total{tenant="acme",function="wordcount"} 1"#,
        r#"eddy_phase_seconds_bucket{phase="run",le="#,
        r#"eddy_phase_seconds_bucket{phase="queue_wait",le="#,
        r#"eddy_phase_seconds_bucket{phase="slot_wait",le="#,
        r#"eddy_phase_seconds_bucket{phase="cold_start",le="#,
        r#"eddy_redis_roundtrip_seconds_bucket{op="complete",le="#,
        r#"eddy_redis_roundtrip_seconds_bucket{op="enqueue",le="#,
        r#"eddy_backlog{tenant="acme",function="wordcount",kind="lag"}"#,
        r#"eddy_warm_concurrency{tenant="acme",function="wordcount"}"#,
        "eddy_desired_worker_replicas 1",
        "eddy_live_workers 1",
        "eddy_worker_in_flight",
        "eddy_worker_exec_slots_free",
        "eddy_worker_exec_waiting",
    ] {
        assert!(text.contains(name), "missing `{name}` in:\n{text}");
    }

    for name in [
        "eddy_worker_lane_handoffs_total",
        "eddy_worker_lane_held_reads_total",
    ] {
        assert!(text.contains(name), "missing `{name}` in:\n{text}");
    }

    // A worker on its own serves its endpoints too; readiness follows drain.
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    deploy(
        &q,
        &tenant("acme"),
        "echo",
        "echo",
        FunctionConfig::default(),
    )
    .await;
    let port = free_port();
    let cache = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut w = EddyProcess::worker(
        &redis.url(),
        cache.path(),
        "w1",
        &[("EDDY_METRICS_LISTEN", &listen)],
    );
    let base = format!("http://{listen}");
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move { reqwest::get(url).await.ok().map(|r| r.status().as_u16()) }
    };
    wait_until(Duration::from_secs(10), "the worker's /readyz", || async {
        (get("/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(get("/healthz").await, Some(200));
    let id = invoke(&q, &tenant("acme"), "echo", "{}").await;
    finished_run(&q, &tenant("acme"), &id, Duration::from_secs(10)).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"eddy_invocations_total{tenant="acme",function="echo",outcome="succeeded"} 1"#
        ),
        "{text}"
    );
    assert!(w.terminate(Duration::from_secs(10)).unwrap().success());
}

/// A sync invocation is run on the worker's interactive lane: the lane's
/// held read gets it, or the reader gets it first and hands it over. With the stream warm, the reader waits on it in a
/// blocking read, so Redis hands each new entry to the reader before the
/// lane's own read arrives; under a burst the reader reads it in a batch
/// with bulk work. Either way it must not run on the bulk threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_invocations_reach_the_lane_by_its_held_read_or_a_handoff() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    p.deploy(&key, "wordcount", "wordcount", "").await;
    for i in 0..20 {
        let r = p
            .req(Method::POST, "/invoke/wordcount", &key)
            .body(format!(r#"{{"text":"{}"}}"#, "w ".repeat(i + 1)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let out: serde_json::Value = r.json().await.unwrap();
        assert_eq!(out["words"], i + 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = scrape(&p).await;
    let counter = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let handoffs = counter("eddy_worker_lane_handoffs_total");
    let held = counter("eddy_worker_lane_held_reads_total");
    // The first call finds the stream cold (the lane reads it on the
    // wake-up). After that two blocked reads wait on the stream: the
    // reader's (it hands a sync entry to the lane) and the lane's own held
    // read; Redis gives each new entry to the one that blocked first, so
    // nearly every call arrives one of these two ways, none at the cost of
    // a second trip to Redis.
    assert!(
        held >= 1,
        "the lane's held read got none of 20 sync invocations"
    );
    assert!(
        (10..=20).contains(&(handoffs + held)),
        "{handoffs} handoffs and {held} held reads for 20 sync invocations"
    );
}

/// `eddy_gateway_bulk_yields_total{via=...}` of a scrape (0 when absent).
fn bulk_yields(text: &str, via: &str) -> u64 {
    let name = format!("eddy_gateway_bulk_yields_total{{via=\"{via}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(name.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

/// An async invocation of `wordcount` with i + 1 words; its id.
async fn post_async(p: &Platform, key: &str, i: usize) -> String {
    let r = p
        .req(Method::POST, "/invoke/wordcount", key)
        .header("prefer", "respond-async")
        .body(format!(r#"{{"text":"{}"}}"#, "w ".repeat(i + 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Both kinds of bulk enqueue yield to a sync call of the gateway while it
/// waits, and only then: a bulk load's chunks (`/invoke/{name}/batch`) and
/// the group commits of async invocations. Fails with `EDDY_BULK_YIELD=0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueues_yield_to_sync_calls_and_only_to_them() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    p.deploy(&key, "wordcount", "wordcount", "").await;
    p.deploy(&key, "busy", "fx-busy", "").await;
    let lines = |n: usize| -> String {
        (0..n)
            .map(|i| format!("{{\"text\":\"{}\"}}\n", "w ".repeat(i % 5 + 1)))
            .collect()
    };
    let batch = |body: String| {
        let r = p
            .req(Method::POST, "/invoke/wordcount/batch", &key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            assert_eq!(
                text.lines().filter(|l| l.contains("\"id\"")).count(),
                64,
                "{text}"
            );
        }
    };
    // Async invocations one after the other: each is a group commit of
    // its own.
    let (p, key) = (&p, &key);
    let singles = |n: usize| async move {
        for i in 0..n {
            post_async(p, key, i).await;
        }
    };
    let counts = || async {
        let text = scrape(p).await;
        (
            bulk_yields(&text, "batch"),
            bulk_yields(&text, "group_commit"),
        )
    };

    // No sync call waits: bulk enqueues go at their own pace.
    batch(lines(64)).await;
    singles(8).await;
    assert_eq!(counts().await, (0, 0));

    // A sync call waits (for 3 s): every full chunk of 16 lines pauses
    // for it (at most 2 ms each), every group commit is followed by a
    // pause, and all of them are accepted.
    let sync = p
        .req(Method::POST, "/invoke/busy", key)
        .body(r#"{"ms":3000}"#)
        .send();
    let sync = tokio::spawn(sync);
    tokio::time::sleep(Duration::from_millis(300)).await;
    batch(lines(64)).await;
    singles(8).await;
    let (chunks, commits) = counts().await;
    let r = sync.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!((1..=4).contains(&chunks), "{chunks} chunks of 4 paused");
    assert_eq!(commits, 8, "{commits} of 8 group commits paced");

    // It is over: no more pauses.
    batch(lines(64)).await;
    singles(8).await;
    assert_eq!(counts().await, (chunks, commits));
}

/// A worker's bulk completions go one flush at a time while sync
/// invocations keep coming (one in the last second), and only then:
/// `eddy_worker_bulk_yields_total` counts the completion flushes sent so.
/// Fails with `EDDY_BULK_YIELD=0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_completions_yield_while_sync_calls_keep_coming() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    p.deploy(&key, "wordcount", "wordcount", "").await;
    let yields = || async {
        let text = scrape(&p).await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("eddy_worker_bulk_yields_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    // Async invocations one after the other, each awaited to its end: its
    // completion is a flush of its own.
    let asyncs = |n: usize| {
        let (p, key) = (&p, &key);
        async move {
            for i in 0..n {
                let id = post_async(p, key, i).await;
                p.until(key, &format!("/invocations/{id}"), |v| {
                    v["status"] == "succeeded"
                })
                .await;
            }
        }
    };
    let sync = || async {
        let r = p
            .req(Method::POST, "/invoke/wordcount", &key)
            .body(r#"{"text":"sync"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };

    // No sync call yet: the bulk completions go as they come.
    asyncs(4).await;
    assert_eq!(yields().await, 0);

    // Each right after a sync call (within its second): every bulk
    // completion flush is counted, and they all complete. (Read after the
    // second has passed: a flush is counted when the worker gets its
    // reply, which may come after the record reads as succeeded.)
    for _ in 0..4 {
        sync().await;
        asyncs(1).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = yields().await;
    assert!((1..=4).contains(&during), "{during} of 4 flushes yielded");

    // A second and more after the last sync call: no longer.
    asyncs(4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(yields().await, during);
}

/// Per-function series are bounded: a process names at most
/// `EDDY_METRICS_MAX_FUNCTIONS` functions, a tenth of them per tenant, and
/// sums a tenant's others under `function="_other"` instead of adding series
/// a tenant controls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_labels_are_bounded() {
    let p = Platform::start(&[("EDDY_METRICS_MAX_FUNCTIONS", "20")]);
    let (key, _) = p.tenant("acme", json!({})).await;
    for name in ["a", "b", "c", "d"] {
        p.deploy(&key, name, "echo", "").await;
        let r = p
            .send(Method::POST, &format!("/invoke/{name}"), &key, "{}")
            .await;
        assert_eq!(r.status(), 200);
    }
    let text = scrape(&p).await;
    let series = |t: &str, f: &str| {
        format!(r#"eddy_invocations_total{{tenant="{t}",function="{f}",outcome="succeeded"}}"#)
    };
    assert!(
        text.contains(&format!("{} 1", series("acme", "a"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 1", series("acme", "b"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 2", series("acme", "_other"))),
        "{text}"
    );
    assert!(
        !text.contains(r#"function="c""#) && !text.contains(r#"function="d""#),
        "{text}"
    );
}

/// The controller's `/status` names every tenant's functions: it takes the
/// admin key, and a controller without one refuses it. `/replicas` (counts
/// only, read by KEDA) stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_status_takes_the_admin_key() {
    let redis = RedisServer::start();
    let listen = format!("127.0.0.1:{}", free_port());
    let _c = EddyProcess::controller(
        &redis.url(),
        &[
            ("EDDY_CONTROLLER_LISTEN", &listen),
            ("EDDY_ADMIN_KEY", "admin-secret"),
        ],
    );
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut r = http.get(format!("http://{listen}{path}"));
        if let Some(k) = key {
            r = r.header("authorization", format!("bearer {k}"));
        }
        async move {
            let r = r.send().await.ok()?;
            Some((
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.ok()?,
            ))
        }
    };
    wait_until(
        Duration::from_secs(10),
        "a decision on /replicas",
        || async { get("/replicas", None).await.filter(|(s, _)| *s == 200) },
    )
    .await;
    let (s, body) = get("/status", None).await.unwrap();
    assert_eq!(
        (s, body["code"].as_str()),
        (401, Some("missing_key")),
        "{body}"
    );
    let (s, body) = get("/status", Some("guess")).await.unwrap();
    assert_eq!(
        (s, body["code"].as_str()),
        (401, Some("invalid_key")),
        "{body}"
    );
    let (s, body) = get("/status", Some("admin-secret")).await.unwrap();
    assert_eq!(s, 200, "{body}");
    assert!(body["desired_replicas"].is_number(), "{body}");

    let keyless = format!("127.0.0.1:{}", free_port());
    let _k = EddyProcess::controller(&redis.url(), &[("EDDY_CONTROLLER_LISTEN", &keyless)]);
    let r = wait_until(
        Duration::from_secs(10),
        "the keyless controller",
        || async { reqwest::get(format!("http://{keyless}/status")).await.ok() },
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["message"],
        "/status needs the admin key, and this controller has none: set EDDY_ADMIN_KEY"
    );
}
