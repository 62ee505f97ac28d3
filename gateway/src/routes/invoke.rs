//! `POST /invoke/{name}` (sync by default, async on request) and
//! `POST /invoke/{name}/batch` (NDJSON bulk ingestion).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;

use crate::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eddy_protocol::ErrorClass;
use eddy_protocol::trace;
use eddy_protocol::{
    Envelope, FunctionName, FunctionSpec, InvocationRecord, InvocationStatus, TenantId,
};
use futures::StreamExt;
use serde_json::json;
use tracing::Instrument;

use super::{body, function_name};
use crate::AppState;
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};

/// One NDJSON line: its number, and the invocation to enqueue or why not.
type BatchItem = (usize, Result<(Envelope, Vec<u8>), ApiError>);

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// The prefix of the idempotency keys of schedules' ticks
/// (`schedule:<name>:<tick ms>`), reserved: a caller cannot claim a tick.
const SCHEDULE_KEYS: &str = "schedule:";

/// The server span of an invoke route (exported when tracing is on).
fn server_span(route: &'static str, tenant: &TenantId, function: &str) -> tracing::Span {
    tracing::info_span!(
        target: trace::TARGET,
        "invoke route",
        otel.name = %format_args!("POST {route}"),
        otel.kind = "server",
        http.request.method = "POST",
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        eddy.tenant = %tenant,
        eddy.function = %function,
        eddy.invocation_id = tracing::field::Empty,
        eddy.run_id = tracing::field::Empty,
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest(format!("header `{name}` is not valid text")))
        })
        .transpose()
}

/// What `Prefer` asks for: async, and/or a wait time for sync.
fn prefer(headers: &HeaderMap) -> (bool, Option<Duration>) {
    let mut asynchronous = false;
    let mut wait = None;
    for value in headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("respond-async") {
                asynchronous = true;
            } else if let Some(secs) = token
                .strip_prefix("wait=")
                .and_then(|s| s.parse::<u64>().ok())
            {
                wait = Some(Duration::from_secs(secs));
            }
        }
    }
    (asynchronous, wait)
}

/// The function's current spec: from this gateway's cache (see `specs.rs`),
/// else from Redis.
async fn current_spec(
    state: &AppState,
    tenant: &TenantId,
    name: &FunctionName,
) -> ApiResult<Arc<FunctionSpec>> {
    if let Some(spec) = state.specs.get(tenant, name) {
        return Ok(spec);
    }
    let generation = state.specs.generation();
    let asked = std::time::Instant::now();
    let spec = state
        .queue
        .function(tenant, name, None)
        .await?
        .map(Arc::new)
        .ok_or_else(|| ApiError::NotFound {
            what: "function",
            name: name.to_string(),
        })?;
    state.specs.put(spec.clone(), generation, asked);
    Ok(spec)
}

fn check_callback(state: &AppState, url: Option<&str>) -> ApiResult<()> {
    if let Some(url) = url {
        eddy_protocol::callback::check_url(url, &state.config.callback_allowlist)
            .map_err(|e| ApiError::BadCallback(e.to_string()))?;
    }
    Ok(())
}

fn check_payload(content_type: &str, payload: &[u8]) -> ApiResult<()> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media == "application/json" || media.ends_with("+json") {
        serde_json::from_slice::<serde::de::IgnoredAny>(payload)
            .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    }
    Ok(())
}

