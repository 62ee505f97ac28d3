use super::*;
use serde_json::json;

#[test]
fn pretty_json_keeps_the_field_order() {
    let raw =
        br#"{"id":"a","status":"queued","nested":{"z":1,"a":[1, 2,{}],"e":[]},"s":"x,{:}\"]"}"#;
    let pretty = pretty_json(raw).unwrap();
    assert_eq!(
        pretty,
        "{\n  \"id\": \"a\",\n  \"status\": \"queued\",\n  \"nested\": {\n    \"z\": 1,\n    \"a\": [\n      1,\n      2,\n      {}\n    ],\n    \"e\": []\n  },\n  \"s\": \"x,{:}\\\"]\"\n}"
    );
    // Same as serde_json's pretty printer when the keys are sorted.
    let sorted = br#"{"a":[true,null,-1.5],"b":{"c":"d"},"e":"\u00e9"}"#;
    let v: Value = serde_json::from_slice(sorted).unwrap();
    assert_eq!(
        pretty_json(sorted).unwrap(),
        serde_json::to_string_pretty(&v)
            .unwrap()
            .replace('é', "\\u00e9")
    );
    assert_eq!(pretty_json(b"not json"), None);
}

#[test]
fn timestamps_are_utc() {
    assert_eq!(timestamp(0), "1970-01-01 00:00:00.000Z");
    assert_eq!(timestamp(951_782_400_000), "2000-02-29 00:00:00.000Z");
    assert_eq!(timestamp(1_700_000_000_123), "2023-11-14 22:13:20.123Z");
}

#[test]
fn durations_and_sizes() {
    assert_eq!(micros(850), "850µs");
    assert_eq!(micros(12_340), "12.3ms");
    assert_eq!(micros(2_500_000), "2.50s");
    assert_eq!(bytes(812), "812 B");
    assert_eq!(bytes(1536), "1.5 KiB");
}

#[test]
fn tables_align() {
    let t = table(
        &["A", "LONGER"],
        &[vec!["xxx".into(), "1".into()], vec!["y".into(), "2".into()]],
    );
    assert_eq!(t, "A    LONGER\nxxx  1\ny    2\n");
}

#[test]
fn a_succeeded_invocation() {
    let rec = json!({
        "id": "inv1", "tenant": "acme", "function": "wordcount", "version": 2,
        "status": "succeeded", "run_id": "run1", "depth": 0, "attempt": 1,
        "completions": 1, "created_at_ms": 1_700_000_000_000u64,
        "completed_at_ms": 1_700_000_000_012u64, "content_type": "application/json",
        "output": "{\"words\":5}\n",
        "timings": {"queue_wait_us": 120, "load_us": 0, "instantiate_us": 40,
                    "run_us": 1500, "cold": false, "epoch_ticks": 0},
        "logs": [{"level": "info", "source": "log", "message": "5 words"}],
        "worker": "w1"
    });
    let text = invocation(&rec);
    assert_eq!(
        text,
        "invocation  inv1  succeeded\n\
         function    wordcount v2  attempt 1  depth 0\n\
         run         run1\n\
         created     2023-11-14 22:13:20.000Z  completed 2023-11-14 22:13:20.012Z (12 ms later)\n\
         timings     queue 120µs  slot 0µs  load 0µs  instantiate 40µs  run 1.5ms  (warm, 0 epoch ticks)\n\
         worker      w1\n\
         output      (application/json) {\"words\":5}\n\
         logs        1 lines (eddy logs inv1)\n"
    );
    assert_eq!(logs(&rec), "info  log    5 words\n");
}

