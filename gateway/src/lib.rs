//! The HTTP API (axum + tower): deploy, invoke (sync, async, batch), records,
//! runs, dead letters, tenants and keys, health, OpenAPI.
//!
//! **Invariant:** the gateway never links wasmtime. Modules are validated
//! through a [`ModuleValidator`] that the `eddy` binary provides.
//! **Invariant:** it replies 202 only after Redis accepted the invocation,
//! never a fake one.
#![forbid(unsafe_code)]

mod auth;
pub mod conn;
mod error;
mod extract;
mod openapi;
mod routes;
mod specs;
mod waiters;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use eddy_protocol::callback::Allowlist;
use eddy_protocol::{FunctionName, TenantId};
use eddy_queue::{Queue, QueueConfig};
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

pub use auth::Caller;
pub use error::{ApiError, ErrorBody};

/// Validates and precompiles a module before it is accepted. The `eddy`
/// binary implements it with the runtime; the gateway itself stays free of
/// wasmtime.
pub trait ModuleValidator: Send + Sync + 'static {
    /// What the module is, or the reason it is not a processor.
    fn validate(&self, module: &[u8]) -> Result<Validated, String>;
}

/// A module that is a processor.
#[derive(Debug)]
pub struct Validated {
    /// Its content address.
    pub sha256: String,
    /// Its compiled artifact, signed for sharing with the workers (none
    /// without the operator's keys).
    pub artifact: Option<eddy_queue::SharedArtifact>,
}

/// Settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub redis_url: String,
    /// The admin API key; without it only tenant keys work.
    pub admin_key: Option<String>,
    pub max_payload_bytes: usize,
    pub max_module_bytes: usize,
    pub max_batch_bytes: usize,
    /// How long a sync invoke waits before answering 202.
    pub sync_timeout: Duration,
    /// Requests in flight before new ones are shed with 503.
    pub max_in_flight: usize,
    /// Whether its bulk enqueues are paced while its sync calls wait
    /// (`eddy_protocol::sync_first`).
    pub sync_first: eddy_protocol::SyncFirst,
    pub callback_allowlist: Allowlist,
    pub record_ttl: Duration,
    /// The operator's maxima: a deploy or `PATCH` above one is refused.
    pub ceilings: eddy_protocol::Ceilings,
    /// The operator's keys, which seal secrets (none: secrets are refused).
    pub secrets: Option<Arc<eddy_protocol::variables::Keyring>>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            redis_url: "redis://127.0.0.1:6379".into(),
            admin_key: None,
            max_payload_bytes: 1 << 20,
            max_module_bytes: 64 << 20,
            max_batch_bytes: 1 << 30,
            sync_timeout: Duration::from_secs(30),
            max_in_flight: 10_000,
            sync_first: eddy_protocol::SyncFirst::default(),
            callback_allowlist: Allowlist::default(),
            record_ttl: QueueConfig::default().record_ttl,
            ceilings: eddy_protocol::Ceilings::default(),
            secrets: None,
        }
    }
}

