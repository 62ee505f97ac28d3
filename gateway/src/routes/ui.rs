//! The live dashboard: `GET /ui` (one HTML page with its CSS and JS inlined,
//! embedded in the binary) and `GET /ui/events` (one server-sent-events
//! stream per page, a JSON snapshot every second).
//!
//! **Auth.** Both routes sit behind the API's own [`auth::authenticate`]: an
//! admin key sees every tenant (or one, with `?tenant=`), a tenant key its
//! own tenant only. A browser cannot put `Authorization` on an `EventSource`
//! (nor on a page it navigates to), so for these two routes, and no others,
//! the key may also come as `?key=`: [`key_from_query`] moves it into the
//! header before the usual check runs. The trade-off: a key in a URL lands in
//! the browser's history and in the access logs of whatever proxies sit in
//! front (the gateway's own trace spans record URIs at debug level). The page
//! limits the rest: `Referrer-Policy: no-referrer`, `Cache-Control:
//! no-store`, a nonce-based CSP that loads nothing from elsewhere. Give the
//! dashboard a key of its own and revoke it when done.
//!
//! **Data.** One shared sampler per gateway process (per Redis), running only
//! while a page is open, reads once a second: the controller's decisions
//! (backlog, smoothed arrival rate and service time, warm concurrency), the
//! workers' heartbeats (in flight, `completed` → invocations per second from
//! the deltas), and the per-function stream counters (`entries-added`,
//! `done`, `busy_us` → measured arrivals and completions per second and mean
//! busy time per attempt; active functions every second, idle ones round
//! robin). Each stream adds, for its own scope: the runs the page watches
//! (`?runs=`; there is no list-runs API) with their trees walked through the
//! records' `follow_ups`, the dead letters, and "recent invocations", which
//! are the records met in those trees and dead letters (the gateway keeps no
//! log of invocations). p50/p99 and cold starts come from those sampled
//! records only, and the page says so.
//!
//! **Cost.** Functions are sent as deltas (only rows that changed since the
//! last event of the stream); runs, dead letters and invocations only when
//! they changed. A stream ends after [`STREAM_LIFETIME`] (the browser
//! reconnects by itself) and at SIGTERM/SIGINT, so that an open page never
//! holds up a graceful shutdown.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};

use crate::extract::Query;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eddy_protocol::control::{ControllerState, FunctionDecision};
use eddy_protocol::{FunctionName, InvocationRecord, RunRecord, RunStatus, TenantId, keys};
use eddy_queue::{DeadLetter, Queue, StreamStats};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_CSS: &str = include_str!("../../ui/app.css");
const APP_JS: &str = include_str!("../../ui/app.js");

/// How often data is sampled and an event sent.
const TICK: Duration = Duration::from_secs(1);
/// An events stream ends after this long and the browser reconnects. Bounds
/// how long an open page can hold up a graceful shutdown that did not come
/// through a signal.
const STREAM_LIFETIME: Duration = Duration::from_secs(120);
/// A function with activity this recent is probed every tick.
const ACTIVE_FOR_MS: u64 = 15_000;
/// At most this many active functions probed per tick (the longest unprobed
/// first), plus this many idle ones round robin.
const ACTIVE_PROBES: usize = 200;
const IDLE_PROBES: usize = 20;
/// How often the list of deployed functions is re-read, and over how many
/// tenants at most.
const INDEX_EVERY: Duration = Duration::from_secs(10);
const INDEX_TENANTS: usize = 2_000;
/// Runs one stream may watch.
const MAX_RUNS: usize = 20;
/// A run's tree: levels below the root, records read per run, children
/// shown per node.
const TREE_LEVELS: u32 = 3;
const TREE_NODES: usize = 120;
const TREE_CHILDREN: usize = 8;
/// Invocation records read per tick per stream, at most.
const FETCH_BUDGET: usize = 300;
/// Dead letters: read per tenant (the queue reads the oldest first), shown,
/// how often, over how many tenants for an admin without `?tenant=`.
const DEAD_LETTERS_READ: usize = 100;
const DEAD_LETTERS_SHOWN: usize = 25;
const DEAD_LETTERS_EVERY: Duration = Duration::from_secs(2);
const DEAD_LETTER_TENANTS: usize = 20;
/// Recent invocations shown, of which at least this many from dead letters
/// (a big run would crowd them out); sampled durations kept per function.
const RECENT_INVOCATIONS: usize = 15;
const RECENT_DEAD: usize = 5;
const SAMPLES_PER_FUNCTION: usize = 1_000;
/// Records cached per stream before the cache is dropped and rebuilt (they
/// are kept slim: no output, one log line, the first follow-up ids).
const RECORD_CACHE: usize = 5_000;
/// Event streams open at once: per key holder (a tenant, or the admin) and
/// per gateway process. Each stream reads Redis every second.
const STREAMS_PER_CALLER: usize = 8;
const STREAMS: usize = 256;
/// Log lines and characters of a preview.
const LOG_PREVIEW: usize = 160;

/// Set once SIGTERM or SIGINT arrived: streams end, new ones are refused.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Open event streams per key holder.
static OPEN: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// One open stream, counted until dropped.
#[derive(Debug)]
struct Slot(String);

impl Slot {
    fn take(caller: &Caller) -> ApiResult<Self> {
        let who = match caller {
            Caller::Admin => String::new(),
            Caller::Tenant(t) => t.to_string(),
        };
        let mut open = OPEN.lock();
        let total: usize = open.values().sum();
        let mine = open.get(&who).copied().unwrap_or(0);
        if total >= STREAMS || mine >= STREAMS_PER_CALLER {
            return Err(ApiError::Quota(
                format!(
                    "too many dashboard streams open ({STREAMS_PER_CALLER} per key holder, \
                     {STREAMS} per gateway); close a page"
                ),
                5,
            ));
        }
        *open.entry(who.clone()).or_default() += 1;
        Ok(Slot(who))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = OPEN.lock();
        if let Some(n) = open.get_mut(&self.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.0);
            }
        }
    }
}

