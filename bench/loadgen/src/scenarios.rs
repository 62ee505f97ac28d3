//! The scenarios. Each returns its JSON summary; `problems` in it lists what
//! went wrong (errors, lost or unfinished invocations, timeouts).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::Settings;
use super::http::{Gateway, Poster, id_string, invocation_id, segment};
use super::stats::{Errors, Facts, Hist, Rng, now_ms, phases, r3, sample_indices};

mod sequential;
pub use sequential::{cold, latency, run};

/// How often the drain wait reads the function's backlog.
const BACKLOG_POLL: Duration = Duration::from_millis(50);
/// How often a record that is not final yet is read again.
const RECORD_POLL: Duration = Duration::from_millis(20);
/// Reads of a record that fail (transport, 5xx) before giving up on it.
const RECORD_TRIES: u32 = 5;

/// The ~200-byte JSON payload of throughput and latency runs (wordcount's
/// input shape; `echo` takes anything).
pub const DEFAULT_TEXT_PAYLOAD: &str = concat!(
    r#"{"text":"the quick brown fox jumps over the lazy dog while eddy counts "#,
    r#"every word of this short paragraph of benchmark text so that each "#,
    r#"invocation carries about two hundred bytes of JSON to its processor"}"#
);

/// What each invocation gets.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The same bytes every time (single-line JSON).
    Fixed(Bytes),
    /// `classify` rows: `{"row":"t<i>,<amount>,<country>,<category>"}`,
    /// deterministic in `i`, about one in eight blocked, one in five review.
    Rows,
}

const COUNTRIES: [&str; 8] = ["FR", "US", "DE", "KP", "GB", "JP", "BR", "IN"];
const CATEGORIES: [&str; 4] = ["books", "food", "electronics", "travel"];

impl Payload {
    /// Appends invocation `i`'s payload (no newline).
    pub fn write(&self, i: u64, out: &mut Vec<u8>) {
        match self {
            Payload::Fixed(b) => out.extend_from_slice(b),
            Payload::Rows => {
                let cents = i.wrapping_mul(7919) % 125_000;
                let _ = write!(
                    out,
                    r#"{{"row":"t{i},{}.{:02},{},{}"}}"#,
                    cents / 100,
                    cents % 100,
                    COUNTRIES[(i % 8) as usize],
                    CATEGORIES[(i / 8 % 4) as usize]
                );
            }
        }
    }

    pub fn body(&self, i: u64) -> Bytes {
        match self {
            Payload::Fixed(b) => b.clone(),
            Payload::Rows => {
                let mut v = Vec::with_capacity(64);
                self.write(i, &mut v);
                Bytes::from(v)
            }
        }
    }

    pub fn len_hint(&self) -> usize {
        match self {
            Payload::Fixed(b) => b.len(),
            Payload::Rows => 48,
        }
    }
}

fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg:<10} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec})",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(what.to_string());
    b
}

