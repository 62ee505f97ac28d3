//! Scheduled invocations, end to end: a per-second schedule fires exactly
//! once per tick while two controllers run and the leader is SIGKILLed in
//! between (the survivor catches up the ticks missed meanwhile); a tick a
//! dead leader had already enqueued is not enqueued again; ticks missed for
//! longer than the catch-up window are skipped and counted; the tenant's
//! quota and a deleted function refuse a tick visibly.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::ADMIN;
use eddy_tests::*;

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn tenant(&self, id: &str, quota: Value) -> String {
        let (s, body) = self
            .call(
                Method::POST,
                "/tenants",
                ADMIN,
                Some(json!({"id": id, "quota": quota})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["key"].as_str().unwrap().to_string()
    }

    async fn deploy(&self, key: &str, name: &str) {
        let r = self
            .http
            .put(format!("{}/functions/{name}", self.base))
            .bearer_auth(key)
            .body(wasm("echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    }

    async fn schedule(&self, key: &str, name: &str) -> Value {
        let (s, body) = self
            .call(Method::GET, &format!("/schedules/{name}"), key, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body
    }
}

fn leader(redis: &RedisServer) -> String {
    redis.cli(&["GET", eddy_protocol::keys::CONTROLLER_LEADER])
}

/// The ticks a schedule's last firings name, and the checks every firing
/// of this test passes: enqueued, with an invocation and a run.
fn ticks(s: &Value) -> Vec<u64> {
    s["last"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["outcome"], "enqueued", "{f}");
            assert!(
                f["invocation_id"].is_string() && f["run_id"].is_string(),
                "{f}"
            );
            f["tick_ms"].as_u64().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_tick_across_a_leader_killed() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let _gateway = EddyProcess::gateway(&redis.url(), cache.path(), port);
    let _worker = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);
    let mut a = EddyProcess::controller(&redis.url(), &[("EDDY_CONTROLLER_ID", "ctl-a")]);
    wait_for(Duration::from_secs(20), "controller a to lead", || {
        leader(&redis) == "ctl-a"
    });
    let mut b = EddyProcess::controller(&redis.url(), &[("EDDY_CONTROLLER_ID", "ctl-b")]);
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let key = c.tenant("acme", json!({})).await;
    c.deploy(&key, "echo").await;

    let (s, created) = c
        .call(
            Method::PUT,
            "/schedules/every-second",
            &key,
            Some(json!({"cron": "* * * * * *", "function": "echo", "data": {"from": "cron"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let first = created["next_ms"].as_u64().unwrap();
    assert!(first > created["created_at_ms"].as_u64().unwrap());

    // A tick a leader enqueued and died before recording: the same
    // idempotency key (callers may not use the prefix), enqueued ahead of
    // the controllers as the controller does.
    let ahead = first + 5_000;
    let q = queue(&redis).await;
    let mut env =
        eddy_protocol::Envelope::root(tenant("acme"), function("echo"), "application/json".into());
    env.version = Some(1);
    env.idempotency_key = Some(format!("schedule:every-second:{ahead}"));
    env.lazy_run = Some(eddy_protocol::LazyRun { callback_url: None });
    let ahead_id = q
        .enqueue(&env, br#"{"from":"cron"}"#, Default::default(), None)
        .await
        .unwrap()
        .id;
    q.touch(&[eddy_protocol::keys::stream(
        &tenant("acme"),
        &function("echo"),
    )])
    .await
    .unwrap();

    // Three ticks under a, then a dies at once.
    wait_until(Duration::from_secs(20), "three firings", || async {
        let s = c.schedule(&key, "every-second").await;
        (s["fired"].as_u64().unwrap() >= 3).then_some(())
    })
    .await;
    a.kill();
    let killed_at = eddy_protocol::now_ms();
    wait_for(Duration::from_secs(20), "controller b to lead", || {
        leader(&redis) == "ctl-b"
    });
    // Past the takeover and some ticks under b.
    wait_until(Duration::from_secs(30), "ticks under b", || async {
        let s = c.schedule(&key, "every-second").await;
        let newest = ticks(&s).first().copied().unwrap_or(0);
        (newest > eddy_protocol::now_ms().max(killed_at) - 1_000 && newest > killed_at + 3_000)
            .then_some(())
    })
    .await;
    // Both controllers stopped (b drains: its look ends before it exits),
    // so the state stands still.
    let _ = b.terminate(Duration::from_secs(20));
    let s = c.schedule(&key, "every-second").await;
    let fired = s["fired"].as_u64().unwrap() as usize;
    assert!(
        fired <= eddy_protocol::schedules::KEEP_FIRINGS,
        "{fired} firings: more than the record keeps; the test cannot check them all"
    );
    let mut got = ticks(&s);
    assert_eq!(got.len(), fired, "{s}");
    got.reverse();
    let expected: Vec<u64> = (0..fired as u64).map(|i| first + i * 1000).collect();
    assert_eq!(
        got, expected,
        "one firing per tick, none twice, none skipped: {s}"
    );
    assert_eq!(s["next_ms"].as_u64().unwrap(), first + fired as u64 * 1000);
    assert_eq!(
        (s["refused"].as_u64(), s["missed"].as_u64()),
        (Some(0), Some(0))
    );
    let last = s["last"].as_array().unwrap();
    assert!(
        last.iter()
            .any(|f| f["at_ms"].as_u64().unwrap() >= f["tick_ms"].as_u64().unwrap() + 1_000),
        "some ticks were missed while no controller led, and fired late: {s}"
    );
    let ahead_firing = last
        .iter()
        .find(|f| f["tick_ms"].as_u64() == Some(ahead))
        .unwrap_or_else(|| panic!("tick {ahead} fired: {s}"));
    assert_eq!(
        ahead_firing["invocation_id"], ahead_id,
        "the tick enqueued ahead is that invocation, not a second one"
    );

    // Each firing's invocation ran, with the schedule's data; nothing else
    // ran.
    let ids: BTreeSet<&str> = last
        .iter()
        .map(|f| f["invocation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), fired, "distinct invocations");
    for id in &ids {
        let rec = wait_until(
            Duration::from_secs(30),
            "the firing's invocation",
            || async {
                let (_, rec) = c
                    .call(Method::GET, &format!("/invocations/{id}"), &key, None)
                    .await;
                (rec["status"] == "succeeded").then_some(rec)
            },
        )
        .await;
        assert_eq!(rec["run_id"], rec["id"], "a root: its own run");
    }
    let runs: BTreeSet<&str> = last.iter().map(|f| f["run_id"].as_str().unwrap()).collect();
    assert_eq!(runs.len(), fired);
    let (st, run) = c
        .call(
            Method::GET,
            &format!("/runs/{}", last[0]["run_id"].as_str().unwrap()),
            &key,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "each firing is a run: {run}");
    let done = redis.cli(&[
        "HGET",
        &eddy_protocol::keys::stats(&tenant("acme"), &function("echo")),
        "done",
    ]);
    assert_eq!(done, fired.to_string(), "invocations of echo that ran");

    let (s, _) = c
        .call(Method::DELETE, "/schedules/every-second", &key, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = c
        .call(Method::GET, "/schedules/every-second", &key, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "schedule_not_found");
    assert_eq!(body["message"], "schedule `every-second` not found");
}

/// A tick refused is recorded with why, and the schedule goes on.
fn refusals(s: &Value) -> Vec<(u64, String)> {
    s["last"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["outcome"] == "refused")
        .map(|f| {
            assert!(f["invocation_id"].is_null(), "{f}");
            (
                f["tick_ms"].as_u64().unwrap(),
                f["error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_past_the_window_are_skipped_and_refusals_recorded() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let _gateway = EddyProcess::gateway(&redis.url(), cache.path(), port);
    let _worker = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    // Running from the start: ticks fire on time, none is caught up.
    let _controller = EddyProcess::controller(&redis.url(), &[]);
    let late = c.tenant("late", json!({})).await;
    c.deploy(&late, "echo").await;
    c.deploy(&late, "gone").await;
    let busy = c.tenant("busy", json!({"rate_per_sec": 1})).await;
    c.deploy(&busy, "echo").await;
    let put = |key: &str, name: &str, cron: &str, f: &str| {
        let (c, key, name, body) = (
            &c,
            key.to_string(),
            name.to_string(),
            json!({"cron": cron, "function": f}),
        );
        async move {
            let (s, v) = c
                .call(Method::PUT, &format!("/schedules/{name}"), &key, Some(body))
                .await;
            assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{v}");
            s
        }
    };

    // An hourly schedule whose controllers were all away for three hours:
    // its state and index say so (what a controller that stopped then
    // would have left).
    put(&late, "hourly", "0 * * * *", "echo").await;
    let now = eddy_protocol::now_ms();
    let hour = 3_600_000;
    let h0 = now / hour * hour;
    let t = tenant("late");
    let away = eddy_protocol::schedules::ScheduleState {
        next_ms: h0 - 3 * hour,
        ..Default::default()
    };
    redis.cli(&[
        "HSET",
        &eddy_protocol::keys::schedule_states(&t),
        "hourly",
        &serde_json::to_string(&away).unwrap(),
    ]);
    redis.cli(&[
        "ZADD",
        eddy_protocol::keys::SCHEDULES,
        &(h0 - 3 * hour).to_string(),
        "late/hourly",
    ]);
    // A schedule of a function deleted after it was set.
    assert_eq!(
        put(&late, "orphan", "* * * * * *", "echo").await,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&late, "orphan", "* * * * * *", "gone").await,
        StatusCode::OK,
        "replaced"
    );
    wait_until(Duration::from_secs(30), "the function deleted", || async {
        let (s, _) = c.call(Method::DELETE, "/functions/gone", &late, None).await;
        (s == StatusCode::NO_CONTENT).then_some(())
    })
    .await;
    // Two per-second schedules of a tenant allowed one invocation a second.
    put(&busy, "one", "* * * * * *", "echo").await;
    put(&busy, "two", "* * * * * *", "echo").await;

    let s = wait_until(
        Duration::from_secs(30),
        "the hourly schedule caught up",
        || async {
            let s = c.schedule(&late, "hourly").await;
            (s["fired"].as_u64() == Some(1)).then_some(s)
        },
    )
    .await;
    // The ticks three, two and one hour back are older than the hour of
    // catch-up: skipped and counted; the one of this hour fired late.
    assert_eq!(s["missed"], 3, "{s}");
    assert_eq!(s["last"][0]["tick_ms"], h0, "{s}");
    assert_eq!(s["next_ms"], h0 + hour, "{s}");
    assert_eq!(ticks(&s), vec![h0]);

    let s = wait_until(
        Duration::from_secs(30),
        "a refusal of the orphan",
        || async {
            let s = c.schedule(&late, "orphan").await;
            (!refusals(&s).is_empty()).then_some(s)
        },
    )
    .await;
    assert_eq!(refusals(&s)[0].1, "function `gone` not found", "{s}");

    let (one, two) = wait_until(Duration::from_secs(30), "three ticks of each", || async {
        let (one, two) = (
            c.schedule(&busy, "one").await,
            c.schedule(&busy, "two").await,
        );
        let n = |s: &Value| s["fired"].as_u64().unwrap() + s["refused"].as_u64().unwrap();
        (n(&one) >= 3 && n(&two) >= 3).then_some((one, two))
    })
    .await;
    // Each tick: one of the two enqueued, the other refused by the rate.
    let outcome = |s: &Value, tick: u64| {
        s["last"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["tick_ms"].as_u64() == Some(tick))
            .map(|f| f["outcome"].as_str().unwrap().to_string())
    };
    // The rate lets one of the two through in each second: at ticks that
    // fired on time, one enqueued and the other refused.
    let mut split = 0;
    for f in one["last"].as_array().unwrap() {
        let tick = f["tick_ms"].as_u64().unwrap();
        let Some(other) = outcome(&two, tick) else {
            continue;
        };
        let mut pair = [f["outcome"].as_str().unwrap().to_string(), other];
        pair.sort();
        split += usize::from(pair[0] == "enqueued" && pair[1] == "refused");
    }
    assert!(split >= 2, "{one} {two}");
    let refused: Vec<(u64, String)> = refusals(&one).into_iter().chain(refusals(&two)).collect();
    assert_eq!(
        refused[0].1,
        "quota: the tenant's limit of 1 invocations per second is used up"
    );
}

/// The due index's protocol: a firer moves a schedule only from the tick it
/// read, so an owner's replacement made meanwhile (a new first tick) stands;
/// the state's compare-and-set lets one of two firers record a tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_moves_only_from_where_a_firer_read_it() {
    use eddy_protocol::schedules::{ScheduleSpec, ScheduleState};
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let t = tenant("acme");
    deploy(&q, &t, "echo", "echo", Default::default()).await;
    let spec = |cron: &str| ScheduleSpec {
        name: "s".into(),
        cron: cron.into(),
        function: "echo".into(),
        data: json!({}),
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    let score = || redis.cli(&["ZSCORE", eddy_protocol::keys::SCHEDULES, "acme/s"]);
    assert!(q.put_schedule(&t, &spec("@hourly"), 1_000).await.unwrap());
    assert_eq!(score(), "1000");
    // A firer read 1000; the owner replaced the schedule (first tick 500).
    assert!(!q.put_schedule(&t, &spec("@daily"), 500).await.unwrap());
    assert!(!q.reindex_schedule(&t, "s", 1_000, 2_000).await.unwrap());
    assert_eq!(score(), "500", "the owner's tick stands");
    assert!(q.reindex_schedule(&t, "s", 500, 2_000).await.unwrap());
    assert_eq!(score(), "2000");

    // Two firers read the same state: one records the tick.
    let read = q.schedule(&t, "s").await.unwrap().unwrap();
    let next = ScheduleState {
        next_ms: 3_000,
        fired: 1,
        ..read.state.clone()
    };
    let first = q
        .settle_schedule(&t, "s", &read.raw_state, &next)
        .await
        .unwrap();
    let second = q
        .settle_schedule(&t, "s", &read.raw_state, &next)
        .await
        .unwrap();
    assert!(first.is_some() && second.is_none());
    // A deleted schedule is neither settled nor left in the index.
    assert!(q.delete_schedule(&t, "s").await.unwrap());
    assert_eq!(score(), "");
    let again = q
        .settle_schedule(&t, "s", first.as_deref().unwrap(), &next)
        .await
        .unwrap();
    assert!(again.is_none());
}

/// A tenant at its 64 per-second schedules does not hold another tenant's
/// one: every tick of the other fires within 2 s of its time (here 60-90
/// ms, the first up to 630 ms, on a 2-core machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_many_schedules_do_not_hold_anothers() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let _gateway = EddyProcess::gateway(&redis.url(), cache.path(), port);
    let _worker = EddyProcess::worker(&redis.url(), cache.path(), "w1", &[]);
    let _controller = EddyProcess::controller(&redis.url(), &[]);
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let many = c.tenant("many", json!({})).await;
    c.deploy(&many, "echo").await;
    let one = c.tenant("one", json!({})).await;
    c.deploy(&one, "echo").await;
    for i in 0..eddy_protocol::schedules::MAX_PER_TENANT {
        let (s, v) = c
            .call(
                Method::PUT,
                &format!("/schedules/s{i}"),
                &many,
                Some(json!({"cron": "* * * * * *", "function": "echo"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) = c
        .call(
            Method::PUT,
            "/schedules/mine",
            &one,
            Some(json!({"cron": "* * * * * *", "function": "echo"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let s = wait_until(
        Duration::from_secs(30),
        "five ticks of the other tenant",
        || async {
            let s = c.schedule(&one, "mine").await;
            (s["fired"].as_u64() >= Some(5)).then_some(s)
        },
    )
    .await;
    let late: Vec<u64> = s["last"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["at_ms"].as_u64().unwrap() - f["tick_ms"].as_u64().unwrap())
        .collect();
    eprintln!("the other tenant's ticks fired this many ms late: {late:?}");
    assert!(late.iter().all(|l| *l < 2_000), "{late:?}: {s}");
    // And the many were fired too.
    let busy = c.schedule(&many, "s63").await;
    assert!(busy["fired"].as_u64().unwrap() >= 3, "{busy}");
}
