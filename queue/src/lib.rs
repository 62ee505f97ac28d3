//! All of Eddy's Redis access: streams, the Lua scripts that make enqueue and
//! completion atomic, the function registry, invocation and run records,
//! retries and dead letters.
//!
//! **Invariant:** this is the only crate that speaks Redis, and it writes only
//! `eddy_protocol` types (or plain counters) into it.
//!
//! Connections: one auto-reconnecting multiplexed connection for short
//! commands, and a separate connection without a response timeout for each
//! blocking reader ([`Queue::blocking_connection`]): a blocking `XREADGROUP`
//! on the shared connection would hit the response timeout and hold up
//! everyone. Either may be to one server or to a Redis Cluster (see
//! `conn.rs`: `redis+cluster://host:port,…`).
#![forbid(unsafe_code)]

mod batch;
mod callbacks;
mod conn;
mod consume;
mod control;
mod due;
mod fields;
mod invocations;
mod records;
mod registry;
mod replies;
mod retries;
mod schedules;
mod scripts;
mod tenants;
mod variables;

use std::time::Duration;

use conn::{Backend, Conn};

pub use batch::Hold;
pub use callbacks::CALLBACK_GROUP;
pub use registry::{ARTIFACT_CHUNK, SharedArtifact, unpack_artifact};
// Defined in protocol (what is written to Redis lives there); re-exported
// because these are what the queue's methods take and return.
pub use conn::{BlockingConn, cluster_url};
pub use consume::{Delivery, Malformed};
pub use control::StreamStats;
pub use due::{Claim, DUE_LEASE_MS, DueIndex, MARK_HORIZON_MS};
pub use eddy_protocol::callback::{Callback, DeadCallback};
pub use eddy_protocol::variables::Resealed;
pub use eddy_protocol::{ApiKey, Backlog, DeadLetter, FunctionVersions, Quota, TenantInfo};
pub use invocations::{Completed, Completion, Disposition, Enqueued, FollowUp};
pub use replies::{Event, Reply};
pub use schedules::Schedule;
pub use tenants::{hash_key, random_hex};
pub use variables::FunctionVariables;

/// Which count quota refused an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// `max_pending`: accepted and unfinished invocations.
    Pending,
    /// `rate_per_sec`: invocations accepted in the current second.
    Rate,
}

impl QuotaKind {
    /// What the refusal says, with the limit: the gateway's answer and a
    /// refused schedule tick's record say the same.
    pub fn describe(self, limit: u64) -> String {
        match self {
            QuotaKind::Pending => {
                format!("the tenant has {limit} invocations pending, its maximum")
            }
            QuotaKind::Rate => {
                format!("the tenant's limit of {limit} invocations per second is used up")
            }
        }
    }
}

/// Errors of the queue.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Something in Redis is not what Eddy wrote there.
    #[error("corrupt data in redis: {0}")]
    Corrupt(String),
    /// An idempotency key reused with another payload (the first
    /// invocation's id).
    #[error("the idempotency key was used with another payload (invocation {0})")]
    IdempotencyMismatch(String),
    /// The function does not exist.
    #[error("function `{0}` not found")]
    NoFunction(String),
    /// A scope (the tenant, or one function) has the most variables it may
    /// have.
    #[error("at most {0} variables per scope")]
    TooManyVariables(usize),
    /// A tenant has the most schedules it may have.
    #[error("at most {0} schedules per tenant")]
    TooManySchedules(usize),
    /// A tenant quota refused the invocation.
    #[error("quota exceeded: {which:?} (limit {limit})")]
    Quota { which: QuotaKind, limit: u64 },
    /// `needed` more bytes (a payload, a module) would take the tenant over
    /// its `max_stored_bytes`: `retry_after_s` until some of what it stores
    /// expires, 0 when nothing will (only modules: delete functions).
    #[error("stored-bytes quota: {stored} of {limit} bytes stored, {needed} more asked for")]
    StorageQuota {
        limit: u64,
        stored: u64,
        retry_after_s: u64,
        needed: u64,
    },
    /// A dead letter that kept no payload (its tenant was at its
    /// `max_stored_bytes` when it failed) cannot be redriven.
    #[error(
        "dead letter {0} kept no payload (the tenant was at its max_stored_bytes when it failed), so it cannot be redriven"
    )]
    PayloadNotKept(String),
    /// The task that sends batched calls to Redis is gone (its runtime is
    /// shutting down).
    #[error("the queue's batching task stopped")]
    Closed,
}

