//! The worker loop: read, dispatch, maintain leases, reclaim, retry, drain.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use eddy_protocol::control::WorkerInfo;
use eddy_protocol::{Ceilings, FunctionName, TenantId, keys, trace};
use eddy_queue::Reply;
use eddy_queue::{Completion, Delivery, DueIndex, Queue, QueueConfig};
use eddy_runtime::{Runtime, RuntimeConfig};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tracing::{Instrument, debug, info, warn};

use crate::callbacks::{CallbackConfig, Dispatcher};
use crate::capacity::Capacity;
use crate::fair::Executor;
use crate::functions::Functions;
use crate::process;

/// Settings of one worker process.
#[derive(Clone)]
pub struct WorkerConfig {
    pub redis_url: String,
    /// Invocations running at once.
    pub concurrency: usize,
    /// Sandboxes executing guest code at once, given round-robin across
    /// tenants (0: one per CPU).
    pub exec_slots: usize,
    /// Long guests of a shared worker run at `SCHED_IDLE` rather than at a
    /// nice value five below `bulk_nice` (10 to 19).
    pub exec_idle: bool,
    /// Nice value of the threads doing the worker's bulk work (reads,
    /// async invocations, completions, callbacks): [`Worker::run`] lowers
    /// its calling thread to it once the interactive lane is started, and
    /// the binary its runtime's threads. Sync invocations, somebody
    /// waiting, run on the lane at the process's own priority, and so do
    /// the gateway and Redis next to it. 0 leaves everything as it is.
    /// Long guests' execution threads run five steps below it (nice 10 to
    /// 19), so they still give way to it.
    pub bulk_nice: i32,
    /// Bulk work yields to sync invocations: while they keep coming (one
    /// in the last second), the worker's bulk completions go one flush at a
    /// time instead of two, so that a sync invocation's completion finds at
    /// most one of them queued ahead of it in Redis.
    pub bulk_yield: bool,
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

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            concurrency: 64,
            exec_slots: 0,
            exec_idle: false,
            bulk_nice: 0,
            bulk_yield: true,
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            cache_dir: PathBuf::from(".eddy/artifacts"),
            max_instances: 128,
            ceilings: Ceilings::default(),
            guest_memory: 4 << 30,
            consumer: None,
            record_ttl: QueueConfig::default().record_ttl,
            callbacks: CallbackConfig::default(),
            listen: None,
            metrics: None,
        }
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

/// The counters of one function, each registered on its first use: a
/// registry lookup with label strings on every invocation cost more than
/// the rest of its bookkeeping.
#[derive(Default)]
struct FnMetrics {
    /// succeeded, retried, failed, dead; retries; dead letters; cold starts.
    counters: [std::sync::OnceLock<metrics::Counter>; 7],
}

const OUTCOMES: [&str; 4] = ["succeeded", "retried", "failed", "dead"];
const RETRIES: usize = 4;
const DEAD_LETTERS: usize = 5;
const COLD_STARTS: usize = 6;

impl FnMetrics {
    fn counter(&self, i: usize, tenant: &TenantId, function: &FunctionName) -> &metrics::Counter {
        self.counters[i].get_or_init(|| {
            let (t, f) = eddy_protocol::labels::of(tenant, function);
            match i {
                RETRIES => metrics::counter!("eddy_retries_total", "tenant" => t, "function" => f),
                DEAD_LETTERS => {
                    metrics::counter!("eddy_dead_letters_total", "tenant" => t, "function" => f)
                }
                COLD_STARTS => {
                    metrics::counter!("eddy_cold_starts_total", "tenant" => t, "function" => f)
                }
                _ => metrics::counter!("eddy_invocations_total", "tenant" => t, "function" => f,
                    "outcome" => OUTCOMES[i.min(3)]),
            }
        })
    }
}

/// The phase histograms (`eddy_phase_seconds`), registered once.
struct Phases {
    cold_start: metrics::Histogram,
    queue_wait: metrics::Histogram,
    slot_wait: metrics::Histogram,
    instantiate: metrics::Histogram,
    run: metrics::Histogram,
}

impl Phases {
    fn new() -> Self {
        let h = |phase: &'static str| metrics::histogram!("eddy_phase_seconds", "phase" => phase);
        Phases {
            cold_start: h("cold_start"),
            queue_wait: h("queue_wait"),
            slot_wait: h("slot_wait"),
            instantiate: h("instantiate"),
            run: h("run"),
        }
    }
}

/// Metric handles: per function, the phases, and the worker's own.
struct Meters {
    functions: Mutex<HashMap<(TenantId, FunctionName), Arc<FnMetrics>>>,
    phases: Phases,
    /// `eddy_worker_in_flight`, set on the maintenance tick.
    in_flight: metrics::Gauge,
    /// `eddy_redis_roundtrip_seconds{op="complete"}`.
    complete_roundtrip: metrics::Histogram,
    /// `eddy_worker_lane_handoffs_total`: sync invocations the reader read
    /// and handed to the interactive lane.
    lane_handoffs: metrics::Counter,
    /// `eddy_worker_lane_held_reads_total`: deliveries the lane's held
    /// read got.
    lane_held_reads: metrics::Counter,
}

impl Meters {
    fn new() -> Self {
        Meters {
            functions: Mutex::default(),
            phases: Phases::new(),
            in_flight: metrics::gauge!("eddy_worker_in_flight"),
            complete_roundtrip: metrics::histogram!("eddy_redis_roundtrip_seconds", "op" => "complete"),
            lane_handoffs: metrics::counter!("eddy_worker_lane_handoffs_total"),
            lane_held_reads: metrics::counter!("eddy_worker_lane_held_reads_total"),
        }
    }

