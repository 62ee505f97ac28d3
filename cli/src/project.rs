//! Projects: `eddy new`, `eddy build`, `eddy test`, `eddy wit` and the
//! manifest (`eddy.toml`) that `eddy deploy` applies with no arguments.
//!
//! A project builds one component with its language's toolchain; the SDKs
//! and the WIT come from this binary (so a project always builds against
//! the platform it deploys to), the toolchains from their registries, pinned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

/// The processor world, as the runtime links it.
pub const WIT: &str = include_str!("../../wit/processor.wit");

/// componentize-py, pinned: the version the Python SDK is tested with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

const PY_SDK: &str = include_str!("../../functions/sdk-python/eddy/__init__.py");
const JS_SDK: [(&str, &str); 3] = [
    (
        "package.json",
        include_str!("../../functions/sdk-js/package.json"),
    ),
    ("index.js", include_str!("../../functions/sdk-js/index.js")),
    (
        "index.d.ts",
        include_str!("../../functions/sdk-js/index.d.ts"),
    ),
];
const JS_BUILD: &str = include_str!("../templates/build.mjs");
/// The Rust SDK (functions/sdk) as a standalone crate: its sources with the
/// WIT paths pointing inside it.
const RUST_SDK: [(&str, &str); 6] = [
    (
        "Cargo.toml",
        include_str!("../templates/sdk-rust/Cargo.toml"),
    ),
    ("src/lib.rs", include_str!("../../functions/sdk/src/lib.rs")),
    (
        "src/config.rs",
        include_str!("../../functions/sdk/src/config.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../functions/sdk/src/http.rs"),
    ),
    ("wit/processor.wit", WIT),
    (
        "wit/wasi-config/store.wit",
        include_str!("../../wit/wasi-config/store.wit"),
    ),
];

/// The manifest's file name.
pub const MANIFEST: &str = "eddy.toml";

/// A project's source languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
    Ts,
}

impl Lang {
    fn templates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => &[
                ("eddy.toml", include_str!("../templates/rust/eddy.toml")),
                ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
                ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
                (".gitignore", include_str!("../templates/rust/gitignore")),
            ],
            Lang::Python => &[
                ("eddy.toml", include_str!("../templates/python/eddy.toml")),
                ("app.py", include_str!("../templates/python/app.py")),
                (".gitignore", include_str!("../templates/python/gitignore")),
            ],
            Lang::Js => &[
                ("eddy.toml", include_str!("../templates/js/eddy.toml")),
                ("src/index.js", include_str!("../templates/js/src/index.js")),
                ("package.json", include_str!("../templates/js/package.json")),
                (".gitignore", include_str!("../templates/js/gitignore")),
            ],
            Lang::Ts => &[
                ("eddy.toml", include_str!("../templates/ts/eddy.toml")),
                ("src/index.ts", include_str!("../templates/ts/src/index.ts")),
                ("package.json", include_str!("../templates/ts/package.json")),
                (
                    "tsconfig.json",
                    include_str!("../templates/ts/tsconfig.json"),
                ),
                (".gitignore", include_str!("../templates/ts/gitignore")),
            ],
        }
    }
}

/// `eddy.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The project's name: the component is `target/<name>.wasm`.
    pub name: String,
    pub lang: Lang,
    /// The processor's source: a Python file (its module is the entry) or
    /// the JavaScript/TypeScript file that exports `handle`.
    pub main: PathBuf,
    /// Functions that run the component: name → config (any field of a
    /// function's config; left-out fields keep their deployed values).
    #[serde(default)]
    pub functions: BTreeMap<String, toml::Table>,
    /// Schedules: name → `{cron, function, data}`.
    #[serde(default)]
    pub schedules: BTreeMap<String, toml::Table>,
    /// `eddy test`'s cases.
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

/// One `[[tests]]` case: run `function` on `input`; expect `output` (JSON,
/// compared as values) or the error `error` (its code), and optionally the
/// functions it emits to, in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub function: Option<String>,
    #[serde(default)]
    pub input: Option<toml::Value>,
    pub output: Option<toml::Value>,
    pub error: Option<String>,
    pub emits: Option<Vec<String>>,
}