impl Error {
    /// Whether retrying the same call later may succeed (Redis down or
    /// restarting, a dropped connection).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_connection_refusal()
                    || matches!(
                        e.code(),
                        Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN")
                    )
            }
            _ => false,
        }
    }

    /// Whether Redis refused a write because it is at its `maxmemory`:
    /// waiting (for records to expire, or an operator) may help.
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.code() == Some("OOM") || e.to_string().contains("OOM command not allowed")
            }
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long invocation and run records are kept after their last change.
    pub record_ttl: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            record_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// A handle on Eddy's Redis. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
    conn: Conn,
    /// A second shared connection for urgent work (the enqueue and the
    /// completion of sync invocations): Redis serves connections in turn, so
    /// an urgent script does not wait in the socket behind the batches
    /// pipelined on `conn`.
    urgent: Conn,
    config: QueueConfig,
    /// Group commit of enqueues and completions (see `batch.rs`), started
    /// on first use on the caller's runtime and shared by clones.
    batchers: std::sync::Arc<Batchers>,
    /// Callback marks made by this process (wakes its deliverer).
    news: due::SharedNews,
}

struct Batchers {
    enqueue: std::sync::OnceLock<batch::Batcher<invocations::EnqueueJob, Vec<String>>>,
    complete: std::sync::OnceLock<batch::Batcher<invocations::CompleteJob, Vec<String>>>,
    /// Paces the ordinary enqueue flushes (`hold_bulk_enqueues`).
    enqueue_gate: std::sync::Arc<batch::Gate>,
    /// Narrows the ordinary completion flushes to one in flight, without
    /// pauses (`narrow_bulk_completions`).
    complete_gate: std::sync::Arc<batch::Gate>,
}

impl Default for Batchers {
    fn default() -> Self {
        Batchers {
            enqueue: Default::default(),
            complete: Default::default(),
            enqueue_gate: Default::default(),
            complete_gate: std::sync::Arc::new(batch::Gate::new(std::time::Duration::ZERO)),
        }
    }
}

