use super::*;
use crate::client::tests::{TestCli, parse};
use clap::Parser;

#[test]
fn deploy_flags_become_query_params_and_config_a_header() {
    let ClientCommand::Deploy(a) = parse(&[
        "deploy",
        "wc",
        "wc.wasm",
        "--timeout-ms",
        "500",
        "--max-depth",
        "3",
        "--max-invocations",
        "100",
        "--config",
        "lang=en",
        "-c",
        "url=http://x/?a=b",
        "--config",
        "lang=fr",
    ]) else {
        panic!("not a deploy")
    };
    assert_eq!(
        deploy_query(&a),
        vec![
            ("timeout_ms", "500".to_string()),
            ("max_depth", "3".to_string()),
            ("max_invocations", "100".to_string()),
        ]
    );
    let header = config_header(&a.config).unwrap();
    let v: Value = serde_json::from_str(&header).unwrap();
    assert_eq!(v, json!({"values": {"lang": "fr", "url": "http://x/?a=b"}}));
}

#[test]
fn deploy_without_config_sends_no_header() {
    let ClientCommand::Deploy(a) = parse(&["deploy", "wc", "wc.wasm"]) else {
        panic!("not a deploy")
    };
    assert!(deploy_query(&a).is_empty());
    assert_eq!(config_header(&a.config), None);
}

#[test]
fn bad_config_pairs_are_refused() {
    let argv = ["eddy", "deploy", "wc", "wc.wasm", "--config", "novalue"];
    let e = TestCli::try_parse_from(argv).unwrap_err().to_string();
    assert!(e.contains("expected key=value"), "{e}");
}

#[test]
fn invoke_flags_become_headers() {
    let ClientCommand::Invoke(a) = parse(&[
        "invoke",
        "wc",
        "--data",
        r#"{"text":"a b"}"#,
        "--async",
        "--callback",
        "https://cb.example/x",
        "--run-callback",
        "https://cb.example/run",
        "--idempotency-key",
        "order-7",
    ]) else {
        panic!("not an invoke")
    };
    assert_eq!(
        invoke_headers(&a),
        vec![
            ("content-type", "application/json".to_string()),
            ("prefer", "respond-async".to_string()),
            ("x-callback-url", "https://cb.example/x".to_string()),
            ("x-run-callback-url", "https://cb.example/run".to_string()),
            ("idempotency-key", "order-7".to_string()),
        ]
    );
    assert_eq!(payload(&a).unwrap(), br#"{"text":"a b"}"#.to_vec());
}

#[test]
fn a_sync_invoke_sends_only_its_content_type() {
    let ClientCommand::Invoke(a) = parse(&["invoke", "wc", "--content-type", "text/plain"]) else {
        panic!("not an invoke")
    };
    assert_eq!(
        invoke_headers(&a),
        vec![("content-type", "text/plain".to_string())]
    );
    assert!(payload(&a).unwrap().is_empty());
    let ClientCommand::Invoke(a) = parse(&["invoke", "wc"]) else {
        panic!("not an invoke")
    };
    assert_eq!(payload(&a).unwrap(), b"{}".to_vec());
}

#[test]
fn invoke_reads_a_payload_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(&path, b"[1,2]").unwrap();
    let path = path.to_string_lossy().to_string();
    let ClientCommand::Invoke(a) = parse(&["invoke", "wc", "--input", &path]) else {
        panic!("not an invoke")
    };
    assert_eq!(payload(&a).unwrap(), b"[1,2]".to_vec());
}

#[test]
fn queued_lines() {
    let v = json!({"id": "i1", "run_id": "r1", "status": "queued", "location": "/invocations/i1"});
    assert_eq!(queued_line(&v, false), "queued i1 (run r1)\n");
    assert_eq!(
        queued_line(&v, true),
        "queued i1 (run r1) (idempotent replay)\n"
    );
}

#[test]
fn batch_answers_are_summarised() {
    let mut s = BatchSummary::default();
    for i in 1..=3 {
        s.feed(&format!(r#"{{"line":{i},"id":"id{i}"}}"#));
    }
    for i in 4..=10 {
        s.feed(&format!(
            r#"{{"line":{i},"error":{{"code":"invalid_json","message":"bad {i}"}}}}"#
        ));
    }
    s.feed("\n");
    assert_eq!(s.accepted, 3);
    assert_eq!(s.errors, 7);
    assert_eq!(
        s.text(),
        "accepted 3, errors 7\n  line 4: invalid_json: bad 4\n  line 5: invalid_json: bad 5\n  \
         line 6: invalid_json: bad 6\n  line 7: invalid_json: bad 7\n  line 8: invalid_json: bad 8\n  \
         … and 2 more (--output json lists every line)\n"
    );
}

#[test]
fn tenant_bodies() {
    let q = QuotaArgs {
        max_pending: Some(10),
        max_concurrency: None,
        rate: Some(5),
        max_stored_bytes: None,
    };
    assert_eq!(
        create_tenant_body("acme", &q),
        json!({"id": "acme", "quota": {"max_pending": 10, "max_concurrency": 0, "rate_per_sec": 5,
                                       "max_stored_bytes": 0}})
    );
    let current = json!({"max_pending": 1, "max_concurrency": 4, "rate_per_sec": 2,
                         "max_stored_bytes": 4096});
    assert_eq!(
        merged_quota(&current, &q),
        json!({"max_pending": 10, "max_concurrency": 4, "rate_per_sec": 5,
               "max_stored_bytes": 4096})
    );
    assert_eq!(rollback_body(None), None);
    assert_eq!(rollback_body(Some(2)), Some(json!({"version": 2})));
}

#[tokio::test]
async fn streamed_bodies_keep_every_byte() {
    use futures::StreamExt;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut got = Vec::new();
    let mut s = Box::pin(chunks(std::io::Cursor::new(data.clone())));
    while let Some(c) = s.next().await {
        got.extend(c.unwrap());
    }
    assert_eq!(got, data);
}

#[test]
fn schedule_data_is_json_text_or_a_file() {
    let ClientCommand::Schedule(ScheduleCommand::Create(a)) = parse(&[
        "schedule",
        "create",
        "hourly",
        "--cron",
        "0 * * * *",
        "-f",
        "report",
        "--data",
        r#"{"day":"today"}"#,
    ]) else {
        panic!("not a schedule create")
    };
    assert_eq!(
        (a.cron.as_str(), a.function.as_str()),
        ("0 * * * *", "report")
    );
    assert_eq!(
        schedule_data(a.data.as_deref()).unwrap(),
        Some(json!({ "day": "today" }))
    );
    assert_eq!(schedule_data(None).unwrap(), None);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "[1, 2]").unwrap();
    let at = format!("@{}", file.path().display());
    assert_eq!(schedule_data(Some(&at)).unwrap(), Some(json!([1, 2])));
    let e = schedule_data(Some("{nope")).unwrap_err();
    assert_eq!(e.to_string(), "--data is not JSON");
}