/// The dashboard's routes. A browser never carries a key in a URL: the page
/// (`/ui#key=…`, or its form) trades the key once, in an `Authorization`
/// header, for a session cookie (`POST /ui/session`: HttpOnly,
/// SameSite=Strict, path `/ui`, 8 h), which the page and its event stream
/// then send. A session names the key, not a copy of its rights: it ends
/// with the key's revocation. `Authorization: Bearer` works here too.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/events", get(events))
        .route("/ui/session", post(open_session).delete(close_session))
        .route_layer(axum::middleware::from_fn_with_state(state, ui_auth))
}

/// The session cookie's name.
const SESSION_COOKIE: &str = "eddy_session";
/// How long a dashboard session lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// The bearer key of a request, if it has one.
fn bearer_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(auth::bearer)
}

/// The session token of the request's cookie, hashed as stored.
fn session_token_hash(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| eddy_queue::hash_key(token))
}

/// Who the request's session cookie names, if it names a key still valid.
async fn session_caller(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> ApiResult<Option<Caller>> {
    let Some(token_hash) = session_token_hash(headers) else {
        return Ok(None);
    };
    let Some(who) = state.queue.session(&token_hash).await? else {
        return Ok(None);
    };
    if let Some(admin_hash) = who.strip_prefix("a:") {
        let admin = state.config.admin_key.as_deref().map(eddy_queue::hash_key);
        return Ok((admin.as_deref() == Some(admin_hash)).then_some(Caller::Admin));
    }
    let Some(key_hash) = who.strip_prefix("k:") else {
        return Ok(None);
    };
    if let Some(tenant) = state.keys.get(key_hash) {
        return Ok(Some(Caller::Tenant(tenant)));
    }
    Ok(match state.queue.lookup_key_hash(key_hash).await? {
        Some(k) if !k.revoked => Some(Caller::Tenant(k.tenant)),
        _ => None,
    })
}

/// The dashboard's authentication: a bearer key as on every route, else
/// the session cookie; without either, `/ui` is the page that opens a
/// session, and everything else is 401.
pub async fn ui_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return match auth::authenticate(State(state), req, next).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
    }
    match session_caller(&state, req.headers()).await {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(None) if req.method() == axum::http::Method::GET && req.uri().path() == "/ui" => {
            login_page()
        }
        Ok(None) => ApiError::MissingKey.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Opens a session for the request's bearer key: 204 with the cookie.
pub async fn open_session(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let key = bearer_key(&headers).ok_or(ApiError::MissingKey)?;
    let who = match caller {
        Caller::Admin => format!("a:{}", eddy_queue::hash_key(key)),
        Caller::Tenant(_) => format!("k:{}", eddy_queue::hash_key(key)),
    };
    let token = eddy_queue::random_hex(32);
    state
        .queue
        .create_session(&eddy_queue::hash_key(&token), &who, SESSION_TTL.as_secs())
        .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure_headers(r.headers_mut());
    Ok(r)
}

/// Ends the request's session: 204, the cookie cleared.
pub async fn close_session(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if let Some(token_hash) = session_token_hash(&headers) {
        state.queue.drop_session(&token_hash).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("eddy_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

/// The page that opens a session: it takes the key from the address's
/// fragment (`/ui#key=…`, never sent to a server or kept in the history) or
/// from its form, trades it for the cookie, and loads the dashboard.
fn login_page() -> Response {
    let nonce = eddy_protocol::new_id().replace('-', "");
    let html = LOGIN_HTML.replace("{{nonce}}", &nonce);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    html_page(html, &csp)
}

/// An HTML page with its Content-Security-Policy and the secure headers.
fn html_page(html: String, csp: &str) -> Response {
    let mut r = (StatusCode::OK, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    secure_headers(h);
    r
}

const LOGIN_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Eddy</title>
<style nonce="{{nonce}}">body{font:15px system-ui,sans-serif;margin:4rem auto;max-width:28rem}
input{width:100%;padding:.4rem;margin:.5rem 0}#m{color:#dc2626}</style></head>
<body><h1>Eddy</h1>
<form id="f"><label>API key<input id="k" type="password" autocomplete="off"></label>
<button>Open the dashboard</button></form><p id="m"></p>
<script nonce="{{nonce}}">
'use strict';
(function () {
  async function open(key) {
    const r = await fetch('/ui/session', { method: 'POST', headers: { Authorization: 'Bearer ' + key },
      credentials: 'same-origin', cache: 'no-store' });
    if (r.status === 204) {
      // The page's own API calls (start a run, redrive) send the key; it
      // stays in this tab only.
      sessionStorage.setItem('eddy-key', key);
      location.replace('/ui' + location.search);
      return;
    }
    const body = await r.json().catch(() => ({}));
    document.getElementById('m').textContent = body.message || ('HTTP ' + r.status);
  }
  const key = new URLSearchParams(location.hash.slice(1)).get('key');
  if (key) {
    history.replaceState(null, '', location.pathname + location.search);
    open(key);
  }
  document.getElementById('f').addEventListener('submit', (e) => {
    e.preventDefault();
    open(document.getElementById('k').value);
  });
})();
</script></body></html>
"#;

/// What a page or stream may see.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    admin: bool,
    /// `None`: every tenant (admin only).
    tenant: Option<TenantId>,
}

impl Scope {
    fn of(caller: &Caller, tenant: Option<&str>) -> ApiResult<Self> {
        match caller {
            // A tenant key sees its own tenant, whatever it asks for.
            Caller::Tenant(t) => Ok(Scope {
                admin: false,
                tenant: Some(t.clone()),
            }),
            Caller::Admin => Ok(Scope {
                admin: true,
                tenant: tenant
                    .map(|t| TenantId::new(t).map_err(|e| ApiError::BadRequest(e.to_string())))
                    .transpose()?,
            }),
        }
    }

    fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_ref().is_none_or(|t| t.as_str() == tenant)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    tenant: Option<String>,
}

/// The dashboard page. Its CSS and JS are inlined under a per-response
/// nonce, so the page needs no other authenticated request to load.
pub async fn page(caller: Caller, Query(q): Query<PageQuery>) -> ApiResult<Response> {
    let scope = Scope::of(&caller, q.tenant.as_deref().filter(|t| !t.is_empty()))?;
    let nonce = eddy_protocol::new_id().replace('-', "");
    let tenant = scope.tenant.as_ref().map(|t| t.as_str()).unwrap_or("");
    // Tenant names are validated ([a-z0-9-]), so they are safe in an
    // attribute; the assets are ours.
    let html = INDEX_HTML
        .replace("{{nonce}}", &nonce)
        .replace("{{admin}}", if scope.admin { "true" } else { "false" })
        .replace("{{tenant}}", tenant)
        .replace("/*{{css}}*/", APP_CSS)
        .replace("/*{{js}}*/", APP_JS);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    Ok(html_page(html, &csp))
}

fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Admin only: one tenant instead of all.
    tenant: Option<String>,
    /// Run ids to watch, comma-separated; an admin names their tenant as
    /// `tenant/run` unless `tenant` is set.
    runs: Option<String>,
}

/// The page's one stream: a JSON snapshot a second (see the module doc).
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    if STOPPING.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable);
    }
    let scope = Scope::of(&caller, q.tenant.as_deref().filter(|t| !t.is_empty()))?;
    let runs = parse_runs(&scope, q.runs.as_deref().unwrap_or(""))?;
    let slot = Slot::take(&caller)?;
    let conn = Connection::new(state.queue.clone(), sampler(&state), scope, runs, slot);
    let stream = futures::stream::unfold(conn, |mut c| async move {
        let event = c.next_event().await?;
        Some((Ok::<Event, Infallible>(event), c))
    });
    let mut r = sse(stream).into_response();
    secure_headers(r.headers_mut());
    // Proxies that buffer (nginx) would hold the events back.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

fn sse<S>(stream: S) -> Sse<axum::response::sse::KeepAliveStream<S>>
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_runs(scope: &Scope, runs: &str) -> ApiResult<Vec<(TenantId, String)>> {
    let mut out: Vec<(TenantId, String)> = Vec::new();
    for item in runs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (tenant, id) = match item.split_once('/') {
            Some((t, id)) => {
                let t = TenantId::new(t).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                if !scope.sees(t.as_str()) {
                    // Another tenant's runs do not exist for this key.
                    continue;
                }
                (t, id)
            }
            None => match &scope.tenant {
                Some(t) => (t.clone(), item),
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "run `{item}`: the admin key names a run as `tenant/run` (or sets `tenant`)"
                    )));
                }
            },
        };
        if !valid_run_id(id) {
            return Err(ApiError::BadRequest(format!("`{item}` is not a run id")));
        }
        if !out.iter().any(|(t, r)| *t == tenant && r == id) {
            out.push((tenant, id.to_string()));
        }
    }
    out.truncate(MAX_RUNS);
    Ok(out)
}