/// Copies a counter into the bar ten times a second, so that senders only
/// bump an atomic.
fn follow(bar: &ProgressBar, counter: &Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let (bar, counter) = (bar.clone(), counter.clone());
    tokio::spawn(async move {
        loop {
            bar.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

// ------------------------------------------------------------ ingestion

/// What the senders share.
#[derive(Debug)]
struct Plan {
    url: Url,
    headers: HeaderMap,
    payload: Payload,
    count: u64,
    batch: Option<u64>,
    next: AtomicU64,
    done: Arc<AtomicU64>,
}

/// One sender's results.
#[derive(Debug)]
struct SenderOut {
    /// (invocation index, id)
    ids: Vec<(u64, u128)>,
    latency: Hist,
    errors: Errors,
    last: Instant,
}

impl SenderOut {
    fn new() -> Result<Self> {
        Ok(SenderOut {
            ids: Vec::new(),
            latency: Hist::new()?,
            errors: Errors::default(),
            last: Instant::now(),
        })
    }
}

/// One request per invocation, `Prefer: respond-async`.
async fn send_singles(mut poster: Poster, plan: Arc<Plan>) -> Result<SenderOut> {
    let mut out = SenderOut::new()?;
    loop {
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.count {
            break;
        }
        let t = Instant::now();
        match poster
            .post(&plan.url, &plan.headers, plan.payload.body(i))
            .await
        {
            Ok((status, headers, body)) => {
                out.latency.record(t.elapsed().as_micros() as u64);
                match (status.is_success(), invocation_id(&headers)) {
                    (true, Some(id)) => out.ids.push((i, id)),
                    (true, None) => out
                        .errors
                        .add("no_id", 1, || format!("{status} without an invocation id")),
                    (false, _) => out.errors.add_status(1, status, &body),
                }
            }
            Err(e) => out.errors.add_post(1, &e),
        }
        out.last = Instant::now();
        plan.done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(out)
}

/// The id of one answer line of a batch (`{"id":"<uuid>","line":n}`),
/// without a JSON parse.
fn batch_line_id(line: &[u8]) -> Option<u128> {
    const KEY: &[u8] = br#""id":""#;
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    uuid::Uuid::try_parse_ascii(line.get(at..at + 36)?)
        .ok()
        .map(|u| u.as_u128())
}

/// The `line` number of an answer line.
fn batch_line_no(line: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""line":"#;
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Reads a batch answer: one line per input line, in order.
fn read_batch_answer(body: &[u8], start: u64, rows: u64, out: &mut SenderOut) {
    let mut seen = 0u64;
    for line in body.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        seen += 1;
        let row = start + batch_line_no(line).unwrap_or(seen).saturating_sub(1);
        match batch_line_id(line) {
            Some(id) => out.ids.push((row, id)),
            None => {
                let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                let e = v.get("error").unwrap_or(&Value::Null);
                let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
                out.errors.add(&s("code"), 1, || s("message"));
            }
        }
    }
    if seen < rows {
        out.errors.add("missing_answer", rows - seen, || {
            format!("a batch of {rows} lines got {seen} answer lines")
        });
    }
}

/// NDJSON batches of `batch` lines through `/invoke/{fn}/batch`.
async fn send_batches(http: reqwest::Client, plan: Arc<Plan>, batch: u64) -> Result<SenderOut> {
    let mut out = SenderOut::new()?;
    let batches = plan.count.div_ceil(batch);
    loop {
        let b = plan.next.fetch_add(1, Ordering::Relaxed);
        if b >= batches {
            break;
        }
        let start = b * batch;
        let end = (start + batch).min(plan.count);
        let rows = end - start;
        let mut body = Vec::with_capacity(rows as usize * (plan.payload.len_hint() + 1));
        for i in start..end {
            plan.payload.write(i, &mut body);
            body.push(b'\n');
        }
        let t = Instant::now();
        let sent = http
            .post(plan.url.clone())
            .headers(plan.headers.clone())
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Err(e) => out.errors.add_reqwest(rows, &e),
                    Ok(b) if status.is_success() => read_batch_answer(&b, start, rows, &mut out),
                    Ok(b) => out.errors.add_status(rows, status, &b),
                }
            }
            Err(e) => out.errors.add_reqwest(rows, &e),
        }
        out.latency.record(t.elapsed().as_micros() as u64);
        out.last = Instant::now();
        plan.done.fetch_add(rows, Ordering::Relaxed);
    }
    Ok(out)
}

/// What the sending phase produced.
#[derive(Debug)]
struct Ingested {
    /// Invocation index → id (0: not accepted).
    ids: Vec<u128>,
    accepted: u64,
    errors: Errors,
    latency: Hist,
    started: Instant,
    started_ms: u64,
    /// First request sent → last answer received.
    accept_s: f64,
}

async fn ingest(gw: &Gateway, s: &Settings, batch: Option<u64>) -> Result<Ingested> {
    let path = match batch {
        Some(_) => format!("/invoke/{}/batch", segment(&s.function)),
        None => format!("/invoke/{}", segment(&s.function)),
    };
    let headers = match batch {
        Some(_) => gw.headers(&[("content-type", "application/x-ndjson")]),
        None => gw.headers(&[
            ("content-type", "application/json"),
            ("prefer", "respond-async"),
        ]),
    };
    let done = Arc::new(AtomicU64::new(0));
    let plan = Arc::new(Plan {
        url: gw.url(&path)?,
        headers,
        payload: s.payload.clone(),
        count: s.count,
        batch,
        next: AtomicU64::new(0),
        done: done.clone(),
    });
    let progress = bar(s.count, "accept", s.quiet);
    let ticker = follow(&progress, &done);
    let started = Instant::now();
    let started_ms = now_ms();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..s.concurrency.max(1) {
        let (http, poster, plan) = (gw.http.clone(), gw.poster(), plan.clone());
        senders.spawn(async move {
            match plan.batch {
                Some(b) => send_batches(http, plan, b.max(1)).await,
                None => send_singles(poster, plan).await,
            }
        });
    }
    let mut ids = vec![0u128; s.count as usize];
    let mut latency = Hist::new()?;
    let mut errors = Errors::default();
    let mut last = started;
    let mut accepted = 0u64;
    while let Some(joined) = senders.join_next().await {
        let out = joined.context("a sender task died")??;
        accepted += out.ids.len() as u64;
        for (i, id) in out.ids {
            if let Some(slot) = ids.get_mut(i as usize) {
                *slot = id;
            }
        }
        latency.add(&out.latency)?;
        errors.merge(out.errors);
        last = last.max(out.last);
    }
    ticker.abort();
    progress.set_position(done.load(Ordering::Relaxed));
    progress.finish_and_clear();
    Ok(Ingested {
        ids,
        accepted,
        errors,
        latency,
        started,
        started_ms,
        accept_s: last.duration_since(started).as_secs_f64(),
    })
}

/// Waits until the function's stream has nothing queued or running.
/// Returns when that was seen, or `None` at the deadline.
async fn drain(
    gw: &Gateway,
    s: &Settings,
    accepted: u64,
    deadline: Instant,
) -> Result<Option<Instant>> {
    let progress = bar(accepted, "complete", s.quiet);
    let result = loop {
        let left = gw.backlog(&s.function).await?;
        progress.set_position(accepted.saturating_sub(left));
        if left == 0 {
            break Some(Instant::now());
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(BACKLOG_POLL).await;
    };
    progress.finish_and_clear();
    Ok(result)
}

/// Reads a record until it is final (or the deadline); 404 is `missing`.
async fn final_record(gw: &Gateway, id: &str, deadline: Instant) -> Facts {
    let path = format!("/invocations/{}", segment(id));
    let mut failures = 0;
    loop {
        let facts = match gw.get_json(&path).await {
            Ok(Some(v)) => Facts::from_record(&v),
            Ok(None) => Facts::missing(),
            Err(e) => {
                failures += 1;
                if failures >= RECORD_TRIES {
                    return Facts {
                        status: format!("unreadable ({e:#})"),
                        ..Facts::default()
                    };
                }
                tokio::time::sleep(RECORD_POLL * failures).await;
                continue;
            }
        };
        if facts.is_final() || Instant::now() >= deadline {
            return facts;
        }
        tokio::time::sleep(RECORD_POLL).await;
    }
}

/// Reads many records, `concurrency` at a time.
async fn records(
    gw: &Gateway,
    ids: Vec<String>,
    concurrency: usize,
    deadline: Instant,
    quiet: bool,
) -> Vec<Facts> {
    let progress = bar(ids.len() as u64, "records", quiet);
    let facts: Vec<Facts> = futures::stream::iter(ids)
        .map(|id| {
            let (gw, progress) = (gw.clone(), progress.clone());
            async move {
                let f = final_record(&gw, &id, deadline).await;
                progress.inc(1);
                f
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    progress.finish_and_clear();
    facts
}

/// `pending` of the tenant (accepted, unfinished invocations), if readable.
async fn tenant_pending(gw: &Gateway, facts: &[Facts]) -> Option<u64> {
    let tenant = facts.iter().find(|f| !f.tenant.is_empty())?.tenant.clone();
    let v = gw
        .get_json(&format!("/tenants/{}", segment(&tenant)))
        .await
        .ok()??;
    v.get("pending").and_then(Value::as_u64)
}

/// Problems worth failing the run for, from the records read.
fn record_problems(facts: &[Facts], problems: &mut Vec<String>) {
    let count = |pred: &dyn Fn(&Facts) -> bool| facts.iter().filter(|f| pred(f)).count();
    let missing = count(&|f| f.status == "missing");
    if missing > 0 {
        problems.push(format!(
            "{missing} accepted invocation(s) have no record (404)"
        ));
    }
    let unfinished = count(&|f| !f.is_final());
    if unfinished > 0 {
        problems.push(format!(
            "{unfinished} sampled invocation(s) not final at the deadline"
        ));
    }
    let failed = count(&|f| matches!(f.status.as_str(), "failed" | "dead"));
    if failed > 0 {
        problems.push(format!("{failed} sampled invocation(s) failed or dead"));
    }
}

/// `throughput` and `bulk`: send everything, wait for the backlog to drain,
/// then date the last completion from the records.
pub async fn ingestion(gw: &Gateway, s: &Settings) -> Result<Value> {
    let batch = s.batch.map(|b| b as u64);
    let cpu0 = s.cpu.mark();
    let sent = ingest(gw, s, batch).await?;
    let deadline = sent.started + s.timeout;
    let mut problems = Vec::new();
    if sent.errors.total > 0 {
        problems.push(format!("{} request(s) or lines refused", sent.errors.total));
    }
    let drained = if sent.accepted > 0 {
        drain(gw, s, sent.accepted, deadline).await?
    } else {
        None
    };
    let cpu = s.cpu.between(
        &cpu0,
        &s.cpu.mark(),
        "first request → backlog seen empty",
        sent.accepted,
    );
    if drained.is_none() && sent.accepted > 0 {
        problems.push(format!(
            "the backlog of `{}` did not drain within {} s",
            s.function,
            s.timeout.as_secs()
        ));
    }
    // The sample: random accepted ids plus the last accepted ones.
    let accepted_idx: Vec<usize> = (0..sent.ids.len()).filter(|i| sent.ids[*i] != 0).collect();
    let tail = match batch {
        Some(b) => (b as usize).max(200),
        None => (2 * s.concurrency).max(200),
    };
    let mut rng = Rng::seeded();
    let picked = sample_indices(accepted_idx.len(), s.sample, tail, &mut rng);
    let ids: Vec<String> = picked
        .iter()
        .map(|k| id_string(sent.ids[accepted_idx[*k]]))
        .collect();
    let record_deadline = Instant::now() + Duration::from_secs(30).min(s.timeout);
    let facts = records(
        gw,
        ids,
        s.concurrency.clamp(4, 32),
        record_deadline,
        s.quiet,
    )
    .await;
    record_problems(&facts, &mut problems);
    let pending = tenant_pending(gw, &facts).await;
    if let Some(p) = pending.filter(|p| *p > 0) {
        problems.push(format!(
            "the tenant still counts {p} pending invocation(s) after the drain"
        ));
    }
    let last_completed_ms = facts.iter().filter_map(|f| f.completed_ms).max();
    let end_to_end_s = last_completed_ms.map(|ms| ms.saturating_sub(sent.started_ms) as f64 / 1e3);
    let drained_s = drained.map(|t| t.duration_since(sent.started).as_secs_f64());
    let per_sec = |secs: Option<f64>| secs.filter(|s| *s > 0.0).map(|s| sent.accepted as f64 / s);
    let accept_per_sec = per_sec(Some(sent.accept_s));
    let e2e_per_sec = per_sec(end_to_end_s);
    Ok(json!({
        "mode": if batch.is_some() { "batch" } else { "single" },
        "batch_size": batch,
        "payload_bytes": s.payload.len_hint(),
        "accepted": sent.accepted,
        "errors": sent.errors.summary(),
        "accept": {
            "seconds": r3(sent.accept_s),
            "per_sec": accept_per_sec.map(r3),
            "request_latency_us": sent.latency.summary(),
        },
        "completion": {
            "method": "poll GET /functions/{name} until backlog lag+pending = 0, then \
                       max(completed_at_ms) over the sampled records (random sample + \
                       the last accepted ids) minus the client's clock at the first request",
            "drained": drained.is_some(),
            "drain_observed_s": drained_s.map(r3),
            "started_at_ms": sent.started_ms,
            "last_completed_at_ms": last_completed_ms,
            "end_to_end_s": end_to_end_s.map(r3),
            "per_sec": e2e_per_sec.map(r3),
        },
        "records": phases(&facts)?,
        "tenant_pending_after": pending,
        "cpu": cpu,
        "headline": {
            "invocations": sent.accepted,
            "wall_s": end_to_end_s.or(drained_s).map(r3),
            "throughput_per_sec": e2e_per_sec.map(r3),
            "latency_us": sent.latency.summary(),
            "latency_kind": if batch.is_some() { "batch request (accept)" } else { "async request (accept)" },
        },
        "problems": problems,
    }))
}

// ------------------------------------------------------------ run

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_payload_is_about_200_bytes_of_json() {
        let v: Value = serde_json::from_str(DEFAULT_TEXT_PAYLOAD).unwrap();
        assert!(v["text"].is_string());
        let n = DEFAULT_TEXT_PAYLOAD.len();
        assert!((190..=215).contains(&n), "{n}");
    }

    #[test]
    fn rows_are_classify_json() {
        let mut out = Vec::new();
        Payload::Rows.write(3, &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        let row = v["row"].as_str().unwrap();
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0], "t3");
        assert!(fields[1].parse::<f64>().is_ok());
        assert_eq!(fields[2], "KP");
    }

    #[test]
    fn batch_answers_are_read_without_parsing() {
        let mut out = SenderOut::new().unwrap();
        let id = "0190b0e2-7c3a-7def-8a00-0123456789ab";
        let body = format!(
            "{{\"id\":\"{id}\",\"line\":1}}\n{{\"error\":{{\"code\":\"invalid_json\",\"message\":\"m\"}},\"line\":2}}\n"
        );
        read_batch_answer(body.as_bytes(), 10, 3, &mut out);
        assert_eq!(out.ids.len(), 1);
        assert_eq!(out.ids[0].0, 10);
        assert_eq!(id_string(out.ids[0].1), id);
        // One refused line, one answer missing.
        assert_eq!(out.errors.total, 2);
    }
}
