//! Per-function resource limits.

use std::time::Duration;

use crate::outbound::OutboundLimits;

/// What one invocation may use. Each limit, when hit, ends the invocation with
/// a classified [`InvokeError`](crate::InvokeError) that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Every linear memory and table of the instance together, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time for the `handle` call (instantiation excluded).
    pub timeout: Duration,
    /// Size of the output payload, in bytes.
    pub max_output_bytes: usize,
    /// Number of follow-ups one invocation may emit.
    pub max_emits: u32,
    /// Total payload bytes over all follow-ups of one invocation.
    pub max_emit_bytes: usize,
    /// Captured log bytes: `log` calls plus stdout and stderr, each line
    /// also costing [`LOG_LINE_COST`] bytes.
    pub max_log_bytes: usize,
    /// Output, logs and follow-ups together, as the completion will carry
    /// them (see [`Report::completion_bytes`](crate::Report::completion_bytes)).
    pub max_completion_bytes: usize,
    /// Outbound HTTP: allowed origins, requests and body bytes.
    pub outbound: OutboundLimits,
}

/// What every log line costs on top of its text: an empty line is not free
/// (it takes a record entry), so a flood of them ends at the limit too.
pub const LOG_LINE_COST: usize = 32;

/// What every follow-up costs on top of its payload, function name and
/// content type: its envelope and record in Redis.
pub const EMIT_COST: usize = 256;

/// The largest component shape the operator admits. The runtime refuses a
/// bigger component when it loads it, and sizes its instance pool so that
/// `max_instances` components of this shape fit at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Core module instances one component may create.
    pub core_instances: u32,
    /// Linear memories of one component, all its modules together.
    pub memories: u32,
    /// Tables of one component, all its modules together.
    pub tables: u32,
    /// Elements one table may hold.
    pub table_elements: u32,
}

impl Default for ComponentLimits {
    fn default() -> Self {
        ComponentLimits {
            core_instances: 50,
            memories: 4,
            tables: 16,
            table_elements: 20_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_output_bytes: 4 << 20,
            max_emits: 1_000,
            max_emit_bytes: 1 << 20,
            max_log_bytes: 64 << 10,
            max_completion_bytes: 6 << 20,
            outbound: OutboundLimits {
                allowed_hosts: Default::default(),
                max_requests: 100,
                max_bytes: 16 << 20,
            },
        }
    }
}
