//! Admission to the instance pool and the worker's guest memory, shared
//! fairly by tenant.
//!
//! The pooling allocator has a fixed number of component instances, and
//! room in its memory, table, core-instance and stack pools for that many
//! components of the largest shape the operator allows
//! ([`ComponentLimits`](crate::ComponentLimits)). So the pool cannot run out
//! of slots while no more than `capacity` instances live, whatever the
//! components look like. An instance also reserves its invocation's memory
//! limit from the worker's guest memory budget, so what all live guests may
//! touch together stays within it. [`Pool::admit`] keeps to both, and no
//! tenant may hold more than half of either: past its share a tenant's own
//! invocations wait for one of its instances to end, never another
//! tenant's.
//!
//! Admission happens before an invocation takes an execution slot or
//! instantiates anything, so a waiting invocation holds neither CPU nor
//! memory.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    instances: u32,
    bytes: u64,
}

#[derive(Debug, Default)]
struct State {
    live: Held,
    per_tenant: HashMap<String, Held>,
}

#[derive(Debug)]
struct Inner {
    capacity: Held,
    share: Held,
    state: Mutex<State>,
    released: Notify,
}

/// The instance pool's admission gate. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool(Arc<Inner>);

/// One admitted instance and its memory reservation; returned to the pool
/// when dropped.
#[derive(Debug)]
pub struct Admission {
    pool: Pool,
    tenant: String,
    bytes: u64,
}

impl Admission {
    /// The memory reserved, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pool.release(&self.tenant, self.bytes);
    }
}

impl Pool {
    /// A pool of `capacity` instances (at least 2) and `memory_bytes` of
    /// guest memory; each tenant may hold half of each.
    pub fn new(capacity: u32, memory_bytes: u64) -> Self {
        let capacity = Held {
            instances: capacity.max(2),
            bytes: memory_bytes.max(2),
        };
        Pool(Arc::new(Inner {
            capacity,
            share: Held {
                instances: capacity.instances / 2,
                bytes: capacity.bytes / 2,
            },
            state: Mutex::new(State::default()),
            released: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock()
    }

    /// Instances in the pool, and bytes of guest memory.
    pub fn capacity(&self) -> (u32, u64) {
        (self.0.capacity.instances, self.0.capacity.bytes)
    }

    /// Most instances, and bytes, one tenant may hold at once.
    pub fn share(&self) -> (u32, u64) {
        (self.0.share.instances, self.0.share.bytes)
    }

    /// Instances alive now, and those of `tenant`.
    pub fn live(&self, tenant: &str) -> (u32, u32) {
        let s = self.lock();
        let mine = s.per_tenant.get(tenant).copied().unwrap_or_default();
        (s.live.instances, mine.instances)
    }

    /// Guest memory reserved now, and by `tenant`, in bytes.
    pub fn reserved(&self, tenant: &str) -> (u64, u64) {
        let s = self.lock();
        let mine = s.per_tenant.get(tenant).copied().unwrap_or_default();
        (s.live.bytes, mine.bytes)
    }

    /// An instance with `bytes` of memory for `tenant` now, if the pool,
    /// the budget and the tenant's share have room. A reservation above the
    /// tenant's share is cut to it, so that it can be admitted at all.
    pub fn try_admit(&self, tenant: &str, bytes: u64) -> Option<Admission> {
        let (cap, share) = (self.0.capacity, self.0.share);
        let bytes = bytes.min(share.bytes);
        let mut s = self.lock();
        let mine = s.per_tenant.get(tenant).copied().unwrap_or_default();
        if s.live.instances >= cap.instances
            || s.live.bytes.saturating_add(bytes) > cap.bytes
            || mine.instances >= share.instances
            || mine.bytes.saturating_add(bytes) > share.bytes
        {
            return None;
        }
        s.live.instances += 1;
        s.live.bytes += bytes;
        let entry = match s.per_tenant.get_mut(tenant) {
            Some(e) => e,
            None => s.per_tenant.entry(tenant.to_string()).or_default(),
        };
        entry.instances += 1;
        entry.bytes += bytes;
        Some(Admission {
            pool: self.clone(),
            tenant: tenant.to_string(),
            bytes,
        })
    }

    /// Waits until `tenant` may have an instance with `bytes` of memory.
    pub async fn admit(&self, tenant: &str, bytes: u64) -> Admission {
        loop {
            let released = self.0.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            released.as_mut().enable();
            if let Some(a) = self.try_admit(tenant, bytes) {
                return a;
            }
            released.await;
        }
    }

    fn release(&self, tenant: &str, bytes: u64) {
        {
            let mut s = self.lock();
            s.live.instances = s.live.instances.saturating_sub(1);
            s.live.bytes = s.live.bytes.saturating_sub(bytes);
            if let Some(e) = s.per_tenant.get_mut(tenant) {
                e.instances = e.instances.saturating_sub(1);
                e.bytes = e.bytes.saturating_sub(bytes);
                if e.instances == 0 {
                    s.per_tenant.remove(tenant);
                }
            }
        }
        self.0.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: u64 = 1 << 20;

    #[tokio::test]
    async fn a_tenant_past_its_share_waits_for_its_own_instances_only() {
        let pool = Pool::new(8, 1 << 40);
        assert_eq!(pool.share().0, 4);
        let mallory: Vec<Admission> = (0..4)
            .map(|_| pool.try_admit("mallory", MIB).unwrap())
            .collect();
        assert!(pool.try_admit("mallory", MIB).is_none(), "past its share");
        // Another tenant still gets the other half.
        let alice: Vec<Admission> = (0..4)
            .map(|_| pool.try_admit("alice", MIB).unwrap())
            .collect();
        assert_eq!(pool.live("alice"), (8, 4));
        assert!(pool.try_admit("bob", MIB).is_none(), "the pool is full");

        // A waiting mallory is admitted when one of hers ends, not before.
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.admit("mallory", MIB).await }
        });
        drop(alice);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "alice's release must not admit mallory past her share"
        );
        drop(mallory);
        let admitted = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pool.live("mallory"), (1, 1));
        drop(admitted);
        assert_eq!(pool.live("mallory"), (0, 0));
        assert!(pool.lock().per_tenant.is_empty(), "no tenant left behind");
    }

    #[test]
    fn memory_is_reserved_by_limit_and_shared_by_halves() {
        let pool = Pool::new(100, 512 * MIB);
        assert_eq!(pool.share(), (50, 256 * MIB));
        // Four 64 MiB invocations of mallory fill her half.
        let held: Vec<Admission> = (0..4)
            .map(|_| pool.try_admit("mallory", 64 * MIB).unwrap())
            .collect();
        assert!(pool.try_admit("mallory", 64 * MIB).is_none());
        assert!(pool.try_admit("mallory", 1).is_none());
        assert_eq!(pool.reserved("mallory"), (256 * MIB, 256 * MIB));
        // Alice has her own half.
        let a = pool.try_admit("alice", 200 * MIB).unwrap();
        assert!(pool.try_admit("alice", 64 * MIB).is_none(), "over her half");
        assert!(
            pool.try_admit("bob", 64 * MIB).is_none(),
            "the budget is spent"
        );
        drop(a);
        // A reservation bigger than a share is cut to the share.
        drop(held);
        let big = pool.try_admit("mallory", 10_000 * MIB).unwrap();
        assert_eq!(pool.reserved("mallory"), (256 * MIB, 256 * MIB));
        drop(big);
        assert_eq!(pool.reserved("mallory"), (0, 0));
    }
}
