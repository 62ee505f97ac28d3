//! The server roles: `eddy worker` and `eddy up` (every role in one process,
//! with a private `redis-server` child when no `REDIS_URL` is given).

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use eddy_gateway::{AppState, GatewayConfig, ModuleValidator};
use eddy_protocol::callback::Allowlist;
use eddy_runtime::Runtime;
use eddy_worker::{CallbackConfig, Worker, WorkerConfig};
use tokio::sync::watch;

mod up;
pub use up::{UpArgs, up};

/// What every role process reads: where Redis is, and its threads.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Redis to use, e.g. `redis://127.0.0.1:6379`, or
    /// `redis+cluster://host:port,host:port` for a Redis Cluster.
    #[arg(long, env = "REDIS_URL")]
    pub(crate) redis_url: Option<String>,
    /// The Redis behind a plain `redis://` URL is a cluster (for a URL that
    /// comes from elsewhere, e.g. a secret, as is).
    #[arg(long, env = "EDDY_REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    redis_cluster: bool,
    /// Threads of the process's async runtime (default: one per CPU the
    /// process may use, its cgroup's quota included). With 1 everything but long guests runs on the
    /// main thread: the cheapest setting for one-CPU pods and small
    /// machines (15-20% less CPU per invocation on 2 cores,
    /// bench/RESULTS.md).
    #[arg(long, env = "EDDY_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

impl ProcessArgs {
    /// The URL to connect to, if one was given.
    pub(crate) fn given(&self) -> Option<String> {
        let url = self.redis_url.as_deref()?;
        Some(if self.redis_cluster {
            eddy_queue::cluster_url(url)
        } else {
            url.to_string()
        })
    }

    fn threads(&self) -> usize {
        match self.threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn url(&self) -> Result<String> {
        self.given().ok_or_else(|| {
            anyhow::anyhow!(
                "set REDIS_URL (or --redis-url); `eddy up` starts a private Redis instead"
            )
        })
    }
}

/// A setting that must not show in `Debug` output (keys).
#[derive(Clone, Default)]
pub(crate) struct Hidden(pub(crate) String);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

impl std::str::FromStr for Hidden {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Hidden(s.to_string()))
    }
}

/// What the gateway and the worker both read.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub(crate) process: ProcessArgs,
    /// Bulk work yields to sync calls (1, the default; 0 turns it off). A
    /// worker's bulk threads run at nice 15 (long guests at 19) instead of
    /// 0 (long guests at 10). A gateway, while its sync calls wait for their
    /// results: a bulk load (`/invoke/{name}/batch`) pauses after each chunk
    /// of lines as long as the chunk took, and the group commits of async
    /// invocations go one at a time, each followed by such a pause (at most
    /// 2 ms). A worker, while sync invocations keep coming (one in the last
    /// second): its bulk completions go one flush at a time instead of two.
    /// Redis serves the sync calls' round trips with at most one bulk script
    /// of each kind queued ahead of them; the bulk keeps at least half its
    /// pace (docs/operations.md).
    #[arg(long, env = "EDDY_BULK_YIELD", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    bulk_yield: bool,
    /// Compiled-module cache directory (a gateway compiles each module it
    /// validates; a worker each module it loads).
    #[arg(long, env = "EDDY_CACHE_DIR", default_value = ".eddy/artifacts")]
    cache_dir: PathBuf,
    #[command(flatten)]
    pub(crate) records: EnqueueArgs,
    /// Internal addresses or networks callbacks may target anyway
    /// (comma-separated, e.g. `127.0.0.1,10.0.0.0/8`).
    #[arg(long, env = "EDDY_CALLBACK_ALLOWLIST", default_value = "")]
    callback_allowlist: String,
    /// The keys that seal tenants' secrets at rest, `id:base64,...` (each
    /// 32 random bytes: `openssl rand -base64 32`). The first seals new
    /// secrets; all of them open. Gateways and workers need the same list;
    /// without it secrets are refused (`eddy up` generates one into its
    /// data dir). Rotation: put a new key first, restart, `eddy var
    /// reseal`, then drop the old key.
    #[arg(
        long,
        env = "EDDY_SECRETS_KEYS",
        hide_env_values = true,
        default_value = ""
    )]
    secrets_keys: Hidden,
    /// An internal address where `/healthz`, `/readyz` and `/metrics` are
    /// served without a key.
    #[arg(long, env = "EDDY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) labels: LabelArgs,
}