#[test]
fn a_failed_invocation_with_follow_ups_and_binary_output() {
    let rec = json!({
        "id": "inv2", "function": "f", "status": "failed", "run_id": "r",
        "timings": {"queue_wait_us": 0, "load_us": 0, "instantiate_us": 0,
                    "run_us": 0, "cold": false, "epoch_ticks": 0},
        "parent_id": "p", "depth": 1, "attempt": 3,
        "error": {"class": "processor-error", "code": "bad-input",
                  "message": "not JSON", "retryable": false},
        "follow_ups": ["a", "b", "c", "d", "e", "f", "g"],
        "output": [0, 159, 146]
    });
    let text = invocation(&rec);
    assert!(text.contains("run         r  parent p\n"), "{text}");
    assert!(
        text.contains("error       [processor-error] bad-input: not JSON\n"),
        "{text}"
    );
    assert!(
        text.contains("follow-ups  7: a, b, c, d, e, … 2 more\n"),
        "{text}"
    );
    assert!(text.contains("<3 bytes of binary>"), "{text}");
    assert!(!text.contains("timings"), "{text}");
}

#[test]
fn a_run_line() {
    let r = json!({"id": "r1", "status": "failed", "total": 40, "outstanding": 0,
                   "succeeded": 38, "failed": 1, "dead": 1, "percent": 100.0,
                   "created_at_ms": 1000, "completed_at_ms": 1250,
                   "error": "run limit: depth 4 > 3"});
    assert_eq!(
        run(&r),
        "run r1  failed  40/40 done (100%)  succeeded 38  failed 1  dead 1  in 250 ms\n\
         error: run limit: depth 4 > 3\n"
    );
    assert_eq!(run_done(&r), (40, 40));
    assert_eq!(run_failed(&r), 2);
}

#[test]
fn function_tables() {
    let list = json!([{"name": "wc", "current": 2, "backlog": {"lag": 3, "pending": 1},
        "spec": {"config": {"timeout_ms": 500, "memory_mb": 64}, "created_at_ms": 0}}]);
    let t = functions(&list);
    assert!(t.starts_with("NAME  CURRENT  QUEUED  RUNNING  TIMEOUT  MEMORY  DEPLOYED\n"));
    assert!(t.contains("wc    v2       3       1        500ms    64MiB   1970-01-01"));
    assert_eq!(functions(&json!([])), "no functions\n");

    let detail = json!({"name": "wc", "current": 2, "backlog": {"lag": 0, "pending": 0},
        "versions": [
            {"version": 1, "sha256": "abcdef0123456789", "module_bytes": 2048,
             "config": {"timeout_ms": 10, "memory_mb": 64, "max_retries": 3, "values": {}},
             "created_at_ms": 0},
            {"version": 2, "sha256": "abcdef0123456789", "module_bytes": 2048,
             "config": {"timeout_ms": 10, "memory_mb": 64, "max_retries": 3,
                        "values": {"lang": "en"}}, "created_at_ms": 0}]});
    let d = function_detail(&detail);
    assert!(
        d.starts_with("function wc  current v2  queued 0  running 0\n"),
        "{d}"
    );
    assert!(d.contains("\n v1      abcdef012345"), "{d}");
    assert!(d.contains("\n*v2 ") && d.ends_with("lang=en\n"), "{d}");
}

#[test]
fn tenants_and_quotas() {
    let t = json!({"id": "acme", "created_at_ms": 0, "pending": 2, "stored_bytes": 3072,
                   "quota": {"max_pending": 0, "max_concurrency": 4, "rate_per_sec": 100,
                             "max_stored_bytes": 1 << 30}});
    assert_eq!(
        tenant(&t),
        "tenant acme  created 1970-01-01 00:00:00.000Z  pending 2  stored 3.0 KiB\n\
         quota  max_pending unlimited  max_concurrency 4  rate 100/s  max_stored 1024.0 MiB\n"
    );
    let c = json!({"tenant": t, "key": "eddy_k", "key_id": "k1", "webhook_secret": "whsec_x"});
    let text = tenant_created(&c);
    assert!(text.contains("key             eddy_k\n"), "{text}");
    assert!(text.contains("export EDDY_KEY=eddy_k"), "{text}");
    let k = json!([{"id": "k1", "created_at_ms": 0, "revoked": true}]);
    assert_eq!(
        keys(&k),
        "ID  CREATED                   STATE\nk1  1970-01-01 00:00:00.000Z  revoked\n"
    );
}
