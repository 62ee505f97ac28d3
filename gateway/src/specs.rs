//! Current function specs, cached: an invocation learns what to run without a
//! Redis round trip.
//!
//! Deploy, rollback and delete publish the function on
//! `eddy:functions:changed` (see `eddy_queue::Queue::deploy`), and every
//! gateway drops its copy at once; the gateway that made the change drops it
//! before it answers, so its own next invocation runs the new version. A lost
//! message (the subscription broke) clears the whole cache on resubscription,
//! and the TTL bounds what a writer that never published (a binary from
//! before this cache) can leave stale. A deleted function is refused by the
//! enqueue script whatever the cache holds.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use eddy_protocol::messages::FunctionChanged;
use eddy_protocol::{FunctionName, FunctionSpec, TenantId};

/// How long a current spec is trusted without asking Redis again.
pub const SPEC_CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most (the cache starts over when full).
const SPEC_CACHE_MAX: usize = 100_000;

type Key = (TenantId, FunctionName);

#[derive(Debug, Default)]
pub struct SpecCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Current specs, with when Redis was asked for them.
    current: HashMap<Key, (Arc<FunctionSpec>, Instant)>,
    /// Counts changes seen: a lookup that was in flight while a change went
    /// by does not put what it read.
    generation: u64,
}

impl SpecCache {
    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The cached current spec of a function, when fresh.
    pub fn get(&self, tenant: &TenantId, name: &FunctionName) -> Option<Arc<FunctionSpec>> {
        match self.lock().current.get(&(tenant.clone(), name.clone())) {
            Some((spec, at)) if at.elapsed() < SPEC_CACHE_TTL => Some(spec.clone()),
            _ => None,
        }
    }

    /// Call before asking Redis; hand the figure to [`SpecCache::put`].
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `spec`, read from Redis at `asked`, unless a change was seen
    /// since `generation` was taken.
    pub fn put(&self, spec: Arc<FunctionSpec>, generation: u64, asked: Instant) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        if s.current.len() >= SPEC_CACHE_MAX {
            s.current.clear();
        }
        s.current
            .insert((spec.tenant.clone(), spec.name.clone()), (spec, asked));
    }

    /// Drops a function's spec (it was deployed, rolled back or deleted).
    pub fn forget(&self, tenant: &TenantId, name: &FunctionName) {
        let mut s = self.lock();
        s.generation += 1;
        s.current.remove(&(tenant.clone(), name.clone()));
    }

    fn clear(&self) {
        let mut s = self.lock();
        s.generation += 1;
        s.current.clear();
    }

    /// Follows changes as they are published (`<tenant>/<function>`); after
    /// a resubscription (messages may have been lost), drops everything.
    pub fn listen(
        self: &Arc<Self>,
        mut changed: tokio::sync::mpsc::Receiver<eddy_queue::Event<FunctionChanged>>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = changed.recv().await {
                match msg {
                    eddy_queue::Event::Message(c) => this.forget(&c.tenant, &c.function),
                    eddy_queue::Event::Resubscribed => this.clear(),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_protocol::FunctionConfig;

    fn spec(tenant: &str, name: &str, version: u32) -> Arc<FunctionSpec> {
        Arc::new(FunctionSpec {
            tenant: TenantId::new(tenant).unwrap(),
            name: FunctionName::new(name).unwrap(),
            version,
            sha256: "00".into(),
            module_bytes: 1,
            config: FunctionConfig::default(),
            created_at_ms: 0,
        })
    }

    #[test]
    fn a_change_drops_the_spec_and_a_racing_lookup_does_not_put_it_back() {
        let cache = SpecCache::default();
        let (t, f) = (
            TenantId::new("acme").unwrap(),
            FunctionName::new("echo").unwrap(),
        );
        let g = cache.generation();
        cache.put(spec("acme", "echo", 1), g, Instant::now());
        assert_eq!(cache.get(&t, &f).map(|s| s.version), Some(1));

        // A lookup starts, a deploy goes by, the lookup ends with what it read.
        let g = cache.generation();
        let asked = Instant::now();
        cache.forget(&t, &f);
        assert!(cache.get(&t, &f).is_none());
        cache.put(spec("acme", "echo", 1), g, asked);
        assert!(cache.get(&t, &f).is_none());

        // The next lookup is kept; other functions are untouched by a change.
        let g = cache.generation();
        cache.put(spec("acme", "echo", 2), g, Instant::now());
        cache.put(spec("acme", "other", 7), g, Instant::now());
        cache.forget(&t, &FunctionName::new("other").unwrap());
        assert_eq!(cache.get(&t, &f).map(|s| s.version), Some(2));
    }

    #[test]
    fn a_spec_expires_after_its_ttl() {
        let cache = SpecCache::default();
        let (t, f) = (
            TenantId::new("acme").unwrap(),
            FunctionName::new("echo").unwrap(),
        );
        let old = Instant::now() - SPEC_CACHE_TTL - Duration::from_millis(1);
        cache.put(spec("acme", "echo", 1), cache.generation(), old);
        assert!(cache.get(&t, &f).is_none());
    }

    #[tokio::test]
    async fn published_changes_and_resubscriptions_are_followed() {
        let cache = Arc::new(SpecCache::default());
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        cache.listen(rx);
        let (t, f) = (
            TenantId::new("acme").unwrap(),
            FunctionName::new("echo").unwrap(),
        );
        let settle = || async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        };
        cache.put(spec("acme", "echo", 1), cache.generation(), Instant::now());
        cache.put(spec("acme", "b", 1), cache.generation(), Instant::now());
        tx.send(eddy_queue::Event::Message(FunctionChanged {
            tenant: t.clone(),
            function: f.clone(),
        }))
        .await
        .unwrap();
        settle().await;
        assert!(cache.get(&t, &f).is_none());
        assert!(cache.get(&t, &FunctionName::new("b").unwrap()).is_some());
        tx.send(eddy_queue::Event::Resubscribed).await.unwrap();
        settle().await;
        assert!(cache.get(&t, &FunctionName::new("b").unwrap()).is_none());
    }
}
