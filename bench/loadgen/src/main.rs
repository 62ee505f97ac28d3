//! `eddy-bench <scenario>`: a load generator against a running gateway. It
//! is its own binary, not part of `eddy`: users ship `eddy`, the benches
//! (`bench/*.sh`) run this.
//!
//! A progress bar goes to stderr; the summary to stdout, as JSON
//! (`--output json`) or a readable table. Every scenario also reads a sample
//! of invocation records to show where an invocation's time went (queue
//! wait, load, instantiate, run). The exit code is 1 when anything went
//! wrong (refused requests, lost or failed invocations, a timeout): the
//! summary's `problems` says what.
//!
//! The generator shares the machine with what it measures, so it is kept
//! cheap: one HTTP client, headers and URLs built once, ids kept as 128-bit
//! numbers, no per-request logging, the progress bar fed from a counter.

#![forbid(unsafe_code)]
mod http;
mod report;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::{Value, json};

use clap::Parser;
use eddy_cli::client::{Conn, Output};
use scenarios::{DEFAULT_TEXT_PAYLOAD, Payload};

#[derive(Debug, Parser)]
#[command(
    name = "eddy-bench",
    version,
    about = "Load-generate against a running Eddy gateway and report what it measured"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> ExitCode {
    match run(Cli::parse().args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// N async invocations; accept and end-to-end throughput.
    Throughput,
    /// N rows through the batch endpoint (classify by default).
    Bulk,
    /// One fanout run of B^0 + … + B^D invocations, to its end.
    Run,
    /// N sync invocations one after the other; latency percentiles.
    Latency,
    /// N trials of a never-run (or idle) function; cold-start latency.
    Cold,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Bulk => "bulk",
            Scenario::Run => "run",
            Scenario::Latency => "latency",
            Scenario::Cold => "cold",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Invocations (throughput, latency), rows (bulk) or trials (cold).
    /// Default: 10,000; 100,000; -; 1,000; 20.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Requests in flight. Default: 64 (throughput), 4 (bulk), 1 (latency,
    /// cold); for `run`, how many records are read at once.
    #[arg(long, short = 'c')]
    pub concurrency: Option<usize>,
    /// HTTP/2 with prior knowledge (h2c: every request a stream of one
    /// connection) instead of HTTP/1.1 keep-alive (a connection per request
    /// in flight).
    #[arg(long)]
    pub http2: bool,
    /// Send N NDJSON lines per request to `POST /invoke/{fn}/batch` instead
    /// of one request per invocation. Default: none (throughput), 1000 (bulk).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Function to invoke (deployed already, except `cold` with fresh names).
    /// Default: wordcount; classify (bulk); fanout (run).
    #[arg(long, short = 'f')]
    pub function: Option<String>,
    /// JSON payload of every invocation. Default: a ~200-byte
    /// `{"text": …}` (wordcount), classify rows `{"row":"id,amount,country,category"}`
    /// (bulk with classify), `{"branch":B,"depth":D}` (run).
    #[arg(long)]
    pub payload: Option<String>,
    /// run: follow-ups per invocation.
    #[arg(long, default_value_t = 4)]
    pub branch: u32,
    /// run: depth of the tree (the root is depth 0).
    #[arg(long, default_value_t = 6)]
    pub depth: u32,
    /// run: how often the run record is polled, in ms.
    #[arg(long, default_value_t = 2)]
    pub poll_ms: u64,
    /// cold: wait this long before each trial's invocation, in ms.
    #[arg(long, default_value_t = 0)]
    pub idle_ms: u64,
    /// cold: deploy the module under a fresh name (`cold-<tag>-<n>`) per
    /// trial so that it has never run; `false`: invoke --function after
    /// --idle-ms each time (for scale-to-zero).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fresh_names: bool,
    /// cold: the module to deploy per trial. Default:
    /// functions/target/wasm32-wasip2/release/<function>.wasm.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// cold: keep the fresh functions instead of deleting them at the end.
    #[arg(long)]
    pub keep: bool,
    /// latency: sync invocations before measuring (not counted).
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Records read for the per-phase timings (plus, for throughput and
    /// bulk, the last accepted ones).
    #[arg(long, default_value_t = 2000)]
    pub sample: usize,
    /// Give up waiting for completion after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
    /// Threads of the generator's tokio runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// A process whose CPU time to report for the measured phase, as
    /// `name=pid` (repeatable): e.g. `--watch-pid gateway=1234 --watch-pid
    /// redis=1240`. The generator's own CPU is always reported (`client`).
    #[arg(long = "watch-pid", value_parser = parse_watch)]
    pub watch_pid: Vec<(String, u32)>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// The arguments with every default resolved for the scenario.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scenario: Scenario,
    pub function: String,
    pub count: u64,
    pub concurrency: usize,
    pub batch: Option<usize>,
    pub payload: Payload,
    pub branch: u32,
    pub depth: u32,
    pub poll: Duration,
    pub idle: Duration,
    pub fresh_names: bool,
    pub module: PathBuf,
    pub keep: bool,
    pub warmup: u64,
    pub sample: usize,
    pub timeout: Duration,
    pub quiet: bool,
    pub cpu: stats::CpuWatch,
}

fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=pid, got `{s}`"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("`{pid}` is not a process id"))?;
    if name.is_empty() || name == "client" || name == "server_total" {
        return Err(format!("`{name}` cannot name a watched process"));
    }
    Ok((name.to_string(), pid))
}

/// `--payload` as one line of compact JSON (so it is also an NDJSON line).
fn compact(payload: &str) -> Result<Bytes> {
    let v: Value = serde_json::from_str(payload).context("--payload is not JSON")?;
    Ok(Bytes::from(v.to_string()))
}

impl Settings {
    pub fn resolve(a: &BenchArgs) -> Result<Self> {
        use Scenario::*;
        let function = a.function.clone().unwrap_or_else(|| {
            match a.scenario {
                Bulk => "classify",
                Run => "fanout",
                Throughput | Latency | Cold => "wordcount",
            }
            .to_string()
        });
        let count = a.count.unwrap_or(match a.scenario {
            Throughput => 10_000,
            Bulk => 100_000,
            Run => 1,
            Latency => 1_000,
            Cold => 20,
        });
        let concurrency = a.concurrency.unwrap_or(match a.scenario {
            Throughput => 64,
            Bulk => 4,
            Run => 16,
            Latency | Cold => 1,
        });
        let batch = match (a.scenario, a.batch_size) {
            (_, Some(0)) => bail!("--batch-size must be at least 1"),
            (Bulk, b) => Some(b.unwrap_or(1000)),
            (Throughput, b) => b,
            (_, Some(_)) => bail!("--batch-size applies to throughput and bulk only"),
            (_, None) => None,
        };
        let payload = match (&a.payload, a.scenario) {
            (Some(p), _) => Payload::Fixed(compact(p)?),
            (None, Run) => Payload::Fixed(Bytes::from(
                json!({ "branch": a.branch, "depth": a.depth }).to_string(),
            )),
            (None, _) if function == "classify" => Payload::Rows,
            (None, _) => Payload::Fixed(Bytes::from_static(DEFAULT_TEXT_PAYLOAD.as_bytes())),
        };
        let module = a.module.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "functions/target/wasm32-wasip2/release/{}.wasm",
                function.replace('-', "_")
            ))
        });
        if count == 0 {
            bail!("--count must be at least 1");
        }
        Ok(Settings {
            scenario: a.scenario,
            function,
            count,
            concurrency: concurrency.max(1),
            batch,
            payload,
            branch: a.branch,
            depth: a.depth,
            poll: Duration::from_millis(a.poll_ms.max(1)),
            idle: Duration::from_millis(a.idle_ms),
            fresh_names: a.fresh_names,
            module,
            keep: a.keep,
            warmup: a.warmup,
            sample: a.sample,
            timeout: Duration::from_secs(a.timeout_s.max(1)),
            quiet: a.quiet,
            cpu: stats::CpuWatch::new(a.watch_pid.clone()),
        })
    }
}

