//! What workers and the controller tell each other through Redis.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A worker whose last heartbeat is older than this is gone: the controller
/// moves its assignments and the dashboard shows it stale. Workers beat every
/// second.
pub const WORKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A worker's heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    /// Invocations it runs at once at most.
    pub concurrency: u32,
    pub in_flight: u32,
    /// In flight per stream.
    #[serde(default)]
    pub streams: BTreeMap<String, u32>,
    /// Invocations completed since start.
    pub completed: u64,
    /// Draining: takes no new work.
    pub draining: bool,
    pub started_at_ms: u64,
    pub seen_at_ms: u64,
    /// Functions loaded (warm) in this worker.
    #[serde(default)]
    pub warm: u32,
    /// Resident memory, bytes.
    #[serde(default)]
    pub rss_bytes: u64,
}

impl WorkerInfo {
    /// Whether its last heartbeat, at `now_ms`, is older than `timeout`
    /// (normally [`WORKER_TIMEOUT`]).
    pub fn is_stale(&self, now_ms: u64, timeout: std::time::Duration) -> bool {
        now_ms.saturating_sub(self.seen_at_ms) > timeout.as_millis() as u64
    }
}

/// Streams assigned to one worker, with the concurrency for each.
pub type Assignment = BTreeMap<String, u32>;

/// The controller's decision for one (tenant, function).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDecision {
    pub stream: String,
    pub tenant: String,
    pub function: String,
    /// Entries not yet delivered.
    pub lag: u64,
    /// Delivered, not acknowledged.
    pub pending: u64,
    /// Arrivals per second (smoothed).
    pub arrival_rate: f64,
    /// Mean service time, ms (smoothed).
    pub service_ms: f64,
    /// Warm concurrency decided.
    pub concurrency: u32,
    /// Workers holding it.
    pub workers: Vec<String>,
    /// Ms since the last activity.
    pub idle_ms: u64,
    /// Ms until it scales to zero if nothing arrives (0 when it is at zero
    /// or has backlog).
    pub zero_in_ms: u64,
    /// Why the concurrency is what it is.
    pub reason: String,
}

/// Everything the controller decided in one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControllerState {
    pub leader: String,
    pub at_ms: u64,
    pub functions: Vec<FunctionDecision>,
    pub workers: Vec<WorkerInfo>,
    /// Worker processes the load needs.
    pub desired_replicas: u32,
    /// Live workers now.
    pub current_replicas: u32,
}