/// What every role that enqueues (gateways, workers for follow-ups, the
/// controller for schedules) must be given alike.
#[derive(Debug, Clone, clap::Args)]
pub struct EnqueueArgs {
    /// How long invocation and run records are kept, in seconds (give every
    /// role the same: the stored-bytes quota counts by it).
    #[arg(long, env = "EDDY_RECORD_TTL_S", default_value_t = 86_400)]
    pub(crate) record_ttl_s: u64,
    #[command(flatten)]
    pub(crate) ceilings: CeilingArgs,
}

impl CommonArgs {
    pub(crate) fn sync_first(&self) -> eddy_protocol::SyncFirst {
        eddy_protocol::SyncFirst {
            bulk_yields: self.bulk_yield,
        }
    }

    fn secrets(&self) -> Result<Option<Arc<eddy_protocol::variables::Keyring>>> {
        eddy_protocol::variables::Keyring::parse(&self.secrets_keys.0)
            .map(|k| k.map(Arc::new))
            .map_err(|e| anyhow::anyhow!("EDDY_SECRETS_KEYS: {e}"))
    }

    fn allowlist(&self) -> Result<Allowlist> {
        Allowlist::parse(&self.callback_allowlist)
            .map_err(|e| anyhow::anyhow!("EDDY_CALLBACK_ALLOWLIST: {e}"))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Invocations running at once in this process.
    #[arg(long, env = "EDDY_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Sandboxes executing guest code at once, handed out round-robin across
    /// tenants (0: one per CPU). The rest of the concurrency waits on
    /// Redis round trips.
    #[arg(long, env = "EDDY_EXEC_SLOTS", default_value_t = 0)]
    exec_slots: usize,
    /// Lease of a delivery: after this long without a heartbeat another
    /// worker reclaims it.
    #[arg(long, env = "EDDY_LEASE_MS", default_value_t = 30_000)]
    lease_ms: u64,
    /// Deliveries after which an entry that never completes is dead-lettered.
    #[arg(long, env = "EDDY_MAX_DELIVERIES", default_value_t = 5)]
    max_deliveries: u64,
    /// Consumer name (unique per process when absent).
    #[arg(long, env = "EDDY_CONSUMER")]
    consumer: Option<String>,
    #[command(flatten)]
    callbacks: CallbackArgs,
    /// Guest memory this worker's live invocations may reserve together,
    /// in MiB (each reserves its `memory_mb` before it starts); each tenant
    /// may hold half, so one tenant's memory-hungry invocations wait for
    /// their own to end, never another's. Must be at least twice the
    /// `memory_mb` ceiling. Default (0): half of what the process may use
    /// (its cgroup's memory limit, else the machine's memory).
    #[arg(long, env = "EDDY_GUEST_MEMORY_MB", default_value_t = 0)]
    guest_memory_mb: u64,
    /// Internal addresses or networks processors' outbound HTTP may reach
    /// anyway (comma-separated, e.g. `10.0.0.0/8`); every other internal,
    /// loopback or special-purpose address is refused at connect time,
    /// whatever a function's allowed_hosts say.
    #[arg(long, env = "EDDY_OUTBOUND_ALLOWLIST", default_value = "")]
    outbound_allowlist: String,
}

/// The bound on per-function metric labels.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LabelArgs {
    /// Functions this process labels by tenant and name in its metrics (the
    /// first it sees); the others are summed under `_other`, so series do
    /// not grow with tenants. 0 labels none.
    #[arg(long, env = "EDDY_METRICS_MAX_FUNCTIONS", default_value_t = eddy_protocol::labels::DEFAULT_MAX_FUNCTIONS)]
    metrics_max_functions: usize,
}

impl LabelArgs {
    /// Sets the bound, before any metric is registered.
    pub(crate) fn apply(self) {
        eddy_protocol::labels::set_max_functions(self.metrics_max_functions);
    }
}

/// The operator's ceilings (`eddy_protocol::Ceilings`).
#[derive(Debug, Clone, clap::Args)]
pub struct CeilingArgs {
    /// The most a function may ask for, `key=value` (repeatable, or
    /// comma-separated in the variable): a deploy or PATCH above a ceiling
    /// is refused with `limit_above_maximum`, workers clamp every limit to
    /// them, and the sandbox refuses components of a bigger shape. Keys
    /// (default): timeout_ms (900000), memory_mb (512), max_retries (10),
    /// backoff_base_ms (60000), backoff_max_ms (3600000), max_concurrency
    /// (1000), idle_timeout_ms (3600000), max_output_bytes (4 MiB),
    /// max_emits (1000), max_emit_bytes (1 MiB), max_log_bytes (1 MiB),
    /// max_outbound_requests (1000; 0 turns outbound HTTP off),
    /// max_outbound_bytes (256 MiB),
    /// max_depth (64), max_invocations (10000000), core_instances (50),
    /// memories (4), tables (16), table_elements (20000), completion_bytes
    /// (6 MiB). Gateways and workers should be given the same ceilings.
    #[arg(long = "ceiling", env = "EDDY_CEILINGS", value_delimiter = ',')]
    ceiling: Vec<String>,
}

