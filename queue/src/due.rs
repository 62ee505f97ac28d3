//! The due indexes: which tenants have invocation retries or callbacks
//! waiting, and when to look at each (`eddy:due:retries`,
//! `eddy:due:callbacks`). A worker asks an index only for the members that
//! are due, so a tenant with nothing waiting costs no command at all: idle
//! tenants are free, however many there are.
//!
//! The protocol, safe without a transaction across keys (on a cluster the
//! indexes and a tenant's keys live on different slots):
//! - a writer writes its work first (the completion script adds a retry or a
//!   callback), then marks the tenant with `ZADD LT`, at most a second ahead
//!   ([`MARK_HORIZON_MS`]);
//! - a visitor claims due members with a lease ([`Queue::claim_due`]: their
//!   score moves to the lease's end, so a dead visitor's tenant comes back),
//!   does the tenant's work, then settles ([`Queue::settle_due`]): the next
//!   time to look, or removal, but only if nobody marked the tenant since
//!   the claim; a mark is below any lease with more than the horizon left,
//!   so the lower one wins, and a settle that comes later than that keeps
//!   the tenant for another look: work written after the visitor looked is
//!   never dropped;
//! - a crash between a write and its mark leaves work unmarked: an audit
//!   walks the tenants at a fixed budget per second ([`Queue::audit_due`])
//!   and marks what it finds, so such work is late, never lost. Its cost is
//!   constant per worker; a full pass takes tenants ÷ budget seconds.

use std::sync::Arc;

use eddy_protocol::{TenantId, keys};

use crate::scripts::{CALLBACK_NEXT, DUE_AUDIT, DUE_CLAIM, DUE_SETTLE};
use crate::{CALLBACK_GROUP, Queue, Result};

/// A mark is at most this far ahead of its writer's clock, so that it is
/// always below the end of any visitor's lease (see the module doc).
pub const MARK_HORIZON_MS: u64 = 1_000;

/// How long a claimed tenant is the claimer's: a visitor that dies leaves it
/// to be looked at again after this.
pub const DUE_LEASE_MS: u64 = 30_000;

/// One of the two due indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueIndex {
    /// Tenants with invocations waiting for a retry (`keys::delayed`).
    Retries,
    /// Tenants with callbacks to deliver, reclaim or retry.
    Callbacks,
}

impl DueIndex {
    fn key(self) -> &'static str {
        match self {
            DueIndex::Retries => keys::DUE_RETRIES,
            DueIndex::Callbacks => keys::DUE_CALLBACKS,
        }
    }
}

/// A tenant claimed from a due index, until `lease_end_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub tenant: TenantId,
    pub lease_end_ms: u64,
}

/// Wakes this process's callback deliverer when one of its completions
/// queued a callback (other processes' deliverers see the mark within their
/// poll).
#[derive(Debug, Default)]
pub(crate) struct News(tokio::sync::Notify);

fn score(s: &str) -> Option<u64> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v as u64)
}

impl Queue {
    /// Marks `tenant` in `index` as having work at `at_ms` (or sooner if it
    /// already had). Called after the work is written.
    pub async fn mark_due(&self, index: DueIndex, tenant: &TenantId, at_ms: u64) -> Result<()> {
        let now = eddy_protocol::now_ms();
        let at = at_ms.min(now + MARK_HORIZON_MS);
        let _: i64 = redis::cmd("ZADD")
            .arg(index.key())
            .arg("LT")
            .arg(at)
            .arg(tenant.as_str())
            .query_async(&mut self.conn())
            .await?;
        if index == DueIndex::Callbacks && at <= now {
            self.news.0.notify_one();
        }
        Ok(())
    }

    /// Waits until this process marks a tenant's callbacks.
    pub async fn callback_news(&self) {
        self.news.0.notified().await
    }

    /// Claims up to `limit` tenants of `index` that are due by `now_ms`.
    pub async fn claim_due(
        &self,
        index: DueIndex,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Claim>> {
        let lease_end_ms = now_ms + DUE_LEASE_MS;
        let members: Vec<String> = DUE_CLAIM
            .key(index.key())
            .arg(now_ms)
            .arg(lease_end_ms)
            .arg(limit.max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|m| TenantId::new(m).ok())
            .map(|tenant| Claim {
                tenant,
                lease_end_ms,
            })
            .collect())
    }

    /// Ends a visit: look again at `next_ms`, or never (`None`) unless a
    /// writer marked the tenant meanwhile.
    pub async fn settle_due(
        &self,
        index: DueIndex,
        claim: &Claim,
        next_ms: Option<u64>,
    ) -> Result<()> {
        let _: i64 = DUE_SETTLE
            .key(index.key())
            .arg(claim.tenant.as_str())
            .arg(claim.lease_end_ms)
            .arg(next_ms.map(|n| n.to_string()).unwrap_or_default())
            .arg(eddy_protocol::now_ms())
            .arg(MARK_HORIZON_MS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// One step of the audit: looks at up to about `count` tenants from
    /// `cursor` (0 starts a pass) and marks whatever work it finds in the
    /// due indexes. Returns the cursor of the next step (0: the pass ended)
    /// and how many tenants it looked at (a small set comes back whole,
    /// whatever `count` asks: the caller paces its steps by this).
    pub async fn audit_due(&self, cursor: u64, count: usize) -> Result<(u64, usize)> {
        let (next, names): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(keys::TENANTS)
            .arg(cursor)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        let now = eddy_protocol::now_ms();
        let seen = names.len();
        for tenant in names.into_iter().filter_map(|n| TenantId::new(n).ok()) {
            let (retry, callbacks): (String, String) = DUE_AUDIT
                .key(keys::delayed(&tenant))
                .key(keys::callback_retries(&tenant))
                .key(keys::callbacks(&tenant))
                .arg(now)
                .invoke_async(&mut self.conn())
                .await?;
            if let Some(at) = score(&retry) {
                self.mark_due(DueIndex::Retries, &tenant, at).await?;
            }
            if let Some(at) = score(&callbacks) {
                self.mark_due(DueIndex::Callbacks, &tenant, at).await?;
            }
        }
        Ok((next, seen))
    }

    /// After a visit to `tenant`'s callbacks: trims what every deliverer is
    /// done with and returns when to look next (`None`: nothing waits).
    pub async fn callbacks_next(
        &self,
        tenant: &TenantId,
        now_ms: u64,
        reclaim_idle_ms: u64,
    ) -> Result<Option<u64>> {
        let next: String = CALLBACK_NEXT
            .key(keys::callbacks(tenant))
            .key(keys::callback_retries(tenant))
            .arg(CALLBACK_GROUP)
            .arg(now_ms)
            .arg(reclaim_idle_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(score(&next))
    }
}

/// Shared by a queue's clones.
pub(crate) type SharedNews = Arc<News>;

#[cfg(test)]
mod tests {
    use super::score;

    #[test]
    fn scores_as_redis_formats_them() {
        assert_eq!(score("1733500000000"), Some(1_733_500_000_000));
        assert_eq!(score("1.7335e12"), Some(1_733_500_000_000));
        assert_eq!(score(""), None);
        assert_eq!(score("-1"), None);
        assert_eq!(score("inf"), None);
    }
}
