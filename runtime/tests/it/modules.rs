//! Modules that are not processors are refused with a clear `invalid module`
//! error naming what is wrong.

use eddy_runtime::{LoadError, Runtime, RuntimeConfig};

use crate::support::{RUNTIME, wasm};

fn refuse(bytes: &[u8]) -> String {
    match RUNTIME.load(bytes) {
        Err(e @ LoadError::InvalidModule(_)) => e.to_string(),
        Err(e) => panic!("expected invalid module, got {e}"),
        Ok(_) => panic!("expected invalid module, got a processor"),
    }
}

#[test]
fn malformed_modules_are_refused_with_what_is_wrong() {
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_eq!(
        refuse(&random),
        "invalid module: not a WebAssembly binary (missing the `\\0asm` magic number)"
    );
    assert_eq!(
        refuse(b"\0asm\x01\0\0\0"),
        "invalid module: this is a core WebAssembly module, not a component: build the processor \
         for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    );
    assert_eq!(
        refuse(b""),
        "invalid module: not a WebAssembly binary (missing the `\\0asm` magic number)"
    );
    let other = refuse(&wasm("fx-other-world"));
    assert_eq!(
        other,
        "invalid module: the component does not export `handle`: a processor implements the \
         eddy:processor@0.2.0 world (`eddy wit` prints it)"
    );
    let truncated = wasm("echo")[..200].to_vec();
    let msg = refuse(&truncated);
    assert!(
        msg.starts_with("invalid module: failed to compile the component: "),
        "{msg}"
    );
}

#[test]
fn a_module_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let small = Runtime::new(RuntimeConfig {
        cache_dir: dir.path().to_path_buf(),
        max_instances: 4,
        max_module_bytes: 1000,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let err = small.load(&wasm("echo")).unwrap_err();
    let len = wasm("echo").len();
    assert_eq!(
        err.to_string(),
        format!("invalid module: module is {len} bytes, more than the limit of 1000 bytes")
    );
}

#[test]
fn artifacts_are_cached_on_disk_and_a_corrupt_one_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: dir.path().to_path_buf(),
        max_instances: 4,
        ..RuntimeConfig::default()
    };
    let bytes = wasm("echo");
    let first = Runtime::new(config.clone()).unwrap();
    let p = first.load(&bytes).unwrap();
    assert!(!p.from_cache());
    let path = first.cache().path(p.sha256());
    assert!(path.exists());
    drop(first);

    // A new process (a new engine) maps the artifact instead of compiling.
    let second = Runtime::new(config.clone()).unwrap();
    assert!(second.load(&bytes).unwrap().from_cache());
    assert!(second.load_cached(p.sha256()).unwrap().is_some());
    assert!(second.load_cached(&"0".repeat(64)).unwrap().is_none());

    // A damaged artifact is discarded and rebuilt, never trusted.
    std::fs::write(&path, b"garbage").unwrap();
    let third = Runtime::new(config).unwrap();
    assert!(third.load_cached(p.sha256()).unwrap().is_none());
    let again = third.load(&bytes).unwrap();
    assert!(!again.from_cache());
}
