//! OpenTelemetry: one trace follows a request from the gateway's handler
//! through queue wait, cold start, execution, every follow-up (as children)
//! and the run's callback, across processes. The test serves a real OTLP/HTTP
//! endpoint, decodes the protobuf the processes export, and checks the tree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value as AnyValue};
use prost::Message;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::{ADMIN, Received, receiver};
use eddy_tests::*;

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    pub(crate) name: String,
    kind: i32,
    start: u64,
    end: u64,
    pub(crate) attrs: HashMap<String, String>,
    events: Vec<(String, HashMap<String, String>)>,
    status: i32,
    pub(crate) status_message: String,
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

pub(crate) type Spans = Arc<Mutex<Vec<Got>>>;

/// An OTLP/HTTP trace endpoint: `POST /v1/traces` with protobuf bodies.
pub(crate) async fn otlp_receiver(port: u16, spans: Spans) {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| {
            let spans = spans.clone();
            async move {
                let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                    return StatusCode::BAD_REQUEST;
                };
                let mut out = spans.lock().unwrap();
                for rs in req.resource_spans {
                    let res = attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
                    let service = res.get("service.name").cloned().unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Got {
                                service: service.clone(),
                                trace_id: hex::encode(&s.trace_id),
                                span_id: hex::encode(&s.span_id),
                                parent: hex::encode(&s.parent_span_id),
                                name: s.name.clone(),
                                kind: s.kind,
                                start: s.start_time_unix_nano,
                                end: s.end_time_unix_nano,
                                attrs: attrs(&s.attributes),
                                events: s
                                    .events
                                    .iter()
                                    .map(|e| (e.name.clone(), attrs(&e.attributes)))
                                    .collect(),
                                status: s.status.as_ref().map(|st| st.code).unwrap_or(0),
                                status_message: s
                                    .status
                                    .as_ref()
                                    .map(|st| st.message.clone())
                                    .unwrap_or_default(),
                            });
                        }
                    }
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;
const KIND_CONSUMER: i32 = 5;
const STATUS_OK: i32 = 1;

/// A gateway and `workers` exporting to an OTLP receiver, with a tenant.
struct Traced {
    spans: Spans,
    base: String,
    http: reqwest::Client,
    key: String,
    secret: String,
    _processes: Vec<EddyProcess>,
    _cache: tempfile::TempDir,
    _redis: RedisServer,
}

