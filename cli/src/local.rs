//! `eddy run` and `eddy check`: the processor author's inner loop, with no
//! Redis and no server: the same runtime the workers use.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eddy_runtime::{Input, Limits, Report, Runtime};
use serde_json::json;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "eddy run <module.wasm> runs a processor locally; eddy run <run-id> [--watch] shows a run (as `eddy runs`)."
)]
pub struct RunArgs {
    /// The processor component (`.wasm`), or a run id to show that run.
    module: PathBuf,
    /// Payload file, or `-` for stdin. Empty payload when absent.
    #[arg(long, short)]
    input: Option<String>,
    /// Content type of the payload.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Function config value, `key=value` (repeatable).
    #[arg(long = "config", short = 'c', value_parser = parse_kv)]
    config: Vec<(String, String)>,
    /// A variable the processor reads through `wasi:config/store`,
    /// `name=value` (repeatable).
    #[arg(long = "var", value_parser = parse_kv)]
    vars: Vec<(String, String)>,
    /// A secret, `name=value` (repeatable): read like a variable, redacted
    /// from the report. Prefer `--secret name=-` to read it from stdin.
    #[arg(long = "secret", value_parser = parse_kv)]
    secrets: Vec<(String, String)>,
    /// Function name the processor sees (default: the module's file stem).
    #[arg(long)]
    function: Option<String>,
    /// Attempt number the processor sees.
    #[arg(long, default_value_t = 1)]
    attempt: u32,
    /// Wall-clock limit, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Memory limit, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mb: u64,
    /// An origin the processor may call over HTTP, as a function's
    /// `allowed_hosts` (repeatable, or comma-separated).
    #[arg(long = "allow-host", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Internal addresses or networks outbound requests may reach anyway
    /// (e.g. `127.0.0.1` for a server on this machine), as a worker's.
    #[arg(long, env = "EDDY_OUTBOUND_ALLOWLIST", default_value = "")]
    outbound_allowlist: String,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Artifact cache directory.
    #[arg(long, env = "EDDY_CACHE_DIR", default_value = ".eddy/artifacts")]
    cache_dir: PathBuf,
    /// With a run id: follow the run until it ends.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    ceilings: crate::roles::CeilingArgs,
    #[command(flatten)]
    conn: crate::client::Conn,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The module to validate.
    module: PathBuf,
    /// Artifact cache directory.
    #[arg(long, env = "EDDY_CACHE_DIR", default_value = ".eddy/artifacts")]
    cache_dir: PathBuf,
    #[command(flatten)]
    ceilings: crate::roles::CeilingArgs,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got `{s}`"))
}

/// The runtime a worker with `ceilings` runs: `eddy check` and `eddy run`
/// refuse what the platform would.
pub(crate) fn runtime(
    cache_dir: PathBuf,
    ceilings: &crate::roles::CeilingArgs,
    outbound_allowlist: eddy_protocol::callback::Allowlist,
) -> Result<Runtime> {
    Runtime::new(eddy_runtime::RuntimeConfig {
        outbound_allowlist,
        ..eddy_worker::runtime_config(
            &ceilings.parse()?,
            cache_dir,
            16,
            eddy_worker::default_guest_memory(),
        )
    })
    .context("starting the runtime")
}