/// Runs one scenario and prints its summary.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let s = Settings::resolve(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting tokio")?;
    let connections = match s.scenario {
        Scenario::Run => 4,
        _ => s.concurrency,
    };
    let gw = http::Gateway::new(&args.conn, args.http2, connections)?;
    let cpu_before = stats::own_cpu_seconds();
    let started = Instant::now();
    let started_ms = stats::now_ms();
    let result = rt.block_on(async {
        match s.scenario {
            Scenario::Throughput | Scenario::Bulk => scenarios::ingestion(&gw, &s).await,
            Scenario::Run => scenarios::run(&gw, &s).await,
            Scenario::Latency => scenarios::latency(&gw, &s).await,
            Scenario::Cold => scenarios::cold(&gw, &s).await,
        }
    });
    let mut body = match result {
        Ok(v) => v,
        Err(e) => return report_error(&args.conn, e),
    };
    let cpu = match (cpu_before, stats::own_cpu_seconds()) {
        (Some(a), Some(b)) => Some(stats::r3(b - a)),
        _ => None,
    };
    let mut summary = json!({
        "scenario": s.scenario.name(),
        "function": s.function,
        "url": args.conn.url,
        "transport": if args.http2 { "h2c" } else { "http1.1" },
        "count": s.count,
        "concurrency": s.concurrency,
        "started_at_ms": started_ms,
        "bench_wall_s": stats::r3(started.elapsed().as_secs_f64()),
        "client_cpu_s": cpu,
        "client_threads": args.threads.max(1),
    });
    if let (Some(out), Some(extra)) = (summary.as_object_mut(), body.as_object_mut()) {
        // The scenario's own `started_at_ms` (its first request) wins.
        out.append(extra);
    }
    match args.conn.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_else(|_| summary.to_string())
        ),
        Output::Text => print!("{}", report::text(&summary)),
    }
    let problems = summary
        .get("problems")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// API errors exit 1, an unreachable gateway exits 2 with a hint; anything
