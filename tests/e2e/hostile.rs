//! A hostile tenant cannot hurt its neighbours. In each test tenant
//! "mallory" runs one attack on a shared `eddy up` while tenant "alice"
//! keeps a steady sync trickle: every one of alice's calls succeeds within
//! [`ALICE_P99`], the process's resident memory grows less than the stated
//! bound, Redis's memory stays bounded, and mallory's invocations end with
//! their exact error class and message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::Platform;

/// Alice's p99 while mallory attacks. Measured on a quiet 2-core machine
/// at a few ms (bench/RESULTS.md); the bound leaves room for a CI machine
/// running other tests at the same time.
const ALICE_P99: Duration = Duration::from_millis(300);

/// Alice's trickle and the sampled RSS of `eddy up`.
struct Watch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Duration>, Vec<String>, u64)>,
    rss_before: u64,
    redis_before: u64,
    redis_url: String,
}

/// Resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

async fn redis_used(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Starts alice's trickle: one sync echo every 10 ms, one at a time.
async fn watch(p: &Platform, alice: &str) -> Watch {
    watch_calls(p, alice, "echo", None).await
}

/// [`watch`] with calls of alice's `function`; with `payload`, every call
/// sends it and only the status is checked, else each sends `{"n": i}` and
/// must get it back.
async fn watch_calls(p: &Platform, alice: &str, function: &str, payload: Option<&str>) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let pid = p._process.pid();
    let fixed = payload.map(str::to_string);
    let (http, url, key, flag) = (
        p.http.clone(),
        format!("{}/invoke/{function}", p.base),
        alice.to_string(),
        stop.clone(),
    );
    let rss_before = rss(pid);
    let redis_before = redis_used(&p.redis_url).await;
    let task = tokio::spawn(async move {
        let (mut lat, mut failures, mut peak) = (Vec::new(), Vec::new(), 0u64);
        let mut i = 0u64;
        while !flag.load(Ordering::Relaxed) {
            i += 1;
            let body = fixed.clone().unwrap_or_else(|| format!(r#"{{"n":{i}}}"#));
            let start = Instant::now();
            let r = http
                .post(&url)
                .bearer_auth(&key)
                .body(body.clone())
                .send()
                .await;
            let took = start.elapsed();
            match r {
                Ok(r) if r.status() == StatusCode::OK => {
                    let got = r.text().await.unwrap_or_default();
                    if fixed.is_none() && got != body {
                        failures.push(format!("call {i}: answered {got}"));
                    }
                    lat.push(took);
                }
                Ok(r) => failures.push(format!("call {i}: {} {:?}", r.status(), r.text().await)),
                Err(e) => failures.push(format!("call {i}: {e}")),
            }
            peak = peak.max(rss(pid));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (lat, failures, peak)
    });
    Watch {
        stop,
        task,
        rss_before,
        redis_before,
        redis_url: p.redis_url.clone(),
    }
}

impl Watch {
    /// Stops the trickle and checks alice's calls and the bounds; returns
    /// (alice's p99, RSS growth, Redis growth) for the log.
    async fn check(self, what: &str, max_rss_growth: u64, max_redis_growth: u64) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop.store(true, Ordering::Relaxed);
        let (mut lat, failures, peak) = self.task.await.unwrap();
        assert!(
            failures.is_empty(),
            "{what}: alice's calls failed: {failures:?}"
        );
        assert!(lat.len() >= 20, "{what}: only {} calls", lat.len());
        lat.sort();
        let p50 = lat[lat.len() / 2];
        let p99 = lat[(lat.len() * 99).div_ceil(100) - 1];
        let rss_growth = peak.saturating_sub(self.rss_before);
        let redis_growth = redis_used(&self.redis_url)
            .await
            .saturating_sub(self.redis_before);
        eprintln!(
            "{what}: alice {} calls, p50 {p50:?}, p99 {p99:?}; RSS {} -> peak {} MiB; Redis +{} KiB",
            lat.len(),
            self.rss_before >> 20,
            peak >> 20,
            redis_growth >> 10
        );
        assert!(
            p99 <= ALICE_P99,
            "{what}: alice's p99 {p99:?} > {ALICE_P99:?}"
        );
        assert!(
            rss_growth <= max_rss_growth,
            "{what}: RSS grew {} MiB > {} MiB",
            rss_growth >> 20,
            max_rss_growth >> 20
        );
        assert!(
            redis_growth <= max_redis_growth,
            "{what}: Redis grew {} KiB > {} KiB",
            redis_growth >> 10,
            max_redis_growth >> 10
        );
    }
}

/// Alice and mallory, each with an `echo`; mallory's `name` is `bytes`
/// deployed with `query`.
async fn tenants(p: &Platform, name: &str, bytes: Vec<u8>, query: &str) -> (String, String) {
    let (alice, _) = p.tenant("alice", json!({})).await;
    let (mallory, _) = p.tenant("mallory", json!({})).await;
    p.deploy(&alice, "echo", "echo", "").await;
    p.deploy(&mallory, "echo", "echo", "").await;
    let r = p
        .req(Method::PUT, &format!("/functions/{name}{query}"), &mallory)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    // Warm alice's function before the baseline.
    let r = p
        .req(Method::POST, "/invoke/echo", &alice)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    (alice, mallory)
}

/// Mallory's async invocations of `name`; returns their ids.
async fn launch(p: &Platform, mallory: &str, name: &str, body: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = p
            .req(Method::POST, &format!("/invoke/{name}"), mallory)
            .header("prefer", "respond-async")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Checks an error answer: its status, a header (`retry-after`, the error
/// class), its code and message. Returns its body.
async fn refused(
    r: reqwest::Response,
    status: StatusCode,
    header: Option<(&str, &str)>,
    code: &str,
    message: &str,
) -> Value {
    assert_eq!(r.status(), status);
    if let Some((name, value)) = header {
        assert_eq!(r.headers()[name], value, "{name}");
    }
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["code"].as_str(), v["message"].as_str()),
        (Some(code), Some(message)),
        "{v}"
    );
    v
}

/// Waits for each invocation to end and checks its status and error.
async fn ended(
    p: &Platform,
    key: &str,
    ids: &[String],
    status: &str,
    class: &str,
    message: &str,
) -> Vec<Value> {
    let mut records = Vec::new();
    for id in ids {
        let rec = p
            .until(key, &format!("/invocations/{id}"), |v| {
                v["status"] == "failed" || v["status"] == "succeeded" || v["status"] == "dead"
            })
            .await;
        assert_eq!(
            (
                rec["status"].as_str(),
                rec["error"]["class"].as_str(),
                rec["error"]["message"].as_str()
            ),
            (Some(status), Some(class), Some(message)),
            "{rec}"
        );
        assert_eq!(rec["attempt"], 1, "retried: {rec}");
        records.push(rec);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_of_one_component_share_one_budget() {
    // 512 MiB of guest memory on this worker: 256 MiB per tenant.
    let p = Platform::start(&[
        ("EDDY_CEILINGS", "memory_mb=128"),
        ("EDDY_GUEST_MEMORY_MB", "512"),
    ]);
    let (alice, mallory) = tenants(
        &p,
        "split",
        eddy_tests::hostile("split-memory"),
        "?memory_mb=64&max_retries=0",
    )
    .await;
    // The original attack's shape (21 memories) is refused at the door.
    let r = p
        .req(Method::PUT, "/functions/many", &mallory)
        .body(eddy_tests::hostile("many-memories"))
        .send()
        .await
        .unwrap();
    refused(
        r,
        StatusCode::BAD_REQUEST,
        None,
        "invalid_module",
        "invalid module: the component is bigger than this platform admits: The component \
         transitively contains 21 Wasm linear memories, which exceeds the configured maximum of 4",
    )
    .await;

    let w = watch(&p, &alice).await;
    // Four memories, each written up to 24 MiB: 48 MiB resident, the third
    // growth refused, per invocation.
    let ids = launch(&p, &mallory, "split", "{}", 24).await;
    ended(
        &p,
        &mallory,
        &ids,
        "failed",
        "out-of-memory",
        "out of memory: the processor tried to grow its memory past the limit of 67108864 bytes \
         (all its memories and tables together)",
    )
    .await;
    // Mallory's half of the guest memory: four invocations of 64 MiB at
    // once, however many wait for a CPU.
    w.check("split memory", (256 << 20) + (96 << 20), 2 << 20)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_hog_holds_only_its_own_share() {
    let p = Platform::start(&[]);
    let (alice, mallory) = tenants(
        &p,
        "hog",
        eddy_tests::hostile("pool-hog"),
        "?timeout_ms=300&max_retries=0",
    )
    .await;
    let w = watch(&p, &alice).await;
    // Every hog holds four memories and spins until its timeout; more of
    // them than the worker has slots.
    let ids = launch(&p, &mallory, "hog", "{}", 80).await;
    // A timeout may pass on a retry; with none allowed it is dead at once.
    ended(
        &p,
        &mallory,
        &ids,
        "dead",
        "timeout",
        "timeout: exceeded the limit of 300 ms",
    )
    .await;
    w.check("pool hog", 96 << 20, 2 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_floods_end_at_the_log_limit() {
    let p = Platform::start(&[]);
    let (alice, mallory) =
        tenants(&p, "flood", eddy_tests::wasm("fx-flood"), "?max_retries=0").await;
    let w = watch(&p, &alice).await;
    for body in [r#"{"logs":20000000}"#, r#"{"newlines":20000000}"#] {
        for _ in 0..5 {
            let r = p
                .req(Method::POST, "/invoke/flood", &mallory)
                .body(body)
                .send()
                .await
                .unwrap();
            let v = refused(
                r,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(("x-eddy-error-class", "limit-exceeded")),
                "limit_exceeded",
                "limit exceeded: log-bytes: the processor's logs (log calls, stdout and stderr) \
                 exceed the limit of 65536 bytes, each line counting 32 bytes more than its text",
            )
            .await;
            let id = v["invocation_id"].as_str().unwrap();
            let (_, rec) = p.get(&mallory, &format!("/invocations/{id}")).await;
            // A refused write of stdout keeps nothing of it.
            let lines = rec["logs"].as_array().map_or(0, Vec::len);
            assert!(lines <= 2048, "{body}: {lines} lines kept");
        }
    }
    // Ten records of at most 64 KiB of logs each.
    w.check("log floods", 96 << 20, 8 << 20).await;
    // And it still drains and stops on SIGTERM within its grace.
    let mut p = p;
    let status = p._process.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "eddy up did not stop on SIGTERM: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_over_its_cap_fails_once_without_follow_ups() {
    let p = Platform::start(&[("EDDY_CEILINGS", "completion_bytes=1048576")]);
    let (alice, mallory) = tenants(&p, "flood", eddy_tests::wasm("fx-flood"), "").await;
    let w = watch(&p, &alice).await;
    // Output and follow-ups each within their limits, together over 1 MiB.
    let body = r#"{"emits":100,"emit_bytes":8000,"output_bytes":500000}"#;
    for _ in 0..5 {
        let r = p
            .req(Method::POST, "/invoke/flood", &mallory)
            .body(body)
            .send()
            .await
            .unwrap();
        let v = refused(
            r,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "limit_exceeded",
            "limit exceeded: completion-bytes: the output, logs and follow-ups total 1327600 \
             bytes, more than the limit of 1048576 bytes",
        )
        .await;
        assert_eq!(v["attempts"], 1, "{v}");
        let run = v["invocation_id"].as_str().unwrap();
        let (_, rec) = p.get(&mallory, &format!("/invocations/{run}")).await;
        assert!(rec.get("follow_ups").is_none(), "{rec}");
        assert_eq!(rec["completions"], 1, "{rec}");
    }
    w.check("completion cap", 96 << 20, 4 << 20).await;
}

/// Redis's slow log entries of script calls, in µs.
async fn script_times(url: &str) -> Vec<u64> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let log: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    log.into_iter()
        .filter_map(|e| {
            let e: Vec<redis::Value> = redis::from_redis_value(e).ok()?;
            let us: u64 = redis::from_redis_value(e.get(2)?.clone()).ok()?;
            let cmd: Vec<String> = redis::from_redis_value(e.get(3)?.clone()).ok()?;
            cmd.first()
                .is_some_and(|c| {
                    c.eq_ignore_ascii_case("evalsha") || c.eq_ignore_ascii_case("fcall")
                })
                .then_some(us)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_storm_at_the_maxima_holds_redis_briefly() {
    let p = Platform::start(&[]);
    let (alice, mallory) = tenants(
        &p,
        "flood",
        eddy_tests::wasm("fx-flood"),
        "?max_emits=1000&max_emit_bytes=1048576",
    )
    .await;
    // Above the ceilings: refused, naming the field and the maximum.
    let r = p
        .req(Method::PATCH, "/functions/flood", &mallory)
        .json(&json!({ "max_emits": 200_000 }))
        .send()
        .await
        .unwrap();
    refused(
        r,
        StatusCode::BAD_REQUEST,
        None,
        "limit_above_maximum",
        "`max_emits` is 200000, above this platform's maximum of 1000",
    )
    .await;
    redis_config(&p.redis_url, "slowlog-log-slower-than", "1000").await;
    redis_config(&p.redis_url, "slowlog-max-len", "10000").await;
    let client = redis::Client::open(p.redis_url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut c)
        .await
        .unwrap();

    let w = watch(&p, &alice).await;
    // The most one invocation may emit: 1,000 follow-ups, 1 MB in all.
    let body = r#"{"emits":1000,"emit_bytes":1000}"#;
    for _ in 0..3 {
        let r = p
            .req(Method::POST, "/invoke/flood", &mallory)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        let run = r.headers()["x-eddy-run-id"].to_str().unwrap().to_string();
        let done = p
            .until(&mallory, &format!("/runs/{run}"), |v| {
                v["status"] != "running"
            })
            .await;
        assert_eq!(
            (done["status"].as_str(), done["total"].as_u64()),
            (Some("succeeded"), Some(1001)),
            "{done}"
        );
    }
    let times = script_times(&p.redis_url).await;
    let worst = times.iter().copied().max().unwrap_or(0);
    eprintln!("emit storm: script calls over 1 ms: {times:?} µs");
    // One completion with 1,000 follow-ups, every other tenant waiting
    // behind it: a few ms here; the bound leaves room for a loaded machine.
    assert!(worst < 50_000, "a script held Redis for {worst} µs");
    // Three runs of 1,000 follow-ups of 1 KB, kept with their records.
    w.check("emit storm", 128 << 20, 3 * 1000 * 4_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_processor_is_422_never_a_platform_fault() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "fx-panic",
            "?max_retries=0",
            "trap",
            "trap: wasm `unreachable` instruction executed: boom: processor panicked on purpose",
        ),
        (
            "fx-stack",
            "?max_retries=0",
            "stack-overflow",
            "stack overflow: the processor exhausted its wasm stack",
        ),
        (
            "fx-memhog",
            "?memory_mb=16",
            "out-of-memory",
            "out of memory: the processor tried to grow its memory past the limit of 16777216 bytes (all its memories and tables together)",
        ),
        (
            "fx-loop",
            "?timeout_ms=100&max_retries=0",
            "timeout",
            "timeout: exceeded the limit of 100 ms",
        ),
        (
            "fx-stdout-flood",
            "",
            "limit-exceeded",
            "limit exceeded: log-bytes: the processor's logs (log calls, stdout and stderr) exceed the limit of 65536 bytes, each line counting 32 bytes more than its text",
        ),
    ];
    for (guest, query, class, message) in cases {
        p.deploy(&key, guest, guest, query).await;
        let r = p
            .req(Method::POST, &format!("/invoke/{guest}"), &key)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{guest}");
        assert_eq!(r.headers()["x-eddy-error-class"], class, "{guest}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], class.replace('-', "_"), "{guest}: {v}");
        let got = v["message"].as_str().unwrap();
        assert!(got.starts_with(message), "{guest}: {got}");
    }
    // The OpenAPI document says so.
    let (_, api) = p.get(&key, "/openapi.json").await;
    let responses = &api["paths"]["/invoke/{name}"]["post"]["responses"];
    assert!(
        responses["422"]["description"]
            .as_str()
            .unwrap()
            .contains("out_of_memory")
    );
    assert!(
        responses["500"]["description"]
            .as_str()
            .unwrap()
            .contains("never the function")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleepers_cannot_hold_every_execution_thread() {
    let p = Platform::start(&[]);
    let (alice, mallory) = tenants(
        &p,
        "sleep",
        eddy_tests::wasm("fx-sleep"),
        "?timeout_ms=6000&max_retries=0",
    )
    .await;
    // Alice's guests run ~8 ms each: long enough to leave the inline
    // slots for the low-priority execution threads.
    p.deploy(&alice, "busy", "fx-busy", "").await;
    let r = p
        .req(Method::POST, "/invoke/busy", &alice)
        .body(r#"{"ms":8}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let w = watch_calls(&p, &alice, "busy", Some(r#"{"ms":8}"#)).await;
    // Mallory's guests sit in a host call (sleep) until their timeout,
    // holding whatever execution thread they got.
    let ids = launch(&p, &mallory, "sleep", "{}", 8).await;
    ended(
        &p,
        &mallory,
        &ids,
        "dead",
        "timeout",
        "timeout: exceeded the limit of 6000 ms",
    )
    .await;
    w.check("sleepers", 96 << 20, 2 << 20).await;
}

/// `CONFIG SET` on the platform's Redis.
async fn redis_config(url: &str, key: &str, value: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_is_503_with_retry_after_and_not_ready() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    p.deploy(&key, "echo", "echo", "").await;
    let invoke = || {
        p.req(Method::POST, "/invoke/echo", &key)
            .header("prefer", "respond-async")
            .body("{}")
            .send()
    };
    assert_eq!(invoke().await.unwrap().status(), StatusCode::ACCEPTED);
    // Redis at its maxmemory (noeviction): every write is refused.
    redis_config(&p.redis_url, "maxmemory", "1").await;
    let r = invoke().await.unwrap();
    refused(
        r,
        StatusCode::SERVICE_UNAVAILABLE,
        Some(("retry-after", "5")),
        "storage_full",
        "the queue is out of memory; retry later",
    )
    .await;
    let (status, v) = p.get(&key, "/readyz").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("storage_full"))
    );
    // Room again: accepted, and ready.
    redis_config(&p.redis_url, "maxmemory", "0").await;
    assert_eq!(invoke().await.unwrap().status(), StatusCode::ACCEPTED);
    let r = p
        .http
        .get(format!("{}/readyz", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_obeys_the_tenants_quota() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({ "max_pending": 1 })).await;
    p.deploy(&key, "fail", "fx-fail", "?max_retries=0").await;
    p.deploy(&key, "sleep", "fx-sleep", "?timeout_ms=4000&max_retries=0")
        .await;
    // Three dead letters, one at a time (one may be pending).
    for _ in 0..3 {
        let r = p
            .req(Method::POST, "/invoke/fail", &key)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (_, dead) = p.get(&key, "/dead-letters").await;
    let entries: Vec<String> = dead
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["entry_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(entries.len(), 3, "{dead}");
    // The one pending place taken by a sleeper: a redrive is refused as a
    // new invocation would be, and its dead letter stays.
    launch(&p, &key, "sleep", "{}", 1).await;
    let r = p
        .req(
            Method::POST,
            &format!("/dead-letters/{}/redrive", entries[0]),
            &key,
        )
        .send()
        .await
        .unwrap();
    refused(
        r,
        StatusCode::TOO_MANY_REQUESTS,
        Some(("retry-after", "5")),
        "quota_exceeded",
        "quota exceeded: the tenant has 1 invocations pending, its maximum",
    )
    .await;
    let (_, dead) = p.get(&key, "/dead-letters").await;
    assert_eq!(
        dead.as_array().unwrap().len(),
        3,
        "a refused redrive keeps its dead letter"
    );
    // Once the sleeper is done, the redrive goes through.
    let entry = entries[0].clone();
    let path = format!("/dead-letters/{entry}/redrive");
    eddy_tests::wait_until(
        Duration::from_secs(20),
        "the redrive to be accepted",
        || async {
            let r = p.req(Method::POST, &path, &key).send().await.unwrap();
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
}

/// Follow-ups count toward the tenant's max_pending: a fan-out run cannot
/// push pending past it. Emits that can never fit fail at once; a run whose
/// follow-ups find no room within a few waits fails visibly, with the
/// quota's class and message on the invocations that could not emit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_stay_under_the_tenants_pending_quota() {
    let p = Platform::start(&[]);
    let (alice, _) = p.tenant("alice", json!({})).await;
    p.deploy(&alice, "echo", "echo", "").await;
    let (mallory, _) = p.tenant("mallory", json!({ "max_pending": 5 })).await;
    p.deploy(&mallory, "fanout", "fanout", "").await;
    let w = watch(&p, &alice).await;

    // Ten follow-ups can never fit under 5: failed at once, not retried.
    let ids = launch(&p, &mallory, "fanout", r#"{"branch":10,"depth":1}"#, 1).await;
    ended(
        &p,
        &mallory,
        &ids,
        "failed",
        "quota",
        "pending quota: 10 follow-ups are more than the tenant's max_pending of 5",
    )
    .await;

    // A tree of 1 + 3 + 9 + 27: pending is sampled all along and never
    // exceeds 5; the run ends, failed, its refused invocations saying why.
    let client = redis::Client::open(p.redis_url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let tenant_key = eddy_protocol::keys::tenant(&eddy_protocol::TenantId::new("mallory").unwrap());
    let ids = launch(&p, &mallory, "fanout", r#"{"branch":3,"depth":3}"#, 1).await;
    let started = Instant::now();
    let mut peak = 0i64;
    let run = loop {
        let pending: Option<i64> = redis::cmd("HGET")
            .arg(&tenant_key)
            .arg("pending")
            .query_async(&mut c)
            .await
            .unwrap();
        peak = peak.max(pending.unwrap_or(0));
        let (s, run) = p.get(&mallory, &format!("/runs/{}", ids[0])).await;
        if s == StatusCode::OK && run["status"] != "running" {
            break run;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("follow-up flood: pending peaked at {peak}; run {run}");
    assert!(peak <= 5, "pending reached {peak}");
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["outstanding"], 0, "{run}");
    let total = run["total"].as_u64().unwrap();
    assert!(total < 40, "{run}");
    // The refused ones: dead-lettered with the quota's class and message.
    let (s, dead) = p.get(&mallory, "/dead-letters").await;
    assert_eq!(s, StatusCode::OK);
    let quota: Vec<&Value> = dead
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"] == "quota")
        .collect();
    assert!(quota.len() >= 2, "{dead}");
    for d in &quota {
        let error = d["error"].as_str().unwrap();
        assert!(
            error == "pending quota: 10 follow-ups are more than the tenant's max_pending of 5"
                || error
                    == "pending quota: 3 follow-ups found no room under the tenant's max_pending of 5 in 3 waits",
            "{d}"
        );
    }
    w.check("follow-up flood", 64 << 20, 16 << 20).await;
}

/// Reads what the server sends on `s` until it closes the connection or
/// `within` passes; returns the bytes and whether it closed.
async fn read_until_closed(s: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

/// Slow clients cannot hold the gateway: connections that never finish
/// their request head are closed after 10 s, request bodies that do not
/// arrive within 30 s get 408 `request_timeout`, and one tenant holds at
/// most half the gateway's requests in flight (429 `too_many_in_flight`
/// beyond), while another tenant's calls keep succeeding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_hold_at_most_their_share() {
    use tokio::io::AsyncWriteExt;
    let p = Platform::start(&[("EDDY_MAX_IN_FLIGHT", "40")]);
    let (alice, mallory) = tenants(&p, "echo2", eddy_tests::wasm("echo"), "").await;
    let w = watch(&p, &alice).await;
    let addr = p.base.trim_start_matches("http://").to_string();
    let started = Instant::now();

    // 200 connections that never finish their head.
    let mut heads = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /invoke/echo HTTP/1.1\r\nHost: eddy\r\n")
            .await
            .unwrap();
        heads.push(s);
    }
    // 30 requests whose bodies never arrive: 20 are mallory's share.
    let mut bodies = Vec::new();
    for _ in 0..30 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /invoke/echo HTTP/1.1\r\nHost: eddy\r\nAuthorization: Bearer {mallory}\r\n\
             Content-Length: 1000\r\n\r\n{{\"slow\":"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        bodies.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut busy = 0;
    let mut held = Vec::new();
    for mut s in bodies {
        let (text, closed) = read_until_closed(&mut s, Duration::from_millis(300)).await;
        if text.is_empty() && !closed {
            held.push(s);
            continue;
        }
        assert!(text.starts_with("HTTP/1.1 429"), "{text}");
        assert!(text.contains("\"code\":\"too_many_in_flight\""), "{text}");
        assert!(text.to_lowercase().contains("retry-after: 1"), "{text}");
        busy += 1;
    }
    assert_eq!(
        (held.len(), busy),
        (20, 10),
        "half of 40 held, the rest refused"
    );

    // The heads: closed after 10 s, none before.
    for s in &mut heads {
        let (text, closed) = read_until_closed(s, Duration::from_secs(15)).await;
        assert!(closed, "a slow head was kept open");
        assert!(
            started.elapsed() >= Duration::from_secs(9),
            "closed early: {text}"
        );
    }
    // The bodies: 408 with our error after 30 s.
    for s in &mut held {
        let (text, closed) = read_until_closed(s, Duration::from_secs(40)).await;
        assert!(closed, "a slow body was kept open");
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(
            text.contains(
                r#"{"code":"request_timeout","message":"the request body did not arrive in time (30 s, plus 16 s per MiB received)"}"#
            ),
            "{text}"
        );
    }
    eprintln!("slow clients dropped after {:?}", started.elapsed());
    w.check("slow clients", 64 << 20, 16 << 20).await;
}

/// A tenant's counts are bounded: 100 active API keys, 1,000 functions;
/// beyond, 429 `limit_reached` says what to remove. A revoked key makes
/// room for a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_keys_and_functions_are_bounded() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    // The tenant's first key is one of its 100.
    let mut last = String::new();
    for _ in 1..100 {
        let r = p
            .req(Method::POST, "/tenants/acme/keys", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        last = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let r = p
        .req(Method::POST, "/tenants/acme/keys", &key)
        .send()
        .await
        .unwrap();
    refused(
        r,
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "limit_reached",
        "the tenant has 100 active API keys, the most it may have; revoke one first",
    )
    .await;
    let r = p
        .req(Method::DELETE, &format!("/tenants/acme/keys/{last}"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = p
        .req(Method::POST, "/tenants/acme/keys", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let module = bytes::Bytes::from(eddy_tests::wasm("echo"));
    futures::stream::iter(0..1_000)
        .map(|i| {
            let (module, key) = (module.clone(), key.clone());
            let p = &p;
            async move {
                let r = p
                    .send(Method::PUT, &format!("/functions/f{i}"), &key, module)
                    .await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let r = p
        .send(Method::PUT, "/functions/one-more", &key, module.clone())
        .await;
    refused(
        r,
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "limit_reached",
        "the tenant has 1000 functions, the most it may have; delete one first",
    )
    .await;
    // A new version of one it has is no new function.
    let r = p.send(Method::PUT, "/functions/f7", &key, module).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Guessing keys is throttled per client address: after 20 failed
/// authentications in 10 s, every lookup of an unknown key from that address
/// is refused (429 `too_many_failed_auths`, `Retry-After`) without touching
/// Redis, while keys the gateway knows valid still pass; the window ends
/// and the address may try again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_throttled_per_address() {
    let p = Platform::start(&[]);
    let (alice, _) = p.tenant("alice", json!({})).await;
    p.deploy(&alice, "echo", "echo", "").await;
    let call = |key: String| p.req(Method::POST, "/invoke/echo", &key).body("{}").send();
    assert_eq!(call(alice.clone()).await.unwrap().status(), StatusCode::OK);
    for i in 0..20 {
        let r = call(format!("eddy_guess_{i}")).await.unwrap();
        refused(
            r,
            StatusCode::UNAUTHORIZED,
            None,
            "invalid_key",
            "the API key is not valid",
        )
        .await;
    }
    let r = call("eddy_guess_20".into()).await.unwrap();
    let wait = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "too_many_failed_auths");
    assert_eq!(
        v["message"],
        format!("too many failed authentications from this address; retry in {wait} s")
    );
    // A key known valid passes from the same address.
    assert_eq!(call(alice.clone()).await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(wait + 1)).await;
    let r = call("eddy_guess_21".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// A batch's answer streams while its body is read: the request counts in
/// the tenant's share of requests in flight until its answer ends, not only
/// until its handler returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_batch_holds_its_place_in_flight_until_it_ends() {
    use tokio::io::AsyncWriteExt;
    let p = Platform::start(&[("EDDY_MAX_IN_FLIGHT", "4")]);
    let (alice, mallory) = tenants(&p, "echo2", eddy_tests::wasm("echo"), "").await;
    let addr = p.base.trim_start_matches("http://").to_string();
    // Two batches whose bodies stall: mallory's whole share of 4 / 2.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /invoke/echo/batch HTTP/1.1\r\nHost: eddy\r\nAuthorization: Bearer {mallory}\r\n\
             Content-Length: 100000\r\n\r\n{{\"n\":1}}\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = p.send(Method::POST, "/invoke/echo", &mallory, "{}").await;
    refused(
        r,
        StatusCode::TOO_MANY_REQUESTS,
        Some(("retry-after", "1")),
        "too_many_in_flight",
        "the tenant has 2 requests in flight on this gateway, its share; retry later",
    )
    .await;
    // Alice's half is hers.
    let r = p.send(Method::POST, "/invoke/echo", &alice, "{}").await;
    assert_eq!(r.status(), StatusCode::OK);
    // The batches end (their clients go): the share comes back.
    drop(held);
    eddy_tests::wait_until(Duration::from_secs(10), "mallory's share back", || async {
        let r = p
            .req(Method::POST, "/invoke/echo", &mallory)
            .body("{}")
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
}

/// Stored bytes are capped per tenant: outputs, outcomes and dead letters
/// kept for the record TTL count, and so do modules. An invocation is taken
/// only if its payload fits; an output that does not fit fails its
/// invocation (class `quota`), and a dead letter that does not fit keeps no
/// payload (a redrive says why it cannot). New work and modules get 429
/// `storage_quota_exceeded` with a `Retry-After` that is honest (the work is
/// accepted again once it has passed), and another tenant's calls go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bytes_stay_under_the_tenants_quota() {
    // A record TTL of 24 s: the window's slots are 1 s, so it rolls here.
    let p = Platform::start(&[("EDDY_RECORD_TTL_S", "24")]);
    let (alice, _) = p.tenant("alice", json!({})).await;
    p.deploy(&alice, "echo", "echo", "").await;
    let module = eddy_tests::wasm("echo").len() as u64;
    let limit = module + (2 << 20);
    let (mallory, _) = p
        .tenant("mallory", json!({ "max_stored_bytes": limit }))
        .await;
    p.deploy(&mallory, "echo", "echo", "").await;
    let stored = || async {
        let (s, t) = p.get(crate::gateway::ADMIN, "/tenants/mallory").await;
        assert_eq!(s, StatusCode::OK);
        t["stored_bytes"].as_u64().unwrap()
    };
    assert_eq!(stored().await, module);
    let w = watch(&p, &alice).await;

    // Four outputs of 512 KiB taken at once (each payload fits on its
    // own): three are kept beside the module, the fourth fails.
    let big = format!("\"{}\"", "x".repeat((512 << 10) - 2));
    let lines = p
        .batch(&mallory, "echo", format!("{big}\n").repeat(4))
        .await;
    let mut ended = Vec::new();
    for line in &lines {
        let id = line["id"].as_str().unwrap();
        let rec = p
            .until(&mallory, &format!("/invocations/{id}"), |v| {
                v["status"] == "succeeded" || v["status"] == "failed"
            })
            .await;
        ended.push(rec);
    }
    let failed: Vec<&Value> = ended.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ended:?}");
    let error = &failed[0]["error"];
    assert_eq!(error["class"], "quota", "{error}");
    let message = error["message"].as_str().unwrap();
    let prefix = format!(
        "stored-bytes quota: an output of 524288 bytes would take the tenant over its \
         max_stored_bytes of {limit} ("
    );
    assert!(
        message.starts_with(&prefix) && message.ends_with(" stored)"),
        "{message}"
    );
    // Its dead letter did not fit either: no payload, so no redrive.
    let (s, dead) = p.get(&mallory, "/dead-letters").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(dead[0]["class"], "quota", "{dead}");
    let entry = dead[0]["entry_id"].as_str().unwrap();
    let r = p
        .send(
            Method::POST,
            &format!("/dead-letters/{entry}/redrive"),
            &mallory,
            "",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        format!(
            "dead letter {entry} kept no payload (the tenant was at its max_stored_bytes when \
             it failed), so it cannot be redriven"
        )
    );
    let now = stored().await;
    assert!(now <= limit, "{now} > {limit}");

    // Filled to 2 KiB short of the cap: a new module does not fit.
    let fill = (limit - now - 2048) as usize;
    let r = p
        .send(
            Method::POST,
            "/invoke/echo",
            &mallory,
            format!("\"{}\"", "x".repeat(fill - 2)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = p
        .send(
            Method::PUT,
            "/functions/wc",
            &mallory,
            eddy_tests::wasm("wordcount"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "storage_quota_exceeded", "{body}");
    let now = stored().await;
    assert!(now <= limit, "{now} > {limit}");

    // Another 512 KiB does not fit: refused up front, saying when room
    // comes back; a small payload still fits.
    let r = p
        .send(Method::POST, "/invoke/echo", &mallory, big.clone())
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=25).contains(&after), "{after}");
    let refused = Instant::now();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "storage_quota_exceeded", "{body}");
    assert_eq!(
        body["message"],
        format!(
            "the tenant stores {now} bytes; 524288 more would take it over its \
             max_stored_bytes of {limit}; some expire in {after} s"
        )
    );
    let r = p.send(Method::POST, "/invoke/echo", &mallory, "{}").await;
    assert_eq!(r.status(), StatusCode::OK);

    // When the outputs' slots leave the window, it is accepted again.
    let accepted = loop {
        let r = p
            .send(Method::POST, "/invoke/echo", &mallory, big.clone())
            .await;
        if r.status() == StatusCode::OK {
            break refused.elapsed();
        }
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            refused.elapsed() < Duration::from_secs(after + 3),
            "still refused"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("stored-bytes quota: Retry-After {after} s, accepted again after {accepted:?}");
    w.check("stored-bytes quota", 64 << 20, 16 << 20).await;
}

/// Deleting a function frees what nothing references: its module goes with
/// the last version that uses it (out of Redis and out of the tenant's
/// stored bytes), and workers remove its compiled artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_functions_frees_their_modules_and_artifacts() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    let spec = p.deploy(&key, "a", "echo", "").await;
    p.deploy(&key, "b", "echo", "").await;
    let sha = spec["sha256"].as_str().unwrap().to_string();
    let module = eddy_tests::wasm("echo").len() as u64;
    let r = p.send(Method::POST, "/invoke/a", &key, r#""hi""#).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let artifacts = p.data_dir().join("artifacts");
    let artifact = || {
        std::fs::read_dir(&artifacts)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(&sha))
    };
    assert!(artifact(), "the worker compiled {sha}");

    let client = redis::Client::open(p.redis_url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let t = eddy_protocol::TenantId::new("acme").unwrap();
    let module_key = eddy_protocol::keys::module(&t, &sha);
    // `eddy up` has secrets keys: the gateway shared the compiled artifact.
    let shared_key = eddy_protocol::keys::artifact(&t, &sha);
    let state = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        let (module_key, tenant) = (module_key.clone(), eddy_protocol::keys::tenant(&t));
        let shared_key = shared_key.clone();
        async move {
            let (exists, shared, bytes): (bool, bool, Option<u64>) = redis::pipe()
                .exists(&module_key)
                .exists(&shared_key)
                .hget(&tenant, "mod_bytes")
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(
                exists, shared,
                "the shared artifact lives as long as its module"
            );
            (exists, bytes.unwrap_or(0))
        }
    };
    // Stored once for both functions.
    assert_eq!(state(&mut c).await, (true, module));

    let r = p.send(Method::DELETE, "/functions/a", &key, "").await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(state(&mut c).await, (true, module), "b still uses it");
    assert!(artifact());

    let r = p.send(Method::DELETE, "/functions/b", &key, "").await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(state(&mut c).await, (false, 0));
    let (_, t) = p.get(crate::gateway::ADMIN, "/tenants/acme").await;
    assert!(t["stored_bytes"].as_u64().unwrap() < 4096, "{t}");
    eddy_tests::wait_until(Duration::from_secs(10), "the artifact removed", || async {
        (!artifact()).then_some(())
    })
    .await;
}
