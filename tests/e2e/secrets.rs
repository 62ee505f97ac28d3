//! Variables and secrets, end to end: set through the API, read by a guest
//! through `wasi:config/store` (and sent to a local server as a bearer
//! token), changed without a redeploy, the operator's key rotated; and the
//! secret's value nowhere else: not in any API response, record, log line
//! (the guest prints it), process log, metric, exported span, or anywhere
//! in Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::ADMIN;
use crate::otel::{Spans, otlp_receiver};
use eddy_tests::*;

const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const FIRST: &str = "first-Secret-value-31337";
const SECOND: &str = "second-Secret-value-42424";
const THIRD: &str = "tenant-wide-Secret-value-777";

/// A server that records the bearer tokens it gets on `/auth`.
async fn token_server(seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let app = axum::Router::new().route(
        "/auth",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(auth);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A gateway and two workers with `keys`, logging to `dir`, exporting spans.
struct Roles {
    _processes: Vec<EddyProcess>,
}

struct Setup {
    redis: RedisServer,
    cache: tempfile::TempDir,
    logs: tempfile::TempDir,
    port: u16,
    otlp: u16,
    worker_metrics: [u16; 2],
}

impl Setup {
    fn start(&self, keys: &str) -> Roles {
        let endpoint = format!("http://127.0.0.1:{}", self.otlp);
        let log = |name: &str| self.logs.path().join(name).display().to_string();
        let gateway_log = log("gateway.log");
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("EDDY_SECRETS_KEYS", keys),
            ("EDDY_OUTBOUND_ALLOWLIST", "127.0.0.1"),
            ("EDDY_LOG", "debug"),
        ];
        let mut with = env.to_vec();
        with.push((STDERR_TO, gateway_log.as_str()));
        let mut processes = vec![EddyProcess::gateway_with(
            &self.redis.url(),
            self.cache.path(),
            self.port,
            &with,
        )];
        for (i, name) in ["w1", "w2"].into_iter().enumerate() {
            let file = log(&format!("{name}.log"));
            let listen = format!("127.0.0.1:{}", self.worker_metrics[i]);
            let mut with = env.to_vec();
            with.push((STDERR_TO, file.as_str()));
            with.push(("EDDY_METRICS_LISTEN", listen.as_str()));
            processes.push(EddyProcess::worker(
                &self.redis.url(),
                self.cache.path(),
                name,
                &with,
            ));
        }
        Roles {
            _processes: processes,
        }
    }
}

/// A client that keeps every answer it got, as text.
struct Client {
    http: reqwest::Client,
    base: String,
    seen: Vec<String>,
}

impl Client {
    async fn call(
        &mut self,
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
        self.seen.push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Invokes `cfg` (sync), traced: status, answer, record.
    async fn invoke(&mut self, key: &str, input: Value) -> (StatusCode, Value, Value) {
        let trace = format!("{:032x}", self.seen.len() + 1);
        let r = self
            .http
            .post(format!("{}/invoke/cfg", self.base))
            .bearer_auth(key)
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .json(&input)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let id = r.headers()["x-eddy-invocation-id"]
            .to_str()
            .unwrap()
            .to_string();
        let text = r.text().await.unwrap();
        self.seen.push(text.clone());
        let (_, record) = self
            .call(Method::GET, &format!("/invocations/{id}"), key, None)
            .await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            record,
        )
    }
}

/// Everything Redis holds, values included, as text.
fn keyspace(redis: &RedisServer) -> String {
    let mut out = String::new();
    for key in redis.cli(&["--scan"]).lines().filter(|k| !k.is_empty()) {
        let kind = redis.cli(&["TYPE", key]);
        let value = match kind.as_str() {
            "string" => redis.cli(&["GET", key]),
            "hash" => redis.cli(&["HGETALL", key]),
            "list" => redis.cli(&["LRANGE", key, "0", "-1"]),
            "set" => redis.cli(&["SMEMBERS", key]),
            "zset" => redis.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
            "stream" => redis.cli(&["XRANGE", key, "-", "+"]),
            other => panic!("key {key} of type {other}"),
        };
        out.push_str(&format!("{key} ({kind}): {value}\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_read_by_its_guest_rotated_and_shown_nowhere() {
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let server = token_server(tokens.clone()).await;
    let spans: Spans = Arc::default();
    let setup = Setup {
        redis: RedisServer::start(),
        cache: tempfile::tempdir().unwrap(),
        logs: tempfile::tempdir().unwrap(),
        port: free_port(),
        otlp: free_port(),
        worker_metrics: [free_port(), free_port()],
    };
    otlp_receiver(setup.otlp, spans.clone()).await;
    let mut roles = setup.start(K1);
    let mut c = Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}", setup.port),
        seen: Vec::new(),
    };

    let (s, body) = c
        .call(
            Method::POST,
            "/tenants",
            ADMIN,
            Some(json!({ "id": "acme" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let key = body["key"].as_str().unwrap().to_string();
    let origin = format!("http://127.0.0.1:{server}");
    let r = c
        .http
        .put(format!("{}/functions/cfg?allowed_hosts={origin}", c.base))
        .bearer_auth(&key)
        .body(wasm("fx-config"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    c.seen.push(r.text().await.unwrap());

    // A tenant variable and the function's secret.
    let (s, body) = c
        .call(
            Method::PUT,
            "/variables/REGION",
            &key,
            Some(json!({ "value": "eu-west" })),
        )
        .await;
    assert_eq!(
        (s, body),
        (
            StatusCode::CREATED,
            json!({ "name": "REGION", "secret": false, "value": "eu-west" })
        )
    );
    let secret = |v: &str| Some(json!({ "value": v, "secret": true }));
    let (s, body) = c
        .call(
            Method::PUT,
            "/functions/cfg/variables/TOKEN",
            &key,
            secret(FIRST),
        )
        .await;
    assert_eq!(
        (s, body),
        (
            StatusCode::CREATED,
            json!({ "name": "TOKEN", "secret": true })
        )
    );

    // The guest reads both, prints the secret everywhere it can, sends it
    // as a bearer token.
    let input = json!({
        "show": ["REGION"],
        "print": ["TOKEN"],
        "bearer": { "var": "TOKEN", "url": format!("{origin}/auth") },
    });
    let (s, out, record) = c.invoke(&key, input.clone()).await;
    assert_eq!(s, StatusCode::OK, "{out} {record}");
    assert_eq!(out["values"], json!({ "REGION": "eu-west" }));
    assert_eq!(out["status"], 200);
    assert_eq!(
        tokens.lock().unwrap().last().unwrap(),
        &format!("Bearer {FIRST}")
    );
    let logs: Vec<&str> = record["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs,
        [
            "stdout says TOKEN=[redacted]",
            "stderr says TOKEN=[redacted]",
            "log says TOKEN=[redacted]",
        ]
    );
    // An error message that quotes it: redacted too (in the answer, the
    // record and the span's status).
    let (s, out, record) = c.invoke(&key, json!({ "fail_with": "TOKEN" })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let redacted = "processor error `leak`: refusing with TOKEN=[redacted]";
    assert_eq!(out["message"], redacted);
    assert_eq!(record["error"]["message"], redacted, "{record}");

    // A tenant-wide secret, read with get-all: every function sees it.
    let (s, _) = c
        .call(Method::PUT, "/variables/PASS", &key, secret(THIRD))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out, record) = c
        .invoke(&key, json!({ "all": true, "print": ["PASS"] }))
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["names"], json!(["PASS", "REGION", "TOKEN"]));
    assert_eq!(
        record["logs"][0]["message"], "stdout says PASS=[redacted]",
        "{record}"
    );

    // A new value: the next invocation has it, no redeploy.
    let (s, _) = c
        .call(
            Method::PUT,
            "/functions/cfg/variables/TOKEN",
            &key,
            secret(SECOND),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = c.invoke(&key, input.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        tokens.lock().unwrap().last().unwrap(),
        &format!("Bearer {SECOND}")
    );
    assert!(keyspace(&setup.redis).contains("s:k1:"));

    // Let the spans of these invocations leave before their processes go.
    let executed = |n: usize| {
        let spans = spans.clone();
        move || {
            spans
                .lock()
                .unwrap()
                .iter()
                .filter(|g| g.name == "execute")
                .count()
                >= n
        }
    };
    wait_for(Duration::from_secs(15), "the execute spans", executed(4));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The operator rotates the key: the new one second, then first, reseal,
    // the old one gone; the guest reads the secret all along.
    drop(roles);
    roles = setup.start(&format!("{K1},{K2}"));
    let (s, _, _) = c.invoke(&key, input.clone()).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(roles);
    roles = setup.start(&format!("{K2},{K1}"));
    let (s, body) = c.call(Method::POST, "/secrets/reseal", ADMIN, None).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::OK,
            json!({ "resealed": 2, "current": 0, "unopenable": 0 })
        )
    );
    drop(roles);
    let _roles = setup.start(K2);
    let dump = keyspace(&setup.redis);
    assert!(dump.contains("s:k2:") && !dump.contains("s:k1:"), "{dump}");
    let (s, _, _) = c.invoke(&key, input.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        tokens.lock().unwrap().last().unwrap(),
        &format!("Bearer {SECOND}")
    );

    // Listings name the secret only.
    let (_, vars) = c
        .call(Method::GET, "/functions/cfg/variables", &key, None)
        .await;
    assert_eq!(vars, json!([{ "name": "TOKEN", "secret": true }]));
    let (_, vars) = c.call(Method::GET, "/variables", &key, None).await;
    assert_eq!(
        vars,
        json!([
            { "name": "PASS", "secret": true },
            { "name": "REGION", "secret": false, "value": "eu-west" },
        ])
    );
    c.call(Method::GET, "/dead-letters", &key, None).await;
    c.call(Method::GET, "/functions/cfg", &key, None).await;
    c.call(Method::GET, "/metrics", ADMIN, None).await;
    for port in setup.worker_metrics {
        let text = c
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("eddy_"), "{text}");
        c.seen.push(text);
    }

    // Nowhere: every answer, Redis, the processes' logs, the spans.
    wait_for(Duration::from_secs(15), "the execute spans", executed(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut logs = String::new();
    for name in ["gateway.log", "w1.log", "w2.log"] {
        logs.push_str(&std::fs::read_to_string(setup.logs.path().join(name)).unwrap());
    }
    assert!(logs.contains("completed"), "the logs are empty: {logs}");
    // The failed invocation's span says why, redacted (tracing-opentelemetry
    // exports a status message recorded late as an attribute).
    let statuses: Vec<String> = spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|g| [Some(&g.status_message), g.attrs.get("otel.status_message")])
        .flatten()
        .filter(|m| m.contains("leak"))
        .cloned()
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|m| m.contains("TOKEN=[redacted]")),
        "{statuses:?}"
    );
    let places = [
        ("the API's answers", c.seen.join("\n")),
        ("redis", dump),
        ("redis at the end", keyspace(&setup.redis)),
        ("the processes' logs", logs),
        ("the exported spans", format!("{:?}", spans.lock().unwrap())),
    ];
    for (place, text) in &places {
        assert!(!text.is_empty(), "{place} is empty");
        for value in [FIRST, SECOND, THIRD] {
            assert!(!text.contains(value), "{place} holds the secret:\n{text}");
        }
    }
    // The search sees values: the plain variable is there.
    assert!(places[1].1.contains("eu-west"));
    assert!(places[0].1.contains("[redacted]"));
}
