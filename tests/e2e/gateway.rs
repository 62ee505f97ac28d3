//! The platform through its HTTP API: `eddy up` (private Redis, gateway,
//! worker in one process), a real callback receiver that checks signatures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use eddy_tests::*;

pub const ADMIN: &str = "admin-secret";

/// A running `eddy up` and an HTTP client for it.
pub struct Platform {
    pub base: String,
    pub http: reqwest::Client,
    /// Kept for its lifetime: dropping it stops `eddy up`.
    pub _process: EddyProcess,
    /// The private `redis-server` of `eddy up`, with its password.
    pub redis_url: String,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let redis_port = free_port();
        let process = EddyProcess::up(dir.path(), port, redis_port, env);
        let password = std::fs::read_to_string(dir.path().join("redis-password")).unwrap();
        Platform {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _process: process,
            redis_url: format!("redis://:{}@127.0.0.1:{redis_port}", password.trim()),
            _dir: dir,
        }
    }

    /// `eddy up`'s data directory (its artifacts are in `artifacts/`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn req(&self, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
    }

    /// Creates a tenant; returns (key, webhook secret).
    pub async fn tenant(&self, id: &str, quota: Value) -> (String, String) {
        let r = self
            .req(Method::POST, "/tenants", ADMIN)
            .json(&json!({ "id": id, "quota": quota }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        (
            body["key"].as_str().unwrap().into(),
            body["webhook_secret"].as_str().unwrap().into(),
        )
    }

    pub async fn deploy(&self, key: &str, name: &str, guest: &str, query: &str) -> Value {
        let r = self
            .req(Method::PUT, &format!("/functions/{name}{query}"), key)
            .body(wasm(guest))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// Sends `body` with `key`; the response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.req(method, path, key).body(body).send().await.unwrap()
    }

    /// `POST /invoke/{function}/batch` with `ndjson`: 200 and the answer's
    /// lines.
    pub async fn batch(&self, key: &str, function: &str, ndjson: String) -> Vec<Value> {
        let r = self
            .send(
                Method::POST,
                &format!("/invoke/{function}/batch"),
                key,
                ndjson,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let r = self.req(Method::GET, path, key).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until `done` holds on its JSON.
    pub async fn until(&self, key: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        wait_until(Duration::from_secs(60), path, || async {
            let (s, v) = self.get(key, path).await;
            (s == StatusCode::OK && done(&v)).then_some(v)
        })
        .await
    }
}

/// What a callback receiver got, by `webhook-id`.
pub type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP callback receiver on `port` that checks every request's Standard
/// Webhooks signature against `secret` (computed here, independently of
/// Eddy's signer) and records the valid ones.
pub async fn receiver(
    port: u16,
    secret: &str,
    received: Received,
) -> tokio::sync::oneshot::Sender<()> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let key = key.clone();
            let received = received.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let (id, ts, sig) = (
                    h("webhook-id"),
                    h("webhook-timestamp"),
                    h("webhook-signature"),
                );
                let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                mac.update(format!("{id}.{ts}.").as_bytes());
                mac.update(&body);
                let expected = format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
                );
                let fresh = ts
                    .parse::<u64>()
                    .is_ok_and(|t| t.abs_diff(eddy_protocol::now_ms() / 1000) < 300);
                if sig != expected || !fresh {
                    return StatusCode::UNAUTHORIZED;
                }
                received
                    .lock()
                    .unwrap()
                    .push((id, serde_json::from_slice(&body).unwrap()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    tx
}

fn by_id(received: &Received) -> HashMap<String, Value> {
    received.lock().unwrap().iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_invoke_sync_async_with_callback_and_a_run() {
    let p = Platform::start(&[]);
    let (key, secret) = p.tenant("acme", json!({})).await;
    let spec = p
        .deploy(&key, "wordcount", "wordcount", "?timeout_ms=5000")
        .await;
    assert_eq!(
        (
            spec["version"].as_u64(),
            spec["config"]["timeout_ms"].as_u64()
        ),
        (Some(1), Some(5000))
    );
    p.deploy(&key, "fanout", "fanout", "").await;

    // Sync: the processor's output is the response.
    let r = p
        .req(Method::POST, "/invoke/wordcount", &key)
        .body(r#"{"text":"one two two"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let sync_id = r.headers()["x-eddy-invocation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["words"], 3);
    let (_, rec) = p.get(&key, &format!("/invocations/{sync_id}")).await;
    assert_eq!(rec["status"], "succeeded");
    assert!(rec["timings"]["run_us"].as_u64().unwrap() > 0);

    // Sync answers carry binary output exactly: a small one comes with the
    // reply message, a large one (over 64 KiB) is read from the record.
    p.deploy(&key, "echo", "echo", "").await;
    for size in [300usize, 200_000] {
        let body: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
        let r = p
            .req(Method::POST, "/invoke/echo", &key)
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{size}");
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert!(r.headers().contains_key("x-eddy-run-id"));
        assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice(), "{size}");
    }

    // Async with a callback: 202 + Location, then a signed POST.
    let port = free_port();
    let received: Received = Arc::default();
    let _stop = receiver(port, &secret, received.clone()).await;
    let hook = format!("http://127.0.0.1:{port}/hook");
    let r = p
        .req(Method::POST, "/invoke/wordcount", &key)
        .header("x-callback-url", &hook)
        .body(r#"{"text":"async words"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/invocations/{id}"));
    let rec = p
        .until(&key, &location, |v| v["status"] == "succeeded")
        .await;
    assert_eq!(
        rec["output"],
        r#"{"words":2,"unique":2,"top":[["async",1],["words",1]]}"#
    );
    wait_for(Duration::from_secs(20), "the invocation callback", || {
        by_id(&received).contains_key(&format!("msg_invocation_{id}"))
    });
    let cb = &by_id(&received)[&format!("msg_invocation_{id}")];
    assert_eq!(
        (cb["type"].as_str(), cb["status"].as_str()),
        (Some("invocation.completed"), Some("succeeded"))
    );

    // `Prefer: respond-async` without a callback.
    let r = p
        .req(Method::POST, "/invoke/wordcount", &key)
        .header("prefer", "respond-async")
        .body(r#"{"text":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // A run: B=4, D=3 is 85 invocations; the run callback fires at the end.
    let r = p
        .req(Method::POST, "/invoke/fanout", &key)
        .header("prefer", "respond-async")
        .header("x-run-callback-url", &hook)
        .body(r#"{"branch":4,"depth":3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = p
        .until(&key, &format!("/runs/{run_id}"), |v| {
            v["status"] != "running"
        })
        .await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        (
            run["total"].as_u64(),
            run["succeeded"].as_u64(),
            run["percent"].as_f64()
        ),
        (Some(85), Some(85), Some(100.0))
    );
    wait_for(Duration::from_secs(20), "the run callback", || {
        by_id(&received).contains_key(&format!("msg_run_{run_id}"))
    });
    assert_eq!(by_id(&received)[&format!("msg_run_{run_id}")]["total"], 85);

    // A run of one invocation, which has no run record of its own, reads and
    // calls back like any other.
    let r = p
        .req(Method::POST, "/invoke/wordcount", &key)
        .header("prefer", "respond-async")
        .header("x-run-callback-url", &hook)
        .body(r#"{"text":"solo"}"#)
        .send()
        .await
        .unwrap();
    let solo = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(Duration::from_secs(20), "the solo run's callback", || {
        by_id(&received).contains_key(&format!("msg_run_{solo}"))
    });
    let cb = &by_id(&received)[&format!("msg_run_{solo}")];
    assert_eq!(
        (
            cb["type"].as_str(),
            cb["status"].as_str(),
            cb["total"].as_u64(),
            cb["succeeded"].as_u64()
        ),
        (Some("run.completed"), Some("succeeded"), Some(1), Some(1))
    );
    let (s, run) = p.get(&key, &format!("/runs/{solo}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            run["status"].as_str(),
            run["total"].as_u64(),
            run["outstanding"].as_u64(),
            run["percent"].as_f64()
        ),
        (Some("succeeded"), Some(1), Some(0), Some(100.0))
    );

    // Idempotency: the same key answers with the first invocation.
    let send = |k: &'static str| {
        p.req(Method::POST, "/invoke/wordcount", &key)
            .header("idempotency-key", k)
            .header("prefer", "respond-async")
            .body(r#"{"text":"once"}"#)
            .send()
    };
    let first: Value = send("k-1").await.unwrap().json().await.unwrap();
    let again = send("k-1").await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    // The key is the function's: on another function it is a new request.
    let other = p
        .req(Method::POST, "/invoke/fanout", &key)
        .header("idempotency-key", "k-1")
        .header("prefer", "respond-async")
        .body(r#"{"branch":0,"depth":0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    assert!(other.headers().get("idempotent-replayed").is_none());
    assert_ne!(other.json::<Value>().await.unwrap()["id"], first["id"]);
    // The same key with another payload is the client's mistake.
    let reused = p
        .req(Method::POST, "/invoke/wordcount", &key)
        .header("idempotency-key", "k-1")
        .body(r#"{"text":"twice"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = reused.json().await.unwrap();
    assert_eq!(body["code"], "idempotency_key_reused");
    assert_eq!(
        body["message"],
        format!(
            "the Idempotency-Key was used with another payload for this function (invocation {})",
            first["id"].as_str().unwrap()
        )
    );

    // Batch: NDJSON in, one result line per input line.
    let lines = p
        .batch(
            &key,
            "wordcount",
            "{\"text\":\"a\"}\n{\"text\":\"b c\"}\nnot json\n\n{\"text\":\"d\"}\n".into(),
        )
        .await;
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[2]["line"], 3);
    assert_eq!(lines[2]["error"]["code"], "invalid_json");
    for l in [&lines[0], &lines[1], &lines[3]] {
        let id = l["id"].as_str().unwrap();
        p.until(&key, &format!("/invocations/{id}"), |v| {
            v["status"] == "succeeded"
        })
        .await;
    }

    // A big batch arrives in large body chunks; it still reaches Redis in
    // enqueue script calls of at most 16 lines (one call of thousands would
    // hold Redis, and every other tenant, for as long), and every line is
    // answered, in order. Redis's slow log, set to keep every command, shows
    // each enqueue call's size: its KEYS are 3 + 4 per invocation, and its
    // second key is the tenant's rate window.
    let redis = redis::Client::open(p.redis_url.as_str()).unwrap();
    let mut rc = redis.get_multiplexed_async_connection().await.unwrap();
    for (k, v) in [
        ("slowlog-log-slower-than", "0"),
        ("slowlog-max-len", "100000"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query_async(&mut rc)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut rc)
        .await
        .unwrap();
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!("{{\"text\":\"line {i}\"}}\n"));
    }
    let r = p
        .req(Method::POST, "/invoke/wordcount/batch", &key)
        .body(body)
        .send()
        .await
        .unwrap();
    let answers: Vec<Value> = r
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2000);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["line"], i + 1);
        assert!(a["id"].is_string(), "{a}");
    }
    // Entry: [id, time, µs, [command, args…], client, name].
    let log: Vec<(u64, u64, u64, Vec<String>)> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async::<Vec<redis::Value>>(&mut rc)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let e: Vec<redis::Value> = redis::from_redis_value(e).unwrap();
            let mut it = e.into_iter();
            let (id, at, us) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            (
                redis::from_redis_value(id).unwrap(),
                redis::from_redis_value(at).unwrap(),
                redis::from_redis_value(us).unwrap(),
                redis::from_redis_value(it.next().unwrap()).unwrap(),
            )
        })
        .collect();
    let sizes: Vec<u64> = log
        .iter()
        .filter(|(_, _, _, args)| {
            args.first()
                .is_some_and(|c| c.eq_ignore_ascii_case("evalsha"))
                && args.get(4).is_some_and(|k| k.contains(":rate:"))
        })
        .map(|(_, _, _, args)| (args[2].parse::<u64>().unwrap() - 3) / 4)
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 2000, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 16), "{sizes:?}");

    // OpenAPI is served and lists the routes.
    let (s, doc) = p.get(&key, "/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for route in [
        "/invoke/{name}",
        "/functions/{name}",
        "/runs/{id}",
        "/tenants",
        "/variables",
        "/variables/{name}",
        "/functions/{name}/variables",
        "/functions/{name}/variables/{var}",
        "/secrets/reseal",
        "/schedules",
        "/schedules/{name}",
    ] {
        assert!(doc["paths"].get(route).is_some(), "{route}");
    }
}

