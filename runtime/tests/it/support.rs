use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use eddy_runtime::{Input, Limits, Processor, Report, Runtime, RuntimeConfig};

/// The compiled guest `name` (crate name with `-` as `_`).
pub fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../functions/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the guests first: `make functions`",
            path.display()
        )
    })
}

static CACHE: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().unwrap());

/// One runtime for the whole test binary: every test also checks that the
/// engine keeps serving after whatever the other tests did to it.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    Runtime::new(RuntimeConfig {
        cache_dir: CACHE.path().to_path_buf(),
        max_instances: 64,
        ..RuntimeConfig::default()
    })
    .unwrap()
});

pub fn load(name: &str) -> Arc<Processor> {
    RUNTIME.load(&wasm(name)).unwrap()
}

pub fn input(function: &str, payload: &str) -> Input {
    Input {
        id: "0190c7e2-0000-7000-8000-000000000001".into(),
        run_id: "0190c7e2-0000-7000-8000-000000000001".into(),
        function: function.into(),
        attempt: 1,
        depth: 0,
        content_type: "application/json".into(),
        payload: payload.as_bytes().to_vec(),
        config: Vec::new(),
        tenant: "t".into(),
        version: 1,
        traceparent: None,
        variables: None,
    }
}

/// Runs `input` on `p` as the worker does: admitted to the pool first.
pub async fn run(p: &Processor, input: Input, limits: &Limits) -> Report {
    let admission = RUNTIME.admit("t", limits).await;
    RUNTIME.invoke(p, input, limits, admission).await
}

pub async fn invoke(name: &str, payload: &str, limits: &Limits) -> Report {
    run(&load(name), input(name, payload), limits).await
}

pub fn short(timeout_ms: u64) -> Limits {
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        ..Limits::default()
    }
}

pub fn output_json(report: &Report) -> serde_json::Value {
    let out = report
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("invocation failed: {e}"));
    serde_json::from_slice(&out.payload).unwrap()
}
