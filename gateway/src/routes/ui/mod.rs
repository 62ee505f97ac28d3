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

mod connection;
mod sampler;

use connection::*;
use sampler::*;

const INDEX_HTML: &str = include_str!("../../../ui/index.html");
const APP_CSS: &str = include_str!("../../../ui/app.css");
const APP_JS: &str = include_str!("../../../ui/app.js");

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
/// How often an event stream reads its tenant's schedules.
const SCHEDULES_EVERY: Duration = Duration::from_secs(5);
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