/// Runs the `eddy` client against the platform; returns (exit code, stdout).
fn cli(p: &Platform, key: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(bin_dir().join("eddy"))
        .args(args)
        .env("EDDY_URL", &p.base)
        .env("EDDY_KEY", key)
        .env_remove("EDDY_TENANT")
        .env_remove("EDDY_OUTPUT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("eddy {args:?}: {stderr}");
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The version that ran each sync invocation follows deploys and rollbacks
/// at once (the gateway reads the current spec on every invocation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_and_rollback_change_what_runs_at_once() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    let ran = |version: u64| {
        let (p, key) = (&p, &key);
        async move {
            let r = p
                .req(Method::POST, "/invoke/wordcount", key)
                .body(r#"{"text":"a b"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let id = r.headers()["x-eddy-invocation-id"]
                .to_str()
                .unwrap()
                .to_string();
            let (_, rec) = p.get(key, &format!("/invocations/{id}")).await;
            assert_eq!(rec["version"].as_u64(), Some(version), "{rec}");
            let (_, f) = p.get(key, "/functions/wordcount").await;
            assert_eq!(f["current"].as_u64(), Some(version), "{f}");
        }
    };
    p.deploy(&key, "wordcount", "wordcount", "?timeout_ms=1000")
        .await;
    ran(1).await;
    p.deploy(&key, "wordcount", "wordcount", "?timeout_ms=2000")
        .await;
    ran(2).await;
    let r = p
        .req(Method::POST, "/functions/wordcount/rollback", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ran(1).await;
    let r = p
        .req(Method::POST, "/functions/wordcount/rollback", &key)
        .json(&json!({"version": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ran(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_platform() {
    let p = Platform::start(&[]);
    let (code, out) = cli(&p, ADMIN, &["tenant", "create", "acme", "-o", "json"]);
    assert_eq!(code, 0);
    let created: Value = serde_json::from_str(&out).unwrap();
    let key = created["key"].as_str().unwrap().to_string();

    let module = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(module.path(), wasm("wordcount")).unwrap();
    let path = module.path().to_str().unwrap();
    assert_eq!(
        cli(
            &p,
            &key,
            &["deploy", "wordcount", path, "--timeout-ms", "2000"]
        )
        .0,
        0
    );
    let fan = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(fan.path(), wasm("fanout")).unwrap();
    assert_eq!(
        cli(
            &p,
            &key,
            &["deploy", "fanout", fan.path().to_str().unwrap()]
        )
        .0,
        0
    );

    // Variables and secrets (`eddy up` made a key for them).
    let var = |args: &[&str]| cli(&p, &key, &[&["var"][..], args].concat());
    assert_eq!(
        var(&["set", "REGION", "eu-west"]),
        (0, "set variable REGION of the tenant\n".into())
    );
    assert_eq!(
        var(&[
            "set",
            "TOKEN",
            "hunter2-hunter2",
            "--secret",
            "-f",
            "wordcount"
        ]),
        (0, "set secret TOKEN of function wordcount\n".into())
    );
    let (code, out) = var(&["ls"]);
    assert_eq!(code, 0);
    assert!(out.contains("REGION") && out.contains("eu-west"), "{out}");
    let (code, out) = var(&["ls", "--function", "wordcount"]);
    assert_eq!(code, 0);
    assert!(out.contains("TOKEN") && out.contains("(hidden)"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    assert_eq!(var(&["rm", "REGION"]), (0, "deleted REGION\n".into()));
    assert_eq!(var(&["ls"]), (0, "no variables\n".into()));

    // A schedule: created, fired by `eddy up`'s controller, shown, removed.
    let schedule = |args: &[&str]| cli(&p, &key, &[&["schedule"][..], args].concat());
    let (code, out) = schedule(&[
        "create",
        "tick",
        "--cron",
        "* * * * * *",
        "--function",
        "wordcount",
        "--data",
        r#"{"text":"tick tock"}"#,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("schedule tick invokes wordcount on `* * * * * *`; next tick 20"),
        "{out}"
    );
    let shown = wait_until(Duration::from_secs(20), "a firing", || async {
        let (code, out) = schedule(&["show", "tick", "-o", "json"]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        (v["fired"].as_u64() >= Some(1)).then_some(v)
    })
    .await;
    let run = shown["last"][0]["run_id"].as_str().unwrap().to_string();
    let rec = p
        .until(&key, &format!("/invocations/{run}"), |v| {
            v["status"] == "succeeded"
        })
        .await;
    assert_eq!(
        rec["output"], r#"{"words":2,"unique":2,"top":[["tick",1],["tock",1]]}"#,
        "the schedule's data is the payload"
    );
    let (code, out) = schedule(&["ls"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("tick") && out.contains("* * * * * *") && out.contains(&run[..8]),
        "{out}"
    );
    let (code, out) = schedule(&["show", "tick"]);
    assert_eq!(code, 0);
    assert!(out.contains("enqueued") && out.contains(&run), "{out}");
    assert_eq!(
        schedule(&["rm", "tick"]),
        (0, "deleted schedule tick\n".into())
    );
    assert_eq!(schedule(&["ls"]), (0, "no schedules\n".into()));

    // Sync: stdout is the processor's output.
    let (code, out) = cli(
        &p,
        &key,
        &["invoke", "wordcount", "--data", r#"{"text":"cli cli"}"#],
    );
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["words"], 2);

    // Async, then the record.
    let (code, out) = cli(
        &p,
        &key,
        &[
            "invoke",
            "wordcount",
            "--async",
            "--data",
            r#"{"text":"a"}"#,
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0);
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    p.until(&key, &format!("/invocations/{id}"), |v| {
        v["status"] == "succeeded"
    })
    .await;
    let (code, out) = cli(&p, &key, &["invocation", &id, "-o", "json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "succeeded"
    );

    // A run, watched to its end.
    let (_, out) = cli(
        &p,
        &key,
        &[
            "invoke",
            "fanout",
            "--async",
            "--data",
            r#"{"branch":3,"depth":3}"#,
            "-o",
            "json",
        ],
    );
    let run = serde_json::from_str::<Value>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = cli(&p, &key, &["runs", &run, "--watch"]);
    assert_eq!(code, 0);
    let (_, out) = cli(&p, &key, &["runs", &run, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["total"].as_u64()),
        (Some("succeeded"), Some(40))
    );

    // An API error is exit 1 with the code.
    let (code, _) = cli(&p, &key, &["invoke", "nope"]);
    assert_eq!(code, 1);
    let (code, out) = cli(&p, &key, &["functions", "-o", "json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// The `process_id` of the Redis at `url`.
async fn redis_pid(url: &str) -> Option<i32> {
    let client = redis::Client::open(url).ok()?;
    let mut c = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut c)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `eddy up`'s private Redis has a password (in a 0600 file beside the
/// admin key), comes back from its AOF when it dies, and dies with `eddy
/// up` even when that is SIGKILLed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddy_ups_redis_has_a_password_is_restarted_and_dies_with_it() {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Platform::start(&[]);
    let mode = std::fs::metadata(p._dir.path().join("redis-password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let port = p.redis_url.rsplit(':').next().unwrap().to_string();
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut c = anonymous.get_multiplexed_async_connection().await.unwrap();
    let refused: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
    assert_eq!(refused.unwrap_err().code(), Some("NOAUTH"));
    // Nor is the password on a command line anyone can read.
    let pid = redis_pid(&p.redis_url).await.unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    let password = p.redis_url.split(['@', ':']).nth(2).unwrap().to_string();
    assert!(!cmdline.contains(&password), "{cmdline}");

    let (key, _) = p.tenant("acme", json!({})).await;
    p.deploy(&key, "echo", "echo", "").await;
    // The AOF is written every second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let again = wait_until(Duration::from_secs(20), "redis back", || async {
        redis_pid(&p.redis_url).await.filter(|p| *p != pid)
    })
    .await;
    wait_until(
        Duration::from_secs(20),
        "a call through the new redis",
        || async {
            let r = p
                .req(Method::POST, "/invoke/echo", &key)
                .body(r#"{"after":"restart"}"#)
                .send()
                .await
                .ok()?;
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;

    p._process.kill();
    wait_for(Duration::from_secs(10), "redis to die with eddy up", || {
        !std::path::Path::new(&format!("/proc/{again}")).exists()
            || std::fs::read_to_string(format!("/proc/{again}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
}

/// `eddy up` as the README runs it: no settings at all, its data in the
/// default `.eddy` relative to where it starts. (Its private Redis was once
/// handed a config path relative to the wrong directory and never started.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddy_up_starts_with_no_settings_in_a_bare_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = std::process::Command::new(eddy_tests::bin_dir().join("eddy"));
    cmd.arg("up")
        .current_dir(cwd.path())
        .env_remove("REDIS_URL")
        .env_remove("EDDY_DATA_DIR")
        .env_remove("EDDY_CACHE_DIR")
        .env_remove("EDDY_ADMIN_KEY")
        .env_remove("EDDY_REDIS_PORT")
        // Only the port: 8080 may be taken on the machine running the tests.
        .env("EDDY_LISTEN", format!("127.0.0.1:{port}"));
    let mut up = eddy_tests::EddyProcess::spawn(cmd, &[], "up-bare".into());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "eddy up did not become ready in 30 s");
    let data = cwd.path().join(".eddy");
    let admin = std::fs::read_to_string(data.join("admin-key")).unwrap();
    assert!(data.join("redis-password").exists());
    assert!(data.join("redis/redis.log").exists());
    // The admin key it wrote works.
    let r = http
        .post(format!("{base}/tenants"))
        .bearer_auth(admin.trim())
        .json(&json!({ "id": "bare" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let status = up.terminate(std::time::Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