// ---------------------------------------------------------------------------
// The shared sampler.

/// The controller, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct ControllerView {
    leader: String,
    /// How old its last decision is.
    age_ms: u64,
    desired_replicas: u32,
    current_replicas: u32,
}

/// One function, as the sampler sees it (the per-stream fields are filled
/// in by each stream).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FunctionRow {
    /// `tenant/function`.
    key: String,
    tenant: String,
    function: String,
    /// Entries not yet delivered / delivered and not acknowledged.
    lag: u64,
    pending: u64,
    /// Measured over the last probe interval, per second (`None` before the
    /// second probe).
    arrivals: Option<f64>,
    completions: Option<f64>,
    /// The controller's smoothed arrival rate, per second.
    arrival_rate: f64,
    /// Attempts completed since the function's counters began.
    completed: u64,
    /// Warm concurrency decided by the controller, and the workers holding it.
    warm: u32,
    workers: u32,
    /// Mean busy time per completed attempt over the last probe interval.
    mean_ms: Option<f64>,
    /// The controller's smoothed mean service time.
    service_ms: f64,
    /// When it was last active and when it scales to zero (0: unknown / not
    /// scheduled), ms since the epoch.
    last_active_ms: u64,
    zero_at_ms: u64,
    reason: String,
    // Per stream, from sampled records and dead letters.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Durations sampled, of which cold starts.
    samples: u32,
    cold: u32,
    /// Dead letters (final failures) of the function, in what was read.
    errors: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct WorkerRow {
    id: String,
    concurrency: u32,
    in_flight: u32,
    completed: u64,
    /// Invocations per second, from `completed` between heartbeats.
    rate: Option<f64>,
    draining: bool,
    rss_bytes: u64,
    warm: u32,
    started_at_ms: u64,
    seen_ms_ago: u64,
    /// In flight per `tenant/function` (a tenant sees its own only).
    streams: BTreeMap<String, u32>,
}

/// What the sampler publishes every tick.
#[derive(Debug, Default)]
struct Shared {
    at_ms: u64,
    controller: Option<ControllerView>,
    /// Sorted by key.
    functions: Vec<FunctionRow>,
    workers: Vec<WorkerRow>,
    stopping: bool,
}

/// A handle on the sampler; the task runs while one exists.
#[derive(Debug)]
struct Sampler {
    rx: watch::Receiver<Arc<Shared>>,
}

type Samplers = Mutex<HashMap<String, Weak<Sampler>>>;
static SAMPLERS: LazyLock<Samplers> = LazyLock::new(Samplers::default);

/// The sampler of `state`'s Redis, started if none runs.
fn sampler(state: &AppState) -> Arc<Sampler> {
    let mut map = SAMPLERS.lock();
    let url = state.config.redis_url.clone();
    if let Some(s) = map.get(&url).and_then(Weak::upgrade) {
        return s;
    }
    let (tx, rx) = watch::channel(Arc::new(Shared::default()));
    let s = Arc::new(Sampler { rx });
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(url, Arc::downgrade(&s));
    tokio::spawn(sample(state.queue.clone(), tx));
    s
}

/// Resolves at SIGTERM or SIGINT (never, if they cannot be watched). The
/// `eddy` binary watches them too; every listener is told.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

async fn sample(queue: Queue, tx: watch::Sender<Arc<Shared>>) {
    let mut memory = SamplerMemory::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => {
                STOPPING.store(true, Ordering::Release);
                tx.send_replace(Arc::new(Shared { stopping: true, ..Shared::default() }));
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
        let shared = memory.tick(&queue).await;
        tx.send_replace(Arc::new(shared));
    }
}