    /// Counts one finished attempt: outcome, phases, cold starts, retries,
    /// dead letters.
    fn record(&self, d: &Delivery, c: &Completion) {
        let env = &d.envelope;
        let f = lock(&self.functions)
            .entry((env.tenant.clone(), env.function.clone()))
            .or_default()
            .clone();
        let count = |i: usize| f.counter(i, &env.tenant, &env.function).increment(1);
        match &c.disposition {
            eddy_queue::Disposition::Succeeded { .. } => count(0),
            eddy_queue::Disposition::Retry { .. } => {
                count(1);
                count(RETRIES);
            }
            eddy_queue::Disposition::Failed => {
                count(2);
                count(DEAD_LETTERS);
            }
            eddy_queue::Disposition::Dead => {
                count(3);
                count(DEAD_LETTERS);
            }
        }
        let t = &c.outcome.timings;
        let p = &self.phases;
        if t.cold {
            count(COLD_STARTS);
            p.cold_start.record(t.load_us as f64 / 1e6);
        }
        p.queue_wait.record(t.queue_wait_us as f64 / 1e6);
        p.slot_wait.record(t.slot_wait_us as f64 / 1e6);
        p.instantiate.record(t.instantiate_us as f64 / 1e6);
        p.run.record(t.run_us as f64 / 1e6);
    }

    /// Forgets the handles of a released function (they live on in the
    /// recorder).
    fn forget(&self, tenant: &TenantId, function: &FunctionName) {
        lock(&self.functions).remove(&(tenant.clone(), function.clone()));
    }
}

impl std::fmt::Debug for Meters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meters")
    }
}

/// Resident memory of this process, bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// A delivery's place: one of its stream's permits (the controller's warm
/// concurrency), one of the deliveries the stream may hold (its prefetch)
/// and one of the worker's slots. All go back as soon as the guest has run,
/// not after the completion's round trip to Redis: a function's concurrency
/// counts executing instances, its throughput does not shrink with the
/// latency of the (batched) completion, and another tenant's entry is read
/// while a burst's completions are on their way. Completions in flight have
/// a bound of their own (`Worker::completing`).
struct Share {
    permit: Option<OwnedSemaphorePermit>,
    held: Option<Arc<AtomicUsize>>,
    /// One of the worker's slots (`concurrency`): reading waits for one.
    global: Option<OwnedSemaphorePermit>,
    /// Told when the stream may take more.
    freed: Arc<Worker>,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.permit.take();
        self.global.take();
        if let Some(held) = self.held.take() {
            held.fetch_sub(1, Ordering::AcqRel);
        }
        self.freed.freed.notify_one();
    }
}

/// Entries this worker holds, per stream: started ones need their lease
/// extended.
type InFlight = Arc<Mutex<HashMap<String, HashSet<String>>>>;

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
    inflight: InFlight,
    /// Streams this worker finished deliveries of since its last trim: the
    /// only ones that can have acknowledged entries to trim.
    to_trim: Mutex<HashSet<String>>,
    capacity: Mutex<Capacity>,
    /// Invocations running now, and a wake-up for the drain waiting on 0.
    running: AtomicUsize,
    idle: Notify,
    /// Signalled when an invocation ends: a stream may have room again.
    freed: Notify,
    /// Metric handles, registered once.
    meters: Meters,
    /// Completions on their way to Redis. Reading pauses while all are
    /// taken, so that a slow Redis cannot pile up finished invocations.
    completing: Arc<Semaphore>,
    /// The interactive lane's own connections (see [`Worker::lane`]), once
    /// it is up.
    lane: std::sync::OnceLock<Queue>,
    /// The lane's runtime, once it is up: a sync invocation the reader
    /// reads (it was blocked on the stream when the entry came, or read it
    /// in a batch before the lane's wake-up read) runs there, not on the
    /// bulk threads.
    lane_rt: std::sync::OnceLock<tokio::runtime::Handle>,
    /// Whether the lane still runs what is handed to it (false once it
    /// stops, after the drain).
    lane_open: AtomicBool,
    /// Streams that took a sync invocation lately (last urgent wake-up), for
    /// the lane's held read (see [`Worker::held_read`]), and a wake-up for
    /// it when the first one arrives.
    interactive: Mutex<HashMap<String, Instant>>,
    interactive_added: Notify,
    /// The streams the held read is waiting on now.
    held_now: Mutex<std::collections::HashSet<String>>,
    /// The reader's runtime, where all but the lane's work runs.
    main: tokio::runtime::Handle,
    completed: AtomicU64,
    draining: Arc<AtomicBool>,
    /// Streams recently marked active by this worker (rate limit of touch).
    touched: Mutex<HashMap<String, Instant>>,
    started_at_ms: u64,
    /// When the last sync invocation arrived, while the bulk completions
    /// are narrowed for them (see [`Worker::saw_sync`]).
    sync_seen: Mutex<Option<tokio::time::Instant>>,
}

/// Without a controller, the streams marked active this recently are read.
const UNCONTROLLED_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Tenants the due-index audit looks at per second (see `eddy_queue::due`):
/// a constant cost per worker, a full pass in tenants ÷ this seconds.
const AUDIT_TENANTS: usize = 16;

/// How long after its last sync invocation a worker keeps its bulk
/// completions narrowed to one flush in flight (see [`Worker::saw_sync`]).
const NARROW_FOR: Duration = Duration::from_secs(1);

/// How long after its last sync invocation a stream keeps the lane's held
/// read (see [`Worker::held_read`]).
const INTERACTIVE_FOR: Duration = Duration::from_secs(10);

