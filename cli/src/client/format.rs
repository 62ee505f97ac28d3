//! Text mode: the API's JSON as compact lines and tables. Pure functions of
//! `serde_json::Value`, so that a field the gateway adds or drops never
//! breaks the client (`--output json` shows everything).

use std::fmt::Write as _;

use serde_json::Value;

/// Longest output shown by `eddy invocation` in text mode.
const MAX_SHOWN_OUTPUT: usize = 2000;

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// `0` means unlimited in quotas.
fn limit(n: Option<u64>) -> String {
    match n {
        Some(0) => "unlimited".into(),
        Some(n) => n.to_string(),
        None => "-".into(),
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmmZ` (UTC).
pub fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (year, month, day) = eddy_protocol::schedules::civil((secs / 86_400) as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Microseconds for people: `850µs`, `12.3ms`, `2.50s`.
pub fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

/// Bytes for people: `812 B`, `1.5 KiB`, `3.2 MiB`.
pub fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    }
}

/// Re-indents JSON text the way `serde_json::to_string_pretty` does, but
/// keeps the fields in the order the gateway sent them. `None` when `raw`
/// is not JSON.
pub fn pretty_json(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    serde_json::from_str::<Value>(text).ok()?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// Aligned columns, two spaces apart, the last one unpadded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The text of an output as the record holds it: a string when it was
/// UTF-8, else an array of byte values.
fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) if s.chars().count() > MAX_SHOWN_OUTPUT => {
            let shown: String = s.chars().take(MAX_SHOWN_OUTPUT).collect();
            format!(
                "{shown}… ({} bytes in all; --output json shows it whole)",
                s.len()
            )
        }
        Value::String(s) => s.trim_end().to_string(),
        Value::Array(a) => format!("<{} bytes of binary>", a.len()),
        other => other.to_string(),
    }
}

/// `eddy invocation <id>`: one line per aspect.
pub fn invocation(rec: &Value) -> String {
    let mut out = String::new();
    let id = or_dash(str_of(rec, "id"));
    let status = or_dash(str_of(rec, "status"));
    let _ = writeln!(out, "invocation  {id}  {status}");
    let version = u64_of(rec, "version")
        .map(|v| format!(" v{v}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "function    {}{version}  attempt {}  depth {}",
        or_dash(str_of(rec, "function")),
        u64_of(rec, "attempt").unwrap_or(0),
        u64_of(rec, "depth").unwrap_or(0),
    );
    let mut run = format!("run         {}", or_dash(str_of(rec, "run_id")));
    if let Some(p) = str_of(rec, "parent_id") {
        let _ = write!(run, "  parent {p}");
    }
    let _ = writeln!(out, "{run}");
    if let Some(created) = u64_of(rec, "created_at_ms") {
        let mut line = format!("created     {}", timestamp(created));
        if let Some(done) = u64_of(rec, "completed_at_ms") {
            let _ = write!(
                line,
                "  completed {} ({} ms later)",
                timestamp(done),
                done.saturating_sub(created)
            );
        }
        let _ = writeln!(out, "{line}");
    }
    // A queued record carries zeroed timings: show them once it ran.
    let ran = rec.get("completed_at_ms").is_some() || rec.get("worker").is_some();
    if let Some(t) = rec.get("timings").filter(|t| ran && t.is_object()) {
        let n = |k: &str| micros(u64_of(t, k).unwrap_or(0));
        let cold = if t.get("cold").and_then(Value::as_bool) == Some(true) {
            "cold"
        } else {
            "warm"
        };
        let _ = writeln!(
            out,
            "timings     queue {}  slot {}  load {}  instantiate {}  run {}  ({cold}, {} epoch ticks)",
            n("queue_wait_us"),
            n("slot_wait_us"),
            n("load_us"),
            n("instantiate_us"),
            n("run_us"),
            u64_of(t, "epoch_ticks").unwrap_or(0),
        );
    }
    if let Some(w) = str_of(rec, "worker") {
        let _ = writeln!(out, "worker      {w}");
    }
    if let Some(output) = rec.get("output") {
        let ct = or_dash(str_of(rec, "content_type"));
        let _ = writeln!(out, "output      ({ct}) {}", output_text(output));
    }
    if let Some(e) = rec.get("error").filter(|e| e.is_object()) {
        let code = str_of(e, "code")
            .map(|c| format!(" {c}:"))
            .unwrap_or_default();
        let retry = if e.get("retryable").and_then(Value::as_bool) == Some(true) {
            " (retryable)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "error       [{}]{code} {}{retry}",
            or_dash(str_of(e, "class")),
            or_dash(str_of(e, "message")),
        );
    }
    if let Some(f) = rec
        .get("follow_ups")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
    {
        let ids: Vec<&str> = f.iter().filter_map(Value::as_str).take(5).collect();
        let more = if f.len() > 5 {
            format!(", … {} more", f.len() - 5)
        } else {
            String::new()
        };
        let _ = writeln!(out, "follow-ups  {}: {}{more}", f.len(), ids.join(", "));
    }
    if let Some(l) = rec
        .get("logs")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    {
        let _ = writeln!(out, "logs        {} lines (eddy logs {id})", l.len());
    }
    out
}

/// `eddy logs <id>`: `level  source  message`, one per line.
pub fn logs(rec: &Value) -> String {
    let mut out = String::new();
    for l in rec
        .get("logs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "{:<5} {:<6} {}",
            or_dash(str_of(l, "level")),
            or_dash(str_of(l, "source")),
            or_dash(str_of(l, "message")).trim_end()
        );
    }
    out
}

/// Finished invocations of a run: `total - outstanding`.
pub fn run_done(run: &Value) -> (u64, u64) {
    let total = u64_of(run, "total").unwrap_or(0);
    let outstanding = u64_of(run, "outstanding").unwrap_or(0);
    (total.saturating_sub(outstanding), total)
}

/// Failed or dead invocations of a run.
pub fn run_failed(run: &Value) -> u64 {
    u64_of(run, "failed").unwrap_or(0) + u64_of(run, "dead").unwrap_or(0)
}

/// `eddy runs <id>`: one line, plus the run's guard error if any.
pub fn run(run: &Value) -> String {
    let (done, total) = run_done(run);
    let percent = run
        .get("percent")
        .and_then(Value::as_f64)
        .unwrap_or_else(|| {
            if total == 0 {
                0.0
            } else {
                100.0 * done as f64 / total as f64
            }
        });
    let mut out = format!(
        "run {}  {}  {done}/{total} done ({percent:.0}%)  succeeded {}  failed {}  dead {}",
        or_dash(str_of(run, "id")),
        or_dash(str_of(run, "status")),
        u64_of(run, "succeeded").unwrap_or(0),
        u64_of(run, "failed").unwrap_or(0),
        u64_of(run, "dead").unwrap_or(0),
    );
    if let (Some(a), Some(b)) = (u64_of(run, "created_at_ms"), u64_of(run, "completed_at_ms")) {
        let _ = write!(out, "  in {} ms", b.saturating_sub(a));
    }
    out.push('\n');
    if let Some(e) = str_of(run, "error") {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

/// `eddy functions`: one row per function.
pub fn functions(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let spec = f.get("spec").unwrap_or(&Value::Null);
            let config = spec.get("config").unwrap_or(&Value::Null);
            let backlog = f.get("backlog").unwrap_or(&Value::Null);
            vec![
                or_dash(str_of(f, "name")).to_string(),
                u64_of(f, "current").map_or("-".into(), |v| format!("v{v}")),
                u64_of(backlog, "lag").map_or("-".into(), |n| n.to_string()),
                u64_of(backlog, "pending").map_or("-".into(), |n| n.to_string()),
                u64_of(config, "timeout_ms").map_or("-".into(), |n| format!("{n}ms")),
                u64_of(config, "memory_mb").map_or("-".into(), |n| format!("{n}MiB")),
                u64_of(spec, "created_at_ms").map_or("-".into(), timestamp),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no functions\n".into();
    }
    table(
        &[
            "NAME", "CURRENT", "QUEUED", "RUNNING", "TIMEOUT", "MEMORY", "DEPLOYED",
        ],
        &rows,
    )
}

/// `eddy functions <fn>`: the backlog, then one row per version.
pub fn function_detail(f: &Value) -> String {
    let current = u64_of(f, "current");
    let backlog = f.get("backlog").unwrap_or(&Value::Null);
    let mut out = format!(
        "function {}  current {}  queued {}  running {}\n",
        or_dash(str_of(f, "name")),
        current.map_or("-".into(), |v| format!("v{v}")),
        u64_of(backlog, "lag").unwrap_or(0),
        u64_of(backlog, "pending").unwrap_or(0),
    );
    let rows: Vec<Vec<String>> = f
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let config = s.get("config").unwrap_or(&Value::Null);
            let version = u64_of(s, "version");
            let values = config
                .get("values")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into());
            vec![
                format!(
                    "{}v{}",
                    if version.is_some() && version == current {
                        "*"
                    } else {
                        " "
                    },
                    version.unwrap_or(0)
                ),
                or_dash(str_of(s, "sha256")).chars().take(12).collect(),
                u64_of(s, "module_bytes").map_or("-".into(), bytes),
                u64_of(config, "timeout_ms").map_or("-".into(), |n| format!("{n}ms")),
                u64_of(config, "memory_mb").map_or("-".into(), |n| format!("{n}MiB")),
                u64_of(config, "max_retries").map_or("-".into(), |n| n.to_string()),
                u64_of(s, "created_at_ms").map_or("-".into(), timestamp),
                values,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "VERSION", "SHA256", "SIZE", "TIMEOUT", "MEMORY", "RETRIES", "DEPLOYED", "CONFIG",
        ],
        &rows,
    ));
    out
}

/// `eddy deploy`: the new version in one line.
pub fn deployed(spec: &Value) -> String {
    let config = spec.get("config").unwrap_or(&Value::Null);
    format!(
        "deployed {} v{} (sha256 {}, {}, timeout {}ms, memory {}MiB)\n",
        or_dash(str_of(spec, "name")),
        u64_of(spec, "version").unwrap_or(0),
        or_dash(str_of(spec, "sha256"))
            .chars()
            .take(12)
            .collect::<String>(),
        u64_of(spec, "module_bytes").map_or("-".into(), bytes),
        u64_of(config, "timeout_ms").unwrap_or(0),
        u64_of(config, "memory_mb").unwrap_or(0),
    )
}

/// `eddy dead-letters`: one row per entry.
pub fn dead_letters(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let error: String = or_dash(str_of(d, "error")).chars().take(80).collect();
            vec![
                or_dash(str_of(d, "entry_id")).to_string(),
                or_dash(str_of(d, "invocation_id")).to_string(),
                or_dash(str_of(d, "function")).to_string(),
                or_dash(str_of(d, "status")).to_string(),
                or_dash(str_of(d, "class")).to_string(),
                u64_of(d, "attempts").map_or("-".into(), |n| n.to_string()),
                u64_of(d, "at_ms").map_or("-".into(), timestamp),
                error.replace('\n', " "),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no dead letters\n".into();
    }
    table(
        &[
            "ENTRY",
            "INVOCATION",
            "FUNCTION",
            "STATUS",
            "CLASS",
            "ATTEMPTS",
            "AT",
            "ERROR",
        ],
        &rows,
    )
}

/// A quota on one line; 0 is unlimited.
pub fn quota(q: &Value) -> String {
    format!(
        "max_pending {}  max_concurrency {}  rate {}  max_stored {}",
        limit(u64_of(q, "max_pending")),
        limit(u64_of(q, "max_concurrency")),
        match u64_of(q, "rate_per_sec") {
            Some(n) if n > 0 => format!("{n}/s"),
            n => limit(n),
        },
        match u64_of(q, "max_stored_bytes") {
            Some(n) if n > 0 => bytes(n),
            n => limit(n),
        },
    )
}

/// `eddy tenant get`.
pub fn tenant(t: &Value) -> String {
    format!(
        "tenant {}  created {}  pending {}  stored {}\nquota  {}\n",
        or_dash(str_of(t, "id")),
        u64_of(t, "created_at_ms").map_or("-".into(), timestamp),
        u64_of(t, "pending").unwrap_or(0),
        bytes(u64_of(t, "stored_bytes").unwrap_or(0)),
        quota(t.get("quota").unwrap_or(&Value::Null)),
    )
}

/// `eddy tenant create`: the secrets are shown once, so say so.
pub fn tenant_created(c: &Value) -> String {
    let t = c.get("tenant").unwrap_or(&Value::Null);
    let key = or_dash(str_of(c, "key"));
    format!(
        "created tenant {}\nkey             {key}\nkey id          {}\nwebhook secret  {}\nquota           {}\n\
         The key and the webhook secret are shown only once. Use the key with: export EDDY_KEY={key}\n",
        or_dash(str_of(t, "id")),
        or_dash(str_of(c, "key_id")),
        or_dash(str_of(c, "webhook_secret")),
        quota(t.get("quota").unwrap_or(&Value::Null)),
    )
}

/// `eddy tenant keys`.
pub fn keys(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            vec![
                or_dash(str_of(k, "id")).to_string(),
                u64_of(k, "created_at_ms").map_or("-".into(), timestamp),
                if k.get("revoked").and_then(Value::as_bool) == Some(true) {
                    "revoked".into()
                } else {
                    "active".into()
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no keys\n".into();
    }
    table(&["ID", "CREATED", "STATE"], &rows)
}

/// `eddy var ls`: secrets show no value.
pub fn variables(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let secret = v.get("secret").and_then(Value::as_bool) == Some(true);
            vec![
                or_dash(str_of(v, "name")).to_string(),
                if secret { "secret" } else { "plain" }.to_string(),
                if secret {
                    "(hidden)".to_string()
                } else {
                    str_of(v, "value")
                        .unwrap_or_default()
                        .escape_debug()
                        .to_string()
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no variables\n".into();
    }
    table(&["NAME", "KIND", "VALUE"], &rows)
}

/// The last firing of a schedule, in a few words.
fn firing(f: &Value) -> String {
    let tick = f.get("tick_ms").and_then(Value::as_u64).unwrap_or(0);
    match str_of(f, "outcome") {
        Some("enqueued") => format!("{} run {}", timestamp(tick), or_dash(str_of(f, "run_id"))),
        _ => format!(
            "{} refused: {}",
            timestamp(tick),
            or_dash(str_of(f, "error"))
        ),
    }
}

/// `eddy schedule ls`.
pub fn schedules(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let next = v.get("next_ms").and_then(Value::as_u64).unwrap_or(0);
            vec![
                or_dash(str_of(v, "name")).to_string(),
                or_dash(str_of(v, "cron")).to_string(),
                or_dash(str_of(v, "function")).to_string(),
                if next == 0 {
                    "-".into()
                } else {
                    timestamp(next)
                },
                v.get("last")
                    .and_then(Value::as_array)
                    .and_then(|l| l.first())
                    .map_or("-".into(), firing),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no schedules\n".into();
    }
    table(
        &["NAME", "CRON", "FUNCTION", "NEXT TICK", "LAST FIRING"],
        &rows,
    )
}

/// `eddy schedule show`.
pub fn schedule(v: &Value) -> String {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!(
        "schedule   {}\ncron       {} (UTC)\nfunction   {}\ndata       {}\nnext tick  {}\nfired      {}, refused {}, missed {}\n",
        or_dash(str_of(v, "name")),
        or_dash(str_of(v, "cron")),
        or_dash(str_of(v, "function")),
        v.get("data").map_or("{}".into(), Value::to_string),
        if n("next_ms") == 0 {
            "-".into()
        } else {
            timestamp(n("next_ms"))
        },
        n("fired"),
        n("refused"),
        n("missed"),
    );
    let rows: Vec<Vec<String>> = v
        .get("last")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            vec![
                timestamp(f.get("tick_ms").and_then(Value::as_u64).unwrap_or(0)),
                or_dash(str_of(f, "outcome")).to_string(),
                str_of(f, "run_id")
                    .or(str_of(f, "error"))
                    .unwrap_or("-")
                    .to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(&["TICK", "OUTCOME", "RUN / WHY"], &rows));
    }
    out
}

/// `eddy status`: the controller's decisions.
pub fn status(v: &Value) -> String {
    let mut out = String::new();
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    out.push_str(&format!(
        "replicas: {} desired, {} live (leader {})\n\n",
        n(v, "desired_replicas"),
        n(v, "current_replicas"),
        v.get("leader").and_then(Value::as_str).unwrap_or("-")
    ));
    out.push_str(&format!(
        "{:<14} {:<20} {:>8} {:>8} {:>9} {:>8} {:>5} {:>8} {:>10}  {}\n",
        "TENANT",
        "FUNCTION",
        "QUEUED",
        "RUNNING",
        "ARRIVAL/S",
        "SVC MS",
        "WARM",
        "WORKERS",
        "ZERO IN",
        "WHY"
    ));
    for f in v
        .get("functions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let zero = n(f, "zero_in_ms");
        let warm = n(f, "concurrency");
        out.push_str(&format!(
            "{:<14} {:<20} {:>8} {:>8} {:>9.1} {:>8.2} {:>5} {:>8} {:>10}  {}\n",
            f.get("tenant").and_then(Value::as_str).unwrap_or(""),
            f.get("function").and_then(Value::as_str).unwrap_or(""),
            n(f, "lag"),
            n(f, "pending"),
            f.get("arrival_rate").and_then(Value::as_f64).unwrap_or(0.0),
            f.get("service_ms").and_then(Value::as_f64).unwrap_or(0.0),
            warm,
            f.get("workers")
                .and_then(Value::as_array)
                .map(|a| a.len())
                .unwrap_or(0),
            if warm == 0 {
                "zero".to_string()
            } else if zero == 0 {
                "-".to_string()
            } else {
                format!("{:.1}s", zero as f64 / 1000.0)
            },
            f.get("reason").and_then(Value::as_str).unwrap_or(""),
        ));
    }
    out.push_str(&format!(
        "\n{:<28} {:>6} {:>9} {:>10} {:>6} {:>9}\n",
        "WORKER", "SLOTS", "IN FLIGHT", "COMPLETED", "WARM", "RSS MIB"
    ));
    for w in v
        .get("workers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "{:<28} {:>6} {:>9} {:>10} {:>6} {:>9.1}{}\n",
            w.get("id").and_then(Value::as_str).unwrap_or(""),
            n(w, "concurrency"),
            n(w, "in_flight"),
            n(w, "completed"),
            n(w, "warm"),
            n(w, "rss_bytes") as f64 / 1048576.0,
            if w.get("draining").and_then(Value::as_bool).unwrap_or(false) {
                "  draining"
            } else {
                ""
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests;