/// One probe of a function's stream counters, and the rates since the one
/// before.
#[derive(Debug, Clone, Copy)]
struct Probe {
    stats: (u64, u64, u64),
    lag: u64,
    pending: u64,
    at: Instant,
    changed_at: Option<Instant>,
    arrivals: Option<f64>,
    completions: Option<f64>,
    mean_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct WorkerProbe {
    completed: u64,
    seen_at_ms: u64,
    rate: Option<f64>,
}

#[derive(Debug, Default)]
struct SamplerMemory {
    index: Vec<(TenantId, FunctionName)>,
    index_at: Option<Instant>,
    probes: HashMap<String, Probe>,
    workers: HashMap<String, WorkerProbe>,
    /// Where the idle round robin goes on.
    cursor: String,
}

fn round(x: f64, places: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let p = 10f64.powi(places);
    (x * p).round() / p
}

impl SamplerMemory {
    async fn refresh_index(&mut self, queue: &Queue) {
        let tenants = match queue.tenants().await {
            Ok(t) => t,
            Err(error) => {
                tracing::debug!(%error, "dashboard: listing tenants");
                return;
            }
        };
        let mut index = Vec::new();
        for t in tenants.into_iter().take(INDEX_TENANTS) {
            match queue.function_names(&t).await {
                Ok(names) => index.extend(names.into_iter().map(|f| (t.clone(), f))),
                Err(error) => tracing::debug!(%error, "dashboard: listing functions"),
            }
        }
        self.index = index;
        self.index_at = Some(Instant::now());
    }

    async fn tick(&mut self, queue: &Queue) -> Shared {
        let now_ms = eddy_protocol::now_ms();
        let controller: Option<ControllerState> = queue
            .controller_state()
            .await
            .inspect_err(|error| tracing::debug!(%error, "dashboard: controller state"))
            .ok()
            .flatten();
        if self.index_at.is_none_or(|t| t.elapsed() >= INDEX_EVERY) {
            self.refresh_index(queue).await;
        }

        // Every function: deployed ones, and whatever the controller decided on.
        let mut rows: BTreeMap<String, (String, String, Option<&FunctionDecision>)> =
            BTreeMap::new();
        for (t, f) in &self.index {
            rows.insert(format!("{t}/{f}"), (t.to_string(), f.to_string(), None));
        }
        if let Some(c) = &controller {
            for d in &c.functions {
                rows.insert(
                    format!("{}/{}", d.tenant, d.function),
                    (d.tenant.clone(), d.function.clone(), Some(d)),
                );
            }
        }

        // Which streams to probe: the active ones, longest unprobed first,
        // then idle ones round robin.
        let now = Instant::now();
        let mut active = Vec::new();
        let mut idle = Vec::new();
        for (key, (_, _, d)) in &rows {
            let probe = self.probes.get(key);
            let busy = d.is_some_and(|d| d.idle_ms < ACTIVE_FOR_MS || d.lag + d.pending > 0)
                || probe.is_some_and(|p| {
                    p.lag + p.pending > 0
                        || p.changed_at.is_some_and(|c| {
                            now.duration_since(c) < Duration::from_millis(ACTIVE_FOR_MS)
                        })
                });
            if busy || probe.is_none() && active.len() < ACTIVE_PROBES {
                active.push((probe.map(|p| p.at), key.clone()));
            } else {
                idle.push(key.clone());
            }
        }
        active.sort();
        let mut chosen: Vec<String> = active
            .into_iter()
            .take(ACTIVE_PROBES)
            .map(|(_, k)| k)
            .collect();
        let start = idle.partition_point(|k| *k <= self.cursor);
        let picked: Vec<String> = idle
            .iter()
            .cycle()
            .skip(start)
            .take(IDLE_PROBES.min(idle.len()))
            .cloned()
            .collect();
        if let Some(last) = picked.last() {
            self.cursor = last.clone();
        }
        chosen.extend(picked);

        let pairs: Vec<(String, String)> = chosen
            .iter()
            .filter_map(|k| {
                let (t, f, _) = rows.get(k)?;
                let (t, f) = (TenantId::new(t).ok()?, FunctionName::new(f).ok()?);
                Some((keys::stream(&t, &f), keys::stats(&t, &f)))
            })
            .collect();
        match queue.stream_stats(&pairs).await {
            Ok(stats) => {
                let at = Instant::now();
                for (key, st) in chosen.iter().zip(stats) {
                    self.record_probe(key, &st, at);
                }
            }
            Err(error) => tracing::debug!(%error, "dashboard: stream counters"),
        }
        self.probes.retain(|k, _| rows.contains_key(k));

        let c_at = controller.as_ref().map(|c| c.at_ms).unwrap_or(now_ms);
        let functions = rows
            .into_iter()
            .map(|(key, (tenant, function, d))| {
                let p = self.probes.get(&key);
                FunctionRow {
                    lag: d.map(|d| d.lag).or(p.map(|p| p.lag)).unwrap_or(0),
                    pending: d.map(|d| d.pending).or(p.map(|p| p.pending)).unwrap_or(0),
                    arrivals: p.and_then(|p| p.arrivals),
                    completions: p.and_then(|p| p.completions),
                    arrival_rate: round(d.map(|d| d.arrival_rate).unwrap_or(0.0), 2),
                    completed: p.map(|p| p.stats.1).unwrap_or(0),
                    warm: d.map(|d| d.concurrency).unwrap_or(0),
                    workers: d.map(|d| d.workers.len() as u32).unwrap_or(0),
                    mean_ms: p.and_then(|p| p.mean_ms),
                    service_ms: round(d.map(|d| d.service_ms).unwrap_or(0.0), 3),
                    // Rounded so that a steady value stays the same between
                    // ticks (and is not sent again).
                    last_active_ms: d
                        .map(|d| c_at.saturating_sub(d.idle_ms) / 100 * 100)
                        .unwrap_or(0),
                    zero_at_ms: d
                        .filter(|d| d.zero_in_ms > 0)
                        .map(|d| (c_at + d.zero_in_ms) / 100 * 100)
                        .unwrap_or(0),
                    reason: d.map(|d| d.reason.clone()).unwrap_or_default(),
                    key,
                    tenant,
                    function,
                    p50_ms: None,
                    p99_ms: None,
                    samples: 0,
                    cold: 0,
                    errors: 0,
                }
            })
            .collect();

        let workers = match queue.workers().await {
            Ok(w) => w,
            Err(error) => {
                tracing::debug!(%error, "dashboard: workers");
                Vec::new()
            }
        };
        let mut seen = HashSet::new();
        let workers = workers
            .into_iter()
            .map(|w| {
                seen.insert(w.id.clone());
                let prev = self.workers.get(&w.id).copied();
                let rate = match prev {
                    Some(p) if w.seen_at_ms > p.seen_at_ms => Some(round(
                        w.completed.saturating_sub(p.completed) as f64 * 1000.0
                            / (w.seen_at_ms - p.seen_at_ms) as f64,
                        1,
                    )),
                    Some(p) => p.rate,
                    None => None,
                };
                let stale = now_ms.saturating_sub(w.seen_at_ms)
                    > eddy_protocol::control::WORKER_TIMEOUT.as_millis() as u64;
                self.workers.insert(
                    w.id.clone(),
                    WorkerProbe {
                        completed: w.completed,
                        seen_at_ms: w.seen_at_ms,
                        rate,
                    },
                );
                WorkerRow {
                    rate: if stale { Some(0.0) } else { rate },
                    streams: w
                        .streams
                        .iter()
                        .filter_map(|(s, n)| {
                            keys::parse_stream(s).map(|(t, f)| (format!("{t}/{f}"), *n))
                        })
                        .collect(),
                    id: w.id,
                    concurrency: w.concurrency,
                    in_flight: w.in_flight,
                    completed: w.completed,
                    draining: w.draining,
                    rss_bytes: w.rss_bytes,
                    warm: w.warm,
                    started_at_ms: w.started_at_ms,
                    seen_ms_ago: now_ms.saturating_sub(w.seen_at_ms) / 100 * 100,
                }
            })
            .collect();
        self.workers.retain(|id, _| seen.contains(id));

        Shared {
            at_ms: now_ms,
            controller: controller.map(|c| ControllerView {
                leader: c.leader,
                age_ms: now_ms.saturating_sub(c.at_ms),
                desired_replicas: c.desired_replicas,
                current_replicas: c.current_replicas,
            }),
            functions,
            workers,
            stopping: false,
        }
    }

