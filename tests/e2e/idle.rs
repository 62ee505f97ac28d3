//! Idle tenants cost nothing: Redis commands per second of an idle `eddy up`
//! (gateway, worker and controller) do not grow with the number of tenants.
//! A count, not a timing: `total_commands_processed` from `INFO stats` over
//! an idle window.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::gateway::Platform;

/// How long each tenant's function stays warm after its call: short, so the
/// test does not wait long for everything to go idle.
const IDLE_TIMEOUT_MS: u64 = 1_000;

/// What one idle window measured.
#[derive(Debug)]
struct Idle {
    tenants: usize,
    commands_per_s: f64,
    eddy_cpu: f64,
    redis_cpu: f64,
    /// The median of sync calls to idle tenants.
    call_ms: f64,
}

async fn redis_info(url: &str, section: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut c)
        .await
        .unwrap()
}

fn field(info: &str, name: &str) -> f64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO"))
}

/// Calls by command in an `INFO commandstats`.
fn calls(info: &str) -> std::collections::HashMap<String, f64> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_string(), rest.split(',').next()?.parse().ok()?))
        })
        .collect()
}

/// The commands counted between two `INFO commandstats`, most first.
fn by_kind(before: &str, after: &str) -> String {
    let (b, a) = (calls(before), calls(after));
    let mut d: Vec<(String, f64)> = a
        .into_iter()
        .map(|(k, v)| {
            let was = b.get(&k).copied().unwrap_or(0.0);
            (k, v - was)
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    d.sort_by(|x, y| y.1.total_cmp(&x.1));
    d.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU seconds used by `pid` (user + system).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Creates tenants `t{from}..t{to}`, each with an `echo` function called
/// once (sync), 16 at a time.
async fn add_tenants(p: &Platform, from: usize, to: usize) -> Vec<String> {
    let module = bytes::Bytes::from(eddy_tests::wasm("echo"));
    futures::stream::iter(from..to)
        .map(|i| {
            let module = module.clone();
            async move {
                let (key, _) = p.tenant(&format!("t{i}"), json!({})).await;
                let r = p
                    .req(
                        Method::PUT,
                        &format!("/functions/echo?idle_timeout_ms={IDLE_TIMEOUT_MS}"),
                        &key,
                    )
                    .body(module)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
                let r = p
                    .req(Method::POST, "/invoke/echo", &key)
                    .body(r#"{"hello":1}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
                key
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// How long the platform may take to go idle after the last call: the idle
/// timeout, the controller's grace for reporting "scaled to zero", and room
/// for a machine busy with other tests (a tick over 2,000 live functions
/// is slow there).
const SETTLE: Duration = Duration::from_secs(120);

/// Waits until the controller publishes, twice in a row a second apart and
/// from ticks that began after the wait did, that no function is live:
/// everything went idle. Returns how long that took. Panics past [`SETTLE`].
async fn settle(redis_url: &str) -> Duration {
    let client = redis::Client::open(redis_url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let started = Instant::now();
    let since = eddy_protocol::now_ms();
    let mut idle_in_a_row = 0;
    let mut last = String::new();
    while idle_in_a_row < 2 {
        assert!(
            started.elapsed() < SETTLE,
            "not idle {SETTLE:?} after the last call; the controller's state: {last:.2000}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let state: Option<String> = redis::cmd("GET")
            .arg(eddy_protocol::keys::CONTROLLER_STATE)
            .query_async(&mut c)
            .await
            .unwrap();
        last = state.unwrap_or_default();
        let state: eddy_protocol::control::ControllerState = match serde_json::from_str(&last) {
            Ok(s) => s,
            Err(_) => continue,
        };
        if state.at_ms > since && state.functions.is_empty() {
            idle_in_a_row += 1;
        } else {
            idle_in_a_row = 0;
        }
    }
    started.elapsed()
}

/// Lets everything go idle (see [`settle`]), then measures `window`.
async fn measure_idle(p: &Platform, tenants: usize, keys: &[String], window: Duration) -> Idle {
    let took = settle(&p.redis_url).await;
    eprintln!("{tenants} tenants went idle in {took:?}");
    let pid = p._process.pid();
    let started = Instant::now();
    let (stats0, cpu0, by0) = (
        redis_info(&p.redis_url, "stats").await,
        redis_info(&p.redis_url, "cpu").await,
        redis_info(&p.redis_url, "commandstats").await,
    );
    let eddy0 = cpu_s(pid);
    tokio::time::sleep(window).await;
    let (stats1, cpu1, by1) = (
        redis_info(&p.redis_url, "stats").await,
        redis_info(&p.redis_url, "cpu").await,
        redis_info(&p.redis_url, "commandstats").await,
    );
    let eddy1 = cpu_s(pid);
    let secs = started.elapsed().as_secs_f64();
    let redis_cpu = |i: &str| field(i, "used_cpu_sys") + field(i, "used_cpu_user");
    // The six INFO calls are this test's own.
    let commands = field(&stats1, "total_commands_processed")
        - field(&stats0, "total_commands_processed")
        - 6.0;
    eprintln!(
        "{tenants} tenants, idle, commands by kind: {}",
        by_kind(&by0, &by1)
    );
    // Calls to idle tenants (each one's first call since it went idle), one
    // at a time: the median.
    let mut calls = Vec::new();
    for key in keys {
        let call = Instant::now();
        let r = p
            .req(Method::POST, "/invoke/echo", key)
            .body(r#"{"again":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        calls.push(call.elapsed().as_secs_f64() * 1e3);
    }
    calls.sort_by(f64::total_cmp);
    Idle {
        tenants,
        commands_per_s: commands / secs,
        eddy_cpu: (eddy1 - eddy0) / secs,
        redis_cpu: (redis_cpu(&cpu1) - redis_cpu(&cpu0)) / secs,
        call_ms: calls[calls.len() / 2],
    }
}

/// Tenants in the large step (`EDDY_IDLE_TENANTS` to measure others, as the
/// benchmark does).
fn many() -> usize {
    std::env::var("EDDY_IDLE_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tenants_cost_no_redis_commands() {
    let p = Platform::start(&[]);
    let window = Duration::from_secs(3);
    let keys = add_tenants(&p, 0, 10).await;
    let few = measure_idle(&p, 10, &keys[..5], window).await;
    eprintln!("{few:?}");
    let keys = add_tenants(&p, 10, many()).await;
    let lots = measure_idle(&p, many(), &keys[..5], window).await;
    eprintln!("{lots:?}");
    println!(
        "| idle tenants | Redis commands/s | eddy CPU | Redis CPU | one sync call to an idle tenant |"
    );
    for m in [&few, &lots] {
        println!(
            "| {} | {:.0} | {:.1}% | {:.1}% | {:.1} ms |",
            m.tenants,
            m.commands_per_s,
            m.eddy_cpu * 100.0,
            m.redis_cpu * 100.0,
            m.call_ms
        );
    }
    // Constant per worker and controller: heartbeats, leases, the due
    // indexes' polls and their audit's fixed budget. 200 times as many
    // tenants may add a few commands (the audit's cursor finds more tenants
    // per step), nothing per tenant.
    assert!(
        lots.commands_per_s <= few.commands_per_s * 1.25 + 20.0,
        "{} tenants: {:.0} commands/s; 10 tenants: {:.0}",
        lots.tenants,
        lots.commands_per_s,
        few.commands_per_s
    );
}

/// The due index's protocol (see `eddy_queue::due`): a claimed tenant is
/// leased, a mark made during a visit survives the visit's settling, a
/// settle with nothing left removes the tenant, and a visitor that dies
/// leaves the tenant to come back when its lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_index_marks_survive_visits_and_dead_visitors() {
    use eddy_queue::{DUE_LEASE_MS, DueIndex, MARK_HORIZON_MS};
    let redis = eddy_tests::RedisServer::start();
    let q = eddy_tests::queue(&redis).await;
    let (a, b) = (eddy_tests::tenant("a"), eddy_tests::tenant("b"));
    let score = |t: &str| {
        redis
            .cli(&["ZSCORE", eddy_protocol::keys::DUE_CALLBACKS, t])
            .trim()
            .parse::<u64>()
            .ok()
    };
    let now = eddy_protocol::now_ms();
    q.mark_due(DueIndex::Callbacks, &a, now).await.unwrap();
    // Far ahead is capped at the horizon: below any lease.
    q.mark_due(DueIndex::Callbacks, &b, now + 3_600_000)
        .await
        .unwrap();
    assert!(score("b").unwrap() <= eddy_protocol::now_ms() + MARK_HORIZON_MS);

    let claims = q
        .claim_due(DueIndex::Callbacks, eddy_protocol::now_ms(), 10)
        .await
        .unwrap();
    assert_eq!(claims.len(), 1, "only a is due");
    let claim = &claims[0];
    assert_eq!(claim.tenant, a);
    assert_eq!(score("a"), Some(claim.lease_end_ms), "leased");
    assert!(claim.lease_end_ms >= now + DUE_LEASE_MS);
    assert!(
        q.claim_due(DueIndex::Callbacks, eddy_protocol::now_ms(), 10)
            .await
            .unwrap()
            .is_empty(),
        "a leased tenant is not claimed twice"
    );

    // A writer marks a while it is visited: the visit, finding nothing,
    // does not drop the mark.
    q.mark_due(DueIndex::Callbacks, &a, eddy_protocol::now_ms())
        .await
        .unwrap();
    q.settle_due(DueIndex::Callbacks, claim, None)
        .await
        .unwrap();
    assert!(score("a").is_some_and(|s| s <= eddy_protocol::now_ms()));

    // Visited again with nothing marked meanwhile: gone.
    let claim = q
        .claim_due(DueIndex::Callbacks, eddy_protocol::now_ms(), 10)
        .await
        .unwrap()
        .remove(0);
    q.settle_due(DueIndex::Callbacks, &claim, None)
        .await
        .unwrap();
    assert_eq!(score("a"), None);

    // Settled with work left: looked at again then.
    q.mark_due(DueIndex::Callbacks, &a, eddy_protocol::now_ms())
        .await
        .unwrap();
    let claim = q
        .claim_due(DueIndex::Callbacks, eddy_protocol::now_ms(), 10)
        .await
        .unwrap()
        .remove(0);
    let later = eddy_protocol::now_ms() + 5_000;
    q.settle_due(DueIndex::Callbacks, &claim, Some(later))
        .await
        .unwrap();
    assert_eq!(score("a"), Some(later));
}

/// A controller that stalls past its lease (stopped here, as a loaded
/// machine once stalled `eddy up`'s and a worker then read all 2,000 streams
/// of the test above) leaves idle workers idle: they keep the last
/// assignment for a grace instead of reading, and reclaiming over, every
/// stream of every tenant. Back, the controller leads again and an idle
/// tenant's call runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_controller_leaves_idle_workers_idle() {
    use eddy_tests::*;
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let cache = tempfile::tempdir().unwrap();
    let controller = EddyProcess::controller(&redis.url(), &[]);
    let _w = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);
    let config = eddy_protocol::FunctionConfig {
        idle_timeout_ms: IDLE_TIMEOUT_MS,
        ..Default::default()
    };
    let tenants: Vec<_> = (0..20).map(|i| tenant(&format!("t{i}"))).collect();
    let finished = |t: eddy_protocol::TenantId, id: String| {
        let q = q.clone();
        async move {
            let rec = wait_until(Duration::from_secs(30), "the call to finish", || async {
                q.invocation(&t, &id)
                    .await
                    .unwrap()
                    .filter(|r| r.status.is_final())
            })
            .await;
            assert_eq!(rec.status, eddy_protocol::InvocationStatus::Succeeded);
        }
    };
    for t in &tenants {
        deploy(&q, t, "echo", "echo", config.clone()).await;
        let id = invoke(&q, t, "echo", r#"{"hello":1}"#).await;
        finished(t.clone(), id).await;
    }
    settle(&redis.url()).await;

    let before = redis.cli(&["INFO", "commandstats"]);
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(controller.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    };
    stop("STOP");
    // The lease is 3 s; the worker looks for a leader every second.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let lapsed = q.leader().await.unwrap();
    let after = redis.cli(&["INFO", "commandstats"]);
    let (b, a) = (calls(&before), calls(&after));
    let n = |c: &str| a.get(c).copied().unwrap_or(0.0) - b.get(c).copied().unwrap_or(0.0);
    let read = (n("xreadgroup"), n("xpending"), n("xclaim"));
    // Work that comes while no controller leads is read at once all the
    // same (the gateway's wake-up): twice, the second after the first's
    // provisional read has lapsed.
    let stream = eddy_protocol::keys::stream(&tenants[5], &function("echo"));
    for _ in 0..2 {
        let id = invoke(&q, &tenants[5], "echo", r#"{"leaderless":1}"#).await;
        q.touch(std::slice::from_ref(&stream)).await.unwrap();
        let started = Instant::now();
        finished(tenants[5].clone(), id).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a call without a leader took {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(3_500)).await;
    }
    assert_eq!(q.leader().await.unwrap(), None, "still no leader");
    stop("CONT");
    assert_eq!(lapsed, None, "the stopped controller's lease ran out");
    assert_eq!(
        read,
        (0.0, 0.0, 0.0),
        "no leader for 8 s: the worker read streams ({})",
        by_kind(&before, &after)
    );
    wait_until(Duration::from_secs(10), "a leader again", || async {
        q.leader().await.unwrap()
    })
    .await;
    let id = invoke(&q, &tenants[3], "echo", r#"{"again":1}"#).await;
    finished(tenants[3].clone(), id).await;
}
