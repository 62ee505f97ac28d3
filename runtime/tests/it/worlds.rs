//! The worlds Eddy runs: `eddy:processor@0.2.0` gives the guest its tenant,
//! version, deadline and trace context; a component built for 0.1.0 keeps
//! running with the same host (log, emit, output, errors).

use std::time::Duration;

use eddy_runtime::{Input, InvokeError, LimitKind, Limits};

use crate::support::*;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_0_2_0_guest_sees_its_tenant_version_deadline_and_trace() {
    let p = load("fx-meta");
    assert_eq!(p.world(), "eddy:processor@0.2.0");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = Input {
        tenant: "acme".into(),
        version: 7,
        traceparent: Some(traceparent.into()),
        attempt: 2,
        ..input("meta", "{}")
    };
    let limits = Limits {
        timeout: Duration::from_millis(1_500),
        ..Limits::default()
    };
    let before = now_ms();
    let report = run(&p, traced, &limits).await;
    let after = now_ms();
    let out = output_json(&report);
    assert_eq!(out["tenant"], "acme");
    assert_eq!(out["version"], 7);
    assert_eq!(out["attempt"], 2);
    assert_eq!(out["function"], "meta");
    assert_eq!(out["traceparent"], traceparent);
    // The deadline is the timeout from the attempt's start.
    let deadline = out["deadline_ms"].as_u64().unwrap();
    assert!(
        (before + 1_500..=after + 1_500).contains(&deadline),
        "{before} {deadline} {after}"
    );
    let left = out["time_left_ms"].as_u64().unwrap();
    assert!((1..=1_500).contains(&left), "{left}");

    // Untraced: no trace context.
    let report = run(&p, input("meta", "{}"), &Limits::default()).await;
    assert_eq!(output_json(&report)["traceparent"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_0_1_0_guest_keeps_running() {
    let p = load("fx-world-0-1");
    assert_eq!(p.world(), "eddy:processor@0.1.0");
    let mut i = input("old", "12345");
    i.config = vec![("next".into(), "echo".into())];
    let report = run(&p, i, &Limits::default()).await;
    assert_eq!(
        output_json(&report),
        serde_json::json!({"world": "0.1.0", "function": "old", "attempt": 1, "bytes": 5})
    );
    assert_eq!(report.emits.len(), 1);
    assert_eq!(report.emits[0].function, "echo");
    assert_eq!(report.emits[0].payload, br#"{"from":"0.1.0"}"#);
    assert_eq!(report.emits[0].content_type, "application/json");
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.message == "a 0.1.0 processor ran"),
        "{:?}",
        report.logs
    );
    // Its limits are the host's: an emit over `max_emits` ends it.
    let mut i = input("old", "{}");
    i.config = vec![("next".into(), "echo".into())];
    let limits = Limits {
        max_emits: 0,
        ..Limits::default()
    };
    let report = run(&p, i, &limits).await;
    assert!(
        matches!(
            report.result,
            Err(InvokeError::LimitExceeded {
                limit: LimitKind::Emits,
                ..
            })
        ),
        "{:?}",
        report.result
    );
    assert!(report.emits.is_empty());
}
