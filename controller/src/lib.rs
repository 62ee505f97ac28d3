//! The controller: reads backlog and activity of active streams, decides a
//! warm concurrency per (tenant, function), assigns it to live workers,
//! computes the worker replicas the load needs, and scales idle functions to
//! zero. One leader at a time, through a Redis lease; every instance serves
//! the leader's decisions over HTTP (`/replicas` for KEDA, `/status`).
//!
//! **Invariant:** it never links wasmtime, and it never polls idle streams:
//! each tick it reads only the activity marks (`eddy:active`, which gateways
//! and workers set when work arrives) of the last few seconds, and probes
//! only streams that are live: active within their idle timeout (plus a
//! grace in which "scaled to zero" is still reported), with a backlog at the
//! last probe, or holding warm capacity. A stream idle past that costs the
//! tick nothing until it is marked again.
#![forbid(unsafe_code)]

pub mod decide;
mod schedules;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use eddy_protocol::control::{Assignment, ControllerState, FunctionDecision, WorkerInfo};
use eddy_protocol::{FunctionName, TenantId, keys};
use eddy_queue::{Queue, QueueConfig};
use sha2::Digest as _;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Settings of the controller.
#[derive(Clone)]
pub struct ControllerConfig {
    pub redis_url: String,
    pub listen: SocketAddr,
    /// How often it decides.
    pub tick: Duration,
    /// Drain a backlog within this long.
    pub target_queue_age: Duration,
    /// A worker unseen this long is dead; its assignments move.
    pub worker_timeout: Duration,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Concurrency of one worker, when no worker is there to say.
    pub worker_concurrency_hint: u32,
    /// This instance's id in the leader election.
    pub id: String,
    /// Renders `/metrics`.
    pub metrics: Option<eddy_protocol::MetricsRender>,
    /// The admin key `/status` asks for (it lists every tenant's functions);
    /// without one, `/status` is refused.
    pub admin_key: Option<String>,
    /// How long records are kept (the scheduled invocations' records and
    /// their stored-bytes count, as the gateway's).
    pub record_ttl: Duration,
    /// The operator's ceilings (a scheduled run's limits, as the gateway's).
    pub ceilings: eddy_protocol::Ceilings,
}

impl std::fmt::Debug for ControllerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerConfig")
            .field("listen", &self.listen)
            .field("tick", &self.tick)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            tick: Duration::from_millis(100),
            target_queue_age: Duration::from_millis(500),
            worker_timeout: eddy_protocol::control::WORKER_TIMEOUT,
            min_replicas: 1,
            max_replicas: 100,
            worker_concurrency_hint: 16,
            id: eddy_protocol::new_id(),
            admin_key: None,
            metrics: None,
            record_ttl: QueueConfig::default().record_ttl,
            ceilings: eddy_protocol::Ceilings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    added: u64,
    done: u64,
    busy_us: u64,
    at: Instant,
    rate: f64,
    service_s: f64,
}

#[derive(Debug, Clone)]
struct Spec {
    max_concurrency: u32,
    idle_timeout_ms: u64,
    fetched: Instant,
}

/// The controller's memory between ticks (smoothing, caches, last plan).
#[derive(Debug, Default)]
struct Memory {
    samples: HashMap<String, Sample>,
    specs: HashMap<String, Spec>,
    caps: HashMap<String, (u32, Instant)>,
    assignments: HashMap<String, Assignment>,
    concurrency: HashMap<String, u32>,
    /// Last activity of each stream read so far (only the marks since
    /// `marks_read_ms`, minus a lookback, are read each tick).
    activity: HashMap<String, u64>,
    /// Up to when the activity marks were read; 0 = never (read the window).
    marks_read_ms: u64,
    /// Backlog (lag + pending) at each stream's last probe.
    backlog: HashMap<String, u64>,
    /// Streams that went dormant within the marks' lookback, at which mark
    /// (re-reading that mark does not make them live again).
    dormant: HashMap<String, u64>,
    /// Where the sweep of the window goes on (`ZSCAN` cursor), and when it
    /// steps next.
    sweep: (u64, Option<Instant>),
    /// The label pairs of the per-function gauges set last tick (those not
    /// set again go to 0).
    gauges: HashSet<(String, String)>,
}

