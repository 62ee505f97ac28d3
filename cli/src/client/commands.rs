//! One async function per command. The argument → request mappings are
//! plain functions, unit-tested below.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use super::api::{Api, Reply, segment};
use super::{
    BatchArgs, ClientCommand, DeadLettersArgs, DeployArgs, FunctionsArgs, IdArgs, InvokeArgs,
    NameArgs, Output, QuotaArgs, RedriveArgs, RollbackArgs, RunsArgs, ScheduleCommand,
    ScheduleCreateArgs, ScheduleNameArgs, StatusArgs, TenantCommand, TenantCreateArgs,
    TenantIdArgs, TenantQuotaArgs, TenantRevokeArgs, VarCommand, VarNameArgs, VarScopeArgs,
    VarSetArgs, format, print_json, print_raw_json,
};

/// How often `runs --watch` polls.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How many failed lines `batch` shows.
const SHOWN_BATCH_ERRORS: usize = 5;

pub async fn execute(cmd: ClientCommand) -> Result<ExitCode> {
    match cmd {
        ClientCommand::Deploy(a) => deploy(a).await,
        ClientCommand::Invoke(a) => invoke(a).await,
        ClientCommand::Batch(a) => batch(a).await,
        ClientCommand::Invocation(a) => invocation(a).await,
        ClientCommand::Logs(a) => logs(a).await,
        ClientCommand::Runs(a) => runs(a).await,
        ClientCommand::Functions(a) => functions(a).await,
        ClientCommand::Rollback(a) => rollback(a).await,
        ClientCommand::Delete(a) => delete(a).await,
        ClientCommand::DeadLetters(a) => dead_letters(a).await,
        ClientCommand::Redrive(a) => redrive(a).await,
        ClientCommand::Status(a) => status(a).await,
        ClientCommand::Tenant(t) => match t {
            TenantCommand::Create(a) => tenant_create(a).await,
            TenantCommand::Get(a) => tenant_get(a).await,
            TenantCommand::Quota(a) => tenant_quota(a).await,
            TenantCommand::Key(a) => tenant_key(a).await,
            TenantCommand::Keys(a) => tenant_keys(a).await,
            TenantCommand::Revoke(a) => tenant_revoke(a).await,
        },
        ClientCommand::Var(v) => match v {
            VarCommand::Set(a) => var_set(a).await,
            VarCommand::Ls(a) => var_ls(a).await,
            VarCommand::Rm(a) => var_rm(a).await,
            VarCommand::Reseal(a) => var_reseal(a).await,
        },
        ClientCommand::Schedule(c) => match c {
            ScheduleCommand::Create(a) => schedule_create(a).await,
            ScheduleCommand::Ls(a) => schedule_ls(a).await,
            ScheduleCommand::Show(a) => schedule_show(a).await,
            ScheduleCommand::Rm(a) => schedule_rm(a).await,
        },
    }
}

/// Prints the answer as the gateway's pretty JSON or through the text
/// formatter.
fn show(output: Output, reply: &Reply, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => print_raw_json(&reply.raw),
        Output::Text => print!("{}", text(&reply.value)),
    }
}

/// [`show`] for a part of an answer.
fn show_value(output: Output, v: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => print_json(v),
        Output::Text => print!("{}", text(v)),
    }
}

// ---------------------------------------------------------------- deploy

/// The query string of a deploy: only the limits that were given.
pub fn deploy_query(a: &DeployArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            q.push((k, v));
        }
    };
    let s = |v: Option<u64>| v.map(|n| n.to_string());
    let s32 = |v: Option<u32>| v.map(|n| n.to_string());
    put("timeout_ms", s(a.timeout_ms));
    put("memory_mb", s(a.memory_mb));
    put("max_retries", s32(a.max_retries));
    put("backoff_base_ms", s(a.backoff_base_ms));
    put("backoff_max_ms", s(a.backoff_max_ms));
    put("max_concurrency", s32(a.max_concurrency));
    put("idle_timeout_ms", s(a.idle_timeout_ms));
    put("max_output_bytes", s(a.max_output_bytes));
    put("max_emits", s32(a.max_emits));
    put("max_emit_bytes", s(a.max_emit_bytes));
    put("max_log_bytes", s(a.max_log_bytes));
    put("max_depth", s32(a.max_depth));
    put("max_invocations", s(a.max_invocations));
    put("max_outbound_requests", s32(a.max_outbound_requests));
    put("max_outbound_bytes", s(a.max_outbound_bytes));
    if !a.allowed_hosts.is_empty() {
        put("allowed_hosts", Some(a.allowed_hosts.join(",")));
    }
    q
}

