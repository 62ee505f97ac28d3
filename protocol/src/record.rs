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

/// What kind of failure an invocation had: its stable name on the wire
/// (records, dead letters, the `x-eddy-error-class` header) is the
/// kebab-case of the variant. The Lua scripts write some of them
/// (`queue`'s test `every_class_the_scripts_write_is_a_variant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The processor returned an error itself.
    ProcessorError,
    /// The guest trapped (panic, `unreachable`, bad memory access).
    Trap,
    /// Past its wall-clock limit or its deadline.
    Timeout,
    /// Memory past its limit.
    OutOfMemory,
    /// Its wasm stack exhausted.
    StackOverflow,
    /// Output, emits or logs past their limits.
    LimitExceeded,
    /// The module cannot be used as a processor.
    InvalidModule,
    /// Eddy failed, not the processor.
    HostError,
    /// A follow-up past the run's depth or size limit.
    RunLimit,
    /// The function (or an emit's target) does not exist.
    UnknownFunction,
    /// Delivered too many times without completing.
    Crashed,
    /// A tenant quota: follow-ups over `max_pending`, an output over
    /// `max_stored_bytes`.
    Quota,
    /// A stream entry that could not be read (dead letters only).
    Malformed,
    /// A class this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 14] = [
        ErrorClass::ProcessorError,
        ErrorClass::Trap,
        ErrorClass::Timeout,
        ErrorClass::OutOfMemory,
        ErrorClass::StackOverflow,
        ErrorClass::LimitExceeded,
        ErrorClass::InvalidModule,
        ErrorClass::HostError,
        ErrorClass::RunLimit,
        ErrorClass::UnknownFunction,
        ErrorClass::Crashed,
        ErrorClass::Quota,
        ErrorClass::Malformed,
        ErrorClass::Unknown,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::ProcessorError => "processor-error",
            ErrorClass::Trap => "trap",
            ErrorClass::Timeout => "timeout",
            ErrorClass::OutOfMemory => "out-of-memory",
            ErrorClass::StackOverflow => "stack-overflow",
            ErrorClass::LimitExceeded => "limit-exceeded",
            ErrorClass::InvalidModule => "invalid-module",
            ErrorClass::HostError => "host-error",
            ErrorClass::RunLimit => "run-limit",
            ErrorClass::UnknownFunction => "unknown-function",
            ErrorClass::Crashed => "crashed",
            ErrorClass::Quota => "quota",
            ErrorClass::Malformed => "malformed",
            ErrorClass::Unknown => "unknown",
        }
    }

    /// The class of a stable name; `Unknown` for any other.
    pub fn parse(name: &str) -> ErrorClass {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or(ErrorClass::Unknown)
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub class: ErrorClass,
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
    /// Its outbound HTTP requests, in the order they were made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<crate::OutboundCall>,
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

/// One dead-lettered invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The dead-letter stream entry id (what redrive takes).
    pub entry_id: String,
    /// The invocation id (empty for a malformed stream entry).
    pub invocation_id: String,
    pub function: Option<String>,
    /// `failed` (non-retryable error) or `dead` (retries or deliveries
    /// exhausted).
    pub status: InvocationStatus,
    pub class: ErrorClass,
    pub error: String,
    pub attempts: Option<u32>,
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::ErrorClass;

    #[test]
    fn error_classes_are_their_names_on_the_wire() {
        for class in ErrorClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(serde_json::from_str::<ErrorClass>(&json).unwrap(), class);
            assert_eq!(ErrorClass::parse(class.as_str()), class);
        }
        assert_eq!(
            serde_json::from_str::<ErrorClass>("\"from-the-future\"").unwrap(),
            ErrorClass::Unknown
        );
    }
}
