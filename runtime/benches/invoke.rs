//! Fresh-instance invocation, cold load from the artifact cache, compile,
//! one outbound HTTP request to a server on loopback, and variable reads.
//!
//! Needs the guests built (`make functions`). Run with `make bench-runtime`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use eddy_runtime::{Input, Limits, Runtime, RuntimeConfig};

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../functions/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make functions`)", path.display()))
}

fn input(function: &str, payload: &[u8]) -> Input {
    Input {
        id: "0190c7e2-0000-7000-8000-000000000001".into(),
        run_id: "0190c7e2-0000-7000-8000-000000000001".into(),
        function: function.into(),
        attempt: 1,
        depth: 0,
        content_type: "application/json".into(),
        payload: payload.to_vec(),
        config: Vec::new(),
        tenant: "t".into(),
        version: 1,
        traceparent: None,
        variables: None,
    }
}

/// ~200 bytes of JSON, the size the targets talk about.
const TEXT: &[u8] = br#"{"text":"Eddy runs every invocation in a fresh WebAssembly sandbox. Processors emit follow-ups, follow-ups emit more, and a run finishes when nothing is left to do. Fresh instances cost microseconds."}"#;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: dir.path().to_path_buf(),
        // The outbound bench's server is on loopback.
        outbound_allowlist: eddy_protocol::callback::Allowlist::parse("127.0.0.1").unwrap(),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limits = Limits::default();

    let mut g = c.benchmark_group("invoke");
    let hostile = |name: &str| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../functions/fixtures/hostile")
            .join(format!("{name}.wat"));
        wat::parse_file(&path).unwrap()
    };
    let guests = [
        ("echo", wasm("echo"), &b"{}"[..]),
        ("wordcount", wasm("wordcount"), TEXT),
        // componentize-py's shape: 14 core instances, a 12.4 MiB memory, a
        // 5,672-entry table.
        ("python-shaped", hostile("python-shaped"), &b"{}"[..]),
    ];
    for (name, bytes, payload) in guests {
        let p = runtime.load(&bytes).unwrap();
        // Admission to the pool is part of every invocation's cost.
        let once = || {
            tokio.block_on(async {
                let a = runtime.admit("t", &limits).await;
                runtime.invoke(&p, input(name, payload), &limits, a).await
            })
        };
        assert!(once().result.is_ok());
        g.bench_function(format!("fresh_instance/{name}"), |b| {
            b.iter(|| {
                let r = once();
                debug_assert!(r.result.is_ok());
                r
            })
        });
    }
    g.finish();

    // One GET to a server on loopback (a new connection each time, as every
    // invocation makes its own), against the same guest refused before any
    // connection: the difference is what the request costs.
    let port = http_server();
    let fetch = runtime.load(&wasm("fx_fetch")).unwrap();
    let mut allowed = limits.clone();
    allowed.outbound.allowed_hosts =
        eddy_protocol::AllowedHosts::parse(&[format!("http://127.0.0.1:{port}")]).unwrap();
    let body = format!(r#"{{"url":"http://127.0.0.1:{port}/doc","ignore_errors":true}}"#);
    let mut g = c.benchmark_group("outbound");
    for (name, limits) in [("get_local", &allowed), ("denied", &limits)] {
        let once = || {
            tokio.block_on(async {
                let a = runtime.admit("t", limits).await;
                runtime
                    .invoke(&fetch, input("fetch", body.as_bytes()), limits, a)
                    .await
            })
        };
        let r = once();
        assert!(r.result.is_ok(), "{:?}", r.result);
        assert_eq!(r.outbound.len(), 1);
        assert_eq!(r.outbound[0].call.error.is_none(), name == "get_local");
        g.bench_function(name, |b| b.iter(once));
    }
    g.finish();

    // wasi:config: reading a variable (given up front here: a worker's
    // Redis read is not part of it), and printing one to stdout, stderr and
    // the log, plain or secret (the difference is the redaction), against
    // the same guest reading nothing.
    let config = runtime.load(&wasm("fx_config")).unwrap();
    let vars: std::sync::Arc<dyn eddy_runtime::VariableSource> =
        std::sync::Arc::new(eddy_runtime::FixedVariables(vec![
            eddy_protocol::variables::Variable {
                name: "REGION".into(),
                value: "eu-west".into(),
                secret: false,
            },
            eddy_protocol::variables::Variable {
                name: "TOKEN".into(),
                value: "s3cr3t-token-value".into(),
                secret: true,
            },
        ]));
    let mut g = c.benchmark_group("config");
    for (name, body) in [
        ("none", &br#"{}"#[..]),
        ("get_one", &br#"{"show":["REGION"]}"#[..]),
        ("plain_logged", &br#"{"print":["REGION"]}"#[..]),
        ("secret_logged", &br#"{"print":["TOKEN"]}"#[..]),
    ] {
        let once = || {
            tokio.block_on(async {
                let a = runtime.admit("t", &limits).await;
                let mut i = input("config", body);
                i.variables = Some(vars.clone());
                runtime.invoke(&config, i, &limits, a).await
            })
        };
        let r = once();
        assert!(r.result.is_ok(), "{:?}", r.result);
        g.bench_function(name, |b| b.iter(once));
    }
    g.finish();

    // Components of other toolchains (`bench/guests.sh` builds the SDKs'
    // wordcounts with `eddy build`): `name=path.wasm,...`. Their compile takes
    // seconds, so it is timed once here, not sampled.
    let extra = std::env::var("EDDY_BENCH_GUESTS").unwrap_or_default();
    let mut g = c.benchmark_group("guests");
    for entry in extra.split(',').filter(|e| !e.is_empty()) {
        let (name, path) = entry.split_once('=').expect("name=path");
        // A `.wat` (the hostile fixtures' shapes) is compiled from its text.
        let bytes = if path.ends_with(".wat") {
            wat::parse_file(path).unwrap()
        } else {
            std::fs::read(path).unwrap()
        };
        let started = std::time::Instant::now();
        runtime.compile(&bytes).unwrap();
        let compile = started.elapsed();
        let p = runtime.load(&bytes).unwrap();
        let artifact = std::fs::metadata(runtime.cache().path(p.sha256()))
            .unwrap()
            .len();
        println!(
            "guests/{name}: component {:.1} MB, compile {:.2} s, artifact {:.1} MB",
            bytes.len() as f64 / 1e6,
            compile.as_secs_f64(),
            artifact as f64 / 1e6
        );
        let once = || {
            tokio.block_on(async {
                let a = runtime.admit("t", &limits).await;
                runtime.invoke(&p, input(name, TEXT), &limits, a).await
            })
        };
        let first = once();
        assert!(first.result.is_ok(), "{:?}", first.result);
        g.bench_function(format!("fresh_instance/{name}"), |b| b.iter(once));
        g.bench_function(format!("instantiate_only/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += once().timings.instantiate;
                }
                total
            })
        });
        let sha = p.sha256().to_string();
        g.bench_function(format!("from_artifact_cache/{name}"), |b| {
            b.iter(|| runtime.load_cached(&sha).unwrap().unwrap())
        });
    }
    g.finish();

    let bytes = wasm("wordcount");
    let sha = runtime.load(&bytes).unwrap().sha256().to_string();
    let mut g = c.benchmark_group("load");
    g.bench_function("from_artifact_cache/wordcount", |b| {
        b.iter(|| runtime.load_cached(&sha).unwrap().unwrap())
    });
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("compile/wordcount", |b| {
        b.iter(|| runtime.compile(&bytes).unwrap())
    });
    g.finish();
}

/// A minimal HTTP/1.1 server on a loopback port: answers every request
/// with `hello world` and closes the connection.
fn http_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nhello world",
            );
        }
    });
    port
}

criterion_group!(runtime_benches, benches);
criterion_main!(runtime_benches);
