//! The worker loop: read, dispatch, maintain leases, reclaim, retry, drain.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use eddy_protocol::control::WorkerInfo;
use eddy_protocol::sync_first::{INTERACTIVE_FOR, NARROW_FOR};
use eddy_protocol::{Ceilings, FunctionName, SyncFirst, TenantId, keys, trace};
use eddy_queue::{Completion, Delivery, DueIndex, Queue, QueueConfig};
use eddy_runtime::{Runtime, RuntimeConfig};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tracing::{Instrument, debug, info, warn};

use crate::callbacks::{CallbackConfig, Dispatcher};
use crate::capacity::Capacity;
use crate::fair::Executor;
use crate::functions::Functions;
use crate::process;

mod delivery;
mod meters;
mod reader;
mod slots;
mod upkeep;
mod wake;

use meters::*;
use slots::{Share, Slots};
use wake::Lane;

/// Settings of one worker process.
#[derive(Clone)]
pub struct WorkerConfig {
    pub redis_url: String,
    /// Invocations running at once.
    pub concurrency: usize,
    /// Sandboxes executing guest code at once, given round-robin across
    /// tenants (0: one per CPU).
    pub exec_slots: usize,
    /// Whether bulk work yields to sync invocations
    /// (`eddy_protocol::sync_first`): [`Worker::run`] lowers its calling
    /// thread to [`SyncFirst::bulk_nice`] once the interactive lane is
    /// started (the binary lowers its runtime's threads), long guests run
    /// at [`SyncFirst::exec_nice`], and bulk completions are narrowed while
    /// sync invocations keep coming.
    pub sync_first: SyncFirst,
    /// How long a delivery may go without a heartbeat before another worker
    /// reclaims it.
    pub lease: Duration,
    /// Deliveries after which an entry that never completes is dead-lettered.
    pub max_deliveries: u64,
    pub cache_dir: PathBuf,
    /// Pooling allocator slots (at least `concurrency`); each tenant may
    /// hold half of them.
    pub max_instances: u32,
    /// The operator's ceilings: every function's limits are clamped to
    /// them, and the instance pool is sized for their component shape.
    pub ceilings: Ceilings,
    /// Bytes of guest memory live invocations may reserve together (each
    /// its `memory_mb`); each tenant may hold half.
    pub guest_memory: u64,
    /// This consumer's name; unique per process when absent.
    pub consumer: Option<String>,
    pub record_ttl: Duration,
    /// Callback delivery.
    pub callbacks: CallbackConfig,
    /// Internal addresses guests' outbound requests may reach anyway.
    pub outbound_allowlist: eddy_protocol::callback::Allowlist,
    /// The operator's keys, which open secrets for guests (none: a guest
    /// that reads a function's secrets gets an error).
    pub secrets: Option<Arc<eddy_protocol::variables::Keyring>>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (none: not).
    pub listen: Option<std::net::SocketAddr>,
    /// Renders `/metrics`.
    pub metrics: Option<eddy_protocol::MetricsRender>,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("redis_url", &self.redis_url)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("runtime: {0}")]
    Runtime(#[from] eddy_runtime::LoadError),
    #[error("queue: {0}")]
    Queue(#[from] eddy_queue::Error),
    #[error("callback client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("execution threads: {0}")]
    Executor(std::io::Error),
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    consumer: String,
    queue: Queue,
    runtime: Arc<Runtime>,
    functions: Arc<Functions>,
    /// Fair execution slots (the CPU), shared by every tenant.
    executor: Executor,
    /// What the reader, the lane and the upkeep share.
    slots: Slots,
    /// The interactive lane (see [`Worker::lane`]).
    lane: Lane,
    /// Metric handles, registered once.
    meters: Meters,
    /// The reader's runtime, where all but the lane's work runs.
    main: tokio::runtime::Handle,
    completed: AtomicU64,
    draining: Arc<AtomicBool>,
    /// Streams recently marked active by this worker (rate limit of touch).
    touched: Mutex<HashMap<String, Instant>>,
    started_at_ms: u64,
    /// Functions' variables read lately (see `variables.rs`).
    variables: Arc<crate::variables::Cache>,
}

/// Without a controller, the streams marked active this recently are read.
const UNCONTROLLED_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Tenants the due-index audit looks at per second (see `eddy_queue::due`):
/// a constant cost per worker, a full pass in tenants ÷ this seconds.
const AUDIT_TENANTS: usize = 16;

thread_local! {
    /// Set on the interactive lane's thread.
    static ON_LANE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the caller runs on the interactive lane's thread.
fn on_lane() -> bool {
    ON_LANE.with(|l| l.get())
}

fn unique_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The runtime of a process that applies `ceilings`: its memory pool sized
/// for their largest memory, its instance pool for their component shape.
/// Workers, the gateway's module validation and `eddy run` all use it, so a
/// module the gateway accepts is one a worker can load.
pub fn runtime_config(
    ceilings: &Ceilings,
    cache_dir: PathBuf,
    max_instances: u32,
    guest_memory_bytes: u64,
) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir,
        max_instances,
        guest_memory_bytes,
        max_memory_bytes: ceilings.memory_mb.saturating_mul(1 << 20),
        component: eddy_runtime::ComponentLimits {
            core_instances: ceilings.core_instances,
            memories: ceilings.memories,
            tables: ceilings.tables,
            table_elements: ceilings.table_elements,
        },
        ..RuntimeConfig::default()
    }
}

