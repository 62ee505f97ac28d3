//! The invocation envelope: what travels through a stream entry.
//!
//! A stream entry has two fields: `e`, this envelope as JSON, and `p`, the
//! payload as raw bytes (no base64 on the hot path).

use serde::{Deserialize, Serialize};

use crate::names::{FunctionName, TenantId};

/// Stream entry field holding the envelope JSON.
pub const FIELD_ENVELOPE: &str = "e";
/// Stream entry field holding the payload bytes.
pub const FIELD_PAYLOAD: &str = "p";

/// One invocation, minus its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUIDv7, stable across retries.
    pub id: String,
    pub tenant: TenantId,
    pub function: FunctionName,
    /// Pinned function version; `None` runs the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub content_type: String,
    /// Where the result is POSTed when the invocation ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The run: the root invocation's id.
    pub run_id: String,
    /// The invocation that emitted this one; `None` for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// 0 for a root, parent depth + 1 for a follow-up.
    pub depth: u32,
    /// 1 on the first delivery; +1 per retry.
    pub attempt: u32,
    /// Give up (fail as timed out) when not started by then, ms since epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// W3C trace context of the request that caused this invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When the invocation was first accepted, ms since epoch.
    pub enqueued_at_ms: u64,
    /// Channel of the gateway waiting for this invocation's result (sync
    /// invoke): the completion publishes the id there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Set on a root whose run has no record of its own yet (the root's
    /// record stands for it until it fans out): the completion then knows
    /// without asking Redis that the run is this root alone, and where the
    /// run's callback goes. Absent (an older gateway, or a run whose record
    /// was written at enqueue), the completion looks both up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_run: Option<LazyRun>,
}

/// What the completion of a root needs to know about its run while the run
/// has no record (see [`Envelope::lazy_run`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyRun {
    /// The run's callback URL, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl Envelope {
    /// A root invocation: it starts its own run.
    pub fn root(tenant: TenantId, function: FunctionName, content_type: String) -> Self {
        let id = crate::new_id();
        Envelope {
            run_id: id.clone(),
            id,
            tenant,
            function,
            version: None,
            content_type,
            callback_url: None,
            parent_id: None,
            depth: 0,
            attempt: 1,
            deadline_ms: None,
            traceparent: None,
            idempotency_key: None,
            enqueued_at_ms: crate::now_ms(),
            reply_to: None,
            lazy_run: None,
        }
    }

    /// A follow-up emitted by `self`: same tenant and run, one level deeper.
    pub fn follow_up(&self, function: FunctionName, content_type: String) -> Self {
        Envelope {
            id: crate::new_id(),
            tenant: self.tenant.clone(),
            function,
            version: None,
            content_type,
            callback_url: None,
            run_id: self.run_id.clone(),
            parent_id: Some(self.id.clone()),
            depth: self.depth + 1,
            attempt: 1,
            deadline_ms: None,
            traceparent: self.traceparent.clone(),
            idempotency_key: None,
            enqueued_at_ms: crate::now_ms(),
            reply_to: None,
            lazy_run: None,
        }
    }

    /// Whether this invocation started its run.
    pub fn is_root(&self) -> bool {
        self.parent_id.is_none()
    }

    /// Whether somebody waits for this invocation (a sync invoke): its
    /// enqueue, execution and completion go ahead of bulk work.
    pub fn is_interactive(&self) -> bool {
        self.reply_to.is_some()
    }
}
