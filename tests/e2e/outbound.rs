//! Outbound HTTP from processors (`wasi:http`), against real local HTTP
//! servers: allowed origins work, everything else is refused with an error
//! the record and the log name, and the invocation's limits (requests,
//! body bytes, deadline) hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::response::IntoResponse;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::Platform;

/// What the test server saw.
#[derive(Default)]
pub(crate) struct Seen {
    /// Requests that reached `/doc`.
    doc: AtomicU64,
    /// Any request at all.
    any: AtomicU64,
}

/// A local HTTP server: `/doc` (a small text that echoes the
/// `traceparent` it got), `/slow` (answers after 30 s), `/big` (2 MiB with
/// a length), `/stream` (2 MiB chunked), `/redirect?to=URL` (302).
pub(crate) async fn server(seen: Arc<Seen>) -> u16 {
    use axum::routing::get;
    let s = seen.clone();
    let app = axum::Router::new()
        .route(
            "/doc",
            get(move |headers: HeaderMap| {
                let s = s.clone();
                async move {
                    s.doc.fetch_add(1, Ordering::SeqCst);
                    let tp = headers
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_string();
                    ([("x-seen-traceparent", tp)], "hello world")
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 2 << 20] }))
        .route(
            "/stream",
            get(|| async {
                let chunks = (0..32).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 << 10]));
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/redirect",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    (
                        AxumStatus::FOUND,
                        [(header::LOCATION, q.get("to").cloned().unwrap_or_default())],
                    )
                        .into_response()
                },
            ),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let seen = seen.clone();
                async move {
                    seen.any.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// Invokes `fetch` with `input`: the HTTP status, the answer's JSON, and
/// the invocation's record.
async fn fetch(p: &Platform, key: &str, input: Value) -> (StatusCode, Value, Value) {
    let r = p
        .req(Method::POST, "/invoke/fetch", key)
        .json(&input)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let id = r.headers()["x-eddy-invocation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = r.json().await.unwrap();
    let (_, record) = p.get(key, &format!("/invocations/{id}")).await;
    (status, body, record)
}

/// The `host` lines of a record's log.
fn host_lines(record: &Value) -> Vec<String> {
    record["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["source"] == "host")
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

/// The test's server, an `eddy up` whose workers may reach the internal
/// addresses `allowlist` names, and a tenant: (what the server saw, its
/// port, the platform, the tenant's key, the server's origin).
async fn setup(allowlist: &str) -> (Arc<Seen>, u16, Platform, String, String) {
    let seen = Arc::new(Seen::default());
    let port = server(seen.clone()).await;
    let p = Platform::start(&[("EDDY_OUTBOUND_ALLOWLIST", allowlist)]);
    let (key, _) = p.tenant("acme", json!({})).await;
    (seen, port, p, key, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_reaches_allowed_origins_only_within_the_limits() {
    // The operator lets processors reach loopback (the test's server).
    let (seen, port, p, key, origin) = setup("127.0.0.0/8").await;
    p.deploy(
        &key,
        "fetch",
        "fx-fetch",
        &format!(
            "?allowed_hosts={origin}&max_retries=0&timeout_ms=3000&max_outbound_bytes=1048576&max_outbound_requests=3"
        ),
    )
    .await;

    // An allowed origin: the response, and the request in the record.
    let (status, out, rec) = fetch(&p, &key, json!({ "url": format!("{origin}/doc") })).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["last"]["status"], 200, "{out}");
    assert_eq!(out["last"]["body"], "hello world", "{out}");
    let call = &rec["outbound"][0];
    assert_eq!(
        (
            &call["method"],
            &call["origin"],
            &call["status"],
            &call["bytes_in"]
        ),
        (&json!("GET"), &json!(origin), &json!(200), &json!(11)),
        "{rec}"
    );
    assert!(call.get("error").is_none(), "{rec}");
    assert_eq!(seen.doc.load(Ordering::SeqCst), 1);

    // Another origin (same address, another name): denied before any
    // connection, an error the guest sees, named in the record and the log.
    let other = format!("http://localhost:{port}");
    let before = seen.any.load(Ordering::SeqCst);
    let (status, out, rec) = fetch(&p, &key, json!({ "url": format!("{other}/doc") })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["code"], "processor_error", "{out}");
    assert_eq!(
        out["message"],
        format!("processor error `http`: request to {other} failed: HTTP-request-denied"),
        "{out}"
    );
    let why = format!("denied: `{other}` is not in this function's allowed_hosts");
    assert_eq!(rec["outbound"][0]["error"], why.as_str(), "{rec}");
    assert_eq!(
        host_lines(&rec),
        vec![format!("outbound GET {other}: {why}")]
    );
    assert_eq!(
        seen.any.load(Ordering::SeqCst),
        before,
        "a denied request went out"
    );

    // The same with a body: the guest is told the request was denied, not
    // that its body could not be written.
    let (_, out, _) = fetch(
        &p,
        &key,
        json!({ "url": format!("{other}/doc"), "method": "POST", "body": "x".repeat(100_000) }),
    )
    .await;
    assert_eq!(
        out["message"],
        format!("processor error `http`: request to {other} failed: HTTP-request-denied"),
        "{out}"
    );

    // A redirect to an origin that is not allowed is not followed: the
    // guest gets the 302, and its own request to the new location is
    // denied like any other.
    let (status, _, rec) = fetch(
        &p,
        &key,
        json!({ "url": format!("{origin}/redirect?to={other}/doc"), "follow": true }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rec}");
    assert_eq!(rec["outbound"][0]["status"], 302, "{rec}");
    assert_eq!(rec["outbound"][1]["error"], why.as_str(), "{rec}");
    assert_eq!(
        seen.doc.load(Ordering::SeqCst),
        1,
        "the redirect was followed"
    );

    // A slow server is stopped at the invocation's deadline (3 s; it would
    // answer after 30 s).
    let started = Instant::now();
    let (status, out, rec) = fetch(&p, &key, json!({ "url": format!("{origin}/slow") })).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["code"], "timeout", "{out}");
    assert_eq!(
        out["message"], "timeout: exceeded the limit of 3000 ms",
        "{out}"
    );
    assert_eq!(
        rec["outbound"][0]["error"], "stopped at the invocation's deadline",
        "{rec}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");

    // Responses over the byte limit (1 MiB): announced by their length, or
    // found while streaming. The invocation is limit-exceeded whether the
    // guest carried on (`ignore_errors`) or returned its own error.
    for (path, ignore_errors, detail) in [
        (
            "/big",
            true,
            "the response's 2097152 bytes would take the invocation's outbound bodies past the limit of 1048576 bytes",
        ),
        (
            "/stream",
            false,
            "the invocation's outbound bodies exceed the limit of 1048576 bytes",
        ),
    ] {
        let (status, out, rec) = fetch(
            &p,
            &key,
            json!({ "url": format!("{origin}{path}"), "ignore_errors": ignore_errors }),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {out}");
        assert_eq!(out["code"], "limit_exceeded", "{path}: {out}");
        assert_eq!(
            out["message"],
            format!("limit exceeded: outbound-bytes: {detail}"),
            "{path}: {out}"
        );
        assert_eq!(rec["outbound"][0]["error"], detail, "{path}: {rec}");
    }

    // More requests than max_outbound_requests (3): the fourth is refused
    // and the invocation ends limit-exceeded. The record keeps the first
    // refused one only, however many the guest goes on asking for.
    let (status, out, rec) = fetch(
        &p,
        &key,
        json!({ "url": format!("{origin}/doc"), "repeat": 50, "ignore_errors": true }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(
        out["message"],
        "limit exceeded: outbound-requests: the invocation made more than 3 outbound requests",
        "{out}"
    );
    assert_eq!(rec["outbound"].as_array().unwrap().len(), 4, "{rec}");
    assert_eq!(host_lines(&rec).len(), 1, "{rec}");

    // A bad allowed_hosts entry is refused at deploy and PATCH.
    for bad in ["ftp://example.com", "https://example.com/path"] {
        let r = p
            .req(Method::PATCH, "/functions/fetch", &key)
            .json(&json!({ "allowed_hosts": [bad] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["message"].as_str().unwrap().starts_with(&format!(
                "invalid function config: allowed_hosts: `{bad}`: "
            )),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_unless_the_operator_allows_them() {
    // No EDDY_OUTBOUND_ALLOWLIST: loopback is refused whatever the
    // function allows.
    let (seen, port, p, key, literal) = setup("").await;
    let name = format!("http://localhost:{port}");
    p.deploy(
        &key,
        "fetch",
        "fx-fetch",
        &format!("?allowed_hosts={literal},{name}&max_retries=0"),
    )
    .await;

    let (status, out, rec) = fetch(&p, &key, json!({ "url": format!("{literal}/doc") })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(
        out["message"],
        format!("processor error `http`: request to {literal} failed: destination-IP-prohibited"),
        "{out}"
    );
    assert_eq!(
        rec["outbound"][0]["error"],
        "refused: 127.0.0.1 is a loopback address, which the operator does not allow (EDDY_OUTBOUND_ALLOWLIST)",
        "{rec}"
    );

    // A name that resolves to a refused address is refused at connect time,
    // on the address it resolved to.
    let (status, _, rec) = fetch(&p, &key, json!({ "url": format!("{name}/doc") })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rec}");
    // The refused address is not named: that would show the tenant the
    // operator's network.
    assert_eq!(
        rec["outbound"][0]["error"],
        "refused: `localhost` resolves only to internal or special-purpose addresses, which the operator does not allow (EDDY_OUTBOUND_ALLOWLIST)",
        "{rec}"
    );
    assert_eq!(
        seen.any.load(Ordering::SeqCst),
        0,
        "a refused request went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_componentize_js_processor_fetches_allowed_origins_only() {
    let (seen, port, p, key, origin) = setup("127.0.0.1").await;
    // Built with componentize-js's default features: `fetch` imports
    // wasi:http (scripts/js-guests.sh).
    let r = p
        .req(
            Method::PUT,
            &format!("/functions/jsfetch?allowed_hosts={origin}&max_retries=0"),
            &key,
        )
        .body(eddy_tests::js_wasm("fetch"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);

    let invoke = |url: String| {
        p.req(Method::POST, "/invoke/jsfetch", &key)
            .json(&json!({ "url": url }))
            .send()
    };
    let r = invoke(format!("{origin}/doc")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out, json!({ "status": 200, "body": "hello world" }));

    // Not allowed: JavaScript gets its usual TypeError, and the record and
    // the log say which origin and why.
    let other = format!("http://localhost:{port}");
    let r = invoke(format!("{other}/doc")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        out["message"],
        format!(
            "processor error `fetch-failed`: fetch {other}: TypeError: NetworkError when attempting to fetch resource"
        ),
        "{out}"
    );
    let id = out["invocation_id"].as_str().unwrap();
    let (_, rec) = p.get(&key, &format!("/invocations/{id}")).await;
    let why = format!("denied: `{other}` is not in this function's allowed_hosts");
    assert_eq!(rec["outbound"][0]["error"], why.as_str(), "{rec}");
    assert_eq!(
        host_lines(&rec),
        vec![format!("outbound GET {other}: {why}")]
    );
    assert_eq!(seen.doc.load(Ordering::SeqCst), 1);
}
