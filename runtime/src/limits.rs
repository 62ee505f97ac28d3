//! Per-function resource limits.

use std::time::Duration;

/// What one invocation may use. Each limit, when hit, ends the invocation with
/// a classified [`InvokeError`](crate::InvokeError) that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory the instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time for the `handle` call (instantiation excluded).
    pub timeout: Duration,
    /// Size of the output payload, in bytes.
    pub max_output_bytes: usize,
    /// Number of follow-ups one invocation may emit.
    pub max_emits: u32,
    /// Total payload bytes over all follow-ups of one invocation.
    pub max_emit_bytes: usize,
    /// Captured log bytes: `log` calls plus stdout and stderr.
    pub max_log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_output_bytes: 4 << 20,
            max_emits: 1_000,
            max_emit_bytes: 4 << 20,
            max_log_bytes: 64 << 10,
        }
    }
}