/// Half of the memory this process may use: its cgroup's limit (v2
/// `memory.max`, or v1 `memory.limit_in_bytes`) where one is set, else the
/// machine's. The default budget of guest memory: the rest is the worker's
/// own and the artifacts'.
pub fn default_guest_memory() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        // v1 says "no limit" with a number near u64::MAX.
        .filter(|&n| n < 1 << 50);
    let machine = read("/proc/meminfo").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    cgroup.or(machine).unwrap_or(8 << 30) / 2
}

impl Worker {
    /// Connects to Redis and builds the runtime.
    pub async fn start(config: WorkerConfig) -> Result<Self, WorkerError> {
        // wasmtime compiles on rayon's global pool, whose threads are
        // created once, by the first compile, at that thread's priority.
        // Create them here, before the bulk threads are lowered (see
        // `SyncFirst::bulk_nice`), so that a sync invocation's cold compile never
        // waits on threads left at the bulk work's nice value.
        let _ = rayon::current_num_threads();
        let ceilings = config.ceilings;
        let runtime = Runtime::new(RuntimeConfig {
            outbound_allowlist: config.outbound_allowlist.clone(),
            ..runtime_config(
                &config.ceilings,
                config.cache_dir.clone(),
                config.max_instances.max(config.concurrency as u32),
                config.guest_memory,
            )
        })?;
        let queue = Queue::connect(
            &config.redis_url,
            QueueConfig {
                record_ttl: config.record_ttl,
            },
        )
        .await?;
        // `eddy_worker_bulk_yields_total`: bulk completion flushes sent one
        // at a time for sync invocations (see `WorkerConfig::sync_first`).
        queue.meter_narrowed_completions(metrics::counter!("eddy_worker_bulk_yields_total"));
        let consumer = config.consumer.clone().unwrap_or_else(unique_consumer);
        let exec_nice = config.sync_first.exec_nice();
        let exec_slots = match config.exec_slots {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        info!(
            consumer,
            concurrency = config.concurrency,
            exec_slots,
            "worker started"
        );
        let completions = config.concurrency.max(16) * 4;
        let secrets = config.secrets.clone();
        Ok(Worker {
            config,
            consumer,
            queue,
            runtime: Arc::new(runtime),
            functions: Arc::new(Functions::new(ceilings, secrets)),
            executor: Executor::new(
                exec_slots,
                exec_nice,
                tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::CurrentThread,
            )
            .map_err(WorkerError::Executor)?,
            slots: Slots::new(completions),
            lane: Lane::default(),
            meters: Meters::new(),
            main: tokio::runtime::Handle::current(),
            completed: AtomicU64::new(0),
            draining: Arc::new(AtomicBool::new(false)),
            touched: Mutex::default(),
            started_at_ms: eddy_protocol::now_ms(),
            variables: Default::default(),
        })
    }

    /// This worker's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs until `shutdown` turns true, then drains: stops reading, finishes
    /// in-flight work, gives back what it had not started, leaves the group.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let this = Arc::new(self);
        let (stop_maint, maint_rx) = watch::channel(false);
        let maintenance = tokio::spawn(this.clone().maintain(maint_rx.clone()));
        let dispatcher = Arc::new(Dispatcher::new(
            this.queue.clone(),
            this.config.callbacks.clone(),
            this.consumer.clone(),
        )?);
        let callbacks = tokio::spawn(dispatcher.run(maint_rx.clone()));
        let (lane_done, lane_may_stop) = watch::channel(false);
        let lane = this.clone().lane(maint_rx.clone(), lane_may_stop)?;
        // The lane was started at this thread's priority; the reader's
        // loop, here, is bulk work.
        crate::fair::lower_thread_priority(this.config.sync_first.bulk_nice());
        let endpoints = this.config.listen.map(|addr| {
            tokio::spawn(crate::http::serve(
                addr,
                this.queue.clone(),
                this.draining.clone(),
                this.config.metrics.clone(),
                maint_rx,
            ))
        });

        this.discover().await;
        this.heartbeat().await;
        let slots = Arc::new(Semaphore::new(this.config.concurrency.max(1)));
        this.read_loop(slots, &mut shutdown).await;

        info!(in_flight = this.slots.running(), "draining");
        this.draining.store(true, Ordering::Release);
        this.heartbeat().await;
        this.slots.drained().await;
        let _ = stop_maint.send(true);
        let _ = lane_done.send(true);
        let _ = maintenance.await;
        let _ = callbacks.await;
        let _ = tokio::task::spawn_blocking(move || lane.join()).await;
        if let Some(e) = endpoints {
            let _ = e.await;
        }
        let streams = this.slots.capacity().streams();
        for stream in streams {
            if let Err(error) = this.queue.forget_consumer(&stream, &this.consumer).await {
                warn!(%error, stream, "leaving the group");
            }
        }
        if let Err(error) = this.queue.unregister(&this.consumer).await {
            warn!(%error, "leaving the worker registry");
        }
        info!("drained");
        Ok(())
    }