/// A loaded project: where it is and what its manifest says.
#[derive(Debug)]
pub struct Project {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn json_of(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Project {
    /// Reads `dir/eddy.toml` and checks what can be checked offline.
    pub fn open(dir: &Path) -> Result<Project> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (create a project with `eddy new --lang python NAME`)",
                path.display()
            )
        })?;
        let manifest: Manifest =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        eddy_protocol::FunctionName::new(manifest.name.clone())
            .map_err(|e| anyhow::anyhow!("{}: name: {e}", path.display()))?;
        for (name, table) in &manifest.functions {
            eddy_protocol::FunctionName::new(name.clone())
                .map_err(|e| anyhow::anyhow!("{}: functions.{name}: {e}", path.display()))?;
            config_patch(table).with_context(|| format!("{}: functions.{name}", path.display()))?;
        }
        for name in manifest.schedules.keys() {
            eddy_protocol::schedules::check_name(name)
                .map_err(|e| anyhow::anyhow!("{}: schedules.{name}: {e}", path.display()))?;
        }
        Ok(Project {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The component `eddy build` writes.
    pub fn component(&self) -> PathBuf {
        self.dir
            .join("target")
            .join(format!("{}.wasm", self.manifest.name))
    }

    /// The module a function deploys: its `module` key, else the component.
    fn module_of(&self, table: &toml::Table) -> Result<PathBuf> {
        match table.get("module") {
            None => Ok(self.component()),
            Some(toml::Value::String(m)) => Ok(self.dir.join(m)),
            Some(_) => bail!("module must be a path"),
        }
    }
}

/// A function's manifest entry as the config patch a deploy sends
/// (`X-Eddy-Config`), checked against the config's fields here so that a
/// typo fails before anything is sent.
fn config_patch(table: &toml::Table) -> Result<Value> {
    let mut patch = serde_json::to_value(table).context("not representable as JSON")?;
    if let Value::Object(m) = &mut patch {
        m.remove("module");
    }
    let mut full = serde_json::to_value(eddy_protocol::FunctionConfig::default())?;
    eddy_protocol::merge_json(&mut full, patch.clone());
    serde_json::from_value::<eddy_protocol::FunctionConfig>(full)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(patch)
}

// ------------------------------------------------------------------- new

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's (and its first function's) name.
    name: String,
    /// The processor's language (`ts` and `js` share the SDK).
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where to create it (default: a new folder named NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn new(args: NewArgs) -> Result<ExitCode> {
    eddy_protocol::FunctionName::new(args.name.clone())
        .map_err(|e| anyhow::anyhow!("name: {e}"))?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    if args.lang == Lang::Rust {
        // Cargo reads the SDK's path before any build.
        write_rust_sdk(&dir.join(".eddy"))?;
    }
    for (path, text) in args.lang.templates() {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text.replace("{{name}}", &args.name))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {} ({}): cd {} && eddy build && eddy test && eddy deploy",
        dir.display(),
        format!("{:?}", args.lang).to_lowercase(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

// ----------------------------------------------------------------- build

#[derive(Debug, clap::Args)]
pub struct DirArgs {
    /// The project's folder (holding eddy.toml).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

pub fn build(args: DirArgs) -> Result<ExitCode> {
    let project = Project::open(&args.dir)?;
    let started = Instant::now();
    let out = build_project(&project)?;
    let bytes = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    // The shape check is milliseconds: a component of the wrong world fails
    // here, not minutes later at deploy.
    eddy_runtime::check_imports(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    println!(
        "built {} ({:.1} MB, {:.1} s)",
        out.display(),
        bytes.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Builds the project's component; returns its path.
pub fn build_project(project: &Project) -> Result<PathBuf> {
    let dir = absolute(&project.dir)?;
    write(&dir.join(".eddy/wit/processor.wit"), WIT)?;
    let out = absolute(&project.component())?;
    std::fs::create_dir_all(dir.join("target")).context("creating target/")?;
    let main = dir.join(&project.manifest.main);
    if !main.is_file() {
        bail!("main = {} does not exist", project.manifest.main.display());
    }
    // Inside the project: the build reads the folder that holds it.
    let (dir, main) = (
        dir.canonicalize().context("resolving the project")?,
        main.canonicalize().context("resolving main")?,
    );
    if !main.starts_with(&dir) {
        bail!(
            "main = {} is outside the project",
            project.manifest.main.display()
        );
    }
    let eddy = dir.join(".eddy");
    match project.manifest.lang {
        Lang::Rust => build_rust(&dir, &eddy, &out)?,
        Lang::Python => build_python(&dir, &eddy, &main, &out)?,
        Lang::Js | Lang::Ts => build_js(&dir, &eddy, &main, &out)?,
    }
    Ok(out)
}

/// Where toolchains shared by every project of this user are kept (never a
/// shared folder such as /tmp: what is there runs).
fn toolchains() -> Result<PathBuf> {
    Ok(std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set: nowhere to keep the toolchain")?
        .join("eddy")
        .join("toolchains"))
}

fn python() -> &'static str {
    if Command::new("python3").arg("--version").output().is_ok() {
        "python3"
    } else {
        "python"
    }
}

fn build_python(dir: &Path, eddy: &Path, main: &Path, out: &Path) -> Result<()> {
    let module = main
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|m| main.extension().is_some_and(|e| e == "py") && *m != "__init__")
        .context("main must name a Python module file (`app.py`)")?;
    let main_dir = main.parent().unwrap_or(dir);
    write(&eddy.join("python/eddy/__init__.py"), PY_SDK)?;
    let name = COMPONENTIZE_PY.replace("==", "-");
    let toolchain = toolchains()?.join(&name);
    if !toolchain.join("componentize_py/__init__.py").is_file() {
        eprintln!("installing {COMPONENTIZE_PY} into {}", toolchain.display());
        let partial = toolchain.with_file_name(format!("{name}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        run(
            Command::new(python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--target",
                ])
                .arg(&partial)
                .arg(COMPONENTIZE_PY),
            "pip install componentize-py",
        )?;
        let _ = std::fs::remove_dir_all(&toolchain);
        std::fs::rename(&partial, &toolchain).context("installing the toolchain")?;
    }
    let mut paths = vec![main_dir.to_path_buf(), eddy.join("python")];
    let requirements = dir.join("requirements.txt");
    if requirements.is_file() {
        let site = eddy.join("site");
        let stamp = site.join(".requirements");
        let wanted = std::fs::read_to_string(&requirements).context("reading requirements.txt")?;
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
            let _ = std::fs::remove_dir_all(&site);
            run(
                Command::new(python())
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--target",
                    ])
                    .arg(&site)
                    .arg("-r")
                    .arg(&requirements),
                "pip install -r requirements.txt",
            )?;
            write(&stamp, &wanted)?;
        }
        paths.push(site);
    }
    let mut cmd = Command::new(python());
    cmd.env("PYTHONPATH", &toolchain)
        .args([
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
            "-d",
        ])
        .arg(eddy.join("wit"))
        .args(["-w", "processor", "componentize"]);
    for p in &paths {
        cmd.arg("-p").arg(p);
    }
    cmd.arg(module).arg("-o").arg(out).current_dir(dir);
    run(&mut cmd, "componentize-py")
}

/// Writes the Rust SDK where the template's Cargo.toml finds it.
fn write_rust_sdk(eddy: &Path) -> Result<()> {
    for (name, text) in RUST_SDK {
        let text = text
            .replace(
                "path: \"../../wit/wasi-config\"",
                "path: \"wit/wasi-config\"",
            )
            .replace("path: \"../../wit\"", "path: \"wit\"");
        write(&eddy.join("sdk-rust").join(name), &text)?;
    }
    Ok(())
}

fn build_rust(dir: &Path, eddy: &Path, out: &Path) -> Result<()> {
    write_rust_sdk(eddy)?;
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        .unwrap_or(true);
    if !installed {
        run(
            Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
            "rustup target add wasm32-wasip2",
        )?;
    }
    let cargo_target = dir.join("target").join("cargo");
    run(
        Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .env("CARGO_TARGET_DIR", &cargo_target)
            .current_dir(dir),
        "cargo build",
    )?;
    // The cdylib is named after the package (`-` becomes `_`).
    let manifest: toml::Table = toml::from_str(
        &std::fs::read_to_string(dir.join("Cargo.toml")).context("reading Cargo.toml")?,
    )
    .context("Cargo.toml is not valid")?;
    let package = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .context("Cargo.toml names no package")?
        .replace('-', "_");
    let built = cargo_target.join(format!("wasm32-wasip2/release/{package}.wasm"));
    std::fs::copy(&built, out)
        .with_context(|| format!("copying {} (is it a cdylib?)", built.display()))?;
    Ok(())
}

fn build_js(dir: &Path, eddy: &Path, main: &Path, out: &Path) -> Result<()> {
    for (name, text) in JS_SDK {
        write(&eddy.join("sdk-js").join(name), text)?;
    }
    write(&eddy.join("build.mjs"), JS_BUILD)?;
    let installed = ["@bytecodealliance/componentize-js", "esbuild", "@eddy/sdk"]
        .iter()
        .all(|p| {
            dir.join("node_modules")
                .join(p)
                .join("package.json")
                .is_file()
        });
    if !installed {
        eprintln!("installing the JavaScript toolchain (npm install)");
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir),
            "npm install",
        )?;
    }
    // `main` is inside the project (checked); quoted as a JSON string.
    let main = main
        .strip_prefix(dir)
        .context("main is outside the project")?
        .to_string_lossy()
        .replace('\\', "/");
    let main = serde_json::to_string(&format!("../{main}"))?;
    write(
        &eddy.join("entry.js"),
        &format!(
            "// Written by `eddy build`: binds the SDK to the component's imports.\n\
             import * as host from 'eddy:processor/host@0.2.0';\n\
             import {{ bind }} from '@eddy/sdk';\n\
             bind(host);\n\
             export {{ handle }} from {main};\n"
        ),
    )?;
    run(
        Command::new("node")
            .arg(eddy.join("build.mjs"))
            .arg(eddy.join("entry.js"))
            .arg(eddy.join("bundle.js"))
            .arg(eddy.join("wit"))
            .arg(out)
            .current_dir(dir),
        "componentize-js",
    )
}

