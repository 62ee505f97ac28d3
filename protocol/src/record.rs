//! Invocation and run records: what a client reads back.

use serde::{Deserialize, Serialize};

/// Where an invocation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationStatus {
    /// Accepted, waiting in its stream (or running).
    Queued,
    /// Failed with a retryable error; waiting for its next attempt.
    Retrying,
    /// Finished with an output.
    Succeeded,
    /// Finished with a non-retryable error (also dead-lettered).
    Failed,
    /// Retries or deliveries exhausted (dead-lettered).
    Dead,
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Queued => "queued",
            InvocationStatus::Retrying => "retrying",
            InvocationStatus::Succeeded => "succeeded",
            InvocationStatus::Failed => "failed",
            InvocationStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => InvocationStatus::Queued,
            "retrying" => InvocationStatus::Retrying,
            "succeeded" => InvocationStatus::Succeeded,
            "failed" => InvocationStatus::Failed,
            "dead" => InvocationStatus::Dead,
            _ => return None,
        })
    }

    /// Whether the invocation has ended for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            InvocationStatus::Succeeded | InvocationStatus::Failed | InvocationStatus::Dead
        )
    }
}

/// A classified failure, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// `processor-error`, `trap`, `timeout`, `out-of-memory`,
    /// `stack-overflow`, `limit-exceeded`, `invalid-module`, `host-error`,
    /// `run-limit`, `unknown-function`, `crashed`.
    pub class: String,
    pub message: String,
    pub retryable: bool,
    /// The processor's own error code, for `processor-error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Microseconds spent per phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimings {
    /// From acceptance (or retry due time) to the start of execution.
    pub queue_wait_us: u64,
    /// Waiting for an execution slot on the worker (tenants take turns;
    /// see the worker's fair gate), after the queue.
    #[serde(default)]
    pub slot_wait_us: u64,
    /// Loading the artifact, when it was not warm.
    pub load_us: u64,
    pub instantiate_us: u64,
    pub run_us: u64,
    /// Whether the function had to be loaded for this invocation.
    pub cold: bool,
    pub epoch_ticks: u64,
}

/// One log line of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

/// The outcome part of an invocation record, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default)]
    pub timings: PhaseTimings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogEntry>,
    /// The logs were not kept: the tenant was at its `max_stored_bytes`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs_dropped: bool,
    /// Ids of the follow-ups this invocation emitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_ups: Vec<String>,
    /// The worker that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// An invocation as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub id: String,
    pub tenant: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub status: InvocationStatus,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub depth: u32,
    pub attempt: u32,
    /// How many times a completion was recorded; 1 for a finished
    /// invocation, whatever crashed along the way.
    pub completions: u32,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The output payload (`succeeded` only).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "bytes_opt")]
    pub output: Option<Vec<u8>>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Nothing outstanding and every invocation succeeded.
    Succeeded,
    /// Nothing outstanding, at least one invocation failed or died.
    Failed,
}

impl RunStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            _ => return None,
        })
    }
}

/// A run: the tree of invocations rooted at one client invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub tenant: String,
    pub function: String,
    pub status: RunStatus,
    /// Invocations accepted into the run, root included.
    pub total: u64,
    /// Accepted and not yet ended; the run completes when this reaches 0.
    pub outstanding: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    pub max_depth: u32,
    pub max_invocations: u64,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at_ms: Option<u64>,
    /// The first guard error of the run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Output bytes as a UTF-8 string when they are text, else base64-free
/// byte arrays would bloat JSON: text is what processors return in practice,
/// and binary outputs are kept as an array of numbers.
mod bytes_opt {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(b) => match std::str::from_utf8(b) {
                Ok(t) => Repr::Text(t.to_string()).serialize(s),
                Err(_) => Repr::Bytes(b.clone()).serialize(s),
            },
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Repr>::deserialize(d)?.map(|r| match r {
            Repr::Text(t) => t.into_bytes(),
            Repr::Bytes(b) => b,
        }))
    }
}
