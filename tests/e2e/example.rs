//! The `ingest` example end to end, as `make demo` runs it: a processor
//! fetches a document from an allowed origin, classifies its sections
//! through an API that wants a bearer token (a secret), and indexes each
//! section in a follow-up; the run ends when all are indexed. With a wrong
//! token the API's 401 fails the document once, not retried.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode as Code};
use axum::routing::{get, post};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::Platform;

const TOKEN: &str = "classifier-token-5150";
const DOC: &str = "Intro line.\n\n# Incidents\nAn outage of 14 minutes.\n\n# Refunds\nThree chargebacks are open.\n\n# Hiring\nWelcome, Ada.\n";

/// What the local API got: (route, authorization, body).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn api(seen: Seen) -> u16 {
    let auth = |h: &HeaderMap| {
        h.get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (s1, s2) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route("/docs/report.md", get(|| async { DOC }))
        .route(
            "/classify",
            post(move |h: HeaderMap, body: axum::Json<Value>| async move {
                let a = auth(&h);
                s1.lock()
                    .unwrap()
                    .push(("classify".into(), a.clone(), body.0.clone()));
                if a != format!("Bearer {TOKEN}") {
                    return (Code::UNAUTHORIZED, axum::Json(json!({})));
                }
                let labels: Vec<&str> = body.0["sections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        let s = s.as_str().unwrap();
                        if s.contains("outage") {
                            "incident"
                        } else if s.contains("chargeback") {
                            "billing"
                        } else {
                            "general"
                        }
                    })
                    .collect();
                (Code::OK, axum::Json(json!({ "labels": labels })))
            }),
        )
        .route(
            "/index",
            post(move |h: HeaderMap, body: axum::Json<Value>| async move {
                s2.lock().unwrap().push(("index".into(), auth(&h), body.0));
                Code::CREATED
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_example_classifies_and_indexes_a_document() {
    let seen: Seen = Arc::default();
    let port = api(seen.clone()).await;
    let origin = format!("http://127.0.0.1:{port}");
    let p = Platform::start(&[("EDDY_OUTBOUND_ALLOWLIST", "127.0.0.1")]);
    let (key, _) = p.tenant("docs", json!({})).await;
    p.deploy(
        &key,
        "ingest",
        "ingest",
        &format!("?allowed_hosts={origin}&max_retries=2&backoff_base_ms=50"),
    )
    .await;
    let set = |name: &'static str, value: String, secret: bool| {
        let (p, key) = (&p, key.clone());
        async move {
            let r = p
                .req(
                    Method::PUT,
                    &format!("/functions/ingest/variables/{name}"),
                    &key,
                )
                .json(&json!({ "value": value, "secret": secret }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{:?}", r.text().await);
        }
    };
    set("CLASSIFIER_URL", format!("{origin}/classify"), false).await;
    set("INDEX_URL", format!("{origin}/index"), false).await;
    set("CLASSIFIER_TOKEN", TOKEN.into(), true).await;

    let url = format!("{origin}/docs/report.md");
    let r = p
        .req(Method::POST, "/invoke/ingest", &key)
        .header("prefer", "respond-async")
        .json(&json!({ "url": url }))
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
    // The document and its four sections (the intro is one).
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        (run["total"].as_u64(), run["succeeded"].as_u64()),
        (Some(5), Some(5)),
        "{run}"
    );
    let (_, root) = p.get(&key, &format!("/invocations/{run_id}")).await;
    let out: Value = serde_json::from_str(root["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        out,
        json!({ "url": url, "sections": 4, "labels": { "billing": 1, "general": 2, "incident": 1 } })
    );
    let seen_now = seen.lock().unwrap().clone();
    let classify: Vec<_> = seen_now.iter().filter(|s| s.0 == "classify").collect();
    assert_eq!(classify.len(), 1, "{seen_now:?}");
    assert_eq!(classify[0].1, format!("Bearer {TOKEN}"));
    let mut indexed: Vec<(u64, String, String)> = seen_now
        .iter()
        .filter(|s| s.0 == "index")
        .map(|s| {
            assert_eq!(s.1, format!("Bearer {TOKEN}"));
            (
                s.2["index"].as_u64().unwrap(),
                s.2["title"].as_str().unwrap().to_string(),
                s.2["label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    indexed.sort();
    assert_eq!(
        indexed,
        [
            (0, "report.md", "general"),
            (1, "Incidents", "incident"),
            (2, "Refunds", "billing"),
            (3, "Hiring", "general"),
        ]
        .map(|(i, t, l)| (i, t.to_string(), l.to_string()))
    );
    // The secret is nowhere in what the API shows.
    let (_, vars) = p.get(&key, "/functions/ingest/variables").await;
    assert!(!vars.to_string().contains(TOKEN), "{vars}");

    // A wrong token: the API refuses, the document fails once (401 is not
    // worth retrying) and is dead-lettered with the reason.
    set("CLASSIFIER_TOKEN", "wrong".into(), true).await;
    let r = p
        .req(Method::POST, "/invoke/ingest", &key)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["code"], &body["error"]["code"], &body["message"]),
        (
            &json!("processor_error"),
            &json!("upstream-refused"),
            &json!("processor error `upstream-refused`: the classification API answered 401")
        ),
        "{body}"
    );
    assert_eq!(body["attempts"], 1, "not retried: {body}");
}