/// The `X-Eddy-Config` header of a deploy: `{"values":{k:v,…}}`, or none
/// without `--config`. A key given twice keeps its last value.
pub fn config_header(values: &[(String, String)]) -> Option<String> {
    if values.is_empty() {
        return None;
    }
    let map: Map<String, Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Some(json!({ "values": map }).to_string())
}

async fn deploy(a: DeployArgs) -> Result<ExitCode> {
    let (Some(function), Some(module)) = (&a.function, &a.module) else {
        if !deploy_query(&a).is_empty() || !a.config.is_empty() {
            anyhow::bail!(
                "limits and --config go with FUNCTION MODULE; a project sets them in eddy.toml"
            );
        }
        return crate::project::deploy(&a.conn, std::path::Path::new(".")).await;
    };
    let api = Api::new(&a.conn)?;
    let module = tokio::fs::read(module)
        .await
        .with_context(|| format!("reading {}", module.display()))?;
    let mut req = api
        .request(Method::PUT, &format!("/functions/{}", segment(function)))?
        .query(&deploy_query(&a))
        .header(CONTENT_TYPE, "application/wasm")
        .body(module);
    if let Some(h) = config_header(&a.config) {
        req = req.header("x-eddy-config", h);
    }
    let spec = api.json(req).await?;
    show(a.conn.output, &spec, format::deployed);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- invoke

/// The headers of an invoke, besides the key and the tenant.
pub fn invoke_headers(a: &InvokeArgs) -> Vec<(&'static str, String)> {
    let mut h = vec![("content-type", a.content_type.clone())];
    if a.asynchronous {
        h.push(("prefer", "respond-async".into()));
    }
    if let Some(u) = &a.callback {
        h.push(("x-callback-url", u.clone()));
    }
    if let Some(u) = &a.run_callback {
        h.push(("x-run-callback-url", u.clone()));
    }
    if let Some(k) = &a.idempotency_key {
        h.push(("idempotency-key", k.clone()));
    }
    h
}

fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media == "application/json" || media.ends_with("+json")
}

/// The payload of an invoke: `--data`, `--input FILE|-`, or `{}` (JSON) /
/// nothing (other content types).
pub fn payload(a: &InvokeArgs) -> Result<Vec<u8>> {
    Ok(match (&a.data, a.input.as_deref()) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some("-")) => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            buf
        }
        (None, Some(path)) => std::fs::read(path).with_context(|| format!("reading {path}"))?,
        (None, None) if is_json(&a.content_type) => b"{}".to_vec(),
        (None, None) => Vec::new(),
    })
}

/// `queued <id> (run <run_id>)`.
fn queued_line(v: &Value, replayed: bool) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    format!(
        "queued {} (run {}){}\n",
        s("id"),
        s("run_id"),
        if replayed { " (idempotent replay)" } else { "" }
    )
}

