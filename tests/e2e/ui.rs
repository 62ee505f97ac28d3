//! The dashboard over HTTP (`eddy up`): `/ui` and `/ui/events` sit behind the
//! API's auth or a session cookie opened with a key (never a key in a URL),
//! the page carries its app root, and the event stream sends JSON snapshots
//! that follow a run to its end. The browser test is `scripts/ui-test.sh`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::{ADMIN, Platform};

/// An open `/ui/events` stream, read event by event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// `key=<key>` in `query` goes into the `Authorization` header.
    async fn open(p: &Platform, query: &str) -> Self {
        let mut key = String::new();
        let rest: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix("key=") {
                Some(k) => {
                    key = k.to_string();
                    false
                }
                None => true,
            })
            .collect();
        let response = p
            .req(Method::GET, &format!("/ui/events?{}", rest.join("&")), &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's JSON, or `None` when `within` passes first.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(serde_json::from_str(&data.join("\n")).unwrap());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }
}

fn array<'a>(event: &'a Value, field: &str) -> &'a Vec<Value> {
    event[field]
        .as_array()
        .unwrap_or_else(|| panic!("`{field}` is not an array in {event}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_behind_the_api_keys() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    let get = |path: String| p.http.get(format!("{}{path}", p.base)).send();

    // No key: the event stream is 401; the page is the one that opens a
    // session (no data in it). A key in the address is ignored everywhere.
    let r = get("/ui/events".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "missing_key");
    for path in ["/ui".to_string(), format!("/ui?key={key}")] {
        let r = get(path.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("Open the dashboard"), "{path}");
        assert!(!html.contains("data-tenant"), "{path}");
    }
    let r = get(format!("/ui/events?key={key}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = get(format!("/functions?key={key}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = p.req(Method::GET, "/ui", "nope").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_key");

    // The page with the key in the header.
    let r = p.req(Method::GET, "/ui", &key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    let csp = h["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<main id="app" data-admin="false" data-tenant="acme">"#));
    // The assets are inlined under the response's nonce.
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap();
    assert!(html.contains(&format!(r#"<script nonce="{nonce}">"#)));
    assert!(html.contains("new EventSource('/ui/events?"));
    assert!(!html.contains("{{"), "a placeholder was left in the page");

    // A session: opened with a key (a second one, to revoke), then the
    // cookie alone opens the page and the stream, until the key is revoked.
    let r = p
        .req(Method::POST, "/tenants/acme/keys", &key)
        .send()
        .await
        .unwrap();
    let second: Value = r.json().await.unwrap();
    let r = p
        .req(Method::POST, "/ui/session", second["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(!cookie.contains(second["key"].as_str().unwrap()));
    let with_cookie = |path: &'static str| {
        p.http
            .get(format!("{}{path}", p.base))
            .header("cookie", cookie.clone())
            .send()
    };
    let r = with_cookie("/ui").await.unwrap();
    assert!(r.text().await.unwrap().contains(r#"data-tenant="acme""#));
    let r = with_cookie("/ui/events").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    let r = p
        .req(
            Method::DELETE,
            &format!("/tenants/acme/keys/{}", second["id"].as_str().unwrap()),
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = with_cookie("/ui/events").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revoked with its key");
    let r = with_cookie("/ui").await.unwrap();
    assert!(r.text().await.unwrap().contains("Open the dashboard"));
    // Closing a session: the cookie is cleared and the session is gone.
    let r = p
        .req(Method::POST, "/ui/session", &key)
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = p
        .http
        .delete(format!("{}/ui/session", p.base))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = p
        .http
        .get(format!("{}/ui/events", p.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The admin sees every tenant.
    let r = p.req(Method::GET, "/ui", ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(r#"data-admin="true" data-tenant="""#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_a_run_to_its_end() {
    let p = Platform::start(&[]);
    let (key, _) = p.tenant("acme", json!({})).await;
    let (other, _) = p.tenant("other", json!({})).await;
    p.deploy(&key, "fanout", "fanout", "").await;
    p.deploy(&other, "wordcount", "wordcount", "").await;

    // The first event comes within 3 s, with the whole snapshot.
    let opened = Instant::now();
    let mut events = Events::open(&p, &format!("key={key}")).await;
    let first = events
        .next(Duration::from_secs(3))
        .await
        .expect("no event within 3 s");
    assert!(opened.elapsed() < Duration::from_secs(3));
    assert_eq!(first["v"], 1);
    assert_eq!(first["full"], true);
    assert!(first["at_ms"].as_u64().unwrap() > 0);
    assert_eq!(first["scope"], json!({ "admin": false, "tenant": "acme" }));
    assert!(first["totals"]["functions"].is_u64());
    for field in [
        "functions",
        "removed",
        "workers",
        "runs",
        "dead_letters",
        "invocations",
    ] {
        array(&first, field);
    }
    let fns = array(&first, "functions");
    assert_eq!(
        fns.len(),
        1,
        "a tenant sees its own functions only: {fns:?}"
    );
    let f = &fns[0];
    assert_eq!(
        (f["key"].as_str(), f["function"].as_str()),
        (Some("acme/fanout"), Some("fanout"))
    );
    for field in [
        "lag",
        "pending",
        "completed",
        "warm",
        "samples",
        "cold",
        "errors",
    ] {
        assert!(f[field].is_u64(), "{field} in {f}");
    }
    drop(events);

    // A run, watched from its start: progress, tree, counters.
    let r = p
        .req(Method::POST, "/invoke/fanout", &key)
        .header("prefer", "respond-async")
        .body(r#"{"branch":4,"depth":3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = Events::open(&p, &format!("key={key}&runs={run_id},not-a-run")).await;
    let mut rows: HashMap<String, Value> = HashMap::new();
    let mut runs = Vec::new();
    let mut workers: Vec<Value>;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run did not finish: {runs:?}"
        );
        let e = events
            .next(Duration::from_secs(5))
            .await
            .expect("the stream stopped");
        for f in array(&e, "functions") {
            rows.insert(f["key"].as_str().unwrap().to_string(), f.clone());
        }
        workers = array(&e, "workers").clone();
        if let Some(r) = e["runs"].as_array() {
            runs = r.clone();
        }
        let done = runs
            .first()
            .is_some_and(|r| r["run"]["status"] == "succeeded" && r["percent"] == 100.0);
        let counted = rows["acme/fanout"]["completed"].as_u64().unwrap_or(0) >= 85;
        // Worker counts come from heartbeats, which trail the completions.
        let beaten = workers
            .first()
            .and_then(|w| w["completed"].as_u64())
            .is_some_and(|c| c >= 85);
        if done && counted && beaten {
            break;
        }
    }
    assert!(!rows.contains_key("other/wordcount"));
    assert_eq!(runs.len(), 2);
    let run = &runs[0];
    assert_eq!(
        (run["id"].as_str(), run["missing"].as_bool()),
        (Some(run_id.as_str()), Some(false))
    );
    assert_eq!(
        (
            run["run"]["total"].as_u64(),
            run["run"]["outstanding"].as_u64()
        ),
        (Some(85), Some(0))
    );
    // The tree: the root, its 4 follow-ups, theirs.
    let tree = &run["tree"];
    assert_eq!(tree["id"].as_str(), Some(run_id.as_str()));
    assert_eq!(tree["follow_ups"], 4);
    assert_eq!(tree["children"].as_array().unwrap().len(), 4);
    assert_eq!(tree["children"][0]["children"].as_array().unwrap().len(), 4);
    assert_eq!(
        runs[1],
        json!({ "id": "not-a-run", "tenant": "acme", "missing": true, "percent": 0.0 })
    );
    // Durations were sampled from the tree's records.
    let f = &rows["acme/fanout"];
    assert!(
        f["samples"].as_u64().unwrap() > 0 && f["p50_ms"].is_f64(),
        "{f}"
    );
    // Workers, with rates derived from their heartbeats.
    assert!(!workers.is_empty());
    assert!(workers[0]["completed"].as_u64().unwrap() >= 85);

    // The admin: every tenant; a run needs its tenant named.
    let mut events = Events::open(&p, &format!("key={ADMIN}&runs=acme/{run_id}")).await;
    let e = events.next(Duration::from_secs(3)).await.unwrap();
    let keys: Vec<&str> = array(&e, "functions")
        .iter()
        .filter_map(|f| f["key"].as_str())
        .collect();
    assert!(
        keys.contains(&"acme/fanout") && keys.contains(&"other/wordcount"),
        "{keys:?}"
    );
    assert_eq!(e["scope"], json!({ "admin": true, "tenant": null }));
    assert_eq!(array(&e, "runs")[0]["tenant"], "acme");
    let r = p
        .req(Method::GET, &format!("/ui/events?runs={run_id}"), ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A tenant naming another tenant's run sees nothing of it.
    let mut events = Events::open(&p, &format!("key={other}&runs=acme/{run_id}")).await;
    let e = events.next(Duration::from_secs(3)).await.unwrap();
    assert!(array(&e, "runs").is_empty());
    assert_eq!(array(&e, "functions").len(), 1);
}