    /// Concurrency of a stream nobody assigned.
    fn default_concurrency(&self) -> u32 {
        self.config.concurrency.max(1) as u32
    }

    /// Starts one delivery: it waits for a slot of its stream (the
    /// controller's share), then runs on the global slot it holds.
    async fn dispatch(self: &Arc<Self>, d: Delivery, global: Option<Arc<Semaphore>>) {
        self.slots.hold(&d);
        if d.envelope.is_interactive() {
            self.saw_sync();
        }
        let slot = self.slots.capacity().permits(&d.stream);
        if let Some((_, held)) = &slot {
            held.fetch_add(1, Ordering::AcqRel);
        }
        self.slots.started();
        // Somebody waits for a sync invocation. Read here on the reader's
        // runtime (bulk threads, at a lower priority and busy with a burst),
        // it goes to the lane and takes none of the reader's global slots,
        // as one read on the lane's own wake-up does.
        // The other way round, an async invocation read on the lane (its
        // held read, or a wake-up's read of a stream's oldest entry) is
        // bulk work: it runs on the reader's runtime.
        let lane = match (&d.envelope.reply_to, self.lane.runtime()) {
            (Some(_), Some(lane)) if !on_lane() => {
                self.meters.lane_handoffs.increment(1);
                Some(lane.clone())
            }
            (None, _) if on_lane() => Some(self.main.clone()),
            _ => None,
        };
        let global = if lane.is_some() { None } else { global };
        let w = self.clone();
        // Boxed: the task then holds a pointer, not the whole state machine
        // (several KB), which tokio would otherwise copy into the task and
        // again over it when the task finishes.
        let task = Box::pin(async move {
            let mut share = Share {
                permit: None,
                held: None,
                global: None,
                worker: w.clone(),
            };
            if let Some((permits, held)) = slot {
                share.held = Some(held);
                share.permit = permits.acquire_owned().await.ok();
            }
            if let Some(g) = global {
                share.global = g.acquire_owned().await.ok();
            }
            w.handle(d, share).await;
            w.completed.fetch_add(1, Ordering::Relaxed);
            w.slots.ended();
        });
        match lane {
            Some(lane) => drop(lane.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}
