//! The example processors do what their docs say, through the real runtime.

use eddy_runtime::{Input, Limits, LogLevel, LogSource};

use crate::support::{input, invoke, load, output_json, run};

#[tokio::test]
async fn wordcount_counts() {
    let report = invoke(
        "wordcount",
        r#"{"text":"The cat and the hat. THE END"}"#,
        &Limits::default(),
    )
    .await;
    let out = output_json(&report);
    assert_eq!(out["words"], 7);
    assert_eq!(out["unique"], 5);
    assert_eq!(out["top"][0], serde_json::json!(["the", 3]));
    assert!(report.emits.is_empty());
}

#[tokio::test]
async fn echo_returns_the_payload_and_its_content_type() {
    let p = load("echo");
    let mut i = input("echo", "hello");
    i.content_type = "text/plain".into();
    let report = run(&p, i, &Limits::default()).await;
    let out = report.result.unwrap();
    assert_eq!(out.payload, b"hello");
    assert_eq!(out.content_type, "text/plain");
}

#[tokio::test]
async fn fanout_emits_until_its_depth() {
    let p = load("fanout");
    let payload = r#"{"branch":4,"depth":2}"#;
    let report = run(&p, input("fanout", payload), &Limits::default()).await;
    assert_eq!(report.emits.len(), 4);
    assert!(report.emits.iter().all(|e| e.function == "fanout"));
    let leaf = Input {
        depth: 2,
        ..input("fanout", payload)
    };
    let report = run(&p, leaf, &Limits::default()).await;
    assert!(report.emits.is_empty());
    assert_eq!(output_json(&report)["emitted"], 0);
}

#[tokio::test]
async fn classify_labels_csv_rows_with_config_thresholds() {
    let p = load("classify");
    let mut i = input("classify", "1,50,DE,books\n2,5000,US,cars\n3,10,KP,food\n");
    i.content_type = "text/csv".into();
    i.config = vec![("high_amount".into(), "1000".into())];
    let report = run(&p, i, &Limits::default()).await;
    let out = output_json(&report);
    assert_eq!(out["rows"], 3);
    assert_eq!(
        out["labels"],
        serde_json::json!({"ok": 1, "review": 1, "blocked": 1})
    );
}

#[tokio::test]
async fn flaky_succeeds_on_its_third_attempt() {
    let p = load("fx-flaky");
    let third = Input {
        attempt: 3,
        ..input("fx-flaky", "{}")
    };
    let report = run(&p, third, &Limits::default()).await;
    assert_eq!(output_json(&report)["attempt"], 3);
}

#[tokio::test]
async fn webhook_shaper_normalises_and_logs() {
    let p = load("webhook-shaper");
    let mut i = input(
        "webhook-shaper",
        r#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"},"pusher":{"name":"ann"},"commits":[{"id":"1"},{"id":"2"}]}"#,
    );
    i.config = vec![("notify".into(), "echo".into())];
    let report = run(&p, i, &Limits::default()).await;
    let out = output_json(&report);
    assert_eq!(out["source"], "github");
    assert_eq!(out["repo"], "acme/app");
    assert_eq!(report.emits.len(), 1);
    assert_eq!(report.emits[0].function, "echo");
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Info && l.source == LogSource::Log),
        "{:?}",
        report.logs
    );
}