/// What every handler shares: one `Arc`, so that the several clones axum
/// makes per request (extractors, middleware, route services) are each an
/// atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The gateway's shared state (see [`AppState`]).
pub struct Shared {
    pub queue: Queue,
    pub config: Arc<GatewayConfig>,
    pub validator: Arc<dyn ModuleValidator>,
    pub waiters: Arc<waiters::Waiters>,
    /// This gateway instance's reply channel.
    pub reply_channel: String,
    /// Renders `/metrics` (set by the binary, which owns the recorder).
    pub metrics: Option<eddy_protocol::MetricsRender>,
    /// Valid API keys seen lately (see `auth.rs`).
    pub keys: Arc<auth::KeyCache>,
    /// Current function specs seen lately (see `specs.rs`).
    pub specs: Arc<specs::SpecCache>,
    /// Requests in flight per tenant (see `auth.rs`: a tenant may hold at
    /// most half of `max_in_flight`).
    pub(crate) in_flight: auth::InFlight,
    /// Failed authentications per client address (see `auth.rs`).
    pub(crate) failed_auths: auth::FailedAuths,
    /// When this gateway last marked each function's stream active.
    touched:
        parking_lot::Mutex<std::collections::HashMap<(TenantId, FunctionName), std::time::Instant>>,
    /// `eddy_invocations_accepted_total` per function, (async, sync):
    /// registered once instead of on every request.
    accepted: parking_lot::Mutex<
        std::collections::HashMap<(TenantId, FunctionName), [metrics::Counter; 2]>,
    >,
    /// `eddy_redis_roundtrip_seconds{op="enqueue"}`, registered once.
    pub enqueue_roundtrip: metrics::Histogram,
    /// `eddy_gateway_bulk_yields_total{via="batch"}`: bulk-load chunks
    /// that paused for this gateway's sync calls (see
    /// `GatewayConfig::sync_first`).
    pub bulk_yields: metrics::Counter,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("reply_channel", &self.reply_channel)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Connects to Redis and subscribes to this instance's reply channel.
    pub async fn connect(
        config: GatewayConfig,
        validator: Arc<dyn ModuleValidator>,
        metrics: Option<eddy_protocol::MetricsRender>,
    ) -> Result<Self, eddy_queue::Error> {
        let queue = Queue::connect(
            &config.redis_url,
            QueueConfig {
                record_ttl: config.record_ttl,
            },
        )
        .await?;
        // Group commits of async invocations paced for this gateway's sync
        // calls (see `GatewayConfig::sync_first`).
        queue.meter_paced_enqueues(metrics::counter!(
            "eddy_gateway_bulk_yields_total",
            "via" => "group_commit"
        ));
        let instance = eddy_protocol::new_id();
        let reply_channel = eddy_protocol::keys::reply_channel(&instance);
        let waiters = Arc::new(waiters::Waiters::default());
        waiters.listen(queue.replies(reply_channel.clone()));
        let keys = Arc::new(auth::KeyCache::default());
        keys.listen(queue.subscribe());
        let specs = Arc::new(specs::SpecCache::default());
        specs.listen(queue.subscribe());
        Ok(AppState(Arc::new(Shared {
            queue,
            config: Arc::new(config),
            validator,
            waiters,
            reply_channel,
            metrics,
            keys,
            specs,
            in_flight: Default::default(),
            failed_auths: Default::default(),
            touched: Default::default(),
            accepted: Default::default(),
            enqueue_roundtrip: metrics::histogram!("eddy_redis_roundtrip_seconds", "op" => "enqueue"),
            bulk_yields: metrics::counter!("eddy_gateway_bulk_yields_total", "via" => "batch"),
        })))
    }
}

impl AppState {
    /// Marks a function's stream active and wakes its consumers, at most
    /// once a second per stream from this gateway: enough for the
    /// controller's view and for a cold function to wake at its first
    /// invocation, without an extra round trip on every request.
    pub async fn touch(&self, tenant: &TenantId, function: &FunctionName) {
        let now = std::time::Instant::now();
        {
            let mut t = self.touched.lock();
            let key = (tenant.clone(), function.clone());
            if t.get(&key)
                .is_some_and(|at| now.duration_since(*at) < Duration::from_secs(1))
            {
                return;
            }
            t.insert(key, now);
        }
        let stream = eddy_protocol::keys::stream(tenant, function);
        if let Err(error) = self.queue.touch(&[stream]).await {
            tracing::debug!(%error, "marking a stream active");
        }
    }

    /// The counter of invocations of `function` accepted by this gateway.
    pub fn accepted(
        &self,
        tenant: &TenantId,
        function: &FunctionName,
        sync: bool,
    ) -> metrics::Counter {
        let mut cache = self.accepted.lock();
        let pair = cache
            .entry((tenant.clone(), function.clone()))
            .or_insert_with(|| {
                let (t, f) = eddy_protocol::labels::of(tenant, function);
                ["async", "sync"].map(|mode| {
                    metrics::counter!(
                        "eddy_invocations_accepted_total",
                        "tenant" => t.clone(),
                        "function" => f.clone(),
                        "mode" => mode
                    )
                })
            });
        pair[usize::from(sync)].clone()
    }
}

/// The body limit of the small JSON bodies (a tenant, a quota).
pub(crate) const JSON_BODY: usize = 64 << 10;
/// The body limit of a rollback's optional body.
pub(crate) const SMALL_BODY: usize = 4096;