/// else goes back to `main`.
fn report_error(conn: &Conn, e: anyhow::Error) -> Result<ExitCode> {
    if let Some(f) = e.downcast_ref::<eddy_cli::client::ApiFailure>() {
        eprintln!("error: {e:#}");
        if f.code == "missing_key" || f.code == "invalid_key" {
            eprintln!("hint: set EDDY_KEY (the tenant's key) or pass --key");
        }
        return Ok(ExitCode::from(1));
    }
    if let Some(re) = e.chain().find_map(|c| c.downcast_ref::<reqwest::Error>())
        && re.is_connect()
    {
        eprintln!("error: cannot reach the gateway at {}: {e:#}", conn.url);
        eprintln!("hint: is it running? point --url / EDDY_URL at it");
        return Ok(ExitCode::from(2));
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn settings(argv: &[&str]) -> Result<Settings> {
        let mut v = vec!["bench"];
        v.extend_from_slice(argv);
        let cli = TestCli::try_parse_from(v).map_err(|e| anyhow::anyhow!("{e}"))?;
        Settings::resolve(&cli.args)
    }

    #[test]
    fn defaults_per_scenario() {
        let s = settings(&["throughput"]).unwrap();
        assert_eq!(
            (s.function.as_str(), s.count, s.concurrency),
            ("wordcount", 10_000, 64)
        );
        assert!(s.batch.is_none());
        let s = settings(&["bulk", "-n", "500"]).unwrap();
        assert_eq!(s.function, "classify");
        assert_eq!(s.batch, Some(1000));
        assert!(matches!(s.payload, Payload::Rows));
        let s = settings(&["run", "--branch", "2", "--depth", "3"]).unwrap();
        assert_eq!(s.function, "fanout");
        assert_eq!(s.payload.body(0), Bytes::from(r#"{"branch":2,"depth":3}"#));
        let s = settings(&["cold", "--fresh-names", "false", "--idle-ms", "500"]).unwrap();
        assert!(!s.fresh_names);
        assert_eq!(s.idle, Duration::from_millis(500));
        assert!(s.module.ends_with("wordcount.wasm"));
    }

    #[test]
    fn watched_pids_are_name_eq_pid() {
        let mut v = vec![
            "bench",
            "latency",
            "--watch-pid",
            "gateway=12",
            "--watch-pid",
            "redis=13",
        ];
        let cli = TestCli::try_parse_from(v.clone()).unwrap();
        assert_eq!(
            cli.args.watch_pid,
            vec![("gateway".into(), 12), ("redis".into(), 13)]
        );
        v.push("--watch-pid");
        v.push("client=1");
        assert!(TestCli::try_parse_from(v).is_err());
        assert!(parse_watch("nopid").is_err());
        assert!(parse_watch("x=abc").is_err());
    }

    #[test]
    fn payloads_are_compacted_to_one_line() {
        let s = settings(&["throughput", "--payload", "{\n  \"a\": 1\n}"]).unwrap();
        assert_eq!(s.payload.body(0), Bytes::from(r#"{"a":1}"#));
        assert!(settings(&["throughput", "--payload", "{nope"]).is_err());
    }

    #[test]
    fn batch_size_only_where_it_means_something() {
        assert!(settings(&["latency", "--batch-size", "10"]).is_err());
        assert!(settings(&["throughput", "--batch-size", "0"]).is_err());
        assert_eq!(
            settings(&["throughput", "--batch-size", "100"])
                .unwrap()
                .batch,
            Some(100)
        );
    }
}