fn read_module(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let bytes = read_module(&args.module)?;
    let runtime = runtime(args.cache_dir, &args.ceilings, Default::default())?;
    match runtime.load(&bytes) {
        Ok(p) => {
            println!(
                "ok: {} is an {} component (sha256 {}, loaded in {:?}{})",
                args.module.display(),
                p.world(),
                p.sha256(),
                p.load_time(),
                if p.from_cache() { ", from cache" } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", args.module.display());
            Ok(ExitCode::from(1))
        }
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    // `eddy run <run-id> [--watch]`: not a module but a run id.
    if let Some(id) = crate::client::as_run_id(&args.module) {
        return crate::client::show_run(args.conn, id, args.watch, args.json);
    }
    if args.watch {
        bail!("--watch goes with a run id, not a module");
    }
    let payload = match args.input.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            buf
        }
        Some(path) => std::fs::read(path).with_context(|| format!("reading {path}"))?,
    };
    let bytes = read_module(&args.module)?;
    let function = match args.function {
        Some(f) => f,
        None => args
            .module
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("processor")
            .to_string(),
    };
    let mut limits = Limits {
        timeout: Duration::from_millis(args.timeout_ms),
        memory_bytes: args.memory_mb << 20,
        ..Limits::default()
    };
    limits.outbound.allowed_hosts = eddy_protocol::AllowedHosts::parse(&args.allowed_hosts)
        .map_err(|e| anyhow::anyhow!("--allow-host: {e}"))?;
    let allowlist = eddy_protocol::callback::Allowlist::parse(&args.outbound_allowlist)
        .map_err(|e| anyhow::anyhow!("EDDY_OUTBOUND_ALLOWLIST: {e}"))?;
    let runtime = runtime(args.cache_dir, &args.ceilings, allowlist)?;
    let processor = match runtime.load(&bytes) {
        Ok(p) => p,
        Err(e) => bail!("{}: {e}", args.module.display()),
    };
    let variables = local_variables(args.vars, args.secrets, args.input.as_deref() == Some("-"))?;
    let id = format!("local-{}", std::process::id());
    let input = Input {
        run_id: id.clone(),
        id,
        function,
        attempt: args.attempt,
        depth: 0,
        content_type: args.content_type,
        payload,
        config: args.config,
        tenant: "local".into(),
        version: 0,
        traceparent: None,
        variables: Some(std::sync::Arc::new(eddy_runtime::FixedVariables(variables))),
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let report = tokio.block_on(async {
        let admission = runtime.admit("local", &limits).await;
        runtime.invoke(&processor, input, &limits, admission).await
    });
    if args.json {
        println!("{}", report_json(&report, processor.load_time()));
    } else {
        print_report(&report, processor.load_time());
    }
    Ok(if report.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--var` and `--secret` as the guest sees them (a later one wins); a
/// secret of `-` is read from stdin (one line), keeping it out of the shell
/// history.
fn local_variables(
    vars: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
    stdin_taken: bool,
) -> Result<Vec<eddy_protocol::variables::Variable>> {
    let mut out: Vec<eddy_protocol::variables::Variable> = Vec::new();
    let tagged = vars
        .into_iter()
        .map(|v| (v, false))
        .chain(secrets.into_iter().map(|v| (v, true)));
    for ((name, mut value), secret) in tagged {
        eddy_protocol::variables::check_name(&name).map_err(|e| anyhow::anyhow!(e))?;
        if secret && value == "-" {
            if stdin_taken {
                bail!("--secret {name}=- and --input - cannot both read stdin");
            }
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the secret from stdin")?;
            value = line.trim_end_matches(['\r', '\n']).to_string();
        }
        out.retain(|v| v.name != name);
        out.push(eddy_protocol::variables::Variable {
            name,
            value,
            secret,
        });
    }
    Ok(out)
}

fn text_or_base64(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("<{} bytes of binary>", bytes.len()),
    }
}

fn report_json(report: &Report, load: Duration) -> serde_json::Value {
    let result = match &report.result {
        Ok(out) => json!({
            "status": "succeeded",
            "content_type": out.content_type,
            "output": text_or_base64(&out.payload),
        }),
        Err(e) => json!({
            "status": "failed",
            "error": { "class": e.class().as_str(), "message": e.to_string(), "retryable": e.is_retryable() },
        }),
    };
    json!({
        "result": result,
        "emits": report.emits.iter().map(|e| json!({
            "function": e.function,
            "content_type": e.content_type,
            "payload": text_or_base64(&e.payload),
        })).collect::<Vec<_>>(),
        "logs": report.logs.iter().map(|l| json!({
            "level": l.level.as_str(), "source": l.source.as_str(), "message": l.message,
        })).collect::<Vec<_>>(),
        "timings_us": {
            "load": load.as_micros() as u64,
            "instantiate": report.timings.instantiate.as_micros() as u64,
            "run": report.timings.run.as_micros() as u64,
        },
        "epoch_ticks": report.epoch_ticks,
        "outbound": report.outbound.iter().map(|o| &o.call).collect::<Vec<_>>(),
    })
}

fn print_report(report: &Report, load: Duration) {
    for l in &report.logs {
        println!(
            "log  {:<5} {:<6} {}",
            l.level.as_str(),
            l.source.as_str(),
            l.message
        );
    }
    for o in &report.outbound {
        println!("http {} ({} µs)", o.call, o.call.duration_us);
    }
    for e in &report.emits {
        println!(
            "emit {} ({}, {} bytes): {}",
            e.function,
            e.content_type,
            e.payload.len(),
            text_or_base64(&e.payload).trim_end()
        );
    }
    match &report.result {
        Ok(out) => println!(
            "output ({}): {}",
            out.content_type,
            text_or_base64(&out.payload)
        ),
        Err(e) => {
            println!("error [{}]: {e}", e.class());
            if let eddy_runtime::InvokeError::Trap {
                backtrace: Some(bt),
                ..
            } = e
            {
                println!("{bt}");
            }
        }
    }
    println!(
        "timings: load {:?}, instantiate {:?}, run {:?} ({} epoch ticks)",
        load, report.timings.instantiate, report.timings.run, report.epoch_ticks
    );
}