    fn record_probe(&mut self, key: &str, st: &StreamStats, at: Instant) {
        let stats = (st.added, st.done, st.busy_us);
        let next = match self.probes.get(key) {
            Some(p) => {
                let dt = at.duration_since(p.at).as_secs_f64().max(0.001);
                let added = st.added.saturating_sub(p.stats.0);
                let done = st.done.saturating_sub(p.stats.1);
                let busy = st.busy_us.saturating_sub(p.stats.2);
                let changed = stats != p.stats || st.lag != p.lag || st.pending != p.pending;
                Probe {
                    stats,
                    lag: st.lag,
                    pending: st.pending,
                    at,
                    changed_at: if changed { Some(at) } else { p.changed_at },
                    arrivals: Some(round(added as f64 / dt, 2)),
                    completions: Some(round(done as f64 / dt, 2)),
                    mean_ms: (done > 0).then(|| round(busy as f64 / done as f64 / 1000.0, 3)),
                }
            }
            None => Probe {
                stats,
                lag: st.lag,
                pending: st.pending,
                at,
                changed_at: None,
                arrivals: None,
                completions: None,
                mean_ms: None,
            },
        };
        self.probes.insert(key.to_string(), next);
    }
}

// ---------------------------------------------------------------------------
// One stream.

#[derive(Debug, Clone, PartialEq, Serialize)]
struct TreeNode {
    id: String,
    function: String,
    status: String,
    depth: u32,
    attempt: u32,
    ms: Option<f64>,
    cold: bool,
    /// Follow-ups it emitted, and those not shown below.
    follow_ups: usize,
    more: usize,
    children: Vec<TreeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct RunRow {
    id: String,
    tenant: String,
    /// The run was not found (unknown, another tenant's, or expired).
    missing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<RunRecord>,
    /// Finished / accepted, 0 to 100.
    percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<TreeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct DeadRow {
    tenant: String,
    #[serde(flatten)]
    dead: DeadLetter,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct InvocationRow {
    id: String,
    tenant: String,
    function: String,
    run_id: String,
    status: String,
    attempt: u32,
    depth: u32,
    created_at_ms: u64,
    completed_at_ms: Option<u64>,
    queue_ms: f64,
    ms: Option<f64>,
    cold: bool,
    worker: Option<String>,
    error_class: Option<String>,
    error: Option<String>,
    /// Log lines, and the first one cut short.
    logs: usize,
    log: Option<String>,
    /// Where the dashboard met it: `run` or `dead-letter`.
    source: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Totals {
    functions: usize,
    active: usize,
    lag: u64,
    pending: u64,
    arrivals: f64,
    completions: f64,
    warm: u64,
    in_flight: u64,
    workers: usize,
    dead_letters: usize,
}

#[derive(Debug, Serialize)]
struct ScopeView {
    admin: bool,
    tenant: Option<String>,
}

/// Where the numbers come from, for the page to say.
#[derive(Debug, Serialize)]
struct Notes {
    /// A tenant's dead-letter stream held at least as many as were read
    /// (the queue reads the oldest first): newer ones are not shown.
    dead_letters_truncated: bool,
    /// Records sampled for durations and cold starts.
    sampled_records: usize,
}

#[derive(Debug, Serialize)]
struct Payload<'a> {
    v: u32,
    seq: u64,
    at_ms: u64,
    interval_ms: u64,
    /// `functions` holds every function (the first event of a stream);
    /// otherwise only those that changed, and `removed` those gone.
    full: bool,
    scope: ScopeView,
    controller: Option<&'a ControllerView>,
    totals: Totals,
    functions: Vec<&'a FunctionRow>,
    removed: Vec<String>,
    workers: Vec<WorkerRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<&'a [RunRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letters: Option<&'a [DeadRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invocations: Option<&'a [InvocationRow]>,
    notes: Notes,
}

#[derive(Debug)]
struct Cached {
    tenant: TenantId,
    /// Slim: no output, the first log line, the first follow-up ids.
    record: InvocationRecord,
    /// Log lines and follow-ups the record had.
    logs: usize,
    follow_ups: usize,
    source: &'static str,
}

#[derive(Debug, Default)]
struct Durations {
    ms: VecDeque<f64>,
    cold: u32,
    p50: Option<f64>,
    p99: Option<f64>,
    dirty: bool,
}

#[derive(Debug)]
struct Connection {
    _slot: Slot,
    queue: Queue,
    _sampler: Arc<Sampler>,
    rx: watch::Receiver<Arc<Shared>>,
    scope: Scope,
    runs: Vec<(TenantId, String)>,
    started: Instant,
    seq: u64,
    /// Function key → the JSON last sent for it.
    sent: HashMap<String, String>,
    /// Section → the JSON last sent for it.
    sections: HashMap<&'static str, String>,
    records: HashMap<String, Cached>,
    counted: HashSet<String>,
    durations: HashMap<String, Durations>,
    run_cache: HashMap<String, (RunRecord, Instant)>,
    dead: Vec<DeadRow>,
    dead_at: Option<Instant>,
    dead_counts: HashMap<String, u32>,
    dead_truncated: bool,
}

fn busy_ms(r: &InvocationRecord) -> Option<f64> {
    let t = &r.outcome.timings;
    (r.completed_at_ms.is_some() && (t.run_us > 0 || t.instantiate_us > 0))
        .then(|| round((t.instantiate_us + t.run_us) as f64 / 1000.0, 3))
}

impl Connection {
    fn new(
        queue: Queue,
        sampler: Arc<Sampler>,
        scope: Scope,
        runs: Vec<(TenantId, String)>,
        slot: Slot,
    ) -> Self {
        Connection {
            _slot: slot,
            queue,
            rx: sampler.rx.clone(),
            _sampler: sampler,
            scope,
            runs,
            started: Instant::now(),
            seq: 0,
            sent: HashMap::new(),
            sections: HashMap::new(),
            records: HashMap::new(),
            counted: HashSet::new(),
            durations: HashMap::new(),
            run_cache: HashMap::new(),
            dead: Vec::new(),
            dead_at: None,
            dead_counts: HashMap::new(),
            dead_truncated: false,
        }
    }

    /// The next event, or `None` to end the stream.
    async fn next_event(&mut self) -> Option<Event> {
        if self.seq == 0 {
            // The first event goes out as soon as the sampler has something.
            if self.rx.borrow().at_ms == 0 {
                let _ = tokio::time::timeout(Duration::from_millis(2500), self.rx.changed()).await;
            }
        } else {
            if self.started.elapsed() >= STREAM_LIFETIME {
                return None;
            }
            if let Ok(Err(_)) = tokio::time::timeout(TICK * 3, self.rx.changed()).await {
                return None;
            }
        }
        let shared = self.rx.borrow_and_update().clone();
        if shared.stopping || STOPPING.load(Ordering::Acquire) {
            return None;
        }
        let json = self.build(&shared).await;
        let mut event = Event::default().data(json);
        if self.seq == 0 {
            event = event.retry(Duration::from_secs(2));
        }
        self.seq += 1;
        Some(event)
    }

    async fn build(&mut self, shared: &Shared) -> String {
        let mut budget = FETCH_BUDGET;
        let runs = self.runs_view(&mut budget).await;
        let tenants: Vec<TenantId> = match &self.scope.tenant {
            Some(t) => vec![t.clone()],
            None => {
                let mut ts: Vec<&str> =
                    shared.functions.iter().map(|f| f.tenant.as_str()).collect();
                ts.dedup();
                ts.into_iter()
                    .filter_map(|t| TenantId::new(t).ok())
                    .take(DEAD_LETTER_TENANTS)
                    .collect()
            }
        };
        self.read_dead_letters(&tenants, &mut budget).await;
        self.update_percentiles();

        // Functions: this stream's scope, with its own samples merged in.
        let full = self.seq == 0;
        let mut totals = Totals::default();
        let mut rows: Vec<FunctionRow> = Vec::new();
        let mut keys_now = HashSet::new();
        for f in shared
            .functions
            .iter()
            .filter(|f| self.scope.sees(&f.tenant))
        {
            let mut row = f.clone();
            if let Some(d) = self.durations.get(&row.key) {
                row.p50_ms = d.p50;
                row.p99_ms = d.p99;
                row.samples = d.ms.len() as u32;
                row.cold = d.cold;
            }
            row.errors = self.dead_counts.get(&row.key).copied().unwrap_or(0);
            totals.functions += 1;
            totals.lag += row.lag;
            totals.pending += row.pending;
            totals.arrivals += row.arrivals.unwrap_or(0.0);
            totals.completions += row.completions.unwrap_or(0.0);
            totals.warm += u64::from(row.warm);
            if row.lag + row.pending > 0
                || row.arrivals.unwrap_or(0.0) > 0.0
                || row.completions.unwrap_or(0.0) > 0.0
            {
                totals.active += 1;
            }
            keys_now.insert(row.key.clone());
            let json = serde_json::to_string(&row).unwrap_or_default();
            if full || self.sent.get(&row.key) != Some(&json) {
                self.sent.insert(row.key.clone(), json);
                rows.push(row);
            }
        }
        totals.arrivals = round(totals.arrivals, 2);
        totals.completions = round(totals.completions, 2);
        let removed: Vec<String> = self
            .sent
            .keys()
            .filter(|k| !keys_now.contains(*k))
            .cloned()
            .collect();
        for k in &removed {
            self.sent.remove(k);
        }

        let workers: Vec<WorkerRow> = shared
            .workers
            .iter()
            .map(|w| {
                let mut w = w.clone();
                if let Some(t) = &self.scope.tenant {
                    // Workers are shared: a tenant sees how busy they are,
                    // not what else they run.
                    let prefix = format!("{t}/");
                    w.streams.retain(|k, _| k.starts_with(&prefix));
                }
                w
            })
            .collect();
        totals.workers = workers.len();
        totals.in_flight = workers.iter().map(|w| u64::from(w.in_flight)).sum();
        totals.dead_letters = self.dead_counts.values().map(|n| *n as usize).sum();

        let invocations = self.recent_invocations();
        let dead = self.dead.clone();
        let runs_changed = self.changed("runs", &runs, full);
        let dead_changed = self.changed("dead_letters", &dead, full);
        let inv_changed = self.changed("invocations", &invocations, full);
        let payload = Payload {
            v: 1,
            seq: self.seq,
            at_ms: shared.at_ms,
            interval_ms: TICK.as_millis() as u64,
            full,
            scope: ScopeView {
                admin: self.scope.admin,
                tenant: self.scope.tenant.as_ref().map(|t| t.to_string()),
            },
            controller: shared.controller.as_ref(),
            totals,
            functions: rows.iter().collect(),
            removed,
            workers,
            runs: runs_changed.then_some(runs.as_slice()),
            dead_letters: dead_changed.then_some(dead.as_slice()),
            invocations: inv_changed.then_some(invocations.as_slice()),
            notes: Notes {
                dead_letters_truncated: self.dead_truncated,
                sampled_records: self.counted.len(),
            },
        };
        serde_json::to_string(&payload).unwrap_or_else(|_| "{}".into())
    }

    /// Whether `section` differs from what was last sent (and remembers it).
    fn changed<T: Serialize>(&mut self, section: &'static str, value: &T, full: bool) -> bool {
        let json = serde_json::to_string(value).unwrap_or_default();
        if !full && self.sections.get(section) == Some(&json) {
            return false;
        }
        self.sections.insert(section, json);
        true
    }

    /// Caches a record read; a final one adds its duration to the samples
    /// once.
    fn remember(&mut self, tenant: &TenantId, record: InvocationRecord, source: &'static str) {
        if self.records.len() >= RECORD_CACHE {
            self.records.clear();
        }
        if record.status.is_final() && !self.counted.contains(&record.id) {
            if let Some(ms) = busy_ms(&record) {
                let key = format!("{tenant}/{}", record.function);
                let d = self.durations.entry(key).or_default();
                if d.ms.len() >= SAMPLES_PER_FUNCTION {
                    d.ms.pop_front();
                }
                d.ms.push_back(ms);
                if record.outcome.timings.cold {
                    d.cold += 1;
                }
                d.dirty = true;
            }
            if self.counted.len() >= RECORD_CACHE * 5 {
                self.counted.clear();
            }
            self.counted.insert(record.id.clone());
        }
        let source = self.records.get(&record.id).map_or(source, |c| c.source);
        // Only what the page shows is kept: logs and outputs can be large.
        let mut record = record;
        let logs = record.outcome.logs.len();
        let follow_ups = record.outcome.follow_ups.len();
        record.output = None;
        record.outcome.logs.truncate(1);
        for l in &mut record.outcome.logs {
            l.message = l.message.chars().take(LOG_PREVIEW).collect();
        }
        if let Some(e) = &mut record.outcome.error {
            e.message = e.message.chars().take(LOG_PREVIEW).collect();
        }
        record.outcome.follow_ups.truncate(TREE_NODES);
        self.records.insert(
            record.id.clone(),
            Cached {
                tenant: tenant.clone(),
                record,
                logs,
                follow_ups,
                source,
            },
        );
    }

    /// Reads the records of `ids` that are not cached final, within budget,
    /// all at once (pipelined on the shared connection).
    async fn fetch(
        &mut self,
        tenant: &TenantId,
        ids: &[String],
        budget: &mut usize,
        source: &'static str,
    ) {
        let need: Vec<&String> = ids
            .iter()
            .filter(|id| {
                self.records
                    .get(*id)
                    .is_none_or(|c| !c.record.status.is_final())
            })
            .take(*budget)
            .collect();
        *budget -= need.len();
        let q = self.queue.clone();
        let got = futures::future::join_all(need.iter().map(|id| q.invocation(tenant, id))).await;
        for r in got {
            match r {
                Ok(Some(rec)) => self.remember(tenant, rec, source),
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "dashboard: reading an invocation"),
            }
        }
    }

    async fn runs_view(&mut self, budget: &mut usize) -> Vec<RunRow> {
        let mut out = Vec::new();
        for (tenant, id) in self.runs.clone() {
            let run = match self.run_cache.get(&id) {
                // A finished run changes only by redrive: re-read it now and then.
                Some((r, at))
                    if r.status != RunStatus::Running && at.elapsed() < Duration::from_secs(5) =>
                {
                    Some(r.clone())
                }
                _ => match self.queue.run(&tenant, &id).await {
                    Ok(r) => r,
                    Err(error) => {
                        tracing::debug!(%error, "dashboard: reading a run");
                        self.run_cache.get(&id).map(|(r, _)| r.clone())
                    }
                },
            };
            let Some(run) = run else {
                out.push(RunRow {
                    id,
                    tenant: tenant.to_string(),
                    missing: true,
                    run: None,
                    percent: 0.0,
                    tree: None,
                });
                continue;
            };
            self.run_cache
                .insert(id.clone(), (run.clone(), Instant::now()));
            // The root invocation's id is the run's id.
            let tree = self.tree(&tenant, &id, budget).await;
            let done = run.total.saturating_sub(run.outstanding);
            out.push(RunRow {
                percent: if run.total == 0 {
                    0.0
                } else {
                    round(100.0 * done as f64 / run.total as f64, 1)
                },
                id,
                tenant: tenant.to_string(),
                missing: false,
                run: Some(run),
                tree,
            });
        }
        out
    }

    /// Walks a run's tree level by level through `follow_ups`.
    async fn tree(
        &mut self,
        tenant: &TenantId,
        root: &str,
        budget: &mut usize,
    ) -> Option<TreeNode> {
        let mut level = vec![root.to_string()];
        let mut seen = 0;
        for _ in 0..=TREE_LEVELS {
            self.fetch(tenant, &level, budget, "run").await;
            seen += level.len();
            let mut next = Vec::new();
            for id in &level {
                if let Some(c) = self.records.get(id) {
                    for f in &c.record.outcome.follow_ups {
                        if seen + next.len() < TREE_NODES {
                            next.push(f.clone());
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        self.node(root, 0)
    }

    fn node(&self, id: &str, level: u32) -> Option<TreeNode> {
        let c = self.records.get(id)?;
        let r = &c.record;
        let mut children = Vec::new();
        if level < TREE_LEVELS {
            for f in r.outcome.follow_ups.iter().take(TREE_CHILDREN) {
                if let Some(n) = self.node(f, level + 1) {
                    children.push(n);
                }
            }
        }
        Some(TreeNode {
            id: r.id.clone(),
            function: r.function.clone(),
            status: r.status.as_str().to_string(),
            depth: r.depth,
            attempt: r.attempt,
            ms: busy_ms(r),
            cold: r.outcome.timings.cold,
            follow_ups: c.follow_ups,
            more: c.follow_ups.saturating_sub(children.len()),
            children,
        })
    }

    async fn read_dead_letters(&mut self, tenants: &[TenantId], budget: &mut usize) {
        if self
            .dead_at
            .is_some_and(|t| t.elapsed() < DEAD_LETTERS_EVERY)
        {
            return;
        }
        self.dead_at = Some(Instant::now());
        let mut all = Vec::new();
        let mut truncated = false;
        let mut ok = true;
        for t in tenants {
            match self.queue.dead_letters(t, DEAD_LETTERS_READ).await {
                Ok(v) => {
                    truncated |= v.len() >= DEAD_LETTERS_READ;
                    all.extend(v.into_iter().map(|d| DeadRow {
                        tenant: t.to_string(),
                        dead: d,
                    }));
                }
                Err(error) => {
                    tracing::debug!(%error, "dashboard: reading dead letters");
                    ok = false;
                }
            }
        }
        if !ok && all.is_empty() {
            return;
        }
        let mut counts: HashMap<String, u32> = HashMap::new();
        for d in &all {
            if let Some(f) = &d.dead.function {
                *counts.entry(format!("{}/{f}", d.tenant)).or_default() += 1;
            }
        }
        all.sort_by(|a, b| (b.dead.at_ms, &b.dead.entry_id).cmp(&(a.dead.at_ms, &a.dead.entry_id)));
        all.truncate(DEAD_LETTERS_SHOWN);
        for d in &all {
            if d.dead.invocation_id.is_empty() || !valid_run_id(&d.dead.invocation_id) {
                continue;
            }
            if let Ok(t) = TenantId::new(&d.tenant) {
                self.fetch(
                    &t,
                    std::slice::from_ref(&d.dead.invocation_id),
                    budget,
                    "dead-letter",
                )
                .await;
            }
        }
        self.dead = all;
        self.dead_counts = counts;
        self.dead_truncated = truncated;
    }

    fn update_percentiles(&mut self) {
        for d in self.durations.values_mut().filter(|d| d.dirty) {
            let mut v: Vec<f64> = d.ms.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| {
                let i = ((v.len() as f64 - 1.0) * q).round() as usize;
                v.get(i).copied()
            };
            d.p50 = at(0.5);
            d.p99 = at(0.99);
            d.dirty = false;
        }
    }

    fn recent_invocations(&self) -> Vec<InvocationRow> {
        let mut v: Vec<&Cached> = self
            .records
            .values()
            .filter(|c| self.scope.sees(c.tenant.as_str()))
            .collect();
        let newest_first = |c: &&Cached| {
            std::cmp::Reverse((
                c.record.completed_at_ms.unwrap_or(c.record.created_at_ms),
                c.record.id.clone(),
            ))
        };
        v.sort_by_key(newest_first);
        let dead: Vec<&Cached> = v
            .iter()
            .filter(|c| c.source == "dead-letter")
            .take(RECENT_DEAD)
            .copied()
            .collect();
        let mut shown: Vec<&Cached> = v
            .iter()
            .filter(|c| c.source != "dead-letter")
            .take(RECENT_INVOCATIONS - dead.len())
            .copied()
            .collect();
        shown.extend(dead);
        shown.sort_by_key(newest_first);
        shown
            .into_iter()
            .map(|c| {
                let r = &c.record;
                let error = r.outcome.error.as_ref();
                InvocationRow {
                    id: r.id.clone(),
                    tenant: c.tenant.to_string(),
                    function: r.function.clone(),
                    run_id: r.run_id.clone(),
                    status: r.status.as_str().to_string(),
                    attempt: r.attempt,
                    depth: r.depth,
                    created_at_ms: r.created_at_ms,
                    completed_at_ms: r.completed_at_ms,
                    queue_ms: round(r.outcome.timings.queue_wait_us as f64 / 1000.0, 3),
                    ms: busy_ms(r),
                    cold: r.outcome.timings.cold,
                    worker: r.outcome.worker.clone(),
                    error_class: error.map(|e| e.class.to_string()),
                    error: error.map(|e| e.message.chars().take(LOG_PREVIEW).collect()),
                    logs: c.logs,
                    log: r.outcome.logs.first().map(|l| {
                        format!("[{}] {}", l.level, l.message)
                            .chars()
                            .take(LOG_PREVIEW)
                            .collect()
                    }),
                    source: c.source,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_read_from_the_cookies() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(session_token_hash(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; eddy_sessionx=no"),
        );
        assert_eq!(session_token_hash(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("b=2;  eddy_session=tok ; c=3"),
        );
        assert_eq!(session_token_hash(&h), Some(eddy_queue::hash_key("tok")));
    }

    #[test]
    fn runs_are_scoped() {
        let acme = TenantId::new("acme").unwrap();
        let tenant = Scope {
            admin: false,
            tenant: Some(acme.clone()),
        };
        assert_eq!(
            parse_runs(&tenant, "r1, r2,r1,other/r3,acme/r4").unwrap(),
            vec![
                (acme.clone(), "r1".to_string()),
                (acme.clone(), "r2".to_string()),
                (acme.clone(), "r4".to_string())
            ]
        );
        assert!(parse_runs(&tenant, "bad id").is_err());
        let admin = Scope {
            admin: true,
            tenant: None,
        };
        assert!(parse_runs(&admin, "r1").is_err());
        assert_eq!(
            parse_runs(&admin, "acme/r1").unwrap(),
            vec![(acme, "r1".into())]
        );
    }

    #[test]
    fn the_page_inlines_its_assets() {
        assert!(INDEX_HTML.contains("/*{{css}}*/") && INDEX_HTML.contains("/*{{js}}*/"));
        assert!(INDEX_HTML.contains("id=\"app\""));
        assert!(!APP_JS.contains("{{") && !APP_CSS.contains("{{"));
    }
}