/// Smoothing of rates: weight of the newest sample.
const EWMA: f64 = 0.3;
/// How long cached specs and quotas are trusted.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Activity older than this is forgotten.
const ACTIVE_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Marks are re-read this far back each tick: a mark stamped by a writer
/// whose clock is behind, or written a moment late, is still seen.
const MARK_LOOKBACK_MS: u64 = 10_000;
/// Streams of the window that are not live, looked at per second for a
/// backlog nobody marked (a mark lost to a crash or an outage): a constant
/// cost, a full pass in streams ÷ this seconds.
const SWEEP_STREAMS: usize = 10;
/// A stream scaled to zero stays in the decisions this long after its idle
/// timeout (so that `status` says why it is cold), then is not probed.
const COLD_GRACE_MS: u64 = 10_000;

/// One step of the sweep: streams of the window that are not live but have
/// a backlog become live. Returns how many marks it looked at.
async fn sweep(queue: &Queue, mem: &mut Memory, now_ms: u64) -> Result<usize, eddy_queue::Error> {
    let (cursor, marks) = queue.scan_active(mem.sweep.0, SWEEP_STREAMS).await?;
    mem.sweep.0 = cursor;
    let seen = marks.len();
    for (stream, at) in marks {
        if mem.activity.contains_key(&stream) || at < now_ms.saturating_sub(ACTIVE_WINDOW_MS) {
            continue;
        }
        let b = queue.backlog(&stream).await?;
        if b.lag + b.pending > 0 {
            info!(%stream, lag = b.lag, pending = b.pending, "a backlog without a recent mark");
            mem.backlog.insert(stream.clone(), b.lag + b.pending);
            mem.activity.insert(stream, at);
        }
    }
    Ok(seen)
}