impl Traced {
    async fn start(env: &[(&str, &str)], workers: &[&str]) -> Self {
        let redis = RedisServer::start();
        let otlp = free_port();
        let spans: Spans = Arc::default();
        otlp_receiver(otlp, spans.clone()).await;
        let endpoint = format!("http://127.0.0.1:{otlp}");
        let mut all = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ];
        all.extend_from_slice(env);
        let cache = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut processes = vec![EddyProcess::gateway_with(
            &redis.url(),
            cache.path(),
            port,
            &all,
        )];
        for name in workers {
            processes.push(EddyProcess::worker(&redis.url(), cache.path(), name, &all));
        }
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/tenants"))
            .bearer_auth(ADMIN)
            .json(&json!({ "id": "traced" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        Traced {
            spans,
            base,
            http,
            key: body["key"].as_str().unwrap().to_string(),
            secret: body["webhook_secret"].as_str().unwrap().to_string(),
            _processes: processes,
            _cache: cache,
            _redis: redis,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_run_is_one_trace_from_the_handler_to_the_run_callback() {
    let t = Traced::start(&[("EDDY_CALLBACK_ALLOWLIST", "127.0.0.1")], &["w1", "w2"]).await;
    let (spans, base, http, key, secret) = (&t.spans, &t.base, &t.http, &t.key, &t.secret);
    let r = http
        .request(Method::PUT, format!("{base}/functions/fanout"))
        .bearer_auth(key)
        .body(wasm("fanout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let hook_port = free_port();
    let received: Received = Arc::default();
    let _hook = receiver(hook_port, secret, received.clone()).await;

    // The caller's own trace: the gateway's span must be its child.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = http
        .post(format!("{base}/invoke/fanout"))
        .bearer_auth(key)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("prefer", "respond-async")
        .header(
            "x-run-callback-url",
            format!("http://127.0.0.1:{hook_port}/hook"),
        )
        .body(r#"{"branch":2,"depth":2,"log":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let accepted: Value = r.json().await.unwrap();
    let run_id = accepted["run_id"].as_str().unwrap().to_string();

    // 1 + 2 + 4 invocations, then the run callback.
    wait_for(Duration::from_secs(30), "the run callback", || {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(id, _)| *id == format!("msg_run_{run_id}"))
    });
    wait_for(Duration::from_secs(15), "the exported spans", || {
        let s = spans.lock().unwrap();
        s.iter().filter(|g| g.name == "invoke fanout").count() == 7
            && s.iter().any(|g| g.name == "callback run")
            && s.iter().filter(|g| g.name == "queue wait").count() == 7
            && s.iter().filter(|g| g.name == "execute").count() == 7
    });
    // Let stragglers of the same batch arrive, then judge the tree.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: Vec<Got> = spans.lock().unwrap().clone();
    let ours: Vec<&Got> = all.iter().filter(|g| g.trace_id == trace_id).collect();
    assert!(
        all.iter()
            .filter(|g| g.name.starts_with("invoke ") || g.name.starts_with("POST "))
            .all(|g| g.trace_id == trace_id),
        "every span of the request is in the caller's trace: {all:#?}"
    );
    let by_id: HashMap<&str, &Got> = ours.iter().map(|g| (g.span_id.as_str(), *g)).collect();
    let children = |id: &str| -> Vec<&Got> {
        ours.iter()
            .filter(|g| g.parent == id)
            .copied()
            .collect::<Vec<_>>()
    };

    // The handler: a server span of the gateway, child of the caller.
    let server: Vec<&&Got> = ours
        .iter()
        .filter(|g| g.name == "POST /invoke/{name}")
        .collect();
    assert_eq!(server.len(), 1, "{ours:#?}");
    let server = server[0];
    assert_eq!(
        (server.parent.as_str(), server.kind, server.service.as_str()),
        (caller_span, KIND_SERVER, "eddy-gateway")
    );
    assert_eq!(server.attrs["http.response.status_code"], "202");
    assert_eq!(server.attrs["eddy.run_id"], run_id);
    // Its round trip to Redis, a client span of its own within it.
    let enqueue: Vec<&Got> = children(&server.span_id)
        .into_iter()
        .filter(|g| g.name == "enqueue")
        .collect();
    assert_eq!(enqueue.len(), 1, "{ours:#?}");
    assert_eq!(
        (enqueue[0].kind, enqueue[0].service.as_str()),
        (KIND_CLIENT, "eddy-gateway")
    );
    assert!(server.start <= enqueue[0].start && enqueue[0].end <= server.end);

    // The invocations: a tree rooted at the handler, each a child of the
    // invocation that emitted it, as deep as the run.
    let invocations: Vec<&Got> = ours
        .iter()
        .filter(|g| g.name == "invoke fanout")
        .copied()
        .collect();
    assert_eq!(invocations.len(), 7);
    let inv_by_id: HashMap<&str, &Got> = invocations
        .iter()
        .map(|g| (g.attrs["eddy.invocation_id"].as_str(), *g))
        .collect();
    let mut per_depth = [0; 3];
    let mut cold = 0;
    for inv in &invocations {
        assert_eq!(
            (inv.kind, inv.service.as_str(), inv.status),
            (KIND_CONSUMER, "eddy-worker", STATUS_OK)
        );
        assert_eq!(inv.attrs["eddy.run_id"], run_id);
        assert_eq!(inv.attrs["eddy.outcome"], "succeeded");
        let depth: usize = inv.attrs["eddy.depth"].parse().unwrap();
        per_depth[depth] += 1;
        if depth == 0 {
            assert_eq!(
                inv.parent, server.span_id,
                "the root is the handler's child"
            );
        } else {
            let parent = inv_by_id[inv.attrs["eddy.parent_id"].as_str()];
            assert_eq!(
                inv.parent, parent.span_id,
                "a follow-up is a child of the invocation that emitted it"
            );
            assert!(inv.start >= parent.start);
        }
        // Queue wait: from the enqueue to the dequeue, an attribute and a
        // child span that ends where the invocation starts.
        let wait: f64 = inv.attrs["eddy.queue_wait_ms"].parse().unwrap();
        assert!((0.0..10_000.0).contains(&wait), "{wait}");
        let kids = children(&inv.span_id);
        let names: Vec<&str> = kids.iter().map(|k| k.name.as_str()).collect();
        let qw = kids
            .iter()
            .find(|k| k.name == "queue wait")
            .unwrap_or_else(|| panic!("no queue wait under {inv:#?}: {names:?}"));
        assert!(qw.attrs.contains_key("eddy.queue_wait_ms"));
        assert!(qw.start <= qw.end && qw.end <= inv.start + 5_000_000);
        // Cold or warm, an attribute; a cold start also a span of its own.
        let cold_start = kids.iter().find(|k| k.name == "cold start");
        match inv.attrs["eddy.cold_start"].as_str() {
            "true" => {
                cold += 1;
                let span = cold_start.unwrap_or_else(|| panic!("no cold start span: {names:?}"));
                let ms: f64 = span.attrs["eddy.cold_start_ms"].parse().unwrap();
                assert!(ms > 0.0 && span.start <= span.end);
                assert_eq!(inv.attrs["eddy.cold_start_ms"].parse::<f64>().unwrap(), ms);
            }
            "false" => assert!(cold_start.is_none(), "{names:?}"),
            other => panic!("eddy.cold_start = {other}"),
        }
        // The execution, with the guest's log line as a span event.
        let exec = kids
            .iter()
            .find(|k| k.name == "execute")
            .unwrap_or_else(|| panic!("no execute span: {names:?}"));
        let want = format!("depth {depth}: emitting {}", if depth < 2 { 2 } else { 0 });
        assert!(
            exec.events
                .iter()
                .any(|(name, a)| *name == want && a["log_source"] == "log"),
            "guest log as an event: {:?}",
            exec.events
        );
        assert!(names.contains(&"complete"), "{names:?}");
    }
    assert_eq!(per_depth, [1, 2, 4]);
    assert!(
        cold >= 1,
        "the first invocation on a worker is a cold start"
    );

    // The run callback closes the trace: a client span under the invocation
    // that completed the run.
    let cb: Vec<&&Got> = ours.iter().filter(|g| g.name == "callback run").collect();
    assert_eq!(cb.len(), 1);
    let cb = cb[0];
    assert_eq!((cb.kind, cb.status), (KIND_CLIENT, STATUS_OK));
    assert_eq!(cb.attrs["eddy.callback.id"], run_id);
    let completer = by_id[cb.parent.as_str()];
    assert_eq!(completer.name, "invoke fanout");
    assert_eq!(completer.attrs["eddy.depth"], "2", "the run ends on a leaf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_request_is_a_client_span_whose_traceparent_the_server_gets() {
    let server = crate::outbound::server(Arc::default()).await;
    let t = Traced::start(&[("EDDY_OUTBOUND_ALLOWLIST", "127.0.0.1")], &["w1"]).await;
    let (spans, base, http, key) = (&t.spans, &t.base, &t.http, &t.key);
    let origin = format!("http://127.0.0.1:{server}");
    let r = http
        .put(format!("{base}/functions/fetch?allowed_hosts={origin}"))
        .bearer_auth(key)
        .body(wasm("fx-fetch"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let r = http
        .post(format!("{base}/invoke/fetch"))
        .bearer_auth(key)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({ "url": format!("{origin}/doc") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.unwrap();
    // The server got a child of the invocation's trace.
    let sent = out["last"]["traceparent_sent"]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[1], parts[3]),
        (4, "00", trace_id, "01"),
        "{sent}"
    );

    wait_for(Duration::from_secs(15), "the outbound span", || {
        spans.lock().unwrap().iter().any(|g| g.name == "outbound")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: Vec<Got> = spans.lock().unwrap().clone();
    let outbound: Vec<&Got> = all.iter().filter(|g| g.name == "outbound").collect();
    assert_eq!(outbound.len(), 1, "{all:#?}");
    let span = outbound[0];
    // The span the server's traceparent names, a client span under the
    // invocation's execution.
    assert_eq!(
        (span.trace_id.as_str(), span.span_id.as_str(), span.kind),
        (trace_id, parts[2], KIND_CLIENT)
    );
    let parent = all
        .iter()
        .find(|g| g.span_id == span.parent)
        .unwrap_or_else(|| panic!("no parent of {span:#?}"));
    assert_eq!(parent.name, "execute");
    assert_eq!(span.attrs["url.origin"], origin);
    assert_eq!(span.attrs["http.request.method"], "GET");
    assert_eq!(span.attrs["http.response.status_code"], "200");
    assert_eq!(span.attrs["eddy.bytes_in"], "11");
    assert!(span.start <= span.end);
}

/// An `eddy:processor@0.2.0` guest gets its tenant, the version that runs,
/// its deadline and the trace context of its invocation's span; a component
/// built for 0.1.0, deployed beside it, still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sees_its_tenant_version_deadline_and_trace_and_0_1_0_still_runs() {
    let t = Traced::start(&[], &["w1"]).await;
    let (spans, base, http, key) = (&t.spans, &t.base, &t.http, &t.key);
    let deploy = |name: &'static str, guest: &'static str| async move {
        let r = http
            .put(format!("{base}/functions/{name}?timeout_ms=4000"))
            .bearer_auth(key)
            .body(wasm(guest))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    };
    deploy("meta", "echo").await;
    deploy("meta", "fx-meta").await;
    deploy("old", "fx-world-0-1").await;

    let trace_id = "5b8aa5a2d2c872e8321cf37308d69df2";
    let before = eddy_protocol::now_ms();
    let r = http
        .post(format!("{base}/invoke/meta"))
        .bearer_auth(key)
        .header("traceparent", format!("00-{trace_id}-051581bf3cb55c13-01"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.unwrap();
    let after = eddy_protocol::now_ms();
    assert_eq!(
        (&out["tenant"], &out["version"], &out["function"]),
        (&json!("traced"), &json!(2), &json!("meta")),
        "{out}"
    );
    let deadline = out["deadline_ms"].as_u64().unwrap();
    assert!(
        (before + 4_000..=after + 4_000).contains(&deadline),
        "{before} {deadline} {after}"
    );
    let tp = out["traceparent"].as_str().unwrap().to_string();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts.len(), parts[1]), (4, trace_id), "{tp}");
    // It names the invocation's span.
    wait_for(Duration::from_secs(15), "the invocation's span", || {
        spans
            .lock()
            .unwrap()
            .iter()
            .any(|g| g.span_id == parts[2] && g.trace_id == trace_id)
    });
    let named = spans
        .lock()
        .unwrap()
        .iter()
        .find(|g| g.span_id == parts[2])
        .map(|g| g.name.clone());
    assert_eq!(named.as_deref(), Some("invoke meta"));

    let r = http
        .post(format!("{base}/invoke/old"))
        .bearer_auth(key)
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        out,
        json!({"world": "0.1.0", "function": "old", "attempt": 1, "bytes": 3})
    );
}
