//! The client commands of `eddy`: deploy, invoke, batch, records, runs,
//! functions, dead letters, tenants and keys, over the gateway's HTTP API.
//!
//! Every command takes the connection options of [`Conn`]. `--output json`
//! prints the API's JSON as it came (pretty); text mode prints compact lines
//! and tables. An API error prints `error: <code>: <message>` on stderr and
//! exits 1; a gateway that cannot be reached exits 2.

pub mod api;
mod commands;
mod format;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;

pub use api::ApiFailure;

/// How a command prints what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Where the gateway is and who is calling.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Connection")]
pub struct Conn {
    /// Gateway URL.
    #[arg(long, env = "EDDY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key. Default: the admin key `eddy up` wrote to
    /// `$EDDY_DATA_DIR/admin-key` (`.eddy/admin-key`), if it exists.
    #[arg(long, env = "EDDY_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Tenant to act for with the admin key (sent as `X-Eddy-Tenant`).
    #[arg(long, env = "EDDY_TENANT")]
    pub tenant: Option<String>,
    /// `text`: lines and tables; `json`: the API's JSON, pretty-printed.
    #[arg(long, short = 'o', env = "EDDY_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Deploy a module as the new version of a function.
    Deploy(DeployArgs),
    /// Invoke a function: print its output, or with --async its id.
    Invoke(InvokeArgs),
    /// Invoke a function once per line of an NDJSON file.
    Batch(BatchArgs),
    /// Show an invocation: status, output or error, timings, follow-ups.
    Invocation(IdArgs),
    /// Print the log lines of an invocation.
    Logs(IdArgs),
    /// Show a run (also `eddy run <run-id>`); --watch follows it to its end.
    Runs(RunsArgs),
    /// List the functions, or show every version of one.
    Functions(FunctionsArgs),
    /// Make an earlier version of a function current again.
    Rollback(RollbackArgs),
    /// Delete a function (refused while it has queued work).
    Delete(NameArgs),
    /// List the dead letters (final failures), oldest first.
    DeadLetters(DeadLettersArgs),
    /// Put a dead letter back into its queue, as attempt 1.
    Redrive(RedriveArgs),
    /// Show the controller's view: functions with backlog, warm concurrency,
    /// workers and idle timers; the workers; the replicas the load needs.
    Status(StatusArgs),
    /// Tenants, quotas and API keys.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Variables and secrets, read by processors through
    /// `wasi:config/store` (the tenant's, or with --function one function's).
    #[command(subcommand)]
    Var(VarCommand),
    /// Scheduled invocations: a cron expression (UTC) invokes a function
    /// with fixed data; each firing is a run.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule, or replace the one of that name.
    Create(ScheduleCreateArgs),
    /// List the schedules: cron, function, next tick, last firing.
    Ls(ConnArgs),
    /// Show a schedule and its last firings (each with its run).
    Show(ScheduleNameArgs),
    /// Delete a schedule.
    Rm(ScheduleNameArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScheduleCreateArgs {
    /// Schedule name (letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// `minute hour day month weekday` (UTC), six fields with seconds
    /// first, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[arg(long)]
    pub cron: String,
    /// The function each tick invokes.
    #[arg(long, short)]
    pub function: String,
    /// The invocations' payload (JSON); `@file` reads a file. `{}` when
    /// absent.
    #[arg(long)]
    pub data: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct ScheduleNameArgs {
    /// Schedule name.
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Subcommand)]
pub enum VarCommand {
    /// Set a variable; with --secret a write-only secret (the value from
    /// stdin when absent, keeping it out of the shell history).
    Set(VarSetArgs),
    /// List the variables (secrets by name only).
    Ls(VarScopeArgs),
    /// Delete a variable.
    Rm(VarNameArgs),
    /// Seal every tenant's secrets with the first key of EDDY_SECRETS_KEYS
    /// (admin key): the middle step of a key rotation.
    Reseal(ConnArgs),
}

#[derive(Debug, clap::Args)]
pub struct VarScopeArgs {
    /// A function's own variable (it overrides the tenant's of that name).
    #[arg(long, short)]
    pub function: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct VarSetArgs {
    /// Variable name (letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// The value; read from stdin when absent.
    pub value: Option<String>,
    /// Write-only: sealed at rest, never shown, redacted from logs.
    #[arg(long)]
    pub secret: bool,
    #[command(flatten)]
    pub scope: VarScopeArgs,
}

#[derive(Debug, clap::Args)]
pub struct VarNameArgs {
    /// Variable name.
    pub name: String,
    #[command(flatten)]
    pub scope: VarScopeArgs,
}

#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without FUNCTION and MODULE: applies ./eddy.toml (its functions and schedules), \
                  deploying only what changed, and prints what it did."
)]
pub struct DeployArgs {
    /// Function name (none: the functions of ./eddy.toml).
    #[arg(requires = "module")]
    pub function: Option<String>,
    /// The processor component (`.wasm`).
    pub module: Option<PathBuf>,
    /// Wall-clock limit of one invocation, in ms.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Memory limit, in MiB.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Retries after the first attempt, for retryable failures.
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// First retry delay, in ms (doubled per attempt).
    #[arg(long)]
    pub backoff_base_ms: Option<u64>,
    /// Longest retry delay, in ms.
    #[arg(long)]
    pub backoff_max_ms: Option<u64>,
    /// Invocations of the function running at once.
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Idle time after which warm capacity is released, in ms.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Output size limit, in bytes.
    #[arg(long)]
    pub max_output_bytes: Option<u64>,
    /// Follow-ups one invocation may emit.
    #[arg(long)]
    pub max_emits: Option<u32>,
    /// Total follow-up payload bytes of one invocation.
    #[arg(long)]
    pub max_emit_bytes: Option<u64>,
    /// Captured log bytes of one invocation.
    #[arg(long)]
    pub max_log_bytes: Option<u64>,
    /// Deepest follow-up of a run rooted here (the root has depth 0).
    #[arg(long)]
    pub max_depth: Option<u32>,
    /// Most invocations of a run rooted here.
    #[arg(long)]
    pub max_invocations: Option<u64>,
    /// Outbound HTTP requests one invocation may make.
    #[arg(long)]
    pub max_outbound_requests: Option<u32>,
    /// Outbound request and response body bytes of one invocation.
    #[arg(long)]
    pub max_outbound_bytes: Option<u64>,
    /// An origin the processor may call over HTTP, e.g.
    /// `https://api.example.com`, `http://10.1.2.3:8080`,
    /// `https://*.example.com` (repeatable, or comma-separated; replaces the
    /// current list). None by default.
    #[arg(long = "allow-host", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Config value the processor sees, `key=value` (repeatable). Merged into
    /// the current version's values.
    #[arg(long = "config", short = 'c', value_parser = parse_kv)]
    pub config: Vec<(String, String)>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// Function name.
    pub function: String,
    /// The payload, inline. Without --data or --input the payload is `{}`
    /// for a JSON content type, else empty.
    #[arg(long, short = 'd', conflicts_with = "input")]
    pub data: Option<String>,
    /// Payload file, or `-` for stdin.
    #[arg(long, short = 'i')]
    pub input: Option<String>,
    /// Content type of the payload.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Do not wait: print the invocation id as soon as it is queued.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// URL POSTed the signed result when the invocation ends (implies
    /// --async on the gateway).
    #[arg(long)]
    pub callback: Option<String>,
    /// URL POSTed the signed run record when the whole run ends.
    #[arg(long)]
    pub run_callback: Option<String>,
    /// Dedupes retries of the same request: a repeat gets the first
    /// invocation back.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Function name.
    pub function: String,
    /// NDJSON file (one JSON payload per line), or `-` for stdin. Streamed,
    /// never read whole.
    pub file: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Invocation id.
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Run id (the root invocation's `run_id`).
    pub id: String,
    /// Follow the run with a progress bar until it ends; exit 1 if it failed.
    #[arg(long, short = 'w')]
    pub watch: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct FunctionsArgs {
    /// Show every version of this function instead of the list.
    pub function: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// Function name.
    pub function: String,
    /// The version to make current (default: the one before the current).
    #[arg(long)]
    pub version: Option<u32>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// Function name.
    pub function: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    /// At most this many (the gateway's default is 100).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// Dead-letter entry id (the ENTRY column of `eddy dead-letters`).
    pub entry: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first API key (admin key).
    Create(TenantCreateArgs),
    /// Show a tenant: quota and pending invocations.
    Get(TenantIdArgs),
    /// Set a tenant's quota (admin key); unset limits keep their value.
    ///
    /// Without any limit given, shows the quota.
    Quota(TenantQuotaArgs),
    /// Create an API key for a tenant (shown once).
    Key(TenantIdArgs),
    /// List a tenant's API keys.
    Keys(TenantIdArgs),
    /// Revoke an API key.
    Revoke(TenantRevokeArgs),
}

/// Quota limits; 0 is unlimited.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct QuotaArgs {
    /// Accepted, unfinished invocations (0: unlimited).
    #[arg(long)]
    pub max_pending: Option<u64>,
    /// Invocations of the tenant running at once (0: unlimited).
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Client invocations accepted per second (0: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Bytes kept in Redis: modules, and outputs, logs and dead letters
    /// within the record TTL (0: unlimited).
    #[arg(long)]
    pub max_stored_bytes: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct TenantCreateArgs {
    /// Tenant id.
    pub id: String,
    #[command(flatten)]
    pub quota: QuotaArgs,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct TenantQuotaArgs {
    /// Tenant id.
    pub id: String,
    #[command(flatten)]
    pub quota: QuotaArgs,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct TenantIdArgs {
    /// Tenant id.
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct TenantRevokeArgs {
    /// Tenant id.
    pub id: String,
    /// Key id (the ID column of `eddy tenant keys`).
    pub key_id: String,
    #[command(flatten)]
    pub conn: Conn,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got `{s}`"))
}

impl ClientCommand {
    fn conn(&self) -> &Conn {
        match self {
            ClientCommand::Deploy(a) => &a.conn,
            ClientCommand::Invoke(a) => &a.conn,
            ClientCommand::Batch(a) => &a.conn,
            ClientCommand::Invocation(a) | ClientCommand::Logs(a) => &a.conn,
            ClientCommand::Runs(a) => &a.conn,
            ClientCommand::Functions(a) => &a.conn,
            ClientCommand::Rollback(a) => &a.conn,
            ClientCommand::Delete(a) => &a.conn,
            ClientCommand::DeadLetters(a) => &a.conn,
            ClientCommand::Redrive(a) => &a.conn,
            ClientCommand::Status(a) => &a.conn,
            ClientCommand::Tenant(t) => match t {
                TenantCommand::Create(a) => &a.conn,
                TenantCommand::Quota(a) => &a.conn,
                TenantCommand::Get(a) | TenantCommand::Key(a) | TenantCommand::Keys(a) => &a.conn,
                TenantCommand::Revoke(a) => &a.conn,
            },
            ClientCommand::Var(v) => match v {
                VarCommand::Set(a) => &a.scope.conn,
                VarCommand::Ls(a) => &a.conn,
                VarCommand::Rm(a) => &a.scope.conn,
                VarCommand::Reseal(a) => &a.conn,
            },
            ClientCommand::Schedule(c) => match c {
                ScheduleCommand::Create(a) => &a.conn,
                ScheduleCommand::Ls(a) => &a.conn,
                ScheduleCommand::Show(a) | ScheduleCommand::Rm(a) => &a.conn,
            },
        }
    }
}

/// Runs one client command on a current-thread tokio runtime.
pub fn run(cmd: ClientCommand) -> Result<ExitCode> {
    let conn = cmd.conn().clone();
    block_on(&conn, commands::execute(cmd))
}

/// `eddy run <run-id> [--watch]`: the same as `eddy runs <run-id>`.
pub fn show_run(mut conn: Conn, id: String, watch: bool, json: bool) -> Result<ExitCode> {
    if json {
        conn.output = Output::Json;
    }
    let args = RunsArgs {
        id,
        watch,
        conn: conn.clone(),
    };
    block_on(&conn, commands::execute(ClientCommand::Runs(args)))
}

/// Whether the `module` argument of `eddy run` is really a run id: not an
/// existing file, and a UUID (run ids are UUIDv7).
pub fn as_run_id(module: &Path) -> Option<String> {
    if module.exists() {
        return None;
    }
    let s = module.to_str()?;
    uuid::Uuid::parse_str(s).ok().map(|_| s.to_string())
}

fn block_on(
    conn: &Conn,
    fut: impl std::future::Future<Output = Result<ExitCode>>,
) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    match rt.block_on(fut) {
        Ok(code) => Ok(code),
        Err(e) => report(conn, e),
    }
}

/// API errors exit 1, an unreachable gateway exits 2 with a hint; anything
/// else goes back to `main` (which prints it and exits 2).
fn report(conn: &Conn, e: anyhow::Error) -> Result<ExitCode> {
    if let Some(f) = e.downcast_ref::<ApiFailure>() {
        eprintln!("error: {f}");
        if let Some(hint) = f.hint() {
            eprintln!("hint: {hint}");
        }
        if conn.output == Output::Json && f.body.is_some() {
            print_raw_json(&f.raw);
        }
        return Ok(ExitCode::from(1));
    }
    if let Some(re) = e.chain().find_map(|c| c.downcast_ref::<reqwest::Error>()) {
        if re.is_connect() {
            let cause = e
                .chain()
                .last()
                .map(ToString::to_string)
                .unwrap_or_default();
            eprintln!("error: cannot reach the gateway at {}: {cause}", conn.url);
            eprintln!("hint: is the gateway running? eddy up (or point --url / EDDY_URL at it)");
        } else {
            eprintln!("error: {e:#}");
        }
        return Ok(ExitCode::from(2));
    }
    Err(e)
}

/// Pretty JSON on stdout.
fn print_json(v: &Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(_) => println!("{v}"),
    }
}

/// The gateway's JSON on stdout, pretty, in its own field order.
fn print_raw_json(raw: &[u8]) {
    match format::pretty_json(raw) {
        Some(s) => println!("{s}"),
        None => println!("{}", String::from_utf8_lossy(raw).trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The client's commands alone, for the tests here and in `commands`.
    #[derive(Debug, Parser)]
    pub(super) struct TestCli {
        #[command(subcommand)]
        pub(super) cmd: ClientCommand,
    }

    pub(super) fn parse(args: &[&str]) -> ClientCommand {
        let mut argv = vec!["eddy"];
        argv.extend_from_slice(args);
        match TestCli::try_parse_from(argv) {
            Ok(c) => c.cmd,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn no_command_or_option_collides_with_the_rest_of_eddy() {
        crate::Cli::command().debug_assert();
        let names: Vec<String> = crate::Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        for name in [
            "run",
            "check",
            "worker",
            "gateway",
            "up",
            "runs",
            "dead-letters",
        ] {
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
        }
    }

    #[test]
    fn eddy_run_takes_a_run_id_and_watch() {
        let cli = crate::Cli::try_parse_from([
            "eddy",
            "run",
            "0190b0e2-7c3a-7def-8a00-0123456789ab",
            "--watch",
            "--tenant",
            "acme",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
    }

    #[test]
    fn connection_options_on_every_command() {
        let cmd = parse(&[
            "tenant",
            "revoke",
            "acme",
            "k1",
            "--url",
            "http://gw:1/",
            "--key",
            "s",
            "--tenant",
            "acme",
            "-o",
            "json",
        ]);
        let c = cmd.conn();
        assert_eq!(c.url, "http://gw:1/");
        assert_eq!(c.key.as_deref(), Some("s"));
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert_eq!(c.output, Output::Json);
    }

    #[test]
    fn data_and_input_exclude_each_other() {
        let argv = ["eddy", "invoke", "f", "--data", "{}", "--input", "x"];
        assert!(TestCli::try_parse_from(argv).is_err());
    }

    #[test]
    fn dead_letters_is_kebab_case() {
        let cmd = parse(&["dead-letters", "--limit", "5"]);
        assert!(matches!(
            cmd,
            ClientCommand::DeadLetters(DeadLettersArgs { limit: Some(5), .. })
        ));
    }

    #[test]
    fn run_ids_are_uuids_that_are_not_files() {
        assert_eq!(
            as_run_id(Path::new("0190b0e2-7c3a-7def-8a00-0123456789ab")).as_deref(),
            Some("0190b0e2-7c3a-7def-8a00-0123456789ab")
        );
        assert_eq!(as_run_id(Path::new("wordcount.wasm")), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("0190b0e2-7c3a-7def-8a00-0123456789ab");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(as_run_id(&file), None);
    }
}
