//! Function specs: one immutable version per deploy, plus its configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::{FunctionName, TenantId};

/// How a function runs. Every field has a default, so a deploy may set any
/// subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionConfig {
    /// Wall-clock limit of one invocation, in ms.
    pub timeout_ms: u64,
    /// Memory limit, in MiB.
    pub memory_mb: u64,
    /// Retries after the first attempt for retryable failures.
    pub max_retries: u32,
    /// First retry delay, in ms; doubled per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay, in ms.
    pub backoff_max_ms: u64,
    /// Most invocations of this function running at once.
    pub max_concurrency: u32,
    /// Idle time after which warm capacity is released, in ms.
    pub idle_timeout_ms: u64,
    /// Output size limit, in bytes.
    pub max_output_bytes: u64,
    /// Follow-ups one invocation may emit.
    pub max_emits: u32,
    /// Total follow-up payload bytes of one invocation.
    pub max_emit_bytes: u64,
    /// Captured log bytes of one invocation.
    pub max_log_bytes: u64,
    // The outbound settings are left out of the JSON at their defaults, so
    // that workers of the previous release (which refuse unknown fields)
    // still read the specs of functions that do not use them.
    /// Requests one invocation may make through `wasi:http`.
    #[serde(skip_serializing_if = "is_default_requests")]
    pub max_outbound_requests: u32,
    /// Request and response body bytes of one invocation's outbound
    /// requests together.
    #[serde(skip_serializing_if = "is_default_bytes")]
    pub max_outbound_bytes: u64,
    /// Origins the processor may call (see [`crate::outbound`]); none by
    /// default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Limits of runs rooted at this function.
    pub run: RunLimits,
    /// Values handed to the processor as `invocation.config`.
    pub values: BTreeMap<String, String>,
}

const DEFAULT_OUTBOUND_REQUESTS: u32 = 100;
const DEFAULT_OUTBOUND_BYTES: u64 = 16 << 20;

fn is_default_requests(n: &u32) -> bool {
    *n == DEFAULT_OUTBOUND_REQUESTS
}

fn is_default_bytes(n: &u64) -> bool {
    *n == DEFAULT_OUTBOUND_BYTES
}

impl Default for FunctionConfig {
    fn default() -> Self {
        FunctionConfig {
            timeout_ms: 10_000,
            memory_mb: 64,
            max_retries: 3,
            backoff_base_ms: 200,
            backoff_max_ms: 60_000,
            max_concurrency: 100,
            idle_timeout_ms: 60_000,
            max_output_bytes: 4 << 20,
            max_emits: 1_000,
            max_emit_bytes: 1 << 20,
            max_log_bytes: 64 << 10,
            max_outbound_requests: DEFAULT_OUTBOUND_REQUESTS,
            max_outbound_bytes: DEFAULT_OUTBOUND_BYTES,
            allowed_hosts: Vec::new(),
            run: RunLimits::default(),
            values: BTreeMap::new(),
        }
    }
}

impl FunctionConfig {
    /// Checks what the types do not: every `allowed_hosts` entry parses.
    pub fn validate(&self) -> Result<(), String> {
        crate::outbound::AllowedHosts::parse(&self.allowed_hosts)
            .map(|_| ())
            .map_err(|e| format!("allowed_hosts: {e}"))
    }
}

/// Guards of a run (the tree of work rooted at one client invocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunLimits {
    /// Deepest follow-up allowed (the root has depth 0).
    pub max_depth: u32,
    /// Most invocations in one run, root included.
    pub max_invocations: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_depth: 32,
            max_invocations: 1_000_000,
        }
    }
}

/// One deployed version of a function. Immutable once written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub tenant: TenantId,
    pub name: FunctionName,
    /// 1 for the first deploy, then +1 per deploy.
    pub version: u32,
    /// sha256 of the module bytes (the module's content address).
    pub sha256: String,
    pub module_bytes: u64,
    pub config: FunctionConfig,
    pub created_at_ms: u64,
}

/// A function with all its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionVersions {
    pub current: Option<u32>,
    /// Oldest first.
    pub versions: Vec<FunctionSpec>,
}

/// Backlog of a function's stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Entries not yet delivered to any worker.
    pub lag: u64,
    /// Entries delivered and not yet acknowledged (running).
    pub pending: u64,
}

/// Merges `patch` into `base`: objects key by key, recursively; anything
/// else replaces. How a deploy's `X-Eddy-Config` applies to the current
/// config (and how `eddy deploy` predicts what a deploy would change).
pub fn merge_json(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge_json(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_config_takes_defaults_and_unknown_fields_are_refused() {
        let c: FunctionConfig = serde_json::from_str(r#"{"timeout_ms": 5}"#).unwrap();
        assert_eq!(c.timeout_ms, 5);
        assert_eq!(c.memory_mb, 64);
        let e = serde_json::from_str::<FunctionConfig>(r#"{"timeout": 5}"#).unwrap_err();
        assert!(e.to_string().starts_with("unknown field `timeout`"), "{e}");
        // Settings a previous release does not know stay out at their
        // defaults, and come back from their absence.
        let json = serde_json::to_string(&FunctionConfig::default()).unwrap();
        assert!(
            !json.contains("outbound") && !json.contains("allowed_hosts"),
            "{json}"
        );
        let back: FunctionConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, FunctionConfig::default());
    }
}
