//! Bad input gets a clear error and loses nothing: every case pins its exact
//! status, code and message, against the gateway in the test's process
//! (`in_process`). And tenant A can neither see nor touch anything of tenant
//! B, on every route (against `eddy up`: it needs a worker).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::{ADMIN, Platform};
use crate::in_process::Gateway;

/// One row of the table: what is sent, and exactly what comes back.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    key: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
    message: String,
}

async fn check(g: &Gateway, c: Case) {
    let r = g.send(c.method, &c.path, &c.key, &c.headers, c.body).await;
    let (status, body) = (r.status, r.json());
    let retry_after = r.headers.get("retry-after").cloned();
    assert_eq!(
        (status, body["code"].as_str(), body["message"].as_str()),
        (c.status, Some(c.code), Some(c.message.as_str())),
        "case `{}`: {body}",
        c.name
    );
    // A count limit (`limit_reached`) says to remove something, not to wait.
    if c.status == StatusCode::TOO_MANY_REQUESTS && c.code != "limit_reached" {
        assert!(
            retry_after.is_some(),
            "case `{}`: 429 without Retry-After",
            c.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_exact_errors() {
    let p = Gateway::start(|_| {}).await;
    let key = p.tenant("acme", json!({})).await;
    let other = p.tenant("globex", json!({})).await;
    let limited = p.tenant("tiny", json!({ "rate_per_sec": 1 })).await;
    p.deploy(&key, "wordcount", "wordcount", "").await;
    p.deploy(&other, "secret", "echo", "").await;
    p.deploy(&limited, "echo", "echo", "").await;
    let r = p
        .send_json(
            Method::PUT,
            "/schedules/theirs",
            &other,
            json!({ "cron": "@yearly", "function": "secret" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let revoked = {
        let v = p
            .send(Method::POST, "/tenants/acme/keys", &key, &[], "")
            .await
            .json();
        let (id, k) = (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        );
        // Used (so this gateway trusts it from its cache), then revoked.
        let (s, _) = p.get(&k, "/functions").await;
        assert_eq!(s, StatusCode::OK);
        let r = p
            .send(
                Method::DELETE,
                &format!("/tenants/acme/keys/{id}"),
                &key,
                &[],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        k
    };
    // Use up tiny's one invocation per second right before its case.
    let invoke = |path: &str, k: &str, body: &[u8], headers: Vec<(&'static str, String)>| Case {
        name: "",
        method: Method::POST,
        path: path.to_string(),
        key: k.to_string(),
        headers,
        body: body.to_vec(),
        status: StatusCode::OK,
        code: "",
        message: String::new(),
    };
    let random: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let too_big = vec![b'x'; (1 << 20) + 1];
    let async_ = || vec![("prefer", "respond-async".to_string())];
    let cases = vec![
        Case { name: "malformed module", method: Method::PUT, path: "/functions/bad".into(), body: random, status: StatusCode::BAD_REQUEST, code: "invalid_module",
            message: "invalid module: not a WebAssembly binary (missing the `\\0asm` magic number)".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "core module", method: Method::PUT, path: "/functions/bad".into(), body: b"\0asm\x01\0\0\0".to_vec(), status: StatusCode::BAD_REQUEST, code: "invalid_module",
            message: "invalid module: this is a core WebAssembly module, not a component: build the processor for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "component of another world", method: Method::PUT, path: "/functions/bad".into(), body: eddy_tests::wasm("fx-other-world"), status: StatusCode::BAD_REQUEST, code: "invalid_module",
            message: "invalid module: the component does not export `handle`: a processor implements the eddy:processor@0.2.0 world (`eddy wit` prints it)".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "component importing what Eddy lacks", method: Method::PUT, path: "/functions/bad".into(),
            body: wat::parse_str(r#"(component (import "wasi:keyvalue/store@0.2.0-draft" (instance)))"#).unwrap(), status: StatusCode::BAD_REQUEST, code: "invalid_module",
            message: "invalid module: the component imports `wasi:keyvalue/store@0.2.0-draft`, which Eddy does not provide (a processor may import eddy:processor/host@0.2.0 (or 0.1.0), wasi:config/store@0.2.0-rc.1 and WASI 0.2 (cli, clocks, filesystem, io, random, sockets, http types and outgoing-handler))".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "bad function name", method: Method::PUT, path: "/functions/Bad.Name".into(), body: eddy_tests::wasm("echo"), status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "invalid function name `Bad.Name`: only a-z, 0-9, `-` and `_` are allowed".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "unknown config field", method: Method::PUT, path: "/functions/x".into(), body: eddy_tests::wasm("echo"), headers: vec![("x-eddy-config", r#"{"timeout":5}"#.into())], status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "invalid function config: unknown field `timeout`, expected one of `timeout_ms`, `memory_mb`, `max_retries`, `backoff_base_ms`, `backoff_max_ms`, `max_concurrency`, `idle_timeout_ms`, `max_output_bytes`, `max_emits`, `max_emit_bytes`, `max_log_bytes`, `max_outbound_requests`, `max_outbound_bytes`, `allowed_hosts`, `run`, `values`".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "component over the shape ceilings", method: Method::PUT, path: "/functions/bad".into(), body: eddy_tests::hostile("many-memories"), status: StatusCode::BAD_REQUEST, code: "invalid_module",
            message: "invalid module: the component is bigger than this platform admits: The component transitively contains 21 Wasm linear memories, which exceeds the configured maximum of 4".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "deploy above a ceiling (query)", method: Method::PUT, path: "/functions/x?memory_mb=100000".into(), body: eddy_tests::wasm("echo"), status: StatusCode::BAD_REQUEST, code: "limit_above_maximum",
            message: "`memory_mb` is 100000, above this platform's maximum of 512".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "deploy above a ceiling (config)", method: Method::PUT, path: "/functions/x".into(), body: eddy_tests::wasm("echo"), headers: vec![("x-eddy-config", r#"{"run":{"max_depth":4294967295}}"#.into())], status: StatusCode::BAD_REQUEST, code: "limit_above_maximum",
            message: "`max_depth` is 4294967295, above this platform's maximum of 64".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "PATCH above a ceiling", method: Method::PATCH, path: "/functions/wordcount".into(), body: br#"{"timeout_ms":86400000}"#.to_vec(), status: StatusCode::BAD_REQUEST, code: "limit_above_maximum",
            message: "`timeout_ms` is 86400000, above this platform's maximum of 900000".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "PATCH retries above a ceiling", method: Method::PATCH, path: "/functions/wordcount".into(), body: br#"{"max_retries":1000000}"#.to_vec(), status: StatusCode::BAD_REQUEST, code: "limit_above_maximum",
            message: "`max_retries` is 1000000, above this platform's maximum of 10".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "PATCH emits above a ceiling", method: Method::PATCH, path: "/functions/wordcount".into(), body: br#"{"max_emits":100000000,"max_emit_bytes":1}"#.to_vec(), status: StatusCode::BAD_REQUEST, code: "limit_above_maximum",
            message: "`max_emits` is 100000000, above this platform's maximum of 1000".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "allowed host with a path (query)", method: Method::PUT, path: "/functions/x?allowed_hosts=https://api.example.com/v1".into(), body: eddy_tests::wasm("echo"), status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "invalid function config: allowed_hosts: `https://api.example.com/v1`: an allowed host is an origin (scheme://host[:port]), without a path, query or user".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "allowed host with another scheme (PATCH)", method: Method::PATCH, path: "/functions/wordcount".into(), body: br#"{"allowed_hosts":["ftp://files.example.com"]}"#.to_vec(), status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "invalid function config: allowed_hosts: `ftp://files.example.com`: the scheme must be http, https or *".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "allowed host without a scheme (config)", method: Method::PUT, path: "/functions/x".into(), body: eddy_tests::wasm("echo"), headers: vec![("x-eddy-config", r#"{"allowed_hosts":["api.example.com"]}"#.into())], status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "invalid function config: allowed_hosts: `api.example.com`: expected scheme://host[:port], e.g. https://api.example.com".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "outbound requests above a ceiling", method: Method::PATCH, path: "/functions/wordcount".into(), body: br#"{"max_outbound_requests":100000}"#.to_vec(), status: StatusCode::BAD_REQUEST, code: "limit_above_maximum",
            message: "`max_outbound_requests` is 100000, above this platform's maximum of 1000".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "outbound bytes above a ceiling (query)", method: Method::PUT, path: "/functions/x?max_outbound_bytes=1099511627776".into(), body: eddy_tests::wasm("echo"), status: StatusCode::BAD_REQUEST, code: "limit_above_maximum",
            message: "`max_outbound_bytes` is 1099511627776, above this platform's maximum of 268435456".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "unknown function", status: StatusCode::NOT_FOUND, code: "function_not_found", message: "function `nope` not found".into(), ..invoke("/invoke/nope", &key, b"{}", vec![]) },
        Case { name: "oversized body", status: StatusCode::PAYLOAD_TOO_LARGE, code: "payload_too_large", message: "request body is larger than the limit of 1048576 bytes".into(), ..invoke("/invoke/wordcount", &key, &too_big, vec![]) },
        Case { name: "invalid JSON", status: StatusCode::BAD_REQUEST, code: "invalid_json", message: "invalid JSON: expected ident at line 1 column 2".into(), ..invoke("/invoke/wordcount", &key, b"nope", vec![]) },
        Case { name: "no key", status: StatusCode::UNAUTHORIZED, code: "missing_key", message: "missing `Authorization: Bearer <key>` header".into(), ..invoke("/invoke/wordcount", "", b"{}", vec![]) },
        Case { name: "bad key", status: StatusCode::UNAUTHORIZED, code: "invalid_key", message: "the API key is not valid".into(), ..invoke("/invoke/wordcount", "eddy_0000_0000", b"{}", vec![]) },
        Case { name: "revoked key", status: StatusCode::UNAUTHORIZED, code: "key_revoked", message: "the API key has been revoked".into(), ..invoke("/invoke/wordcount", &revoked, b"{}", vec![]) },
        Case { name: "other tenant's function", status: StatusCode::NOT_FOUND, code: "function_not_found", message: "function `secret` not found".into(), ..invoke("/invoke/secret", &key, b"{}", vec![]) },
        Case { name: "bad callback URL", status: StatusCode::BAD_REQUEST, code: "bad_callback_url", message: "callback URL is not a valid absolute URL: relative URL without a base".into(),
            ..invoke("/invoke/wordcount", &key, b"{}", vec![("x-callback-url", "/relative".into())]) },
        Case { name: "callback to a private address", status: StatusCode::BAD_REQUEST, code: "bad_callback_url", message: "callback address 10.0.0.7 is a private address and not allowlisted".into(),
            ..invoke("/invoke/wordcount", &key, b"{}", vec![("x-callback-url", "http://10.0.0.7/hook".into())]) },
        Case { name: "callback to the metadata service", status: StatusCode::BAD_REQUEST, code: "bad_callback_url", message: "callback address 169.254.169.254 is a link-local address and not allowlisted".into(),
            ..invoke("/invoke/wordcount", &key, b"{}", vec![("x-run-callback-url", "http://169.254.169.254/latest".into())]) },
        Case { name: "tenant key on an admin route", status: StatusCode::FORBIDDEN, code: "forbidden", message: "this route needs the admin key".into(), ..invoke("/tenants", &key, br#"{"id":"x"}"#, vec![]) },
        Case { name: "admin key without a tenant", status: StatusCode::BAD_REQUEST, code: "bad_request", message: "the admin key acts for a tenant only with an `X-Eddy-Tenant` header".into(), ..invoke("/invoke/wordcount", ADMIN, b"{}", vec![]) },
        Case { name: "tenant that exists", status: StatusCode::CONFLICT, code: "conflict", message: "tenant `acme` already exists".into(), ..invoke("/tenants", ADMIN, br#"{"id":"acme"}"#, vec![]) },
        Case { name: "unknown route", status: StatusCode::NOT_FOUND, code: "route_not_found", message: "no such route; see /openapi.json".into(), ..invoke("/nowhere", &key, b"", vec![]) },
        Case { name: "unknown invocation", method: Method::GET, status: StatusCode::NOT_FOUND, code: "invocation_not_found", message: "invocation `0190c7e2-0000-7000-8000-00000000abcd` not found".into(),
            ..invoke("/invocations/0190c7e2-0000-7000-8000-00000000abcd", &key, b"", vec![]) },
        Case { name: "malformed dead-letter entry", status: StatusCode::BAD_REQUEST, code: "bad_request", message: "`123456789012345678901234567890-0` is not a dead-letter entry id (`<ms>-<seq>`, two 64-bit numbers)".into(),
            ..invoke("/dead-letters/123456789012345678901234567890-0/redrive", &key, b"", vec![]) },
        Case { name: "bad query value", method: Method::PUT, path: "/functions/x?timeout_ms=abc".into(), body: eddy_tests::wasm("echo"), status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "invalid query string: Failed to deserialize query string: timeout_ms: invalid digit found in string".into(), ..invoke("", &key, b"", vec![]) },
        Case { name: "path not UTF-8", method: Method::GET, status: StatusCode::BAD_REQUEST, code: "bad_request", message: "invalid path: Invalid URL: Invalid UTF-8 in `id`".into(),
            ..invoke("/invocations/%FF", &key, b"", vec![]) },
        Case { name: "rollback to a missing version", status: StatusCode::NOT_FOUND, code: "version_not_found", message: "version `wordcount@7` not found".into(),
            ..invoke("/functions/wordcount/rollback", &key, br#"{"version":7}"#, vec![]) },
        Case { name: "bad variable name", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "invalid variable name `1st`: 1 to 64 ASCII letters, digits, `_`, `-` or `.`, starting with a letter or `_`".into(),
            ..invoke("/variables/1st", &key, br#"{"value":"v"}"#, vec![]) },
        Case { name: "variable value too big", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "the value is 9000 bytes, more than the limit of 8192 bytes".into(),
            ..invoke("/variables/BIG", &key, json!({ "value": "v".repeat(9000) }).to_string().as_bytes(), vec![]) },
        Case { name: "variable body of another shape (the value not quoted back)", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "invalid_json",
            message: r#"invalid JSON: expected {"value": string, "secret": bool} (at line 1 column 33)"#.into(),
            ..invoke("/variables/X", &key, br#"{"value":"hunter2","secret":"yes"}"#, vec![]) },
        Case { name: "secret without the operator's keys", method: Method::PUT, status: StatusCode::NOT_IMPLEMENTED, code: "secrets_disabled",
            message: "secrets are turned off on this platform: the operator has not set EDDY_SECRETS_KEYS".into(),
            ..invoke("/variables/TOKEN", &key, br#"{"value":"v","secret":true}"#, vec![]) },
        Case { name: "variable of an unknown function", method: Method::PUT, status: StatusCode::NOT_FOUND, code: "function_not_found",
            message: "function `nope` not found".into(),
            ..invoke("/functions/nope/variables/X", &key, br#"{"value":"v"}"#, vec![]) },
        Case { name: "variable of another tenant's function", method: Method::GET, status: StatusCode::NOT_FOUND, code: "function_not_found",
            message: "function `secret` not found".into(),
            ..invoke("/functions/secret/variables", &key, b"", vec![]) },
        Case { name: "unknown variable", method: Method::DELETE, status: StatusCode::NOT_FOUND, code: "variable_not_found",
            message: "variable `NOPE` not found".into(),
            ..invoke("/variables/NOPE", &key, b"", vec![]) },
        Case { name: "reseal by a tenant", status: StatusCode::FORBIDDEN, code: "forbidden", message: "this route needs the admin key".into(),
            ..invoke("/secrets/reseal", &key, b"", vec![]) },
        Case { name: "reseal without the operator's keys", status: StatusCode::NOT_IMPLEMENTED, code: "secrets_disabled",
            message: "secrets are turned off on this platform: the operator has not set EDDY_SECRETS_KEYS".into(),
            ..invoke("/secrets/reseal", ADMIN, b"", vec![]) },
        Case { name: "a schedule's idempotency key", status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "`Idempotency-Key` may not start with `schedule:`: schedules' ticks use those keys".into(),
            ..invoke("/invoke/wordcount", &key, b"{}", vec![("idempotency-key", "schedule:nightly:1796601600000".into())]) },
        Case { name: "bad schedule name", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "schedule name `-x` must be 1 to 64 ASCII letters, digits, `_`, `-` or `.`, starting with a letter or digit".into(),
            ..invoke("/schedules/-x", &key, br#"{"cron":"@hourly","function":"wordcount"}"#, vec![]) },
        Case { name: "cron field out of range", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "`cron`: minute: `61` is outside 0-59 or an empty range".into(),
            ..invoke("/schedules/s", &key, br#"{"cron":"61 * * * *","function":"wordcount"}"#, vec![]) },
        Case { name: "cron of three fields", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "`cron`: a cron expression has 5 fields (minute hour day month weekday) or 6 (second first); this one has 3".into(),
            ..invoke("/schedules/s", &key, br#"{"cron":"* * *","function":"wordcount"}"#, vec![]) },
        Case { name: "cron never due", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "`cron`: `0 0 30 2 *` is never due in the next five years".into(),
            ..invoke("/schedules/s", &key, br#"{"cron":"0 0 30 2 *","function":"wordcount"}"#, vec![]) },
        Case { name: "schedule of an unknown function", method: Method::PUT, status: StatusCode::NOT_FOUND, code: "function_not_found",
            message: "function `nope` not found".into(),
            ..invoke("/schedules/s", &key, br#"{"cron":"@hourly","function":"nope"}"#, vec![]) },
        Case { name: "schedule of another tenant's function", method: Method::PUT, status: StatusCode::NOT_FOUND, code: "function_not_found",
            message: "function `secret` not found".into(),
            ..invoke("/schedules/s", &key, br#"{"cron":"@hourly","function":"secret"}"#, vec![]) },
        Case { name: "schedule data too big", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "bad_request",
            message: "`data` is 66008 bytes as JSON; a schedule's data may be at most 65536".into(),
            ..invoke("/schedules/s", &key, json!({ "cron": "@hourly", "function": "wordcount", "data": { "x": "a".repeat(66_000) } }).to_string().as_bytes(), vec![]) },
        Case { name: "schedule body over its limit", method: Method::PUT, status: StatusCode::PAYLOAD_TOO_LARGE, code: "payload_too_large",
            message: "request body is larger than the limit of 69632 bytes".into(),
            ..invoke("/schedules/s", &key, json!({ "cron": "@hourly", "function": "wordcount", "data": { "x": "a".repeat(70_000) } }).to_string().as_bytes(), vec![]) },
        Case { name: "schedule body of another shape", method: Method::PUT, status: StatusCode::BAD_REQUEST, code: "invalid_json",
            message: "invalid JSON: unknown field `payload`, expected one of `cron`, `function`, `data` at line 1 column 50".into(),
            ..invoke("/schedules/s", &key, br#"{"cron":"@hourly","function":"wordcount","payload":{}}"#, vec![]) },
        Case { name: "unknown schedule", method: Method::GET, status: StatusCode::NOT_FOUND, code: "schedule_not_found",
            message: "schedule `nope` not found".into(),
            ..invoke("/schedules/nope", &key, b"", vec![]) },
        Case { name: "another tenant's schedule", method: Method::DELETE, status: StatusCode::NOT_FOUND, code: "schedule_not_found",
            message: "schedule `theirs` not found".into(),
            ..invoke("/schedules/theirs", &key, b"", vec![]) },
    ];
    for c in cases {
        check(&p, c).await;
    }
    // A tenant holds at most 64 schedules; the 65th is refused, a change to
    // one of them is not.
    for i in 0..64 {
        let r = p
            .send_json(
                Method::PUT,
                &format!("/schedules/S{i}"),
                &key,
                json!({ "cron": "@yearly", "function": "wordcount" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    check(
        &p,
        Case {
            name: "65th schedule",
            method: Method::PUT,
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "limit_reached",
            message: "the tenant has 64 schedules, the most it may have; delete one first".into(),
            ..invoke(
                "/schedules/S64",
                &key,
                br#"{"cron":"@yearly","function":"wordcount"}"#,
                vec![],
            )
        },
    )
    .await;
    let r = p
        .send_json(
            Method::PUT,
            "/schedules/S0",
            &key,
            json!({ "cron": "@daily", "function": "wordcount" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // A scope holds at most 64 variables; the 65th is refused, a change to
    // one of them is not.
    for i in 0..64 {
        let r = p
            .send_json(
                Method::PUT,
                &format!("/functions/wordcount/variables/V{i}"),
                &key,
                json!({ "value": "v" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    check(
        &p,
        Case {
            name: "65th variable",
            method: Method::PUT,
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "limit_reached",
            message:
                "function `wordcount` has 64 variables, the most it may have; delete one first"
                    .into(),
            ..invoke(
                "/functions/wordcount/variables/V64",
                &key,
                br#"{"value":"v"}"#,
                vec![],
            )
        },
    )
    .await;
    let r = p
        .send_json(
            Method::PUT,
            "/functions/wordcount/variables/V0",
            &key,
            json!({ "value": "w" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Variables count in the tenant's stored bytes (name and stored form):
    // refused over max_stored_bytes, given back when deleted.
    let small = p.tenant("small", json!({ "max_stored_bytes": 40 })).await;
    let set = |name: &'static str, value: String| {
        let (p, small) = (&p, small.clone());
        async move {
            p.send_json(
                Method::PUT,
                &format!("/variables/{name}"),
                &small,
                json!({ "value": value }),
            )
            .await
        }
    };
    assert_eq!(set("A", "x".repeat(30)).await.status, StatusCode::CREATED);
    let r = set("B", "y".repeat(30)).await;
    assert_eq!(
        (
            r.status,
            r.json()["code"].as_str(),
            r.json()["message"].as_str()
        ),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("storage_quota_exceeded"),
            Some(
                "the tenant stores 33 bytes; 33 more would take it over its max_stored_bytes of 40; delete functions, variables or schedules to make room"
            )
        )
    );
    let (_, t) = p.get(&small, "/tenants/small").await;
    assert_eq!(t["stored_bytes"], 33, "{t}");
    let r = p
        .send(Method::DELETE, "/variables/A", &small, &[], "")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (_, t) = p.get(&small, "/tenants/small").await;
    assert_eq!(t["stored_bytes"], 0, "{t}");
    assert_eq!(set("B", "y".repeat(30)).await.status, StatusCode::CREATED);
    // A schedule's name and spec count in the stored bytes too.
    let module_len = eddy_tests::wasm("echo").len() as u64;
    let roomy = p
        .tenant("roomy", json!({ "max_stored_bytes": module_len + 200 }))
        .await;
    p.deploy(&roomy, "echo", "echo", "").await;
    let data = json!({ "x": "z".repeat(200) });
    let spec = eddy_protocol::schedules::ScheduleSpec {
        name: "s".into(),
        cron: "@yearly".into(),
        function: "echo".into(),
        data: data.clone(),
        // The same number of digits as now's.
        created_at_ms: 1_000_000_000_000,
        updated_at_ms: 1_000_000_000_000,
    };
    let needed = 1 + serde_json::to_string(&spec).unwrap().len();
    let r = p
        .send_json(
            Method::PUT,
            "/schedules/s",
            &roomy,
            json!({ "cron": "@yearly", "function": "echo", "data": data }),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str(), r.json()["message"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("storage_quota_exceeded"),
            Some(
                format!(
                    "the tenant stores {module_len} bytes; {needed} more would take it over its max_stored_bytes of {}; delete functions, variables or schedules to make room",
                    module_len + 200
                )
                .as_str()
            )
        )
    );
    let r = p
        .send_json(
            Method::PUT,
            "/schedules/s",
            &roomy,
            json!({ "cron": "@yearly", "function": "echo" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "a small one fits");
    let (_, t) = p.get(&roomy, "/tenants/roomy").await;
    assert!(t["stored_bytes"].as_u64().unwrap() > module_len, "{t}");
    let r = p
        .send(Method::DELETE, "/schedules/s", &roomy, &[], "")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (_, t) = p.get(&roomy, "/tenants/roomy").await;
    assert_eq!(t["stored_bytes"], module_len, "given back: {t}");
    // Quota: the second invocation in the same second is refused, with
    // Retry-After, and nothing is enqueued for it.
    let burst = || invoke("/invoke/echo", &limited, b"{}", async_());
    let mut refused = 0;
    for _ in 0..5 {
        let c = burst();
        let r = p.send(c.method, &c.path, &c.key, &c.headers, c.body).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers["retry-after"], "1");
            let v = r.json();
            assert_eq!(v["code"], "quota_exceeded");
            assert_eq!(
                v["message"],
                "quota exceeded: the tenant's limit of 1 invocations per second is used up"
            );
            refused += 1;
        }
    }
    assert!(refused >= 3, "{refused} of 5 refused");
    let (_, t) = p.get(&limited, "/tenants/tiny").await;
    assert!(t["pending"].as_u64().unwrap() <= 2, "{t}");
    // Pending quota.
    let quota = json!({"max_pending": 1});
    let r = p
        .send_json(Method::PUT, "/tenants/globex/quota", ADMIN, quota)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let (code, msg) = loop {
        let r = p
            .send(Method::POST, "/invoke/secret", &other, &async_(), "{}")
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            let v = r.json();
            break (v["code"].clone(), v["message"].clone());
        }
    };
    assert_eq!(
        (code.as_str(), msg.as_str()),
        (
            Some("quota_exceeded"),
            Some("quota exceeded: the tenant has 1 invocations pending, its maximum")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_and_touches_nothing_of_another() {
    let p = Platform::start(&[]);
    let (a, _) = p.tenant("alpha", json!({})).await;
    let (b, _) = p.tenant("beta", json!({})).await;
    p.deploy(&b, "private", "fx-fail", "?max_retries=0").await;
    p.deploy(&b, "private", "fx-fail", "?max_retries=0").await;
    let r = p
        .req(Method::POST, "/invoke/private", &b)
        .body("{}")
        .send()
        .await
        .unwrap();
    let b_inv = r.headers()["x-eddy-invocation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let (_, dl) = p.get(&b, "/dead-letters").await;
    let b_dead = dl[0]["entry_id"].as_str().unwrap().to_string();
    let (_, keys) = p.get(&b, "/tenants/beta/keys").await;
    let b_key_id = keys[0]["id"].as_str().unwrap().to_string();

    let not_found = |what: &str, name: &str| {
        (
            StatusCode::NOT_FOUND,
            format!("{what}_not_found"),
            format!("{} `{name}` not found", what.replace('_', " ")),
        )
    };
    // (method, path, body, expected (status, code, message))
    type Row<'a> = (Method, String, &'a str, (StatusCode, String, String));
    let rows: Vec<Row> = vec![
        (
            Method::GET,
            "/functions/private".into(),
            "",
            not_found("function", "private"),
        ),
        (
            Method::PATCH,
            "/functions/private".into(),
            r#"{"timeout_ms":1}"#,
            not_found("function", "private"),
        ),
        (
            Method::DELETE,
            "/functions/private".into(),
            "",
            not_found("function", "private"),
        ),
        (
            Method::POST,
            "/functions/private/rollback".into(),
            "",
            not_found("function", "private"),
        ),
        (
            Method::POST,
            "/invoke/private".into(),
            "{}",
            not_found("function", "private"),
        ),
        (
            Method::POST,
            "/invoke/private/batch".into(),
            "{}\n",
            not_found("function", "private"),
        ),
        (
            Method::GET,
            format!("/invocations/{b_inv}"),
            "",
            not_found("invocation", &b_inv),
        ),
        (
            Method::GET,
            format!("/runs/{b_inv}"),
            "",
            not_found("run", &b_inv),
        ),
        (
            Method::POST,
            format!("/dead-letters/{b_dead}/redrive"),
            "",
            not_found("dead_letter", &b_dead),
        ),
        (
            Method::GET,
            "/tenants/beta".into(),
            "",
            not_found("tenant", "beta"),
        ),
        (
            Method::POST,
            "/tenants/beta/keys".into(),
            "",
            not_found("tenant", "beta"),
        ),
        (
            Method::GET,
            "/tenants/beta/keys".into(),
            "",
            not_found("tenant", "beta"),
        ),
        (
            Method::DELETE,
            format!("/tenants/beta/keys/{b_key_id}"),
            "",
            not_found("tenant", "beta"),
        ),
        (
            Method::PUT,
            "/tenants/beta/quota".into(),
            "{}",
            (
                StatusCode::FORBIDDEN,
                "forbidden".into(),
                "this route needs the admin key".into(),
            ),
        ),
    ];
    for (method, path, body, (status, code, message)) in rows {
        let r = p
            .req(method.clone(), &path, &a)
            .body(body)
            .send()
            .await
            .unwrap();
        let got_status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got_status, v["code"].as_str(), v["message"].as_str()),
            (status, Some(code.as_str()), Some(message.as_str())),
            "{method} {path}"
        );
    }
    // Lists show only one's own.
    let (_, fns) = p.get(&a, "/functions").await;
    assert_eq!(fns, json!([]));
    let (_, dead) = p.get(&a, "/dead-letters").await;
    assert_eq!(dead, json!([]));
    let (_, cbs) = p.get(&a, "/callbacks/dead-letters").await;
    assert_eq!(cbs, json!([]));
    // The same name in A is A's own function; B's is untouched.
    p.deploy(&a, "private", "echo", "").await;
    let r = p
        .req(Method::POST, "/invoke/private", &a)
        .body(r#"{"mine":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"mine":true}"#);
    let (_, f) = p.get(&b, "/functions/private").await;
    assert_eq!(f["versions"].as_array().unwrap().len(), 2);
    // And B still sees its own dead letter and invocation.
    let (s, _) = p.get(&b, &format!("/invocations/{b_inv}")).await;
    assert_eq!(s, StatusCode::OK);
}

/// Every body has its documented limit: the small JSON bodies 64 KiB, a
/// PATCH the payload limit, and a batch its own (here 100 bytes): past it
/// the rest is not read and the last line says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_limited_on_every_route() {
    let p = Gateway::start(|c| c.max_batch_bytes = 100).await;
    let key = p.tenant("acme", json!({})).await;
    p.deploy(&key, "echo", "echo", "").await;
    let big = format!(r#"{{"id":"big","pad":"{}"}}"#, "x".repeat(70 << 10));
    let too_large =
        |limit: usize| format!("request body is larger than the limit of {limit} bytes");
    for (method, path, key, body, limit) in [
        (Method::POST, "/tenants", ADMIN, big.clone(), 65536),
        (
            Method::PUT,
            "/tenants/acme/quota",
            ADMIN,
            big.clone(),
            65536,
        ),
        (
            Method::PATCH,
            "/functions/echo",
            key.as_str(),
            "x".repeat((1 << 20) + 1),
            1 << 20,
        ),
        (
            Method::POST,
            "/functions/echo/rollback",
            key.as_str(),
            "x".repeat(5000),
            4096,
        ),
    ] {
        check(
            &p,
            Case {
                name: "a body over its route's limit",
                method,
                path: path.to_string(),
                key: key.to_string(),
                headers: vec![("content-type", "application/json".into())],
                body: body.into_bytes(),
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "payload_too_large",
                message: too_large(limit),
            },
        )
        .await;
    }
    // 40 bytes a line: two whole lines fit in 100 bytes, the third does not.
    let line = format!("{{\"pad\":\"{}\"}}\n", "y".repeat(29));
    assert_eq!(line.len(), 40);
    let lines = p.batch(&key, "echo", line.repeat(5)).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0]["id"].is_string() && lines[1]["id"].is_string());
    assert_eq!(
        lines[2],
        json!({"error": {"code": "payload_too_large", "message": "request body is larger than the limit of 100 bytes: the lines after line 2 were not read"}})
    );
}
