//! Components and guests built to break the sandbox's budgets: each ends in
//! its exact error, and nothing they do costs more than their limits.

use std::time::Duration;

use eddy_runtime::{InvokeError, LimitKind, Limits, Runtime, RuntimeConfig};

use crate::support::{RUNTIME, input, load, run};

/// A hand-written component of `functions/fixtures/hostile`, compiled.
pub fn hostile(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../functions/fixtures/hostile")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mib(n: u64) -> Limits {
    Limits {
        memory_bytes: n << 20,
        timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

#[test]
fn a_component_with_more_memories_than_the_ceiling_is_refused_naming_both() {
    let err = RUNTIME.load(&hostile("many-memories")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid module: the component is bigger than this platform admits: The component \
         transitively contains 21 Wasm linear memories, which exceeds the configured maximum of 4"
    );
}

#[test]
fn more_core_instances_than_the_ceiling_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = Runtime::new(RuntimeConfig {
        cache_dir: dir.path().to_path_buf(),
        max_instances: 4,
        component: eddy_runtime::ComponentLimits {
            core_instances: 8,
            ..Default::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let err = narrow.load(&hostile("python-shaped")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid module: the component is bigger than this platform admits: The component \
         transitively contains 14 core module instances, which exceeds the configured maximum of 8"
    );
}

#[tokio::test]
async fn memories_share_one_budget() {
    // Four memories of 24 MiB each: every one alone is under 64 MiB.
    let p = RUNTIME.load(&hostile("split-memory")).unwrap();
    let report = run(&p, input("split", "{}"), &mib(64)).await;
    assert_eq!(
        report.result.unwrap_err(),
        InvokeError::OutOfMemory {
            limit_bytes: 64 << 20
        }
    );
    // With room for all four it runs.
    let report = run(&p, input("split", "{}"), &mib(100)).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
}

#[tokio::test]
async fn a_python_shaped_component_fits_the_defaults() {
    let p = RUNTIME.load(&hostile("python-shaped")).unwrap();
    let report = run(&p, input("py", "{}"), &Limits::default()).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    // 12.4 MiB of memory and a 5,672-entry table count against 12 MiB.
    let report = run(&p, input("py", "{}"), &mib(12)).await;
    assert_eq!(
        report.result.unwrap_err(),
        InvokeError::OutOfMemory {
            limit_bytes: 12 << 20
        }
    );
}

#[tokio::test]
async fn a_pool_hog_times_out_and_gives_its_slot_back() {
    let p = RUNTIME.load(&hostile("pool-hog")).unwrap();
    // A tenant of its own: the other tests run beside this one.
    let a = RUNTIME.admit("hog-owner", &mib(64)).await;
    assert_eq!(RUNTIME.pool().live("hog-owner").1, 1);
    let report = RUNTIME.invoke(&p, input("hog", "{}"), &mib(64), a).await;
    assert_eq!(
        report.result.unwrap_err(),
        InvokeError::Timeout {
            limit: Duration::from_millis(500)
        }
    );
    assert_eq!(RUNTIME.pool().live("hog-owner").1, 0);
}

async fn flood(payload: &str, limits: &Limits) -> eddy_runtime::Report {
    let p = load("fx-flood");
    run(&p, input("flood", payload), limits).await
}

#[tokio::test]
async fn empty_log_lines_and_newlines_end_at_the_log_limit() {
    let limits = Limits {
        max_log_bytes: 64 << 10,
        ..Limits::default()
    };
    for payload in [r#"{"logs":2000000}"#, r#"{"newlines":2000000}"#] {
        let report = flood(payload, &limits).await;
        match &report.result {
            Err(InvokeError::LimitExceeded {
                limit: LimitKind::Logs,
                detail,
            }) => assert_eq!(
                detail.as_str(),
                "the processor's logs (log calls, stdout and stderr) exceed the limit of 65536 \
                 bytes, each line counting 32 bytes more than its text"
            ),
            other => panic!("{payload}: {other:?}"),
        }
        // Each kept line cost at least 32 bytes of the 64 KiB.
        assert!(
            report.logs.len() <= 2048,
            "{payload}: {} lines",
            report.logs.len()
        );
        // The logs and the error's message.
        assert!(report.completion_bytes() <= (64 << 10) + 512);
    }
}

#[tokio::test]
async fn a_completion_over_its_cap_is_limit_exceeded_without_follow_ups() {
    // Each part within its own limit; together over the completion cap.
    let limits = Limits {
        max_completion_bytes: 1 << 20,
        ..Limits::default()
    };
    let report = flood(
        r#"{"emits":100,"emit_bytes":8000,"output_bytes":500000}"#,
        &limits,
    )
    .await;
    assert!(report.emits.is_empty(), "follow-ups of a failed invocation");
    assert_eq!(
        report.result.unwrap_err().to_string(),
        "limit exceeded: completion-bytes: the output, logs and follow-ups total 1327600 bytes, \
         more than the limit of 1048576 bytes"
    );
    // Under the cap it succeeds with everything.
    let report = flood(r#"{"emits":10,"emit_bytes":10,"output_bytes":10}"#, &limits).await;
    assert_eq!(report.emits.len(), 10);
    assert_eq!(report.completion_bytes(), 10 + 10 * (10 + 4 + 16 + 256));
}

#[tokio::test]
async fn a_processor_error_is_cut_to_its_bounds() {
    let report = flood(r#"{"error_bytes":10000000}"#, &Limits::default()).await;
    match report.result {
        Err(InvokeError::Processor { code, message, .. }) => {
            assert_eq!((code.len(), message.len()), (128, 16 << 10));
        }
        other => panic!("{other:?}"),
    }
}
