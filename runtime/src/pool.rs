//! Admission to the instance pool, shared fairly by tenant.
//!
//! The pooling allocator has a fixed number of component instances, and
//! room in its memory, table, core-instance and stack pools for that many
//! components of the largest shape the operator allows
//! ([`ComponentLimits`](crate::ComponentLimits)). So the pool cannot run out
//! of slots while no more than `capacity` instances live, whatever the
//! components look like. [`Pool::admit`] keeps to that count, and no tenant
//! may hold more than half of it: past its share a tenant's own invocations
//! wait for one of its instances to end, never another tenant's.
//!
//! Admission happens before an invocation takes an execution slot, so a
//! waiting invocation holds no CPU share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    live: u32,
    per_tenant: HashMap<String, u32>,
}

#[derive(Debug)]
struct Inner {
    capacity: u32,
    share: u32,
    state: Mutex<State>,
    released: Notify,
}

/// The instance pool's admission gate. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool(Arc<Inner>);

/// One admitted instance; returned to the pool when dropped.
#[derive(Debug)]
pub struct Admission {
    pool: Pool,
    tenant: String,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pool.release(&self.tenant);
    }
}

impl Pool {
    /// A pool of `capacity` instances (at least 2); each tenant may hold half.
    pub fn new(capacity: u32) -> Self {
        let capacity = capacity.max(2);
        Pool(Arc::new(Inner {
            capacity,
            share: capacity / 2,
            state: Mutex::new(State::default()),
            released: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Instances in the pool.
    pub fn capacity(&self) -> u32 {
        self.0.capacity
    }

    /// Most instances one tenant may hold at once.
    pub fn share(&self) -> u32 {
        self.0.share
    }

    /// Instances alive now, and those of `tenant`.
    pub fn live(&self, tenant: &str) -> (u32, u32) {
        let s = self.lock();
        (s.live, s.per_tenant.get(tenant).copied().unwrap_or(0))
    }

    /// An instance for `tenant` now, if the pool and its share have room.
    pub fn try_admit(&self, tenant: &str) -> Option<Admission> {
        let mut s = self.lock();
        if s.live >= self.0.capacity {
            return None;
        }
        let held = s.per_tenant.get(tenant).copied().unwrap_or(0);
        if held >= self.0.share {
            return None;
        }
        s.live += 1;
        match s.per_tenant.get_mut(tenant) {
            Some(n) => *n += 1,
            None => {
                s.per_tenant.insert(tenant.to_string(), 1);
            }
        }
        Some(Admission {
            pool: self.clone(),
            tenant: tenant.to_string(),
        })
    }

    /// Waits until `tenant` may have an instance.
    pub async fn admit(&self, tenant: &str) -> Admission {
        loop {
            let released = self.0.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            released.as_mut().enable();
            if let Some(a) = self.try_admit(tenant) {
                return a;
            }
            released.await;
        }
    }

    fn release(&self, tenant: &str) {
        {
            let mut s = self.lock();
            s.live = s.live.saturating_sub(1);
            if let Some(n) = s.per_tenant.get_mut(tenant) {
                *n -= 1;
                if *n == 0 {
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

    #[tokio::test]
    async fn a_tenant_past_its_share_waits_for_its_own_instances_only() {
        let pool = Pool::new(8);
        assert_eq!(pool.share(), 4);
        let mallory: Vec<Admission> = (0..4).map(|_| pool.try_admit("mallory").unwrap()).collect();
        assert!(pool.try_admit("mallory").is_none(), "past its share");
        // Another tenant still gets the other half.
        let alice: Vec<Admission> = (0..4).map(|_| pool.try_admit("alice").unwrap()).collect();
        assert_eq!(pool.live("alice"), (8, 4));
        assert!(pool.try_admit("bob").is_none(), "the pool is full");

        // A waiting mallory is admitted when one of hers ends, not before.
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.admit("mallory").await }
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
}
