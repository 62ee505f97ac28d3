//! `wasi:config/store`: a guest reads its variables and secrets, and the
//! secrets it read are redacted from what the invocation reports.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eddy_protocol::variables::{Unopened, Variable};
use eddy_runtime::{Entry, FixedVariables, InvokeError, Limits, LogSource, VariableSource};

use crate::support::{input, load, output_json, run};

const SECRET: &str = "s3cr3t-Tok3n-4711";

fn var(name: &str, value: &str, secret: bool) -> Variable {
    Variable {
        name: name.into(),
        value: value.into(),
        secret,
    }
}

async fn config(
    body: serde_json::Value,
    source: Option<Arc<dyn VariableSource>>,
) -> eddy_runtime::Report {
    let mut input = input("config", &body.to_string());
    input.variables = source;
    run(&load("fx-config"), input, &Limits::default()).await
}

/// The processor error the invocation ended with: code, message, retryable.
fn processor_error(report: &eddy_runtime::Report) -> (&str, &str, bool) {
    match &report.result {
        Err(InvokeError::Processor {
            code,
            message,
            retryable,
        }) => (code, message, *retryable),
        other => panic!("{other:?}"),
    }
}

/// The lines Eddy added to the invocation's log.
fn host_notes(report: &eddy_runtime::Report) -> Vec<&str> {
    report
        .logs
        .iter()
        .filter(|l| l.source == LogSource::Host)
        .map(|l| l.message.as_str())
        .collect()
}

fn fixed() -> Option<Arc<dyn VariableSource>> {
    Some(Arc::new(FixedVariables(vec![
        var("REGION", "eu-west", false),
        var("TOKEN", SECRET, true),
    ])))
}

#[tokio::test]
async fn a_guest_reads_variables_and_secrets() {
    let report = config(
        serde_json::json!({ "show": ["REGION", "MISSING"], "all": true }),
        fixed(),
    )
    .await;
    assert_eq!(
        output_json(&report),
        serde_json::json!({
            "values": { "MISSING": null, "REGION": "eu-west" },
            "status": null,
            "names": ["REGION", "TOKEN"],
            "errors": [],
        })
    );
}

#[tokio::test]
async fn secrets_the_guest_read_are_redacted_from_logs_and_errors() {
    let report = config(
        serde_json::json!({ "print": ["TOKEN", "REGION"], "fail_with": "TOKEN" }),
        fixed(),
    )
    .await;
    assert_eq!(
        processor_error(&report),
        ("leak", "refusing with TOKEN=[redacted]", false)
    );
    let lines: Vec<(LogSource, &str)> = report
        .logs
        .iter()
        .map(|l| (l.source, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (LogSource::Stdout, "stdout says TOKEN=[redacted]"),
            (LogSource::Stderr, "stderr says TOKEN=[redacted]"),
            (LogSource::Log, "log says TOKEN=[redacted]"),
            // A plain variable is not a secret: shown as it is.
            (LogSource::Stdout, "stdout says REGION=eu-west"),
            (LogSource::Stderr, "stderr says REGION=eu-west"),
            (LogSource::Log, "log says REGION=eu-west"),
        ]
    );
    assert!(!format!("{report:?}").contains(SECRET));
}

/// Fails the first load, counting loads.
#[derive(Debug, Default)]
struct Broken(AtomicUsize);

impl VariableSource for Broken {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<Entry>, String>> + Send + 'static>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err("redis: connection refused".to_string()) })
    }
}

#[tokio::test]
async fn variables_that_cannot_be_read_are_loaded_once_per_invocation() {
    let broken = Arc::new(Broken::default());
    let report = config(
        serde_json::json!({ "try_get": ["A", "B", "C"], "all": false }),
        Some(broken.clone()),
    )
    .await;
    assert_eq!(
        output_json(&report)["errors"],
        serde_json::json!([
            "variables are unavailable: redis: connection refused",
            "variables are unavailable: redis: connection refused",
            "variables are unavailable: redis: connection refused",
        ])
    );
    assert_eq!(broken.0.load(Ordering::SeqCst), 1);
}

/// One secret that does not open.
#[derive(Debug)]
struct OneUnopened;

impl VariableSource for OneUnopened {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<Entry>, String>> + Send + 'static>> {
        Box::pin(async {
            Ok(vec![
                Ok(var("REGION", "eu-west", false)),
                Err(Unopened {
                    name: "TOKEN".into(),
                    reason: "it was sealed with key `k0`, which this process does not have".into(),
                }),
            ])
        })
    }
}

#[tokio::test]
async fn a_secret_that_does_not_open_fails_its_own_reads_only() {
    let report = config(
        serde_json::json!({ "try_get": ["TOKEN"], "show": ["REGION"] }),
        Some(Arc::new(OneUnopened)),
    )
    .await;
    let out = output_json(&report);
    let why = "secret `TOKEN` cannot be opened: it was sealed with key `k0`, which this process does not have";
    assert_eq!(out["errors"], serde_json::json!([why]));
    assert_eq!(out["values"], serde_json::json!({ "REGION": "eu-west" }));
    let notes = host_notes(&report);
    assert_eq!(notes, [why]);
    // get-all cannot give everything: it says which.
    let report = config(
        serde_json::json!({ "all": true }),
        Some(Arc::new(OneUnopened)),
    )
    .await;
    assert_eq!(processor_error(&report), ("config-unavailable", why, true));
}

#[tokio::test]
async fn variables_that_cannot_be_read_are_a_retryable_error() {
    let broken = Arc::new(Broken::default());
    let report = config(
        serde_json::json!({ "show": ["A", "B", "C"] }),
        Some(broken.clone()),
    )
    .await;
    assert_eq!(
        processor_error(&report),
        (
            "config-unavailable",
            "variables are unavailable: redis: connection refused",
            true
        )
    );
    let notes = host_notes(&report);
    assert_eq!(notes, ["variables: redis: connection refused"]);
}

#[tokio::test]
async fn without_a_source_nothing_is_set() {
    let report = config(serde_json::json!({ "print": ["TOKEN"] }), None).await;
    assert_eq!(
        processor_error(&report),
        (
            "config-missing",
            "variable `TOKEN` is not set (eddy var set TOKEN ...)",
            false
        )
    );
}

#[tokio::test]
async fn the_longest_secret_is_redacted_whole() {
    // 8 KiB, the most a value may be.
    let long = "Z".repeat(8 << 10);
    let source: Arc<dyn VariableSource> = Arc::new(FixedVariables(vec![var("BIG", &long, true)]));
    let report = config(serde_json::json!({ "fail_with": "BIG" }), Some(source)).await;
    assert_eq!(
        processor_error(&report),
        ("leak", "refusing with BIG=[redacted]", false)
    );
}