/// The streams worth probing this tick: reads the activity marks written
/// since the last tick (the whole window at the start of a term) and keeps
/// the streams that are live: marked within their idle timeout plus
/// [`COLD_GRACE_MS`], with a backlog at their last probe, or warm. An idle
/// tenant's streams drop out and cost nothing until they are marked again.
async fn live_streams(
    queue: &Queue,
    mem: &mut Memory,
    now_ms: u64,
) -> Result<Vec<(String, u64)>, eddy_queue::Error> {
    let since = if mem.marks_read_ms == 0 {
        now_ms.saturating_sub(ACTIVE_WINDOW_MS)
    } else {
        mem.marks_read_ms.saturating_sub(MARK_LOOKBACK_MS)
    };
    for (stream, at) in queue.active_streams(since).await? {
        // A mark already judged (the stream went dormant at it) is read
        // again within the lookback: only a newer one makes it live.
        if mem.dormant.get(&stream).is_some_and(|d| *d >= at) {
            continue;
        }
        let last = mem.activity.entry(stream).or_insert(at);
        *last = (*last).max(at);
    }
    mem.dormant
        .retain(|_, at| *at >= since.min(now_ms.saturating_sub(MARK_LOOKBACK_MS)));
    mem.marks_read_ms = now_ms;
    if mem.sweep.1.is_none_or(|at| Instant::now() >= at) {
        // A small set comes back whole whatever COUNT asks: the next step
        // waits a second per SWEEP_STREAMS seen.
        let seen = sweep(queue, mem, now_ms).await.unwrap_or_else(|error| {
            debug!(%error, "sweeping the activity window");
            0
        });
        let wait = Duration::from_secs(seen.div_ceil(SWEEP_STREAMS).max(1) as u64);
        mem.sweep.1 = Some(Instant::now() + wait);
    }
    let (specs, backlog, warm) = (&mem.specs, &mem.backlog, &mem.concurrency);
    let dormant = &mut mem.dormant;
    mem.activity.retain(|stream, last| {
        let idle_for = specs
            .get(stream)
            .map_or(ACTIVE_WINDOW_MS, |s| s.idle_timeout_ms)
            .saturating_add(COLD_GRACE_MS);
        let live = now_ms.saturating_sub(*last) < idle_for
            || backlog.get(stream).is_some_and(|b| *b > 0)
            || warm.get(stream).is_some_and(|c| *c > 0);
        if !live {
            dormant.insert(stream.clone(), *last);
        }
        live
    });
    let live: std::collections::HashSet<&String> = mem.activity.keys().collect();
    mem.samples.retain(|s, _| live.contains(s));
    mem.specs.retain(|s, _| live.contains(s));
    mem.backlog.retain(|s, _| live.contains(s));
    let tenants: std::collections::HashSet<TenantId> = live
        .iter()
        .filter_map(|s| keys::parse_stream(s).map(|(t, _)| t))
        .collect();
    mem.caps
        .retain(|t, _| TenantId::new(t).is_ok_and(|t| tenants.contains(&t)));
    let mut out: Vec<(String, u64)> = mem
        .activity
        .iter()
        .map(|(s, at)| (s.clone(), *at))
        .collect();
    out.sort();
    Ok(out)
}

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("queue: {0}")]
    Queue(#[from] eddy_queue::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// One tick of the leader: measure, decide, assign, publish.
async fn tick(
    queue: &Queue,
    config: &ControllerConfig,
    mem: &mut Memory,
) -> Result<ControllerState, eddy_queue::Error> {
    let now_ms = eddy_protocol::now_ms();
    let now = Instant::now();
    let active = live_streams(queue, mem, now_ms).await?;

    let mut inputs = Vec::new();
    let mut rows = Vec::new();
    for (stream, last) in &active {
        let Some((tenant, function)) = keys::parse_stream(stream) else {
            continue;
        };
        let spec = match mem
            .specs
            .get(stream)
            .filter(|s| s.fetched.elapsed() < CACHE_TTL)
        {
            Some(s) => s.clone(),
            None => match queue.function(&tenant, &function, None).await? {
                Some(spec) => {
                    let s = Spec {
                        max_concurrency: spec.config.max_concurrency,
                        idle_timeout_ms: spec.config.idle_timeout_ms,
                        fetched: now,
                    };
                    mem.specs.insert(stream.clone(), s.clone());
                    s
                }
                // Deleted: nothing to keep warm, nothing to probe again.
                None => {
                    mem.activity.remove(stream);
                    continue;
                }
            },
        };
        if mem
            .caps
            .get(tenant.as_str())
            .is_none_or(|(_, at)| at.elapsed() >= CACHE_TTL)
        {
            let cap = queue
                .tenant(&tenant)
                .await?
                .map(|t| t.quota.max_concurrency)
                .unwrap_or(0);
            mem.caps.insert(tenant.to_string(), (cap, now));
        }
        rows.push((stream.clone(), tenant, function, *last, spec));
    }
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|(s, t, f, _, _)| (s.clone(), keys::stats(t, f)))
        .collect();
    let stats = queue.stream_stats(&pairs).await?;
    for ((stream, tenant, _, last, spec), st) in rows.iter().zip(&stats) {
        let prev = mem.samples.get(stream).copied();
        let (rate, service_s) = match prev {
            Some(p) => {
                let dt = p.at.elapsed().as_secs_f64().max(0.001);
                let r = st.added.saturating_sub(p.added) as f64 / dt;
                let done = st.done.saturating_sub(p.done);
                let s = if done > 0 {
                    st.busy_us.saturating_sub(p.busy_us) as f64 / done as f64 / 1e6
                } else {
                    p.service_s
                };
                (
                    EWMA * r + (1.0 - EWMA) * p.rate,
                    EWMA * s + (1.0 - EWMA) * p.service_s,
                )
            }
            None => (
                0.0,
                if st.done > 0 {
                    st.busy_us as f64 / st.done as f64 / 1e6
                } else {
                    0.005
                },
            ),
        };
        mem.backlog.insert(stream.clone(), st.lag + st.pending);
        mem.samples.insert(
            stream.clone(),
            Sample {
                added: st.added,
                done: st.done,
                busy_us: st.busy_us,
                at: now,
                rate,
                service_s,
            },
        );
        inputs.push(decide::Input {
            stream: stream.clone(),
            tenant: tenant.to_string(),
            lag: st.lag,
            pending: st.pending,
            arrival_rate: rate,
            service_s,
            idle_ms: now_ms.saturating_sub(*last),
            max_concurrency: spec.max_concurrency,
            idle_timeout_ms: spec.idle_timeout_ms,
        });
    }
    let caps: HashMap<String, u32> = mem.caps.iter().map(|(t, (c, _))| (t.clone(), *c)).collect();
    let workers_now = queue.workers().await?;
    let burst = workers_now
        .iter()
        .map(|w| w.concurrency)
        .max()
        .unwrap_or(config.worker_concurrency_hint);
    let decisions = decide::decide(&inputs, &caps, config.target_queue_age.as_secs_f64(), burst);

    // Live workers; the dead are removed so that their share moves.
    let mut alive: Vec<WorkerInfo> = Vec::new();
    for w in workers_now {
        if w.is_stale(now_ms, config.worker_timeout) {
            warn!(worker = %w.id, "worker missed its heartbeats; moving its assignments");
            queue.unregister(&w.id).await?;
        } else {
            alive.push(w);
        }
    }
    let ids: Vec<String> = alive
        .iter()
        .filter(|w| !w.draining)
        .map(|w| w.id.clone())
        .collect();
    let assignments = decide::assign(&decisions, &ids, &mem.assignments);
    if assignments != mem.assignments {
        queue.set_assignments(&assignments).await?;
        mem.assignments = assignments.clone();
    }
    for d in &decisions {
        let before = mem
            .concurrency
            .insert(d.stream.clone(), d.concurrency)
            .unwrap_or(0);
        if before != d.concurrency {
            info!(stream = %d.stream, from = before, to = d.concurrency, reason = %d.reason, "scaling");
        }
    }
    // Forget functions that left the window.
    mem.concurrency
        .retain(|s, _| decisions.iter().any(|d| &d.stream == s));
    if now_ms % 60_000 < config.tick.as_millis() as u64 {
        queue
            .forget_inactive(now_ms.saturating_sub(ACTIVE_WINDOW_MS))
            .await?;
    }

    // Summed per label pair: functions past the label bound share one.
    let mut gauges: HashMap<(String, String), [f64; 3]> = HashMap::new();
    for (d, i) in decisions.iter().zip(&inputs) {
        if let Some((t, f)) = keys::parse_stream(&d.stream) {
            let g = gauges.entry(eddy_protocol::labels::of(&t, &f)).or_default();
            g[0] += i.lag as f64;
            g[1] += i.pending as f64;
            g[2] += f64::from(d.concurrency);
        }
    }
    for gone in mem.gauges.difference(&gauges.keys().cloned().collect()) {
        gauges.insert(gone.clone(), [0.0; 3]);
    }
    mem.gauges = gauges
        .iter()
        .filter(|(_, g)| g.iter().any(|v| *v != 0.0))
        .map(|(k, _)| k.clone())
        .collect();
    for ((t, f), [lag, pending, warm]) in gauges {
        metrics::gauge!("eddy_backlog", "tenant" => t.clone(), "function" => f.clone(), "kind" => "lag").set(lag);
        metrics::gauge!("eddy_backlog", "tenant" => t.clone(), "function" => f.clone(), "kind" => "pending").set(pending);
        metrics::gauge!("eddy_warm_concurrency", "tenant" => t, "function" => f).set(warm);
    }
    let total: u32 = decisions.iter().map(|d| d.concurrency).sum();
    let per_worker = if alive.is_empty() {
        config.worker_concurrency_hint
    } else {
        (alive.iter().map(|w| w.concurrency).sum::<u32>() / alive.len() as u32).max(1)
    };
    let functions = decisions
        .iter()
        .zip(&inputs)
        .map(|(d, i)| {
            let (tenant, function) = keys::parse_stream(&d.stream)
                .map(|(t, f)| (t.to_string(), f.to_string()))
                .unwrap_or_default();
            FunctionDecision {
                stream: d.stream.clone(),
                tenant,
                function,
                lag: i.lag,
                pending: i.pending,
                arrival_rate: i.arrival_rate,
                service_ms: i.service_s * 1000.0,
                concurrency: d.concurrency,
                workers: assignments
                    .iter()
                    .filter(|(_, a)| a.contains_key(&d.stream))
                    .map(|(w, _)| w.clone())
                    .collect(),
                idle_ms: i.idle_ms,
                zero_in_ms: if d.concurrency == 0 || i.lag + i.pending > 0 {
                    0
                } else {
                    i.idle_timeout_ms.saturating_sub(i.idle_ms)
                },
                reason: d.reason.clone(),
            }
        })
        .collect();
    let desired = decide::replicas(total, per_worker, config.min_replicas, config.max_replicas);
    metrics::gauge!("eddy_desired_worker_replicas").set(f64::from(desired));
    metrics::gauge!("eddy_live_workers").set(alive.len() as f64);
    Ok(ControllerState {
        leader: config.id.clone(),
        at_ms: now_ms,
        functions,
        desired_replicas: decide::replicas(
            total,
            per_worker,
            config.min_replicas,
            config.max_replicas,
        ),
        current_replicas: alive.len() as u32,
        workers: alive,
    })
}