impl CeilingArgs {
    pub(crate) fn parse(&self) -> Result<eddy_protocol::Ceilings> {
        eddy_protocol::Ceilings::parse(&self.ceiling.join(","))
            .map_err(|e| anyhow::anyhow!("EDDY_CEILINGS / --ceiling: {e}"))
    }
}

/// Callback delivery.
#[derive(Debug, Clone, clap::Args)]
pub struct CallbackArgs {
    /// Dead-letter a callback this long after its first attempt.
    #[arg(long, env = "EDDY_CALLBACK_MAX_AGE_MS", default_value_t = 86_400_000)]
    callback_max_age_ms: u64,
    /// First callback retry delay (doubled per attempt, with jitter).
    #[arg(long, env = "EDDY_CALLBACK_BACKOFF_MS", default_value_t = 500)]
    callback_backoff_ms: u64,
}

impl CallbackArgs {
    fn config(&self, common: &CommonArgs) -> Result<CallbackConfig> {
        Ok(CallbackConfig {
            allowlist: common.allowlist()?,
            max_age: Duration::from_millis(self.callback_max_age_ms),
            backoff_base: Duration::from_millis(self.callback_backoff_ms),
            ..CallbackConfig::default()
        })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Address to listen on (`eddy gateway`: 0.0.0.0:8080; `eddy up`:
    /// 127.0.0.1:8080).
    #[arg(long, env = "EDDY_LISTEN")]
    listen: Option<SocketAddr>,
    /// The admin API key (creates tenants, sets quotas).
    #[arg(long, env = "EDDY_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Largest invocation payload, in bytes.
    #[arg(long, env = "EDDY_MAX_PAYLOAD_BYTES", default_value_t = 1 << 20)]
    max_payload_bytes: usize,
    /// Largest body of one batch request (`POST /invoke/{name}/batch`), in
    /// bytes: past it the rest is not read and the answer's last line says
    /// so. A bulk client sends several.
    #[arg(long, env = "EDDY_MAX_BATCH_BYTES", default_value_t = 1 << 30)]
    max_batch_bytes: usize,
    /// How long a sync invoke waits for its result before answering 202.
    #[arg(long, env = "EDDY_SYNC_TIMEOUT_MS", default_value_t = 30_000)]
    sync_timeout_ms: u64,
    /// Requests in flight before new ones are shed with 503.
    #[arg(long, env = "EDDY_MAX_IN_FLIGHT", default_value_t = 10_000)]
    max_in_flight: usize,
}

impl GatewayArgs {
    fn config(
        &self,
        redis_url: String,
        common: &CommonArgs,
        admin_key: Option<String>,
        default_listen: SocketAddr,
    ) -> Result<GatewayConfig> {
        Ok(GatewayConfig {
            listen: self.listen.unwrap_or(default_listen),
            redis_url,
            admin_key,
            max_payload_bytes: self.max_payload_bytes,
            max_batch_bytes: self.max_batch_bytes,
            sync_timeout: Duration::from_millis(self.sync_timeout_ms),
            max_in_flight: self.max_in_flight,
            sync_first: common.sync_first(),
            callback_allowlist: common.allowlist()?,
            record_ttl: Duration::from_secs(common.records.record_ttl_s),
            ceilings: common.records.ceilings.parse()?,
            secrets: common.secrets()?,
            ..GatewayConfig::default()
        })
    }
}

/// Validates modules for the gateway with the real runtime: a module is
/// accepted only if it compiles and links as an `eddy:processor` component.
/// The artifact lands in this process's cache as a side effect.
/// With the operator's keys it signs the artifact for the workers.
struct RuntimeValidator {
    runtime: Runtime,
    keys: Option<Arc<eddy_protocol::variables::Keyring>>,
}

impl ModuleValidator for RuntimeValidator {
    fn validate(&self, module: &[u8]) -> Result<eddy_gateway::Validated, String> {
        let processor = self.runtime.load(module).map_err(|e| e.to_string())?;
        let sha256 = processor.sha256().to_string();
        let cache = self.runtime.cache();
        let artifact = self.keys.as_ref().and_then(|keys| {
            let bytes = cache.read(&sha256)?;
            Some(eddy_queue::SharedArtifact::sign(
                keys,
                &sha256,
                cache.engine_key().to_string(),
                &bytes,
            ))
        });
        Ok(eddy_gateway::Validated { sha256, artifact })
    }
}

fn validator(common: &CommonArgs) -> Result<Arc<dyn ModuleValidator>> {
    module_validator(
        &common.records.ceilings.parse()?,
        common.cache_dir.clone(),
        common.secrets()?,
    )
}

/// The gateway's module validator: the real runtime, with the same shape
/// limits as the workers' (what it accepts, they load), compiling into
/// `cache_dir`.
pub fn module_validator(
    ceilings: &eddy_protocol::Ceilings,
    cache_dir: std::path::PathBuf,
    keys: Option<Arc<eddy_protocol::variables::Keyring>>,
) -> Result<Arc<dyn ModuleValidator>> {
    let config = eddy_worker::runtime_config(
        ceilings,
        cache_dir,
        4,
        // It runs no guests: any budget will do.
        4 << 30,
    );
    let runtime = Runtime::new(config).context("starting the validating runtime")?;
    Ok(Arc::new(RuntimeValidator { runtime, keys }))
}

impl WorkerArgs {
    /// `EDDY_GUEST_MEMORY_MB` in bytes, or its default.
    fn guest_memory(&self) -> Result<u64> {
        let ceiling_mb = self.common.records.ceilings.parse()?.memory_mb;
        let least = ceiling_mb.saturating_mul(2).saturating_mul(1 << 20);
        match self.guest_memory_mb {
            0 => {
                let auto = eddy_worker::default_guest_memory();
                if auto < least {
                    tracing::warn!(
                        available_mib = auto >> 20,
                        using_mib = least >> 20,
                        "less memory than twice the memory_mb ceiling: the guest memory budget \
                         is set to that, more than this process should use; lower the ceiling \
                         or give the worker more memory"
                    );
                }
                Ok(auto.max(least))
            }
            mb => match mb.checked_mul(1 << 20) {
                Some(bytes) if bytes >= least => Ok(bytes),
                Some(_) => bail!(
                    "EDDY_GUEST_MEMORY_MB: {mb} MiB is less than twice the memory_mb ceiling \
                     ({} MiB): an invocation at the ceiling could not start",
                    least >> 20
                ),
                None => bail!("EDDY_GUEST_MEMORY_MB: {mb} MiB is out of range"),
            },
        }
    }

    fn config(&self, redis_url: String) -> Result<WorkerConfig> {
        Ok(WorkerConfig {
            redis_url,
            concurrency: self.concurrency,
            exec_slots: self.exec_slots,
            sync_first: self.common.sync_first(),
            lease: Duration::from_millis(self.lease_ms),
            max_deliveries: self.max_deliveries,
            cache_dir: self.common.cache_dir.clone(),
            // Twice the concurrency: sync invocations on the interactive
            // lane come on top of it.
            max_instances: (self.concurrency as u32).max(16) * 2,
            ceilings: self.common.records.ceilings.parse()?,
            guest_memory: self.guest_memory()?,
            consumer: self.consumer.clone(),
            record_ttl: Duration::from_secs(self.common.records.record_ttl_s),
            callbacks: self.callbacks.config(&self.common)?,
            outbound_allowlist: Allowlist::parse(&self.outbound_allowlist)
                .map_err(|e| anyhow::anyhow!("EDDY_OUTBOUND_ALLOWLIST: {e}"))?,
            secrets: self.common.secrets()?,
            listen: self.common.metrics_listen,
            metrics: metrics(),
        })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Address of the controller's HTTP endpoints (`/replicas`, `/status`).
    #[arg(long = "controller-listen", env = "EDDY_CONTROLLER_LISTEN")]
    controller_listen: Option<SocketAddr>,
    /// How often the controller decides, in ms.
    #[arg(long, env = "EDDY_CONTROLLER_TICK_MS", default_value_t = 100)]
    controller_tick_ms: u64,
    /// Drain a backlog within this long, in ms.
    #[arg(long, env = "EDDY_TARGET_QUEUE_AGE_MS", default_value_t = 500)]
    target_queue_age_ms: u64,
    /// Fewest worker replicas to ask for.
    #[arg(long, env = "EDDY_MIN_REPLICAS", default_value_t = 1)]
    min_replicas: u32,
    /// Most worker replicas to ask for.
    #[arg(long, env = "EDDY_MAX_REPLICAS", default_value_t = 100)]
    max_replicas: u32,
    /// This controller's id in the leader election (unique when absent).
    #[arg(long, env = "EDDY_CONTROLLER_ID")]
    controller_id: Option<String>,
}

impl ControllerArgs {
    fn config(
        &self,
        redis_url: String,
        default_listen: SocketAddr,
        admin_key: Option<String>,
        records: &EnqueueArgs,
    ) -> Result<eddy_controller::ControllerConfig> {
        Ok(eddy_controller::ControllerConfig {
            redis_url,
            admin_key,
            record_ttl: Duration::from_secs(records.record_ttl_s),
            ceilings: records.ceilings.parse()?,
            listen: self.controller_listen.unwrap_or(default_listen),
            tick: Duration::from_millis(self.controller_tick_ms.max(10)),
            target_queue_age: Duration::from_millis(self.target_queue_age_ms.max(1)),
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            metrics: metrics(),
            id: self
                .controller_id
                .clone()
                .unwrap_or_else(eddy_protocol::new_id),
            ..eddy_controller::ControllerConfig::default()
        })
    }
}

pub fn controller(
    args: ControllerArgs,
    process: ProcessArgs,
    admin_key: Option<String>,
    labels: LabelArgs,
    records: EnqueueArgs,
) -> Result<ExitCode> {
    labels.apply();
    let url = process.url()?;
    tokio_runtime(process.threads())?.block_on(async {
        let shutdown = shutdown_signal()?;
        let config = args.config(
            url,
            SocketAddr::from(([0, 0, 0, 0], 8081)),
            admin_key,
            &records,
        )?;
        eddy_controller::serve(config, shutdown)
            .await
            .context("running the controller")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Installs the process's Prometheus recorder (once) and returns its
/// renderer for the roles' `/metrics`.
pub(crate) fn metrics() -> Option<eddy_protocol::MetricsRender> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .map_err(|error| tracing::warn!(%error, "metrics disabled"))
                .ok()?;
            // Histograms keep every sample until they are drained, which
            // only a scrape or an upkeep does: without this, a process
            // nobody scrapes keeps ~8 bytes per sample, 5 per invocation.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("eddy-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            Some(handle)
        })
        .clone()?;
    Some(Arc::new(move || handle.render()))
}

/// A watch that turns true on SIGTERM or SIGINT.
fn shutdown_signal() -> Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// The runtime of a process with a worker: its threads do the worker's bulk
/// work, at nice [`eddy_protocol::SyncFirst::bulk_nice`] (the thread that
/// blocks on it is lowered by the worker itself, once its interactive lane
/// is started).
pub(crate) fn worker_runtime(
    threads: usize,
    sync_first: eddy_protocol::SyncFirst,
) -> Result<tokio::runtime::Runtime> {
    let bulk_nice = sync_first.bulk_nice();
    match threads {
        1 => tokio_runtime(1),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .on_thread_start(move || eddy_worker::lower_thread_priority(bulk_nice))
            .enable_all()
            .build()
            .context("starting tokio"),
    }
}

/// The runtime a role process runs on (`block_on`). With one thread
/// (`EDDY_THREADS=1`, or a one-CPU pod) everything runs on the main thread:
/// no task ever wakes another thread, which is what a handoff costs most on
/// a small machine (bench/RESULTS.md: 15-20% less CPU per invocation on 2
/// cores). Guests that run long still get execution threads of their own
/// (see the worker's `fair.rs`).
fn tokio_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting tokio"),
        n => spawn_runtime(n),
    }
}

/// A runtime that is spawned into rather than blocked on (it needs threads
/// of its own).
fn spawn_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting tokio")
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    args.common.labels.apply();
    let url = args.common.process.url()?;
    worker_runtime(args.common.process.threads(), args.common.sync_first())?.block_on(async {
        let shutdown = shutdown_signal()?;
        let worker = Worker::start(args.config(url)?)
            .await
            .context("starting the worker")?;
        worker.run(shutdown).await.context("running the worker")?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn gateway(gateway: GatewayArgs, common: CommonArgs) -> Result<ExitCode> {
    common.labels.apply();
    let url = common.process.url()?;
    tokio_runtime(common.process.threads())?.block_on(async {
        let mut shutdown = shutdown_signal()?;
        let listen = SocketAddr::from(([0, 0, 0, 0], 8080));
        let config = gateway.config(url, &common, gateway.admin_key.clone(), listen)?;
        let state = AppState::connect(config, validator(&common)?, metrics())
            .await
            .context("connecting to redis")?;
        if let (Some(addr), Some(render)) = (common.metrics_listen, metrics()) {
            eddy_gateway::serve_metrics(addr, render)
                .await
                .with_context(|| format!("binding the metrics listener {addr}"))?;
        }
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        eddy_gateway::serve(state, stop)
            .await
            .context("serving HTTP")?;
        Ok(ExitCode::SUCCESS)
    })
}
