//! Tenants as they are stored and shown: quotas and API keys.

use serde::{Deserialize, Serialize};

use crate::names::TenantId;

/// Per-tenant limits. 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    /// Accepted, unfinished invocations (client invocations are refused past it).
    pub max_pending: u64,
    /// Invocations of the tenant running at once (the controller's cap).
    pub max_concurrency: u32,
    /// Client invocations accepted per second.
    pub rate_per_sec: u64,
    /// Bytes the tenant keeps in Redis: its modules, and what its
    /// invocations wrote within the record TTL (outputs, outcomes, retry
    /// payloads, dead letters). At it, invocations and new modules are
    /// refused and outputs that do not fit fail their invocation.
    pub max_stored_bytes: u64,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub id: TenantId,
    pub created_at_ms: u64,
    pub quota: Quota,
    /// Accepted, unfinished invocations now.
    pub pending: u64,
    /// Bytes stored now, as `max_stored_bytes` counts them (an upper bound:
    /// records written within the TTL may have been forgotten sooner).
    pub stored_bytes: u64,
}

/// An API key, without its secret part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant: TenantId,
    pub created_at_ms: u64,
    pub revoked: bool,
}