/// Runs the election and, while leading, the decision loop, until `stop`.
pub async fn run(queue: Queue, config: ControllerConfig, mut stop: watch::Receiver<bool>) {
    let mut mem = Memory::default();
    let mut timer = schedules::Timer::default();
    let lease_ms = (config.tick * 30).max(Duration::from_secs(3)).as_millis() as u64;
    let mut leading = false;
    while !*stop.borrow() {
        let started = Instant::now();
        match queue.lead(&config.id, lease_ms).await {
            Ok(true) => {
                if !leading {
                    info!(id = %config.id, "leading");
                    leading = true;
                    // A new leader starts from what is in Redis, not from
                    // the memory of an earlier term.
                    mem = Memory::default();
                    timer = schedules::Timer::default();
                }
                match tick(&queue, &config, &mut mem).await {
                    Ok(state) => {
                        if let Err(error) = queue.set_controller_state(&state).await {
                            warn!(%error, "publishing the decisions");
                        }
                    }
                    Err(error) => warn!(%error, "controller tick"),
                }
                schedules::fire_due(&queue, &config, &mut timer).await;
            }
            Ok(false) => {
                if leading {
                    info!(id = %config.id, "lost the lease");
                }
                leading = false;
            }
            Err(error) => {
                debug!(%error, "leader election");
                leading = false;
            }
        }
        let took = started.elapsed();
        if leading && took.as_millis() as u64 > lease_ms / 2 {
            // Past the lease the leadership lapses (workers keep their
            // assignments for a while, new decisions wait).
            warn!(
                ?took,
                lease_ms, "a controller tick took over half its lease"
            );
        }
        let rest = config.tick.saturating_sub(took);
        tokio::select! {
            _ = tokio::time::sleep(rest) => {}
            _ = stop.changed() => {}
        }
    }
    if leading {
        let _ = queue.resign(&config.id).await;
    }
}