/// The whole API. Layers, outermost first: trace → load shed → concurrency
/// limit → (per route) body limit → auth. Per-tenant rate limits and pending
/// quotas are enforced atomically in Redis by the enqueue script, so that
/// they hold across any number of gateways.
pub fn app(state: AppState) -> Router {
    let c = &state.config;
    let tenant_routes = Router::new()
        .route(
            "/functions/{name}",
            put(routes::functions::deploy)
                .layer(DefaultBodyLimit::max(c.max_module_bytes))
                .merge(
                    patch(routes::functions::patch)
                        .layer(DefaultBodyLimit::max(c.max_payload_bytes)),
                )
                .get(routes::functions::get)
                .delete(routes::functions::delete),
        )
        .route("/functions", get(routes::functions::list))
        .route(
            "/functions/{name}/rollback",
            post(routes::functions::rollback).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/invoke/{name}",
            post(routes::invoke::invoke).layer(DefaultBodyLimit::max(c.max_payload_bytes)),
        )
        .route(
            "/invoke/{name}/batch",
            post(routes::invoke::batch).layer(DefaultBodyLimit::max(c.max_batch_bytes)),
        )
        .route("/invocations/{id}", get(routes::records::invocation))
        .route("/runs/{id}", get(routes::records::run))
        .route("/dead-letters", get(routes::records::dead_letters))
        .route(
            "/dead-letters/{entry}/redrive",
            post(routes::records::redrive),
        )
        .route(
            "/callbacks/dead-letters",
            get(routes::records::callback_dead_letters),
        )
        .route("/status", get(routes::records::status))
        .route("/variables", get(routes::variables::list_tenant))
        .route(
            "/variables/{name}",
            put(routes::variables::set_tenant)
                .delete(routes::variables::delete_tenant)
                .layer(DefaultBodyLimit::max(JSON_BODY)),
        )
        .route(
            "/functions/{name}/variables",
            get(routes::variables::list_function),
        )
        .route(
            "/functions/{name}/variables/{var}",
            put(routes::variables::set_function)
                .delete(routes::variables::delete_function)
                .layer(DefaultBodyLimit::max(JSON_BODY)),
        )
        .route("/secrets/reseal", post(routes::variables::reseal))
        .route("/schedules", get(routes::schedules::list))
        .route(
            "/schedules/{name}",
            get(routes::schedules::get)
                .put(routes::schedules::put)
                .delete(routes::schedules::delete)
                .layer(DefaultBodyLimit::max(routes::schedules::BODY)),
        )
        .route(
            "/tenants",
            post(routes::tenants::create).layer(DefaultBodyLimit::max(JSON_BODY)),
        )
        .route("/tenants/{tenant}", get(routes::tenants::get))
        .route(
            "/tenants/{tenant}/quota",
            put(routes::tenants::set_quota).layer(DefaultBodyLimit::max(JSON_BODY)),
        )
        .route(
            "/tenants/{tenant}/keys",
            post(routes::tenants::create_key).get(routes::tenants::list_keys),
        )
        .route(
            "/tenants/{tenant}/keys/{key}",
            delete(routes::tenants::revoke_key),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // The live dashboard: the same auth, wrapped per route because the
        // key may also come as `?key=` there (a browser's EventSource cannot
        // set headers); see `routes/ui.rs`.
        .merge(routes::ui::routes(state.clone()));

    let open_routes = Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/openapi.json", get(openapi::serve))
        .route("/metrics", get(routes::health::metrics));

    let max_in_flight = c.max_in_flight;
    Router::new()
        .merge(tenant_routes)
        .merge(open_routes)
        .fallback(routes::health::not_found)
        .layer(
            ServiceBuilder::new()
                // One span per request, with method, path and status.
                .layer(TraceLayer::new_for_http())
                // Turn a shed request into a clean 503 with a JSON body.
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    axum::response::IntoResponse::into_response(ApiError::Overloaded)
                }))
                // Refuse at once instead of queueing when full: memory stays
                // bounded under overload.
                .load_shed()
                .concurrency_limit(max_in_flight),
        )
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    conn::serve(listener, app(state), shutdown).await?;
    Ok(addr)
}

/// `/metrics` and `/healthz` on an internal address, without a key (the
/// public port's `/metrics` wants the admin key), served in the background.
pub async fn serve_metrics(
    addr: SocketAddr,
    render: eddy_protocol::MetricsRender,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move { render() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// Binds first, then serves in the background: the caller learns the real
/// address (port 0 → a free port) before any request.
pub async fn bind(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    let handle = tokio::spawn(conn::serve(listener, app(state), shutdown));
    Ok((addr, handle))
}