fn accepted(id: &str, run_id: &str, replayed: bool) -> Response {
    // Ids are UUIDs (or, for a replay, what Redis holds for one): written
    // as they are, JSON-escaped all the same, without building a value tree
    // on every async request.
    let (id_json, run_json) = (json_str(id), json_str(run_id));
    let location = format!("/invocations/{id}");
    let body = format!(
        r#"{{"id":{id_json},"run_id":{run_json},"status":"queued","location":{}}}"#,
        json_str(&location)
    );
    let mut r = (StatusCode::ACCEPTED, body).into_response();
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The status of a sync invocation that failed with `class`. What the
/// processor did (returned an error, trapped, ran out of time, memory or a
/// limit, is not a valid processor, emitted to a function that does not
/// exist, outgrew its run's limits) is 422: the request was understood and
/// the function failed on it. 5xx is for Eddy's own faults only: a host
/// error, an entry that could not be read, a delivery whose worker crashed
/// each time.
pub(crate) fn failure_status(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::ProcessorError
        | ErrorClass::Trap
        | ErrorClass::Timeout
        | ErrorClass::OutOfMemory
        | ErrorClass::StackOverflow
        | ErrorClass::LimitExceeded
        | ErrorClass::InvalidModule
        | ErrorClass::UnknownFunction
        | ErrorClass::RunLimit
        | ErrorClass::Quota => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorClass::HostError
        | ErrorClass::Crashed
        | ErrorClass::Malformed
        | ErrorClass::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP answer of a finished sync invocation: the output itself, or the
/// error with a status for its class (`x-eddy-error-class` names it).
fn finished(rec: InvocationRecord) -> Response {
    let id = HeaderValue::from_str(&rec.id).ok();
    let run = HeaderValue::from_str(&rec.run_id).ok();
    let mut r = match rec.status {
        InvocationStatus::Succeeded => {
            let ct = rec
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            let mut r = (StatusCode::OK, rec.output.unwrap_or_default()).into_response();
            if let Ok(v) = HeaderValue::from_str(&ct) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        _ => {
            let error = rec.outcome.error.clone();
            let class = error
                .as_ref()
                .map(|e| e.class)
                .unwrap_or(ErrorClass::HostError);
            let status = failure_status(class);
            let mut r = (
                status,
                axum::Json(json!({
                    "code": class.as_str().replace('-', "_"),
                    "message": error.as_ref().map(|e| e.message.as_str()).unwrap_or("the invocation failed"),
                    "invocation_id": rec.id,
                    "status": rec.status.as_str(),
                    "attempts": rec.attempt,
                    "error": error,
                })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(class.as_str()) {
                r.headers_mut().insert("x-eddy-error-class", v);
            }
            r
        }
    };
    if let Some(v) = id {
        r.headers_mut().insert("x-eddy-invocation-id", v);
    }
    if let Some(v) = run {
        r.headers_mut().insert("x-eddy-run-id", v);
    }
    r
}

/// Invokes a function. Sync by default: answers with the processor's output
/// (200) or its error, or 202 after the sync timeout. Async with
/// `Prefer: respond-async` or a callback: 202 + `Location` once Redis
/// accepted it.
#[utoipa::path(post, path = "/invoke/{name}", params(("name" = String, Path),
        ("Prefer" = Option<String>, Header, description = "`respond-async` and/or `wait=<seconds>`"),
        ("Idempotency-Key" = Option<String>, Header, description = "dedupes retries of the same request to this function: the first invocation's answer again, with `Idempotent-Replayed: true`; another payload with the same key is 422 `idempotency_key_reused`"),
        ("X-Callback-Url" = Option<String>, Header, description = "POSTed the signed result when the invocation ends"),
        ("X-Run-Callback-Url" = Option<String>, Header, description = "POSTed the signed run record when the run ends")),
    request_body(content = Vec<u8>, description = "the payload, any content type"),
    responses((status = 200, description = "the processor's output"),
              (status = 202, description = "accepted; poll Location", body = Object),
              (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
              (status = 413, body = crate::ErrorBody), (status = 422, description = "`idempotency_key_reused`, or the function failed: `code` and the `x-eddy-error-class` header name the class (`processor_error`, `trap`, `timeout`, `out_of_memory`, `stack_overflow`, `limit_exceeded`, `invalid_module`, `unknown_function`, `run_limit`, `quota`: follow-ups over the tenant's max_pending, or an output over its max_stored_bytes)", body = Object),
              (status = 500, description = "Eddy failed (`host_error`, `crashed`, `internal`), never the function", body = Object),
              (status = 408, description = "the body did not arrive in time: 30 s plus 16 s per MiB received (`request_timeout`)", body = crate::ErrorBody),
              (status = 429, description = "a quota (`quota_exceeded`; `storage_quota_exceeded`: the tenant keeps its max_stored_bytes) or the tenant's share of this gateway's requests in flight (`too_many_in_flight`); `Retry-After`", body = crate::ErrorBody),
              (status = 503, body = crate::ErrorBody)))]
pub async fn invoke(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(name): Path<String>,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    // The server span of the trace: an incoming `traceparent` is its parent,
    // and it is the parent of the invocation (carried in the envelope).
    let span = server_span("/invoke/{name}", &tenant, &name);
    let incoming = header_str(&headers, "traceparent")
        .ok()
        .flatten()
        .filter(|tp| trace::parse(tp).is_some())
        .map(str::to_string);
    trace::set_parent(&span, incoming.as_deref());
    let result = invoke_traced(state, tenant, name, headers, payload, incoming)
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status(),
    };
    span.record("http.response.status_code", status.as_u16());
    result
}

async fn invoke_traced(
    state: AppState,
    tenant: TenantId,
    name: String,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
    incoming: Option<String>,
) -> ApiResult<Response> {
    let name = function_name(&name)?;
    let payload = body(payload, state.config.max_payload_bytes)?;
    let content_type = header_str(&headers, "content-type")?
        .unwrap_or("application/json")
        .to_string();
    let callback = header_str(&headers, "x-callback-url")?.map(str::to_string);
    let run_callback = header_str(&headers, "x-run-callback-url")?.map(str::to_string);
    let idempotency = header_str(&headers, "idempotency-key")?.map(str::to_string);
    if idempotency
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(ApiError::BadRequest(format!(
            "`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    if idempotency
        .as_ref()
        .is_some_and(|k| k.starts_with(SCHEDULE_KEYS))
    {
        return Err(ApiError::BadRequest(format!(
            "`Idempotency-Key` may not start with `{SCHEDULE_KEYS}`: schedules' ticks use those keys"
        )));
    }
    check_callback(&state, callback.as_deref())?;
    check_callback(&state, run_callback.as_deref())?;
    check_payload(&content_type, &payload)?;
    let spec = current_spec(&state, &tenant, &name).await?;

    let (prefer_async, wait) = prefer(&headers);
    let sync = !prefer_async && callback.is_none();
    let mut env = Envelope::root(tenant.clone(), name, content_type);
    env.version = Some(spec.version);
    env.callback_url = callback;
    env.idempotency_key = idempotency;
    // Set here, as the queue would, so that it need not copy the envelope.
    env.lazy_run = Some(eddy_protocol::LazyRun {
        callback_url: run_callback.clone(),
    });
    // This handler's span when traces are exported, else the caller's
    // context unchanged (a worker that exports still joins the trace).
    let current = tracing::Span::current();
    env.traceparent = trace::traceparent(&current).or(incoming);
    current.record("eddy.invocation_id", env.id.as_str());
    current.record("eddy.run_id", env.run_id.as_str());
    if sync {
        env.reply_to = Some(state.reply_channel.clone());
    }
    // Register before enqueueing: the reply cannot outrun the waiter.
    let registration = sync.then(|| state.waiters.register(&env.id));
    // While it waits, this gateway's bulk enqueues (the group commits of
    // async invocations, a bulk load's chunks) are paced: Redis serves this
    // call's round trips with at most one of them ahead.
    let _bulk_paced =
        (sync && state.config.sync_first.bulk_yields).then(|| state.queue.hold_bulk_enqueues());
    let started = std::time::Instant::now();
    // Its own span: the round trip to Redis, apart from what follows it
    // (the worker's read, the run, the reply) in a trace.
    let done = state
        .queue
        .enqueue(
            &env,
            &payload,
            state.config.ceilings.clamp_run(spec.config.run),
            run_callback.as_deref(),
        )
        .instrument(tracing::info_span!(target: trace::TARGET, "enqueue", otel.kind = "client"))
        .await?;
    state
        .enqueue_roundtrip
        .record(started.elapsed().as_secs_f64());
    state.accepted(&tenant, &env.function, sync).increment(1);
    state.touch(&tenant, &env.function).await;
    if done.duplicate {
        // The same request again: answer with the first invocation, and say
        // that it is a replay.
        let rec = state.queue.invocation(&tenant, &done.id).await?;
        let mut r = match rec {
            Some(rec) if sync && rec.status.is_final() => finished(rec),
            Some(rec) => accepted(&rec.id, &rec.run_id, true),
            None => accepted(&done.id, &done.id, true),
        };
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(r);
    }
    let Some(registration) = registration else {
        return Ok(accepted(&env.id, &env.run_id, false));
    };
    let timeout = wait
        .unwrap_or(state.config.sync_timeout)
        .min(state.config.sync_timeout);
    match registration.wait(&state.queue, &tenant, timeout).await? {
        Some(rec) => Ok(finished(rec)),
        None => Ok(accepted(&env.id, &env.run_id, false)),
    }
}

/// Enqueues one invocation per NDJSON line, for bulk ingestion. The response
/// streams one NDJSON line per input line, in order: `{"line":n,"id":…}` or
/// `{"line":n,"error":{"code":…,"message":…}}`; a body over the batch limit
/// ends with `{"error":{"code":"payload_too_large",…}}` and its rest is not
/// read. Lines are enqueued in
/// pipelined batches as they arrive, so a million rows never sit in memory.
#[utoipa::path(post, path = "/invoke/{name}/batch", params(("name" = String, Path)),
    request_body(content = String, content_type = "application/x-ndjson", description = "one JSON payload per line"),
    responses((status = 200, description = "NDJSON, one result per line", content_type = "application/x-ndjson"),
              (status = 404, body = crate::ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: Body,
) -> ApiResult<Response> {
    // Lines per enqueue script call, one call at a time: big enough to
    // amortise the call, small enough that it holds Redis (single-threaded)
    // for a fraction of a millisecond, so that other tenants' commands do
    // not queue behind a bulk load. (Two or four calls in flight accepted a
    // 100,000-line burst in 2.0-2.7 s instead of 3.5-3.7, and let other
    // tenants' p99 grow 2.5-3.7x instead of 2.2-2.4x: bench/RESULTS.md.)
    // A bulk client sends batches in parallel for more.
    const CHUNK: usize = 16;
    let name = function_name(&name)?;
    let spec = current_spec(&state, &tenant, &name).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let max_line = state.config.max_payload_bytes;
    // One span for the whole batch; every line's invocation is its child.
    let span = server_span("/invoke/{name}/batch", &tenant, name.as_str());
    trace::set_parent(&span, header_str(&headers, "traceparent").ok().flatten());
    let traceparent = trace::traceparent(&span);
    tokio::spawn(async move {
        // The span ends when the last line is enqueued.
        let _batch_span = span;
        let mut stream = request.into_data_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut line_no = 0usize;
        let mut pending: Vec<BatchItem> = Vec::new();
        let mut ended = false;
        // Inside a line already reported as too long: drop bytes up to its end.
        let mut skipping = false;
        // Bytes read so far: past `max_bytes` the rest is not read (the raw
        // body stream is not bounded by the route's body limit).
        let (max_bytes, mut read, mut over) = (state.config.max_batch_bytes, 0usize, false);
        while !ended {
            match stream.next().await {
                Some(Ok(chunk)) if read + chunk.len() > max_bytes => {
                    // The last whole line within the limit ends the batch.
                    buf.extend_from_slice(&chunk[..max_bytes - read]);
                    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    buf.truncate(whole);
                    (ended, over) = (true, true);
                }
                Some(Ok(chunk)) => {
                    read += chunk.len();
                    buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => {
                    // What was read is enqueued and answered; the last line
                    // says why the rest was not.
                    if !pending.is_empty() {
                        let out = enqueue_chunk(&state, &spec, std::mem::take(&mut pending)).await;
                        if !send(&tx, out).await {
                            return;
                        }
                    }
                    let e = if crate::conn::timed_out(&e) {
                        ApiError::RequestTimeout(crate::conn::BodyTimedOut.to_string())
                    } else {
                        ApiError::BadRequest(format!("reading the body: {e}"))
                    };
                    let line = json!({ "error": { "code": e.code(), "message": format!(
                        "{e}: the lines after line {line_no} were not read"
                    ) } });
                    let _ = send(&tx, Bytes::from(format!("{line}\n"))).await;
                    return;
                }
                None => {
                    ended = true;
                    if !buf.is_empty() && buf.last() != Some(&b'\n') {
                        buf.push(b'\n');
                    }
                }
            }
            if skipping {
                match buf.iter().position(|b| *b == b'\n') {
                    Some(pos) => {
                        buf.drain(..=pos);
                        skipping = false;
                    }
                    None => buf.clear(),
                }
            }
            // Every complete line in `buf`, by offset (one drain at the end,
            // not a copy of the rest of the buffer per line), enqueued CHUNK
            // at a time: a body chunk of thousands of lines still reaches
            // Redis in small script calls, with this task yielding between
            // them, so neither Redis nor this gateway's threads are held for
            // long by a bulk load.
            let mut start = 0;
            while let Some(len) = buf[start..].iter().position(|b| *b == b'\n') {
                let line = buf[start..start + len].trim_ascii();
                start += len + 1;
                if line.is_empty() {
                    continue;
                }
                line_no += 1;
                let item = if line.len() > max_line {
                    Err(ApiError::PayloadTooLarge(max_line))
                } else {
                    check_payload("application/json", line).map(|()| {
                        let mut env = Envelope::root(
                            tenant.clone(),
                            spec.name.clone(),
                            "application/json".into(),
                        );
                        env.version = Some(spec.version);
                        env.traceparent = traceparent.clone();
                        env.lazy_run = Some(eddy_protocol::LazyRun::default());
                        (env, line.to_vec())
                    })
                };
                pending.push((line_no, item));
                if pending.len() >= CHUNK {
                    let started = std::time::Instant::now();
                    let out = enqueue_chunk(&state, &spec, std::mem::take(&mut pending)).await;
                    let spent = started.elapsed();
                    if !send(&tx, out).await {
                        return;
                    }
                    // Sync calls of this gateway go first: while one waits,
                    // a pause as long as the chunk took (at most 2 ms).
                    if !state.queue.pace_bulk_enqueue(spent).await.is_zero() {
                        state.bulk_yields.increment(1);
                    }
                }
            }
            buf.drain(..start);
            if buf.len() > max_line + 1 {
                line_no += 1;
                pending.push((line_no, Err(ApiError::PayloadTooLarge(max_line))));
                buf.clear();
                skipping = true;
            }
            if ended && !pending.is_empty() {
                let out = enqueue_chunk(&state, &spec, std::mem::take(&mut pending)).await;
                if !send(&tx, out).await {
                    return;
                }
            }
        }
        if over {
            let e = ApiError::PayloadTooLarge(max_bytes);
            let line = json!({ "error": { "code": e.code(), "message": format!(
                "{e}: the lines after line {line_no} were not read"
            ) } });
            let _ = send(&tx, Bytes::from(format!("{line}\n"))).await;
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Sends one piece of a batch's answer; false when the client is gone or
/// has not read its answer for [`BATCH_READER_WAIT`] (the batch stops: a
/// client that does not read cannot hold the gateway).
async fn send(tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, out: Bytes) -> bool {
    matches!(
        tokio::time::timeout(BATCH_READER_WAIT, tx.send(Ok(out))).await,
        Ok(Ok(()))
    )
}

/// How long a batch waits for its client to read the answer so far.
const BATCH_READER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn enqueue_chunk(state: &AppState, spec: &FunctionSpec, items: Vec<BatchItem>) -> Bytes {
    let mut lines = Vec::with_capacity(items.len());
    let good: Vec<(Envelope, Vec<u8>)> = items
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let run = state.config.ceilings.clamp_run(spec.config.run);
    let results = state.queue.enqueue_batch(&good, run).await;
    state.touch(&spec.tenant, &spec.name).await;
    // A line's error as its code and message: a refusal of the whole chunk
    // (Redis unavailable, out of memory) is every line's, with its own code.
    let said = |e: ApiError| (e.code(), e.to_string());
    let mut results = match results {
        Ok(r) => r
            .into_iter()
            .map(|r| r.map_err(|e| said(ApiError::from(e))))
            .collect::<Vec<_>>(),
        Err(e) => {
            let e = said(ApiError::from(e));
            good.iter().map(|_| Err(e.clone())).collect()
        }
    }
    .into_iter();
    for (line, item) in items {
        let result = match item {
            Ok(_) => results
                .next()
                .unwrap_or_else(|| Err(said(ApiError::Internal("missing result".into())))),
            Err(e) => Err(said(e)),
        };
        let v = match result {
            Ok(done) => json!({ "line": line, "id": done.id }),
            Err((code, message)) => {
                json!({ "line": line, "error": { "code": code, "message": message } })
            }
        };
        lines.push(v.to_string());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Bytes::from(out)
}
