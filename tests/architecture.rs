//! The invariants of ARCHITECTURE.md that the source tree itself can show:
//! how the crates depend on each other, where `unsafe` is, and that only
//! `protocol` types are written to Redis. They read the files, so they fail
//! the moment a change breaks the picture, not when someone notices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names in a manifest's `[dependencies]` table (not dev or build ones,
/// nor target-specific ones: those never link another Eddy crate).
fn dependencies(krate: &str) -> BTreeSet<String> {
    let manifest = read(&root().join(krate).join("Cargo.toml"));
    let mut deps = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['.', '=', ' ']).next().unwrap_or_default();
            deps.insert(name.to_string());
        }
    }
    deps
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Code lines: comment lines dropped.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

const CRATES: [&str; 8] = [
    "protocol",
    "runtime",
    "queue",
    "worker",
    "controller",
    "gateway",
    "cli",
    "bench/loadgen",
];

#[test]
fn crates_depend_as_the_code_map_says() {
    let eddy = |krate: &str| -> BTreeSet<String> {
        dependencies(krate)
            .into_iter()
            .filter(|d| d.starts_with("eddy-"))
            .collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
    assert_eq!(eddy("protocol"), set(&[]));
    assert_eq!(eddy("runtime"), set(&["eddy-protocol"]));
    assert_eq!(eddy("queue"), set(&["eddy-protocol"]));
    assert_eq!(
        eddy("worker"),
        set(&["eddy-protocol", "eddy-queue", "eddy-runtime"])
    );
    assert_eq!(eddy("controller"), set(&["eddy-protocol", "eddy-queue"]));
    assert_eq!(eddy("gateway"), set(&["eddy-protocol", "eddy-queue"]));
    assert_eq!(
        eddy("cli"),
        set(&[
            "eddy-controller",
            "eddy-gateway",
            "eddy-protocol",
            "eddy-queue",
            "eddy-runtime",
            "eddy-worker",
        ])
    );
    assert_eq!(eddy("bench/loadgen"), set(&["eddy-cli"]));
    // Redis only in queue; wasmtime only in runtime (so gateway and
    // controller, which reach neither runtime nor worker, never link it).
    for krate in CRATES {
        let deps = dependencies(krate);
        assert_eq!(
            deps.contains("redis"),
            krate == "queue",
            "{krate} and redis"
        );
        assert_eq!(
            deps.iter().any(|d| d.starts_with("wasmtime")),
            krate == "runtime",
            "{krate} and wasmtime"
        );
    }
}

#[test]
fn unsafe_code_is_where_it_is_said_to_be() {
    // Every crate root forbids it, but runtime's, which denies it (the
    // workspace lint) and allows it once.
    for krate in CRATES {
        let src = root().join(krate).join("src");
        for name in ["lib.rs", "main.rs"] {
            let path = src.join(name);
            if !path.exists() {
                continue;
            }
            let text = read(&path);
            let forbids = text.contains("#![forbid(unsafe_code)]");
            match krate {
                "runtime" => assert!(!forbids, "{}", path.display()),
                _ => assert!(forbids, "{} must forbid unsafe_code", path.display()),
            }
        }
    }
    let workspace = read(&root().join("Cargo.toml"));
    assert!(workspace.contains("unsafe_code = \"deny\""));
    let mut found = Vec::new();
    for krate in CRATES {
        for path in sources(&root().join(krate).join("src")) {
            let text = read(&path);
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in code_lines(&text) {
                if line.contains("unsafe {")
                    || line.contains("unsafe fn")
                    || line.contains("unsafe impl")
                {
                    let before = &lines[i.saturating_sub(10)..i];
                    assert!(
                        before.iter().any(|l| l.contains("// SAFETY:")),
                        "{}:{} has no SAFETY comment",
                        path.display(),
                        i + 1
                    );
                    let rel = path
                        .strip_prefix(root())
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    found.push(rel);
                }
            }
        }
    }
    assert_eq!(
        found,
        vec!["runtime/src/cache.rs".to_string(); 2],
        "ARCHITECTURE.md names where unsafe is: update it with the code"
    );
}

#[test]
fn only_protocol_types_are_written_to_redis() {
    // Redis is reached only through queue (checked above), and queue defines
    // no serde type: what it writes is a protocol type or a plain field.
    for path in sources(&root().join("queue/src")) {
        let text = read(&path);
        for (i, line) in code_lines(&text) {
            let serde = line.contains("Serialize") || line.contains("Deserialize");
            let defines = line.contains("derive(") || line.trim_start().starts_with("impl");
            assert!(
                !(serde && defines),
                "{}:{}: a serde type in queue; define it in protocol",
                path.display(),
                i + 1
            );
        }
    }
}
