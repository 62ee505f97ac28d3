//! Every way an invocation or a module load can fail, classified.
//!
//! The class, not the message, decides whether the worker retries.

use std::fmt;
use std::time::Duration;

/// Which [`Limits`](crate::Limits) field was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `max_output_bytes`.
    Output,
    /// `max_emits`.
    Emits,
    /// `max_emit_bytes`.
    EmitBytes,
    /// `max_log_bytes` (log calls plus stdout/stderr).
    Logs,
    /// The operator's `completion_bytes`: output, logs and follow-ups together.
    Completion,
    /// `max_outbound_requests`.
    OutboundRequests,
    /// `max_outbound_bytes`.
    OutboundBytes,
}

impl LimitKind {
    /// Stable name, used in error messages and records.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Output => "output-bytes",
            LimitKind::Emits => "emits",
            LimitKind::EmitBytes => "emit-bytes",
            LimitKind::Logs => "log-bytes",
            LimitKind::Completion => "completion-bytes",
            LimitKind::OutboundRequests => "outbound-requests",
            LimitKind::OutboundBytes => "outbound-bytes",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of a failure: what went wrong, independent of the details
/// (the recorded classes; the runtime produces the first eight).
pub use eddy_protocol::ErrorClass;

/// Why a module could not be loaded as a processor.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a usable `eddy:processor` component.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// Eddy failed around the module (cache I/O, engine set-up).
    #[error("host error: {0}")]
    Host(String),
}

/// Why one invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The processor returned an error value.
    #[error("processor error `{code}`: {message}")]
    Processor {
        code: String,
        message: String,
        retryable: bool,
    },
    /// The guest trapped. `guest_message` is the panic message when the guest
    /// panicked (read from its stderr).
    #[error("trap: {trap}{}", guest_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Trap {
        trap: String,
        guest_message: Option<String>,
        backtrace: Option<String>,
    },
    /// The `handle` call ran past the function's timeout.
    #[error("timeout: exceeded the limit of {} ms", limit.as_millis())]
    Timeout { limit: Duration },
    /// The guest tried to grow its memory past the limit.
    #[error(
        "out of memory: the processor tried to grow its memory past the limit of {limit_bytes} bytes (all its memories and tables together)"
    )]
    OutOfMemory { limit_bytes: u64 },
    /// The guest exhausted its wasm stack.
    #[error("stack overflow: the processor exhausted its wasm stack")]
    StackOverflow,
    /// One of the invocation's limits was hit.
    #[error("limit exceeded: {limit}: {detail}")]
    LimitExceeded { limit: LimitKind, detail: String },
    /// The module is not a usable processor.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// Eddy failed around the invocation.
    #[error("host error: {0}")]
    Host(String),
}

impl InvokeError {
    /// The failure's class.
    pub fn class(&self) -> ErrorClass {
        match self {
            InvokeError::Processor { .. } => ErrorClass::ProcessorError,
            InvokeError::Trap { .. } => ErrorClass::Trap,
            InvokeError::Timeout { .. } => ErrorClass::Timeout,
            InvokeError::OutOfMemory { .. } => ErrorClass::OutOfMemory,
            InvokeError::StackOverflow => ErrorClass::StackOverflow,
            InvokeError::LimitExceeded { .. } => ErrorClass::LimitExceeded,
            InvokeError::InvalidModule(_) => ErrorClass::InvalidModule,
            InvokeError::Host(_) => ErrorClass::HostError,
        }
    }

    /// Whether running the same invocation again may succeed.
    ///
    /// Resource limits and invalid modules are deterministic: retrying burns
    /// capacity for the same answer. Traps and timeouts may depend on the
    /// attempt or on the outside world, so they are retried; a processor
    /// error says for itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Processor { retryable, .. } => *retryable,
            InvokeError::Trap { .. } | InvokeError::Timeout { .. } | InvokeError::Host(_) => true,
            InvokeError::OutOfMemory { .. }
            | InvokeError::StackOverflow
            | InvokeError::LimitExceeded { .. }
            | InvokeError::InvalidModule(_) => false,
        }
    }
}

impl From<LoadError> for InvokeError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::InvalidModule(m) => InvokeError::InvalidModule(m),
            LoadError::Host(m) => InvokeError::Host(m),
        }
    }
}
