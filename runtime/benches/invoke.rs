//! Fresh-instance invocation, cold load from the artifact cache, and compile.
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
    }
}

/// ~200 bytes of JSON, the size the targets talk about.
const TEXT: &[u8] = br#"{"text":"Eddy runs every invocation in a fresh WebAssembly sandbox. Processors emit follow-ups, follow-ups emit more, and a run finishes when nothing is left to do. Fresh instances cost microseconds."}"#;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: dir.path().to_path_buf(),
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

criterion_group!(runtime_benches, benches);
criterion_main!(runtime_benches);