/// How big a group commit may grow. 16 completions of short invocations
/// hold Redis for a fraction of a millisecond (a longer script is a longer
/// wait for every other client); bytes bound large payloads. Two ordinary
/// flushes in flight keep batches large enough that Redis spends least per
/// invocation (same-session A/B, bench/RESULTS.md); urgent ones (sync
/// invocations) go out at once on a connection of their own.
const BATCH: batch::Limits = batch::Limits {
    max_jobs: 16,
    max_bytes: 512 << 10,
    in_flight: 2,
};

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("config", &self.config)
            .field("cluster", &self.backend.is_cluster())
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to `url`: `redis://host:port/db` for one server,
    /// `redis+cluster://host:port,host:port` for a Redis Cluster (see
    /// [`cluster_url`]). Reconnects by itself later.
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Self> {
        let backend = Backend::open(url)?;
        let conn = backend.shared().await?;
        let urgent = backend.shared().await?;
        Ok(Queue {
            backend,
            conn,
            urgent,
            config,
            batchers: std::sync::Arc::default(),
            news: Default::default(),
        })
    }

    /// A clone for a batching task: without the batchers, which would
    /// otherwise keep their own task alive through it.
    fn unbatched(&self) -> Queue {
        Queue {
            batchers: std::sync::Arc::default(),
            ..self.clone()
        }
    }

    /// Starts the batching tasks on the current runtime now, rather than on
    /// the runtime of whoever enqueues or completes first.
    pub fn start_batching(&self) {
        self.enqueuer();
        self.completer();
    }

    /// The enqueue batcher, started on first use.
    fn enqueuer(&self) -> &batch::Batcher<invocations::EnqueueJob, Vec<String>> {
        self.batchers.enqueue.get_or_init(|| {
            let q = self.unbatched();
            batch::Batcher::spawn_gated(
                BATCH,
                invocations::enqueue_size,
                Some(self.batchers.enqueue_gate.clone()),
                move |jobs, urgent| {
                    let q = q.clone();
                    async move { q.enqueue_jobs(jobs, urgent).await }
                },
            )
        })
    }

    /// The completion batcher, started on first use.
    fn completer(&self) -> &batch::Batcher<invocations::CompleteJob, Vec<String>> {
        self.batchers.complete.get_or_init(|| {
            let q = self.unbatched();
            batch::Batcher::spawn_gated(
                BATCH,
                invocations::complete_size,
                Some(self.batchers.complete_gate.clone()),
                move |jobs, urgent| {
                    let q = q.clone();
                    async move { q.complete_jobs(jobs, urgent).await }
                },
            )
        })
    }

    /// Paces this queue's ordinary (async) enqueue flushes until the guard
    /// drops: one in flight, then a pause as long as it took (at most 2 ms),
    /// while urgent ones (sync invocations) go at once. A gateway holds it
    /// while its sync calls wait, so that a burst of async invocations keeps
    /// room in Redis for their round trips and at least half its pace.
    /// Shared by clones.
    pub fn hold_bulk_enqueues(&self) -> Hold {
        self.batchers.enqueue_gate.hold()
    }

    /// The same pacing for bulk enqueues sent without the group commit
    /// ([`Queue::enqueue_batch`], one chunk at a time): after a chunk that
    /// took `took`, while [`Queue::hold_bulk_enqueues`] is held, waits as
    /// long again (at most 2 ms) or until it is released. The time waited.
    pub async fn pace_bulk_enqueue(&self, took: std::time::Duration) -> std::time::Duration {
        self.batchers.enqueue_gate.pace(took).await
    }

    /// Narrows this queue's ordinary (async) completion flushes to one in
    /// flight instead of two until the guard drops, without pauses; urgent
    /// ones (sync invocations) go at once as always. A worker holds it
    /// while sync invocations keep coming, so that their completions find
    /// at most one bulk completion script queued ahead of them in Redis.
    /// Shared by clones.
    pub fn narrow_bulk_completions(&self) -> Hold {
        self.batchers.complete_gate.hold()
    }

    /// Counts in `counter` the completion flushes that went out narrowed
    /// ([`Queue::narrow_bulk_completions`]). Shared by clones; the first
    /// counter set stays.
    pub fn meter_narrowed_completions(&self, counter: metrics::Counter) {
        self.batchers.complete_gate.meter(counter);
    }

    /// Counts in `counter` the group commits of async invocations that
    /// were paced ([`Queue::hold_bulk_enqueues`]): flushes followed by a
    /// pause because a sync call waited. Shared by clones; the first
    /// counter set stays.
    pub fn meter_paced_enqueues(&self, counter: metrics::Counter) {
        self.batchers.enqueue_gate.meter(counter);
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.backend.is_cluster()
    }

    /// A dedicated connection without a response timeout, for one blocking
    /// reader.
    pub async fn blocking_connection(&self) -> Result<BlockingConn> {
        self.backend.blocking().await
    }

    /// The connection for urgent (`true`) or ordinary work.
    pub(crate) fn conn_for(&self, urgent: bool) -> Conn {
        if urgent {
            self.urgent.clone()
        } else {
            self.conn.clone()
        }
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    pub(crate) fn ttl_secs(&self) -> u64 {
        self.config.record_ttl.as_secs().max(1)
    }

    /// Round trip to Redis.
    pub async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Whether Redis is at its `maxmemory` (and so refuses writes under the
    /// `noeviction` policy Eddy needs). False when it cannot tell (no
    /// limit, or a reply it does not know, as a cluster's may be).
    pub async fn out_of_memory(&self) -> Result<bool> {
        let info: redis::Value = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn())
            .await?;
        let text = match info {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            _ => return Ok(false),
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Ok(match (field("used_memory:"), field("maxmemory:")) {
            (Some(used), Some(max)) if max > 0 => used >= max,
            _ => false,
        })
    }
}