// ------------------------------------------------------------------ test

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Artifact cache directory (compiled components).
    #[arg(long, env = "EDDY_CACHE_DIR", default_value = ".eddy/artifacts")]
    cache_dir: PathBuf,
    #[command(flatten)]
    ceilings: crate::roles::CeilingArgs,
}

/// What one case got: its output as JSON (or text), its error code, emits.
fn outcome(report: &eddy_runtime::Report) -> (Option<Value>, Option<String>, Vec<String>) {
    let emits = report.emits.iter().map(|e| e.function.clone()).collect();
    match &report.result {
        Ok(o) => (
            Some(serde_json::from_slice(&o.payload).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&o.payload).into_owned())
            })),
            None,
            emits,
        ),
        Err(eddy_runtime::InvokeError::Processor { code, .. }) => (None, Some(code.clone()), emits),
        Err(e) => (None, Some(e.class().as_str().to_string()), emits),
    }
}

pub fn test(args: TestArgs) -> Result<ExitCode> {
    let project = Project::open(&args.dir.dir)?;
    let module = project.component();
    let bytes = std::fs::read(&module)
        .with_context(|| format!("reading {} (run `eddy build` first)", module.display()))?;
    let cache = if args.cache_dir.is_relative() {
        project.dir.join(&args.cache_dir)
    } else {
        args.cache_dir
    };
    let runtime = crate::local::runtime(cache, &args.ceilings, Default::default())?;
    let started = Instant::now();
    let processor = runtime
        .load(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", module.display()))?;
    eprintln!(
        "loaded {} in {:.1} s{}",
        module.display(),
        started.elapsed().as_secs_f64(),
        if processor.from_cache() {
            " (cached)"
        } else {
            ""
        }
    );
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let mut failed = 0;
    for (i, case) in project.manifest.tests.iter().enumerate() {
        let function = case
            .function
            .clone()
            .unwrap_or_else(|| project.manifest.name.clone());
        let table = project.manifest.functions.get(&function);
        let config = table.map(config_patch).transpose()?.unwrap_or(Value::Null);
        let mut full = serde_json::to_value(eddy_protocol::FunctionConfig::default())?;
        eddy_protocol::merge_json(&mut full, config);
        let config: eddy_protocol::FunctionConfig = serde_json::from_value(full)?;
        let limits = eddy_runtime::Limits {
            timeout: Duration::from_millis(config.timeout_ms),
            memory_bytes: config.memory_mb << 20,
            ..eddy_runtime::Limits::default()
        };
        let payload = case
            .input
            .as_ref()
            .map(|v| json_of(v).to_string())
            .unwrap_or_else(|| "{}".into());
        let input = eddy_runtime::Input {
            id: format!("test-{}", i + 1),
            run_id: format!("test-{}", i + 1),
            function: function.clone(),
            attempt: 1,
            depth: 0,
            content_type: "application/json".into(),
            payload: payload.clone().into_bytes(),
            config: config.values.clone().into_iter().collect(),
            tenant: "local".into(),
            version: 0,
            traceparent: None,
            variables: None,
        };
        let report = tokio.block_on(async {
            let admission = runtime.admit("local", &limits).await;
            runtime.invoke(&processor, input, &limits, admission).await
        });
        let (output, error, emits) = outcome(&report);
        let mut wrong = Vec::new();
        if let Some(want) = &case.output {
            let want = json_of(want);
            if output.as_ref() != Some(&want) {
                wrong.push(format!("output: want {want}, got {}", got(&report)));
            }
        }
        if let Some(want) = &case.error
            && error.as_deref() != Some(want.as_str())
        {
            wrong.push(format!("error: want `{want}`, got {}", got(&report)));
        }
        if case.output.is_none() && case.error.is_none() && error.is_some() {
            wrong.push(format!("failed: {}", got(&report)));
        }
        if let Some(want) = &case.emits
            && *want != emits
        {
            wrong.push(format!("emits: want {want:?}, got {emits:?}"));
        }
        let took = report.timings.instantiate + report.timings.run;
        if wrong.is_empty() {
            println!("ok   {} {function} {payload} ({took:?})", i + 1);
        } else {
            failed += 1;
            println!("FAIL {} {function} {payload}", i + 1);
            for w in wrong {
                println!("     {w}");
            }
            for l in &report.logs {
                println!("     log {} {}", l.level.as_str(), l.message);
            }
        }
    }
    let n = project.manifest.tests.len();
    println!("{} passed, {failed} failed", n - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn got(report: &eddy_runtime::Report) -> String {
    match &report.result {
        Ok(o) => String::from_utf8_lossy(&o.payload).into_owned(),
        Err(e) => format!("error [{}] {e}", e.class()),
    }
}

// ---------------------------------------------------------------- deploy

/// What `eddy deploy` did to one function or schedule.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated(String),
    Unchanged,
}

/// Whether deploying `sha256` with `patch` onto `current` (the current
/// version's spec, if the function exists) changes anything, and what. The
/// configs are compared as typed values: a field the gateway leaves out at
/// its default equals the manifest's explicit default.
pub fn function_change(current: Option<&Value>, sha256: &str, patch: &Value) -> Change {
    let Some(current) = current else {
        return Change::Created;
    };
    let mut why = Vec::new();
    if current["sha256"].as_str() != Some(sha256) {
        why.push("module".to_string());
    }
    let typed = |v: Value| serde_json::from_value::<eddy_protocol::FunctionConfig>(v).ok();
    let before = typed(current["config"].clone());
    let mut after = current["config"].clone();
    eddy_protocol::merge_json(&mut after, patch.clone());
    let after = typed(after);
    if before != after {
        let fields = |c: &Option<eddy_protocol::FunctionConfig>| {
            c.as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default()
        };
        let (b, a) = (fields(&before), fields(&after));
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        let changed: Vec<String> = keys
            .into_iter()
            .filter(|k| b.get(*k) != a.get(*k))
            .cloned()
            .collect();
        if changed.is_empty() {
            why.push("config".into());
        }
        why.extend(changed);
    }
    if why.is_empty() {
        Change::Unchanged
    } else {
        Change::Updated(why.join(", "))
    }
}

/// `eddy deploy` with no function: applies the manifest in `dir`.
pub async fn deploy(conn: &crate::client::Conn, dir: &Path) -> Result<ExitCode> {
    use crate::client::api::{Api, ApiFailure, segment};
    use reqwest::Method;

    let project = Project::open(dir)?;
    if project.manifest.functions.is_empty() {
        bail!("{MANIFEST} names no [functions.NAME]");
    }
    let api = Api::new(conn)?;
    let not_found = |e: &anyhow::Error| {
        e.downcast_ref::<ApiFailure>()
            .is_some_and(|f| f.code.ends_with("not_found"))
    };
    for (name, table) in &project.manifest.functions {
        let path = project.module_of(table)?;
        let module = std::fs::read(&path)
            .with_context(|| format!("reading {} (run `eddy build` first)", path.display()))?;
        let sha256 = eddy_runtime::sha256_hex(&module);
        let patch = config_patch(table)?;
        let current = match api.get(&format!("/functions/{}", segment(name))).await {
            Ok(detail) => {
                let v = detail["current"].as_u64();
                detail["versions"]
                    .as_array()
                    .and_then(|vs| vs.iter().find(|s| s["version"].as_u64() == v).cloned())
            }
            Err(e) if not_found(&e) => None,
            Err(e) => return Err(e),
        };
        let change = function_change(current.as_ref(), &sha256, &patch);
        if change == Change::Unchanged {
            let version = current.as_ref().and_then(|c| c["version"].as_u64());
            println!(
                "function {name}: unchanged (version {})",
                version.unwrap_or(0)
            );
            continue;
        }
        let started = Instant::now();
        let spec = api
            .json(
                api.request(Method::PUT, &format!("/functions/{}", segment(name)))?
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .header("x-eddy-config", patch.to_string())
                    .body(module),
            )
            .await
            .with_context(|| format!("deploying {name}"))?;
        let what = match change {
            Change::Created => "created".to_string(),
            Change::Updated(why) => format!("updated ({why})"),
            Change::Unchanged => unreachable!(),
        };
        println!(
            "function {name}: {what}, version {} ({:.1} s)",
            spec["version"],
            started.elapsed().as_secs_f64()
        );
    }
    for (name, table) in &project.manifest.schedules {
        let body = serde_json::to_value(table)?;
        let current = match api.get(&format!("/schedules/{}", segment(name))).await {
            Ok(s) => Some(s.value),
            Err(e) if not_found(&e) => None,
            Err(e) => return Err(e),
        };
        let same = current.as_ref().is_some_and(|c| {
            ["cron", "function", "data"].iter().all(|k| {
                let want = body.get(*k).cloned().unwrap_or(if *k == "data" {
                    Value::Object(Default::default())
                } else {
                    Value::Null
                });
                c.get(*k) == Some(&want)
            })
        });
        if same {
            println!("schedule {name}: unchanged");
            continue;
        }
        api.json(
            api.request(Method::PUT, &format!("/schedules/{}", segment(name)))?
                .json(&body),
        )
        .await
        .with_context(|| format!("schedule {name}"))?;
        println!(
            "schedule {name}: {}",
            if current.is_some() {
                "updated"
            } else {
                "created"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_is_a_valid_project() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::Ts] {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("p");
            new(NewArgs {
                name: "hello".into(),
                lang,
                dir: Some(target.clone()),
            })
            .unwrap();
            let p = Project::open(&target).unwrap();
            assert_eq!(p.manifest.lang, lang);
            assert_eq!(p.manifest.tests.len(), 2);
            assert!(target.join(&p.manifest.main).is_file());
            assert!(p.manifest.functions.contains_key("hello"));
            // A second `new` into the same folder is refused.
            assert!(
                new(NewArgs {
                    name: "hello".into(),
                    lang,
                    dir: Some(target.clone()),
                })
                .is_err()
            );
        }
    }

    #[test]
    fn a_typo_in_a_function_is_refused_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(MANIFEST),
            "name = \"x\"\nlang = \"python\"\nmain = \"app.py\"\n[functions.x]\nmemory = 128\n",
        )
        .unwrap();
        let e = format!("{:#}", Project::open(dir.path()).unwrap_err());
        assert!(
            e.contains("functions.x") && e.contains("unknown field `memory`"),
            "{e}"
        );
    }

    #[test]
    fn unchanged_means_same_module_and_no_field_moved() {
        let current = json!({"sha256": "aa", "version": 3,
            "config": {"timeout_ms": 5000, "memory_mb": 128, "values": {"A": "1"}}});
        assert_eq!(
            function_change(Some(&current), "aa", &json!({"memory_mb": 128})),
            Change::Unchanged
        );
        assert_eq!(
            function_change(Some(&current), "bb", &json!({"values": {"A": "1"}})),
            Change::Updated("module".into())
        );
        assert_eq!(
            function_change(
                Some(&current),
                "aa",
                &json!({"memory_mb": 256, "values": {"B": "2"}})
            ),
            Change::Updated("memory_mb, values".into())
        );
        assert_eq!(function_change(None, "aa", &json!({})), Change::Created);
        // Defaults the gateway leaves out of its answer equal the manifest's
        // explicit defaults.
        assert_eq!(
            function_change(
                Some(&current),
                "aa",
                &json!({"max_outbound_requests": 100, "allowed_hosts": []})
            ),
            Change::Unchanged
        );
    }
}