async fn invoke(a: InvokeArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let body = payload(&a)?;
    let mut req = api.streaming(Method::POST, &format!("/invoke/{}", segment(&a.function)))?;
    for (k, v) in invoke_headers(&a) {
        req = req.header(k, v);
    }
    let response = api.send(req.body(body)).await?;
    let header = |k: &str| {
        response
            .headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    if response.status() == reqwest::StatusCode::ACCEPTED {
        let raw = response.bytes().await?.to_vec();
        let value = serde_json::from_slice(&raw).context("the 202 answer is not JSON")?;
        let v = Reply { value, raw };
        show(a.conn.output, &v, |v| queued_line(v, replayed));
        if !a.asynchronous && a.callback.is_none() {
            let id = v.get("id").and_then(Value::as_str).unwrap_or("<id>");
            eprintln!(
                "not finished within the gateway's sync timeout; follow it with `eddy invocation {id}`"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // 200: the processor's output itself, whatever its content type.
    let id = header("x-eddy-invocation-id");
    let run = header("x-eddy-run-id");
    let bytes = response.bytes().await?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    if out.is_terminal() && !bytes.is_empty() && !bytes.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if a.conn.output == Output::Text
        && let Some(id) = id
    {
        eprintln!("invocation {id} (run {})", run.as_deref().unwrap_or("-"));
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- batch

/// What the NDJSON answer of a batch said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub accepted: u64,
    pub errors: u64,
    /// `(line, code, message)` of the first failed lines.
    pub first_errors: Vec<(u64, String, String)>,
}

impl BatchSummary {
    /// Counts one answer line.
    pub fn feed(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                self.error(0, "bad_answer", format!("unparsable answer line: {e}"));
                return;
            }
        };
        let n = v.get("line").and_then(Value::as_u64).unwrap_or(0);
        if v.get("id").and_then(Value::as_str).is_some() {
            self.accepted += 1;
        } else {
            let e = v.get("error").unwrap_or(&Value::Null);
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
            self.error(n, &s("code"), s("message"));
        }
    }

    fn error(&mut self, line: u64, code: &str, message: String) {
        self.errors += 1;
        if self.first_errors.len() < SHOWN_BATCH_ERRORS {
            self.first_errors.push((line, code.to_string(), message));
        }
    }

    pub fn text(&self) -> String {
        let mut out = format!("accepted {}, errors {}\n", self.accepted, self.errors);
        for (line, code, message) in &self.first_errors {
            out.push_str(&format!("  line {line}: {code}: {message}\n"));
        }
        if self.errors > self.first_errors.len() as u64 {
            out.push_str(&format!(
                "  … and {} more (--output json lists every line)\n",
                self.errors - self.first_errors.len() as u64
            ));
        }
        out
    }
}

/// A reader as a stream of chunks, for a streamed request body.
fn chunks<R>(reader: R) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    futures::stream::unfold(Some(reader), |reader| async move {
        use tokio::io::AsyncReadExt;
        let mut reader = reader?;
        let mut buf = vec![0u8; 64 << 10];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

async fn batch(a: BatchArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let body = if a.file == "-" {
        reqwest::Body::wrap_stream(chunks(tokio::io::stdin()))
    } else {
        let f = tokio::fs::File::open(&a.file)
            .await
            .with_context(|| format!("opening {}", a.file))?;
        reqwest::Body::wrap_stream(chunks(f))
    };
    let req = api
        .streaming(
            Method::POST,
            &format!("/invoke/{}/batch", segment(&a.function)),
        )?
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(body);
    let mut response = api.send(req).await?;
    let json = a.conn.output == Output::Json;
    let spinner = indicatif::ProgressBar::new_spinner();
    if !json {
        spinner.enable_steady_tick(Duration::from_millis(100));
    }
    let mut summary = BatchSummary::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = response.chunk().await? {
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            summary.feed(&line);
            if json && !line.trim().is_empty() {
                writeln!(stdout, "{}", line.trim_end())?;
            }
        }
        spinner.set_message(format!(
            "accepted {}, errors {}",
            summary.accepted, summary.errors
        ));
    }
    let rest = String::from_utf8_lossy(&buf);
    summary.feed(&rest);
    if json && !rest.trim().is_empty() {
        writeln!(stdout, "{}", rest.trim_end())?;
    }
    spinner.finish_and_clear();
    if json {
        eprint!("{}", summary.text());
    } else {
        write!(stdout, "{}", summary.text())?;
    }
    Ok(if summary.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

// ---------------------------------------------------------------- records

async fn invocation(a: IdArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let rec = api.get(&format!("/invocations/{}", segment(&a.id))).await?;
    show(a.conn.output, &rec, format::invocation);
    Ok(ExitCode::SUCCESS)
}

async fn logs(a: IdArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let rec = api.get(&format!("/invocations/{}", segment(&a.id))).await?;
    match a.conn.output {
        Output::Json => print_json(rec.get("logs").unwrap_or(&json!([]))),
        Output::Text => print!("{}", format::logs(&rec)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn runs(a: RunsArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let path = format!("/runs/{}", segment(&a.id));
    let mut run = api.get(&path).await?;
    if a.watch {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )?
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        loop {
            let (done, total) = format::run_done(&run);
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("failed {}", format::run_failed(&run)));
            if run.get("status").and_then(Value::as_str) != Some("running") {
                break;
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
            run = api.get(&path).await?;
        }
        bar.finish_and_clear();
    }
    show(a.conn.output, &run, format::run);
    let failed = run.get("status").and_then(Value::as_str) == Some("failed");
    Ok(if a.watch && failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

// ---------------------------------------------------------------- functions

async fn status(a: StatusArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api.get("/status").await?;
    show(a.conn.output, &v, format::status);
    Ok(ExitCode::SUCCESS)
}

async fn functions(a: FunctionsArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    match &a.function {
        None => {
            let list = api.get("/functions").await?;
            show(a.conn.output, &list, format::functions);
        }
        Some(f) => {
            let detail = api.get(&format!("/functions/{}", segment(f))).await?;
            show(a.conn.output, &detail, format::function_detail);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The body of a rollback: `{"version":n}`, or none for "the one before".
pub fn rollback_body(version: Option<u32>) -> Option<Value> {
    version.map(|v| json!({ "version": v }))
}

async fn rollback(a: RollbackArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let mut req = api.request(
        Method::POST,
        &format!("/functions/{}/rollback", segment(&a.function)),
    )?;
    if let Some(body) = rollback_body(a.version) {
        req = req.json(&body);
    }
    let v = api.json(req).await?;
    show(a.conn.output, &v, |v| {
        format!(
            "{}: current v{} (was v{})\n",
            v.get("name").and_then(Value::as_str).unwrap_or(&a.function),
            v.get("current").and_then(Value::as_u64).unwrap_or(0),
            v.get("previous").and_then(Value::as_u64).unwrap_or(0),
        )
    });
    Ok(ExitCode::SUCCESS)
}

async fn delete(a: NameArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    api.send(api.request(
        Method::DELETE,
        &format!("/functions/{}", segment(&a.function)),
    )?)
    .await?;
    if a.conn.output == Output::Text {
        println!("deleted {}", a.function);
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- dead letters

async fn dead_letters(a: DeadLettersArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let mut req = api.request(Method::GET, "/dead-letters")?;
    if let Some(limit) = a.limit {
        req = req.query(&[("limit", limit)]);
    }
    let list = api.json(req).await?;
    show(a.conn.output, &list, format::dead_letters);
    Ok(ExitCode::SUCCESS)
}

async fn redrive(a: RedriveArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api
        .json(api.request(
            Method::POST,
            &format!("/dead-letters/{}/redrive", segment(&a.entry)),
        )?)
        .await?;
    show(a.conn.output, &v, |v| {
        format!(
            "redriven {} as invocation {} ({})\n",
            a.entry,
            v.get("id").and_then(Value::as_str).unwrap_or("-"),
            v.get("status").and_then(Value::as_str).unwrap_or("-"),
        )
    });
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- tenants

/// The quota of a new tenant: unset limits are 0 (unlimited).
pub fn create_tenant_body(id: &str, q: &QuotaArgs) -> Value {
    json!({
        "id": id,
        "quota": {
            "max_pending": q.max_pending.unwrap_or(0),
            "max_concurrency": q.max_concurrency.unwrap_or(0),
            "rate_per_sec": q.rate.unwrap_or(0),
            "max_stored_bytes": q.max_stored_bytes.unwrap_or(0),
        }
    })
}

/// The quota to PUT: the current one with the given limits replaced.
pub fn merged_quota(current: &Value, q: &QuotaArgs) -> Value {
    let cur = |k: &str| current.get(k).and_then(Value::as_u64).unwrap_or(0);
    json!({
        "max_pending": q.max_pending.unwrap_or_else(|| cur("max_pending")),
        "max_concurrency": q.max_concurrency.map_or_else(|| cur("max_concurrency"), u64::from),
        "rate_per_sec": q.rate.unwrap_or_else(|| cur("rate_per_sec")),
        "max_stored_bytes": q.max_stored_bytes.unwrap_or_else(|| cur("max_stored_bytes")),
    })
}

fn tenant_path(id: &str, rest: &str) -> String {
    format!("/tenants/{}{rest}", segment(id))
}

async fn tenant_create(a: TenantCreateArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let body = create_tenant_body(&a.id, &a.quota);
    let v = api
        .json(api.request(Method::POST, "/tenants")?.json(&body))
        .await?;
    show(a.conn.output, &v, format::tenant_created);
    Ok(ExitCode::SUCCESS)
}

async fn tenant_get(a: TenantIdArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api.get(&tenant_path(&a.id, "")).await?;
    show(a.conn.output, &v, format::tenant);
    Ok(ExitCode::SUCCESS)
}

async fn tenant_quota(a: TenantQuotaArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let tenant = api.get(&tenant_path(&a.id, "")).await?;
    let current = tenant.get("quota").cloned().unwrap_or(Value::Null);
    let q = &a.quota;
    if q.max_pending.is_none()
        && q.max_concurrency.is_none()
        && q.rate.is_none()
        && q.max_stored_bytes.is_none()
    {
        show_value(a.conn.output, &current, |v| {
            format!("{}\n", format::quota(v))
        });
        return Ok(ExitCode::SUCCESS);
    }
    let body = merged_quota(&current, q);
    let v = api
        .json(
            api.request(Method::PUT, &tenant_path(&a.id, "/quota"))?
                .json(&body),
        )
        .await?;
    show(a.conn.output, &v, |v| {
        format!("quota of {}: {}\n", a.id, format::quota(v))
    });
    Ok(ExitCode::SUCCESS)
}

async fn tenant_key(a: TenantIdArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api
        .json(api.request(Method::POST, &tenant_path(&a.id, "/keys"))?)
        .await?;
    show(a.conn.output, &v, |v| {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        format!(
            "key id {}\nkey    {}\nThe key is shown only once.\n",
            s("id"),
            s("key")
        )
    });
    Ok(ExitCode::SUCCESS)
}

async fn tenant_keys(a: TenantIdArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api.get(&tenant_path(&a.id, "/keys")).await?;
    show(a.conn.output, &v, format::keys);
    Ok(ExitCode::SUCCESS)
}

async fn tenant_revoke(a: TenantRevokeArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    api.send(api.request(
        Method::DELETE,
        &tenant_path(&a.id, &format!("/keys/{}", segment(&a.key_id))),
    )?)
    .await?;
    if a.conn.output == Output::Text {
        println!("revoked key {} of {}", a.key_id, a.id);
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- variables

/// The path of a scope's variables, or of one of them.
pub fn var_path(function: Option<&str>, name: Option<&str>) -> String {
    let mut path = match function {
        Some(f) => format!("/functions/{}/variables", segment(f)),
        None => "/variables".to_string(),
    };
    if let Some(name) = name {
        path.push('/');
        path.push_str(&segment(name));
    }
    path
}

/// One line typed at the terminal, not echoed.
fn read_hidden_line(prompt: &str) -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning echo off")?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.context("reading the value")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn var_set(a: VarSetArgs) -> Result<ExitCode> {
    let value = match a.value {
        Some(v) => v,
        None if std::io::stdin().is_terminal() => {
            read_hidden_line(&format!("value of {}: ", a.name))?
        }
        None => {
            let mut v = String::new();
            std::io::stdin()
                .read_to_string(&mut v)
                .context("reading the value from stdin")?;
            // One trailing newline is `echo`'s, not the value's.
            v.strip_suffix('\n')
                .map(|v| v.strip_suffix('\r').unwrap_or(v))
                .unwrap_or(&v)
                .to_string()
        }
    };
    let conn = &a.scope.conn;
    let api = Api::new(conn)?;
    let path = var_path(a.scope.function.as_deref(), Some(&a.name));
    let v = api
        .json(
            api.request(Method::PUT, &path)?
                .json(&json!({"value": value, "secret": a.secret})),
        )
        .await?;
    show(conn.output, &v, |_| {
        let what = if a.secret { "secret" } else { "variable" };
        let scope = a
            .scope
            .function
            .as_deref()
            .map_or("the tenant".to_string(), |f| format!("function {f}"));
        format!("set {what} {} of {scope}\n", a.name)
    });
    Ok(ExitCode::SUCCESS)
}

async fn var_ls(a: VarScopeArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api.get(&var_path(a.function.as_deref(), None)).await?;
    show(a.conn.output, &v, format::variables);
    Ok(ExitCode::SUCCESS)
}

async fn var_rm(a: VarNameArgs) -> Result<ExitCode> {
    let api = Api::new(&a.scope.conn)?;
    let path = var_path(a.scope.function.as_deref(), Some(&a.name));
    api.send(api.request(Method::DELETE, &path)?).await?;
    if a.scope.conn.output == Output::Text {
        println!("deleted {}", a.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn var_reseal(a: super::ConnArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api
        .json(api.request(Method::POST, "/secrets/reseal")?)
        .await?;
    show(a.conn.output, &v, |v| {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let mut out = format!(
            "resealed {} secrets ({} already under the current key)\n",
            n("resealed"),
            n("current")
        );
        if n("unopenable") > 0 {
            out.push_str(&format!(
                "{} secrets open with no listed key: they stay as they are (see the gateway's log)\n",
                n("unopenable")
            ));
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}

/// `--data`: JSON text, or `@file`.
fn schedule_data(data: Option<&str>) -> Result<Option<Value>> {
    let Some(data) = data else { return Ok(None) };
    let text = match data.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => data.to_string(),
    };
    serde_json::from_str(&text)
        .map(Some)
        .context("--data is not JSON")
}

async fn schedule_create(a: ScheduleCreateArgs) -> Result<ExitCode> {
    let mut body = json!({"cron": a.cron, "function": a.function});
    if let Some(data) = schedule_data(a.data.as_deref())? {
        body["data"] = data;
    }
    let api = Api::new(&a.conn)?;
    let v = api
        .json(
            api.request(Method::PUT, &format!("/schedules/{}", segment(&a.name)))?
                .json(&body),
        )
        .await?;
    show(a.conn.output, &v, |v| {
        let next = v.get("next_ms").and_then(Value::as_u64).unwrap_or(0);
        format!(
            "schedule {} invokes {} on `{}`; next tick {}\n",
            a.name,
            a.function,
            a.cron,
            format::timestamp(next)
        )
    });
    Ok(ExitCode::SUCCESS)
}

async fn schedule_ls(a: super::ConnArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api.get("/schedules").await?;
    show(a.conn.output, &v, format::schedules);
    Ok(ExitCode::SUCCESS)
}

async fn schedule_show(a: ScheduleNameArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    let v = api.get(&format!("/schedules/{}", segment(&a.name))).await?;
    show(a.conn.output, &v, format::schedule);
    Ok(ExitCode::SUCCESS)
}

async fn schedule_rm(a: ScheduleNameArgs) -> Result<ExitCode> {
    let api = Api::new(&a.conn)?;
    api.send(api.request(Method::DELETE, &format!("/schedules/{}", segment(&a.name)))?)
        .await?;
    if a.conn.output == Output::Text {
        println!("deleted schedule {}", a.name);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
