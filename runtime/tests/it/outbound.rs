//! Outbound HTTP refusals that happen before any connection: what a guest
//! asks for that the host will not send, and what the record keeps of it.
//! (Requests that reach a server are in `tests/e2e/outbound.rs`.)

use eddy_protocol::AllowedHosts;
use eddy_runtime::{InvokeError, LimitKind, Limits, LogSource};

use crate::support::{input, load, run};

fn allowing(hosts: &[&str], max_requests: u32) -> Limits {
    let mut limits = Limits::default();
    limits.outbound.allowed_hosts = AllowedHosts::parse(hosts).unwrap();
    limits.outbound.max_requests = max_requests;
    limits
}

async fn fetch(body: serde_json::Value, limits: &Limits) -> eddy_runtime::Report {
    run(&load("fx-fetch"), input("fetch", &body.to_string()), limits).await
}

#[tokio::test]
async fn requests_the_host_will_not_send_are_refused_and_recorded() {
    let any = allowing(&["*://*:*"], 10);
    let long = "a".repeat(300);
    for (body, origin, why) in [
        (
            serde_json::json!({ "url": format!("http://{long}.example/x") }),
            "http://<a host of 308 bytes>".to_string(),
            "the host must be 1 to 253 bytes",
        ),
        (
            serde_json::json!({ "url": "http://api.example/x", "method": "CONNECT" }),
            "http://api.example".to_string(),
            "CONNECT requests are not allowed",
        ),
        (
            serde_json::json!({ "url": "http://api.example/x", "method": "TRACE" }),
            "http://api.example".to_string(),
            "TRACE requests are not allowed",
        ),
    ] {
        let report = fetch(body.clone(), &any).await;
        assert!(
            matches!(&report.result, Err(InvokeError::Processor { code, .. }) if code == "http"),
            "{body}: {:?}",
            report.result
        );
        assert_eq!(report.outbound.len(), 1, "{body}");
        let call = &report.outbound[0].call;
        assert_eq!(
            (call.origin.as_str(), call.error.as_deref()),
            (origin.as_str(), Some(why))
        );
        let notes: Vec<_> = report
            .logs
            .iter()
            .filter(|l| l.source == LogSource::Host)
            .collect();
        assert_eq!(notes.len(), 1, "{body}");
    }
}

#[tokio::test]
async fn nothing_is_allowed_by_default_and_the_record_stays_bounded() {
    // Denied (no allowed_hosts), 200 times; the guest ignores every error.
    let limits = allowing(&[], 5);
    let report = fetch(
        serde_json::json!({ "url": "https://api.example/x", "repeat": 200, "ignore_errors": true }),
        &limits,
    )
    .await;
    match &report.result {
        Err(InvokeError::LimitExceeded { limit, detail }) => {
            assert_eq!(*limit, LimitKind::OutboundRequests);
            assert_eq!(detail, "the invocation made more than 5 outbound requests");
        }
        other => panic!("{other:?}"),
    }
    // Five denied, the first one over the limit; nothing after it.
    assert_eq!(report.outbound.len(), 6);
    assert!(report.outbound[..5].iter().all(|o| o.call.error.as_deref()
        == Some("denied: `https://api.example` is not in this function's allowed_hosts")));
    let host_lines = report
        .logs
        .iter()
        .filter(|l| l.source == LogSource::Host)
        .count();
    assert_eq!(host_lines, 6);
}

#[tokio::test]
async fn a_ceiling_of_zero_turns_outbound_off() {
    let limits = allowing(&["*://*:*"], 0);
    let report = fetch(
        serde_json::json!({ "url": "https://api.example/x" }),
        &limits,
    )
    .await;
    assert!(
        matches!(&report.result, Err(InvokeError::Processor { message, .. })
            if message == "request to https://api.example failed: HTTP-request-denied"),
        "{:?}",
        report.result
    );
    assert_eq!(
        report.outbound[0].call.error.as_deref(),
        Some("denied: outbound HTTP is turned off on this platform")
    );
}
