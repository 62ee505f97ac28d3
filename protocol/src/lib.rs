//! Eddy's wire types: everything that is written to Redis or crosses a role
//! boundary is defined here, once, with serde and without I/O.
//!
//! - [`names`]: validated tenant and function names.
//! - [`envelope`]: the invocation as it travels through a stream.
//! - [`function`]: function specs, versions and their configuration.
//! - [`record`]: invocation records, results and run records.
//! - [`keys`]: every Redis key name.
#![forbid(unsafe_code)]

pub mod callback;
pub mod control;
pub mod envelope;
pub mod function;
pub mod keys;
pub mod names;
pub mod record;
pub mod trace;

pub use envelope::Envelope;
pub use function::{FunctionConfig, FunctionSpec, RunLimits};
pub use names::{FunctionName, NameError, TenantId};
pub use record::{
    ErrorInfo, InvocationRecord, InvocationStatus, LogEntry, Outcome, PhaseTimings, RunRecord,
    RunStatus,
};

/// Renders the process's metrics in the Prometheus text format. The binary
/// installs the recorder and hands this to every role's HTTP server.
pub type MetricsRender = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// A new invocation id: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