thread_local! {
    /// Set on the interactive lane's thread.
    static ON_LANE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the caller runs on the interactive lane's thread.
fn on_lane() -> bool {
    ON_LANE.with(|l| l.get())
}

fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
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
        // `bulk_nice`), so that a sync invocation's cold compile never
        // waits on threads left at the bulk work's nice value.
        let _ = rayon::current_num_threads();
        let ceilings = config.ceilings;
        let runtime = Runtime::new(runtime_config(
            &config.ceilings,
            config.cache_dir.clone(),
            config.max_instances.max(config.concurrency as u32),
            config.guest_memory,
        ))?;
        let queue = Queue::connect(
            &config.redis_url,
            QueueConfig {
                record_ttl: config.record_ttl,
            },
        )
        .await?;
        // `eddy_worker_bulk_yields_total`: bulk completion flushes sent one
        // at a time for sync invocations (see `WorkerConfig::bulk_yield`).
        queue.meter_narrowed_completions(metrics::counter!("eddy_worker_bulk_yields_total"));
        let consumer = config.consumer.clone().unwrap_or_else(unique_consumer);
        let exec_idle = config.exec_idle;
        let exec_nice = crate::fair::exec_nice(config.bulk_nice);
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
        let completing = Arc::new(Semaphore::new(config.concurrency.max(16) * 4));
        Ok(Worker {
            config,
            consumer,
            queue,
            runtime: Arc::new(runtime),
            functions: Arc::new(Functions::new(ceilings)),
            executor: Executor::new(
                exec_slots,
                exec_idle,
                exec_nice,
                tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::CurrentThread,
            )
            .map_err(WorkerError::Executor)?,
            inflight: Arc::default(),
            to_trim: Mutex::default(),
            capacity: Mutex::default(),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            freed: Notify::new(),
            completing,
            meters: Meters::new(),
            lane: std::sync::OnceLock::new(),
            lane_rt: std::sync::OnceLock::new(),
            lane_open: AtomicBool::new(false),
            interactive: Mutex::default(),
            interactive_added: Notify::new(),
            held_now: Mutex::default(),
            main: tokio::runtime::Handle::current(),
            completed: AtomicU64::new(0),
            draining: Arc::new(AtomicBool::new(false)),
            touched: Mutex::default(),
            started_at_ms: eddy_protocol::now_ms(),
            sync_seen: Mutex::default(),
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
        crate::fair::lower_thread_priority(this.config.bulk_nice);
        let endpoints = this.config.listen.map(|addr| {
            tokio::spawn(crate::http::serve(
                addr,
                this.queue.clone(),
                this.draining.clone(),
                this.config.metrics.clone(),
                maint_rx,
            ))
        });

        let slots = Arc::new(Semaphore::new(this.config.concurrency.max(1)));
        let mut conn = None;
        let mut backoff = Duration::from_millis(50);
        this.discover().await;
        this.heartbeat().await;

        while !*shutdown.borrow() {
            if this.completing.available_permits() == 0 {
                // Finished invocations wait for Redis: read nothing more.
                tokio::select! {
                    _ = this.freed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // Wait for a free slot first: read only what can start now.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            let free = slots.available_permits() + 1;
            let (streams, most, full) = lock(&this.capacity).readable(this.default_concurrency());
            if streams.is_empty() {
                // Nothing readable: no streams, or every one holds all it
                // may. Wait for an invocation to end (or for news).
                drop(first);
                tokio::select! {
                    _ = this.freed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if conn.is_none() {
                match this.queue.blocking_connection().await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        warn!(%error, "connecting the reader; retrying");
                        drop(first);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            // The read is never cancelled midway (a cancelled XREADGROUP may
            // still deliver entries nobody sees); its short block bounds how
            // long a drain, or a new assignment, waits for it.
            let count = free.max(1).min(most.max(1));
            // While some stream is full (its share and prefetch are in use),
            // block only briefly: a long block on the other streams would
            // keep the full one waiting after its invocations end.
            let block_ms = if full { 2 } else { 200 };
            let read = this
                .queue
                .read(c, &this.consumer, &streams, count, block_ms)
                .await;
            let (deliveries, malformed) = match read {
                Ok(r) => {
                    backoff = Duration::from_millis(50);
                    r
                }
                Err(error) => {
                    warn!(%error, "reading streams; reconnecting");
                    conn = None;
                    drop(first);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            this.quarantine(malformed).await;
            // The slot waited for above only gated the read; each delivery
            // takes its stream's share first and a global slot second, so a
            // backlog of one stream queues on its own share, not in front of
            // other tenants' work.
            drop(first);
            for d in deliveries {
                let stopping = *shutdown.borrow();
                match stopping {
                    false => this.dispatch(d, Some(slots.clone())).await,
                    true => {
                        this.hold(&d);
                        this.give_back(&d).await;
                    }
                }
            }
        }

        info!(in_flight = this.running.load(Ordering::Acquire), "draining");
        this.draining.store(true, Ordering::Release);
        this.heartbeat().await;
        while this.running.load(Ordering::Acquire) > 0 {
            let notified = this.idle.notified();
            if this.running.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        let _ = stop_maint.send(true);
        let _ = lane_done.send(true);
        let _ = maintenance.await;
        let _ = callbacks.await;
        let _ = tokio::task::spawn_blocking(move || lane.join()).await;
        if let Some(e) = endpoints {
            let _ = e.await;
        }
        let streams = lock(&this.capacity).streams();
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

    async fn quarantine(&self, malformed: Vec<eddy_queue::Malformed>) {
        for m in malformed {
            warn!(stream = %m.stream, entry = %m.entry_id, reason = %m.reason, "quarantining malformed entry");
            if let Err(error) = self.queue.quarantine(&m).await {
                warn!(%error, "quarantine failed; the entry will be reclaimed");
            }
        }
    }

    /// Starts one delivery: it waits for a slot of its stream (the
    /// controller's share), then runs on the global slot it holds.
    async fn dispatch(self: &Arc<Self>, d: Delivery, global: Option<Arc<Semaphore>>) {
        self.hold(&d);
        if d.envelope.reply_to.is_some() {
            self.saw_sync();
        }
        let slot = lock(&self.capacity).permits(&d.stream);
        if let Some((_, held)) = &slot {
            held.fetch_add(1, Ordering::AcqRel);
        }
        self.running.fetch_add(1, Ordering::AcqRel);
        // Somebody waits for a sync invocation. Read here on the reader's
        // runtime (bulk threads, at a lower priority and busy with a burst),
        // it goes to the lane and takes none of the reader's global slots,
        // as one read on the lane's own wake-up does.
        // The other way round, an async invocation read on the lane (its
        // held read, or a wake-up's read of a stream's oldest entry) is
        // bulk work: it runs on the reader's runtime.
        let lane = match (&d.envelope.reply_to, self.lane_rt.get()) {
            (Some(_), Some(lane)) if !on_lane() && self.lane_open.load(Ordering::Acquire) => {
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
                freed: w.clone(),
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
            w.freed.notify_one();
            let left = w.running.fetch_sub(1, Ordering::AcqRel) - 1;
            if left == 0 {
                w.idle.notify_waiters();
            }
        });
        match lane {
            Some(lane) => drop(lane.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// A sync invocation arrived. Until [`NARROW_FOR`] after the last one,
    /// the worker's bulk completions go one flush at a time instead of two
    /// (`Queue::narrow_bulk_completions`): a sync invocation's completion
    /// then finds at most one bulk completion script queued ahead of it in
    /// Redis. The bulk completions were in flight before the sync entry was
    /// even read, so only a narrowing that outlasts one call helps the
    /// next; while sync traffic lasts it costs the bulk some throughput.
    fn saw_sync(self: &Arc<Self>) {
        if !self.config.bulk_yield {
            return;
        }
        let first = lock(&self.sync_seen)
            .replace(tokio::time::Instant::now())
            .is_none();
        if !first {
            return;
        }
        let hold = self.queue.narrow_bulk_completions();
        let w = self.clone();
        self.main.spawn(async move {
            loop {
                let until = {
                    let mut seen = lock(&w.sync_seen);
                    match *seen {
                        Some(at) if at.elapsed() < NARROW_FOR => at + NARROW_FOR,
                        _ => {
                            *seen = None;
                            break;
                        }
                    }
                };
                tokio::time::sleep_until(until).await;
            }
            drop(hold);
        });
    }

    /// The interactive lane: a thread of its own with a single-threaded
    /// runtime and Redis connections of its own, where wake-ups are heard
    /// and the invocations somebody waits for (sync) run from their read to
    /// their completion. It runs until `may_stop` (after the drain), so
    /// that what it started finishes.
    fn lane(
        self: Arc<Self>,
        stop: watch::Receiver<bool>,
        mut may_stop: watch::Receiver<bool>,
    ) -> Result<std::thread::JoinHandle<()>, WorkerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WorkerError::Executor)?;
        std::thread::Builder::new()
            .name("eddy-lane".into())
            .spawn(move || {
                ON_LANE.with(|l| l.set(true));
                rt.block_on(async move {
                    let config = QueueConfig {
                        record_ttl: self.config.record_ttl,
                    };
                    match Queue::connect(&self.config.redis_url, config).await {
                        Ok(q) => {
                            q.start_batching();
                            let _ = self.lane.set(q);
                            let _ = self.lane_rt.set(tokio::runtime::Handle::current());
                            self.lane_open.store(true, Ordering::Release);
                        }
                        Err(error) => {
                            warn!(%error, "connecting the interactive lane; sync invocations share the reader's connections");
                        }
                    }
                    let held = tokio::spawn(self.clone().held_read(stop.clone()));
                    self.clone().listen(stop).await;
                    let _ = held.await;
                    let _ = may_stop.wait_for(|s| *s).await;
                    self.lane_open.store(false, Ordering::Release);
                });
            })
            .map_err(WorkerError::Executor)
    }

    /// The connections for a delivery: the lane's for one somebody waits
    /// for (once the lane is up), the worker's own otherwise.
    fn queue_for(&self, d: &Delivery) -> &Queue {
        match (&d.envelope.reply_to, self.lane.get()) {
            (Some(_), Some(lane)) => lane,
            _ => &self.queue,
        }
    }

    /// Wake-ups and assignment changes, as they are published.
    async fn listen(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let q = self.lane.get().unwrap_or(&self.queue).clone();
        let mut wake = q.replies(keys::WAKE.to_string());
        let mut assign = q.replies(keys::ASSIGN.to_string());
        let mut freed = q.replies(keys::MODULES_FREED.to_string());
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                Some(msg) = wake.recv() => {
                    if let Reply::Done(stream) = msg {
                        match stream.strip_prefix('!') {
                            // A sync invocation: read and run it here.
                            Some(stream) => self.woken(stream.to_string(), true).await,
                            // A cold stream's work is no business of the
                            // lane: read it on the reader's runtime.
                            None => {
                                let w = self.clone();
                                self.main.spawn(async move { w.woken(stream, false).await });
                            }
                        }
                    }
                }
                Some(_) = assign.recv() => self.refresh_assignment().await,
                Some(msg) = freed.recv() => {
                    if let Reply::Done(shas) = msg {
                        self.drop_artifacts(&shas);
                    }
                }
            }
        }
    }

    /// Drops the modules a delete freed (`<tenant> <sha256>...`): the
    /// tenant's loaded versions of them, and their compiled artifacts unless
    /// another tenant's loaded function runs the same bytes (a component
    /// mapped from a removed artifact stays valid; the removal only costs
    /// a compile on a later cold start).
    fn drop_artifacts(&self, msg: &str) {
        let mut words = msg.split(' ');
        let Some(tenant) = words.next().and_then(|t| TenantId::new(t).ok()) else {
            return;
        };
        for sha in words {
            let hex = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                continue;
            }
            self.functions.evict_module(&tenant, sha);
            if !self.functions.uses(sha) && self.runtime.cache().remove(sha) {
                info!(sha256 = sha, "removed the artifact of a deleted module");
            }
        }
    }

    /// A stream got work and may be cold: read it at once, without waiting
    /// for the blocked reader or the controller. An `urgent` wake-up (a sync
    /// invocation: somebody waits) is read at once even where the reader
    /// has the stream: under load the reader's next read may be a round
    /// trip or two away, and it reads whatever stream has work, in turn.
    async fn woken(self: &Arc<Self>, stream: String, urgent: bool) {
        if self.draining.load(Ordering::Acquire) || keys::parse_stream(&stream).is_none() {
            return;
        }
        let permits = {
            let mut cap = lock(&self.capacity);
            let here = cap.permits(&stream).is_some();
            match (urgent, here, cap.controlled()) {
                // Urgent, read here: read it now (and hold a read on the
                // stream from now on).
                (true, true, _) => {
                    let new = lock(&self.interactive)
                        .insert(stream.clone(), Instant::now())
                        .is_none();
                    if !new && lock(&self.held_now).contains(&stream) {
                        // The held read waits on the stream: Redis handed it
                        // the entry with the enqueue (or the reader got it,
                        // and hands it over). Another read would only cost
                        // Redis a command.
                        return;
                    }
                    if new {
                        self.interactive_added.notify_one();
                    }
                }
                // Urgent, but a controller gave the stream to other workers
                // (or to none yet: then the plain wake-up that comes with a
                // cold stream's first invocation is the one to act on).
                (true, false, true) => return,
                // Assigned already: the reader has it.
                (false, true, true) => return,
                _ => {
                    cap.wake(stream.clone());
                    cap.wanted(self.default_concurrency());
                }
            }
            cap.permits(&stream)
        };
        let free = permits.map(|(p, _)| p.available_permits()).unwrap_or(0);
        if free == 0 {
            return;
        }
        // An urgent wake-up is for one invocation: read one (the stream's
        // oldest; with a backlog the sync one waits its turn in it).
        let free = if urgent { 1 } else { free };
        match self
            .lane
            .get()
            .unwrap_or(&self.queue)
            .read_now(&self.consumer, &stream, free, urgent)
            .await
        {
            Ok((deliveries, malformed)) => {
                self.quarantine(malformed).await;
                for d in deliveries {
                    // Wake-ups run beside the reader's global slots (bounded
                    // by the stream's own permits): they are few, and the
                    // point is to start now.
                    self.dispatch(d, None).await;
                }
            }
            Err(error) => debug!(%error, stream, "reading a woken stream"),
        }
    }

    /// The lane's held read: a blocking `XREADGROUP` of its own, kept open
    /// on the streams that took a sync invocation in the last
    /// [`INTERACTIVE_FOR`]. Redis hands a new entry of such a stream to a
    /// blocked reader within the enqueue's own event-loop iteration. So,
    /// under another tenant's burst, a sync invocation reaches the lane
    /// without a second trip through a busy Redis (the wake-up message,
    /// then a read), and without waiting for the bulk threads (the reader,
    /// then the handoff). What it reads is dispatched like any delivery:
    /// a sync one runs on the lane, anything else on the reader's runtime.
    async fn held_read(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(q) = self.lane.get().cloned() else {
            return;
        };
        let mut conn = None;
        loop {
            if *stop.borrow() || self.draining.load(Ordering::Acquire) {
                return;
            }
            // One lock at a time: `woken` takes the capacity's and then
            // this one.
            let recent: Vec<String> = {
                let mut interactive = lock(&self.interactive);
                interactive.retain(|_, at| at.elapsed() < INTERACTIVE_FOR);
                interactive.keys().cloned().collect()
            };
            let streams: Vec<String> = {
                let cap = lock(&self.capacity);
                recent
                    .into_iter()
                    .filter(|s| {
                        cap.permits(s)
                            .is_some_and(|(p, _)| p.available_permits() > 0)
                    })
                    .collect()
            };
            if streams.is_empty() {
                tokio::select! {
                    _ = self.interactive_added.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            if conn.is_none() {
                match q.blocking_connection().await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        debug!(%error, "connecting the lane's held read");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            // Never cancelled midway (see the reader); the short block
            // bounds how long a drain or a new stream waits for it.
            *lock(&self.held_now) = streams.iter().cloned().collect();
            let read = q.read(c, &self.consumer, &streams, 1, 200).await;
            lock(&self.held_now).clear();
            match read {
                Ok((deliveries, malformed)) => {
                    self.quarantine(malformed).await;
                    for d in deliveries {
                        self.meters.lane_held_reads.increment(1);
                        if self.draining.load(Ordering::Acquire) {
                            self.hold(&d);
                            self.give_back(&d).await;
                        } else {
                            self.dispatch(d, None).await;
                        }
                    }
                }
                Err(error) => {
                    debug!(%error, "the lane's held read; reconnecting");
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn refresh_assignment(&self) {
        match self.queue.leader().await {
            Ok(Some(_)) => match self.queue.assignment(&self.consumer).await {
                Ok(a) => lock(&self.capacity).set_assigned(Some(a)),
                Err(error) => debug!(%error, "reading the assignment"),
            },
            Ok(None) => lock(&self.capacity).set_assigned(None),
            Err(error) => debug!(%error, "reading the leader"),
        }
    }

    /// Tells the controller this worker is alive, and what it does.
    async fn heartbeat(&self) {
        let (free, waiting) = self.executor.load();
        metrics::gauge!("eddy_worker_exec_slots_free").set(free as f64);
        metrics::gauge!("eddy_worker_exec_waiting").set(waiting as f64);
        let mut per_stream: std::collections::BTreeMap<String, u32> =
            std::collections::BTreeMap::new();
        for (s, ids) in lock(&self.inflight).iter() {
            if !ids.is_empty() {
                per_stream.insert(s.clone(), ids.len() as u32);
            }
        }
        let info = WorkerInfo {
            id: self.consumer.clone(),
            concurrency: self.config.concurrency as u32,
            in_flight: self.running.load(Ordering::Acquire) as u32,
            streams: per_stream,
            completed: self.completed.load(Ordering::Relaxed),
            draining: self.draining.load(Ordering::Acquire),
            started_at_ms: self.started_at_ms,
            seen_at_ms: eddy_protocol::now_ms(),
            warm: self.functions.len() as u32,
            rss_bytes: rss_bytes(),
        };
        if let Err(error) = self.queue.heartbeat(&info).await {
            debug!(%error, "heartbeat");
        }
    }

    /// Marks streams active (at most once a second each from this worker).
    pub(crate) async fn touch(&self, streams: impl IntoIterator<Item = String>) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut t = lock(&self.touched);
            streams
                .into_iter()
                .filter(|s| match t.get(s) {
                    Some(at) if now.duration_since(*at) < Duration::from_secs(1) => false,
                    _ => {
                        t.insert(s.clone(), now);
                        true
                    }
                })
                .collect()
        };
        if let Err(error) = self.queue.touch(&due).await {
            debug!(%error, "marking streams active");
        }
    }

    fn hold(&self, d: &Delivery) {
        let mut held = lock(&self.inflight);
        // The stream's name is copied only the first time.
        match held.get_mut(&d.stream) {
            Some(ids) => {
                ids.insert(d.entry_id.clone());
            }
            None => {
                held.insert(d.stream.clone(), HashSet::from([d.entry_id.clone()]));
            }
        }
    }

    fn let_go(&self, d: &Delivery) {
        if let Some(set) = lock(&self.inflight).get_mut(&d.stream) {
            set.remove(&d.entry_id);
        }
        let mut due = lock(&self.to_trim);
        if !due.contains(&d.stream) {
            due.insert(d.stream.clone());
        }
    }

    /// Hands a delivery that will not be started back to the group.
    async fn give_back(&self, d: &Delivery) {
        if let Err(error) = self.queue.release(d).await {
            warn!(%error, entry = %d.entry_id, "release failed; the entry will be reclaimed after its lease");
        }
        self.let_go(d);
    }

    /// Runs one delivery to its completion, in the invocation's span (a
    /// child of the step that enqueued it).
    ///
    /// `share` is the delivery's place in its stream (see [`Share`]), given
    /// back as soon as the guest has run; the worker's concurrency slot is
    /// held until the completion is written.
    async fn handle(&self, d: Delivery, share: Share) {
        let env = &d.envelope;
        let span = tracing::info_span!(
            target: trace::TARGET,
            "invocation",
            otel.name = %format_args!("invoke {}", env.function),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
            eddy.tenant = %env.tenant,
            eddy.function = %env.function,
            eddy.version = env.version.unwrap_or(0),
            eddy.invocation_id = %env.id,
            eddy.run_id = %env.run_id,
            eddy.parent_id = env.parent_id.as_deref().unwrap_or(""),
            eddy.depth = env.depth,
            eddy.attempt = env.attempt,
            eddy.delivery = d.deliveries,
            eddy.worker = %self.consumer,
            eddy.queue_wait_ms = tracing::field::Empty,
            eddy.cold_start = tracing::field::Empty,
            eddy.cold_start_ms = tracing::field::Empty,
            eddy.outcome = tracing::field::Empty,
        );
        trace::set_parent(&span, env.traceparent.as_deref());
        let traceparent = trace::traceparent(&span);
        if traceparent.is_some() {
            let dequeued = std::time::SystemTime::now();
            let waited = eddy_protocol::now_ms().saturating_sub(env.enqueued_at_ms);
            span.record("eddy.queue_wait_ms", waited);
            crate::telemetry::queue_wait(&span, env.enqueued_at_ms, dequeued);
        }
        self.handle_traced(&d, traceparent, share)
            .instrument(span)
            .await;
        self.let_go(&d);
    }

    async fn handle_traced(&self, d: &Delivery, traceparent: Option<String>, share: Share) {
        let completion = if d.deliveries > self.config.max_deliveries {
            Some(process::failed(
                process::final_error(
                    eddy_protocol::ErrorClass::Crashed,
                    format!(
                        "delivered {} times without completing: the worker running it crashed or stalled each time",
                        d.deliveries - 1
                    ),
                ),
                true,
                &self.consumer,
            ))
        } else {
            self.execute(d, traceparent.as_deref()).await
        };
        drop(share);
        // None: a transient failure before running. The entry stays pending
        // and comes back through reclaim after its lease.
        let Some(mut c) = completion else { return };
        let _completing = self.completing.clone().acquire_owned().await.ok();
        // Callbacks continue this attempt's trace (or the caller's, when
        // this process does not export).
        c.traceparent = traceparent.or_else(|| d.envelope.traceparent.clone());
        let span = tracing::Span::current();
        span.record("eddy.outcome", c.disposition.as_str());
        match &c.outcome.error {
            Some(e) if !matches!(c.disposition, eddy_queue::Disposition::Succeeded { .. }) => {
                span.record("otel.status_code", "ERROR")
                    .record("otel.status_message", e.message.as_str());
            }
            _ => {
                span.record("otel.status_code", "OK");
            }
        }
        self.complete(d, &c)
            .instrument(tracing::info_span!(target: trace::TARGET, "complete"))
            .await;
        if let eddy_queue::Disposition::Succeeded { follow_ups, .. } = &c.disposition
            && !follow_ups.is_empty()
        {
            let targets: HashSet<String> = follow_ups
                .iter()
                .map(|f| keys::stream(&f.envelope.tenant, &f.envelope.function))
                .collect();
            self.touch(targets).await;
        }
    }

    async fn execute(&self, d: &Delivery, traceparent: Option<&str>) -> Option<Completion> {
        let env = &d.envelope;
        if env
            .deadline_ms
            .is_some_and(|dl| eddy_protocol::now_ms() > dl)
        {
            return Some(process::failed(
                process::final_error(
                    eddy_protocol::ErrorClass::Timeout,
                    "the invocation's deadline passed before it started".into(),
                ),
                false,
                &self.consumer,
            ));
        }
        let load_started = std::time::SystemTime::now();
        let loaded = async {
            let version = self
                .functions
                .resolve(&self.queue, &env.tenant, &env.function, env.version)
                .await?;
            self.functions
                .get(
                    &self.queue,
                    &self.runtime,
                    &env.tenant,
                    &env.function,
                    version,
                )
                .await
        }
        .await;
        match loaded {
            Ok((loaded, load_time)) => {
                // A cold start: the artifact was loaded and pre-instantiated
                // for this invocation. A span of its own when it was one.
                let cold = load_time.is_some();
                let cold_ms = load_time.map(|t| t.as_secs_f64() * 1e3).unwrap_or(0.0);
                let current = tracing::Span::current();
                current
                    .record("eddy.cold_start", cold)
                    .record("eddy.cold_start_ms", cold_ms);
                if cold && traceparent.is_some() {
                    crate::telemetry::past_span(
                        &current,
                        "cold start",
                        load_started,
                        std::time::SystemTime::now(),
                        vec![
                            opentelemetry::KeyValue::new("eddy.cold_start", true),
                            opentelemetry::KeyValue::new("eddy.cold_start_ms", cold_ms),
                        ],
                    );
                }
                let exec = tracing::info_span!(
                    target: trace::TARGET,
                    "execute",
                    eddy.instantiate_us = tracing::field::Empty,
                    eddy.run_us = tracing::field::Empty,
                    eddy.epoch_ticks = tracing::field::Empty,
                    eddy.emits = tracing::field::Empty,
                );
                let c = process::run(
                    &self.runtime,
                    &loaded,
                    d,
                    load_time,
                    &self.consumer,
                    traceparent,
                    &self.executor,
                )
                .instrument(exec.clone())
                .await;
                let t = &c.outcome.timings;
                exec.record("eddy.instantiate_us", t.instantiate_us)
                    .record("eddy.run_us", t.run_us)
                    .record("eddy.epoch_ticks", t.epoch_ticks)
                    .record("eddy.emits", c.outcome.follow_ups.len());
                Some(c)
            }
            Err(failure) => match process::load_failure(failure) {
                Ok(error) => Some(process::failed(error, false, &self.consumer)),
                Err(reason) => {
                    warn!(invocation = %env.id, reason, "could not load the function; leaving it for reclaim");
                    None
                }
            },
        }
    }

    /// Completes, retrying while Redis is away. Gives up only after several
    /// leases: by then the entry has been reclaimed and the other completion
    /// wins the XACK.
    async fn complete(&self, d: &Delivery, c: &Completion) {
        let mut wait = Duration::from_millis(50);
        let give_up = tokio::time::Instant::now() + self.config.lease * 4;
        self.meters.record(d, c);
        loop {
            let started = Instant::now();
            match self.queue_for(d).complete(d, c).await {
                Ok(done) => {
                    self.meters
                        .complete_roundtrip
                        .record(started.elapsed().as_secs_f64());
                    debug!(invocation = %d.envelope.id, status = %done.status, "completed");
                    return;
                }
                Err(error) if error.is_transient() && tokio::time::Instant::now() < give_up => {
                    warn!(%error, invocation = %d.envelope.id, "completion failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    warn!(%error, invocation = %d.envelope.id, "completion failed; the entry will be reclaimed");
                    return;
                }
            }
        }
    }

    /// Refreshes the read set's inputs: the assignment when a controller
    /// leads, else every stream marked active in the last day (a worker
    /// without a controller is for small setups: it reads all of them).
    async fn discover(&self) {
        self.refresh_assignment().await;
        if lock(&self.capacity).controlled() {
            return;
        }
        let since = eddy_protocol::now_ms().saturating_sub(UNCONTROLLED_WINDOW.as_millis() as u64);
        let found = self
            .queue
            .active_streams(since)
            .await
            .map(|v| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>());
        match found {
            Ok(mut streams) => {
                streams.sort();
                // A stream seen for the first time gets its group made sure
                // of (deploy creates it; a lost stream key is re-created for
                // a function that still exists).
                let known = lock(&self.capacity).discovered().to_vec();
                for s in streams.iter().filter(|s| known.binary_search(s).is_err()) {
                    if let Err(error) = self.queue.ensure_group(s).await {
                        debug!(%error, stream = %s, "creating the consumer group");
                    }
                }
                lock(&self.capacity).set_discovered(streams);
            }
            Err(error) => warn!(%error, "discovering streams"),
        }
    }

    /// Background duties: lease heartbeats, reclaiming crashed work, moving
    /// due retries, discovering streams, trimming.
    async fn maintain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(100);
        let lease = self.config.lease;
        let every = |d: Duration| (d.as_millis() / tick.as_millis()).max(1) as u64;
        let (extend_every, reclaim_every) = (every(lease / 3), every(lease / 2));
        let (discover_every, trim_every) = (
            every(Duration::from_secs(1)),
            every(Duration::from_millis(500)),
        );
        let mark_every = every(Duration::from_secs(10));
        // Streams drained here since the last mark, and when (the mark says
        // when the work was done, not when it was sent).
        let mut drained: HashMap<String, u64> = HashMap::new();
        let mut n: u64 = 0;
        let (mut audit_cursor, mut audit_at) = (0, n);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => return,
            }
            n += 1;
            self.meters
                .in_flight
                .set(self.running.load(Ordering::Acquire) as f64);
            if n.is_multiple_of(extend_every) {
                self.extend_leases().await;
            }
            if *stop.borrow() {
                continue;
            }
            if let Err(error) = self.promote_retries().await {
                debug!(%error, "moving due retries");
            }
            if n.is_multiple_of(reclaim_every) {
                self.reclaim().await;
            }
            if n.is_multiple_of(discover_every) {
                self.discover().await;
                self.heartbeat().await;
                // Streams no longer read for a while: release their loaded
                // functions (scale to zero frees the memory).
                let gone = lock(&self.capacity).expire(Duration::from_secs(2));
                for s in gone {
                    if let Some((t, f)) = keys::parse_stream(&s) {
                        self.meters.forget(&t, &f);
                        let n = self.functions.evict(&t, &f);
                        if n > 0 {
                            info!(stream = %s, versions = n, "released (scaled to zero here)");
                        }
                    }
                }
            }
            if n >= audit_at {
                // A fixed budget of tenants a second, whatever their number:
                // a step that saw more (a small set comes back whole) waits
                // longer for the next.
                match self.queue.audit_due(audit_cursor, AUDIT_TENANTS).await {
                    Ok((next, seen)) => {
                        audit_cursor = next;
                        audit_at =
                            n + discover_every * (seen.div_ceil(AUDIT_TENANTS).max(1) as u64);
                    }
                    Err(error) => {
                        debug!(%error, "auditing the due indexes");
                        audit_at = n + discover_every;
                    }
                }
            }
            if n.is_multiple_of(trim_every) {
                // Only streams with deliveries finished here since the last
                // trim: an idle stream costs no round trip.
                let streams = std::mem::take(&mut *lock(&self.to_trim));
                for s in &streams {
                    if let Err(error) = self.queue.trim(s).await {
                        debug!(%error, stream = s, "trimming");
                    }
                }
                let at = eddy_protocol::now_ms();
                drained.extend(streams.into_iter().map(|s| (s, at)));
            }
            if n.is_multiple_of(mark_every) {
                // Streams being drained stay marked active, so that a long
                // backlog stays in the controller's view (and in a worker's
                // without one) however long ago it was enqueued.
                let streams: Vec<(String, u64)> =
                    std::mem::take(&mut drained).into_iter().collect();
                if let Err(error) = self.queue.mark_active(&streams).await {
                    debug!(%error, "marking drained streams active");
                }
            }
        }
    }

    async fn extend_leases(&self) {
        let held: Vec<(String, Vec<String>)> = lock(&self.inflight)
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(s, ids)| (s.clone(), ids.iter().cloned().collect()))
            .collect();
        for (stream, ids) in held {
            if let Err(error) = self.queue.extend(&stream, &self.consumer, &ids).await {
                warn!(%error, stream, "extending leases");
            }
        }
    }

    /// Moves due retries back into their streams, looking only at tenants
    /// the retries' due index says have one due (see `eddy_queue::DueIndex`).
    async fn promote_retries(&self) -> Result<(), eddy_queue::Error> {
        let now = eddy_protocol::now_ms();
        for claim in self.queue.claim_due(DueIndex::Retries, now, 64).await? {
            // An error leaves the claim to its lease: the tenant comes back.
            match self.queue.promote_due(&claim.tenant, now, 256).await {
                Ok((moved, next)) => {
                    self.touch(moved).await;
                    if let Err(error) = self.queue.settle_due(DueIndex::Retries, &claim, next).await
                    {
                        debug!(%error, tenant = %claim.tenant, "settling a retry visit");
                    }
                }
                Err(error) => debug!(%error, tenant = %claim.tenant, "moving due retries"),
            }
        }
        Ok(())
    }

    /// Takes over entries whose lease ran out and runs them here.
    async fn reclaim(self: &Arc<Self>) {
        let min_idle = self.config.lease.as_millis() as u64;
        let streams = lock(&self.capacity).streams();
        for stream in streams {
            match self
                .queue
                .reclaim(&stream, &self.consumer, min_idle, 64)
                .await
            {
                Ok((deliveries, malformed)) => {
                    for m in malformed {
                        let _ = self.queue.quarantine(&m).await;
                    }
                    for d in deliveries {
                        info!(invocation = %d.envelope.id, deliveries = d.deliveries, "reclaimed");
                        // Reclaimed work runs beside the reader's global slots:
                        // it is rare, and it was due long ago.
                        self.dispatch(d, None).await;
                    }
                }
                Err(error) => debug!(%error, stream, "reclaiming"),
            }
        }
    }
}