/// The HTTP side, served by every instance from the leader's decisions.
/// `/replicas` says only counts (KEDA reads it without credentials);
/// `/status` names tenants and functions, so it takes the admin key.
pub fn app(
    queue: Queue,
    metrics: Option<eddy_protocol::MetricsRender>,
    admin_key: Option<&str>,
) -> axum::Router {
    let render = metrics.clone();
    let admin = admin_key.map(|k| sha2::Sha256::digest(k.as_bytes()));
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move {
                    match render {
                        Some(r) => (StatusCode::OK, r()),
                        None => (StatusCode::NOT_FOUND, "metrics are not enabled".to_string()),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(q): State<Queue>| async move {
                match q.ping().await {
                    Ok(()) => (StatusCode::OK, "ready"),
                    Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable"),
                }
            }),
        )
        .route("/replicas", get(replicas))
        .route(
            "/status",
            get(
                move |headers: axum::http::HeaderMap, q: State<Queue>| async move {
                    match authorized(admin.as_ref(), &headers) {
                        Ok(()) => status(q).await.into_response(),
                        Err(refusal) => refusal.into_response(),
                    }
                },
            ),
        )
        .with_state(queue)
}

/// Whether `headers` carry the admin key (`Authorization: Bearer`, the
/// scheme in any case), compared by digest; else the gateway's answer for
/// the same mistake.
fn authorized(
    admin: Option<&sha2::digest::Output<sha2::Sha256>>,
    headers: &axum::http::HeaderMap,
) -> Result<(), (StatusCode, Json<serde_json::Value>)> {
    let refuse = |status, code: &str, message: &str| {
        Err((
            status,
            Json(serde_json::json!({ "code": code, "message": message })),
        ))
    };
    let Some(admin) = admin else {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/status needs the admin key, and this controller has none: set EDDY_ADMIN_KEY",
        );
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            let (scheme, key) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
    match given {
        None => refuse(
            StatusCode::UNAUTHORIZED,
            "missing_key",
            "send the admin key as `Authorization: Bearer <key>`",
        ),
        Some(key) if sha2::Sha256::digest(key.as_bytes()) == *admin => Ok(()),
        Some(_) => refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_key",
            "the key is not the admin key",
        ),
    }
}

async fn replicas(State(q): State<Queue>) -> impl IntoResponse {
    match q.controller_state().await {
        Ok(Some(s)) => (
            StatusCode::OK,
            Json(
                serde_json::json!({ "desired": s.desired_replicas, "current": s.current_replicas, "at_ms": s.at_ms }),
            ),
        ),
        Ok(None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "no decision yet" })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

async fn status(State(q): State<Queue>) -> impl IntoResponse {
    match q.controller_state().await {
        Ok(Some(s)) => (
            StatusCode::OK,
            Json(serde_json::to_value(s).unwrap_or_default()),
        ),
        Ok(None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "no decision yet" })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

/// Connects, then serves HTTP and runs the loop until `stop`.
pub async fn serve(config: ControllerConfig, stop: watch::Receiver<bool>) -> Result<(), Error> {
    let queue = Queue::connect(
        &config.redis_url,
        QueueConfig {
            record_ttl: config.record_ttl,
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    info!(addr = %config.listen, id = %config.id, "controller listening");
    let mut http_stop = stop.clone();
    let router = app(
        queue.clone(),
        config.metrics.clone(),
        config.admin_key.as_deref(),
    );
    let http = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });
    run(queue, config, stop).await;
    let _ = http.await;
    Ok(())
}

/// The tenant and function of a stream, for display.
pub fn describe(stream: &str) -> Option<(TenantId, FunctionName)> {
    keys::parse_stream(stream)
}
