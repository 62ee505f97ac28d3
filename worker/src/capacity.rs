//! Which streams this worker reads, and how many invocations of each may run
//! here at once.
//!
//! Three sources, in order of precedence:
//! - the controller's assignment (when a controller leads): stream → share;
//! - wake-ups: a stream that got work while it may have no warm capacity is
//!   read at once, provisionally, until the controller has had time to decide
//!   (so the first invocation of an idle tenant costs milliseconds);
//! - without a controller, every stream of every tenant (discovery).
//!
//! A worker that had a controller keeps its last assignment for
//! [`LEADERLESS_GRACE`] once none leads: a failover, or a leader that
//! stalled past its lease, must not make every worker read (and reclaim
//! over) every stream of every tenant at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// How long a wake-up keeps a stream in the read set without an assignment.
pub(crate) const PROVISIONAL: Duration = Duration::from_secs(3);

/// How long a worker keeps the last assignment while no controller leads:
/// several times the lease (3 s at the default tick), so that a standby
/// taking over or a restarted controller goes unnoticed; after it, the
/// worker reads what discovery finds, as one that never had a controller.
pub(crate) const LEADERLESS_GRACE: Duration = Duration::from_secs(30);

/// Deliveries a stream may hold here (running plus waiting for its permits):
/// a little prefetch hides the round trip to Redis between two invocations,
/// which matters most for a fast function with a share of 1.
fn prefetch(limit: u32) -> usize {
    (limit as usize * 2).max(limit as usize + 8)
}

#[derive(Debug)]
struct Slot {
    limit: u32,
    permits: Arc<Semaphore>,
    /// Deliveries dispatched and not finished.
    held: Arc<AtomicUsize>,
    /// Last time the stream was wanted (assigned, woken or discovered).
    wanted: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Capacity {
    /// Assigned by the controller; `None` when no controller has led for
    /// [`LEADERLESS_GRACE`] (or ever).
    assigned: Option<BTreeMap<String, u32>>,
    /// When a leader's assignment was last read (`Some` with `assigned`).
    led_at: Option<Instant>,
    /// Discovered streams (used when no controller leads).
    discovered: Vec<String>,
    /// Woken streams and until when.
    woken: HashMap<String, Instant>,
    slots: HashMap<String, Slot>,
}

impl Capacity {
    /// The leading controller's assignment, read at `now`.
    pub(crate) fn set_assigned(&mut self, a: BTreeMap<String, u32>, now: Instant) {
        self.assigned = Some(a);
        self.led_at = Some(now);
    }

    /// No controller leads at `now`: the last assignment stands until
    /// [`LEADERLESS_GRACE`] after it was read, then discovery takes over.
    pub(crate) fn leaderless(&mut self, now: Instant) {
        if self
            .led_at
            .is_none_or(|at| now.saturating_duration_since(at) >= LEADERLESS_GRACE)
        {
            self.assigned = None;
            self.led_at = None;
        }
    }

    pub(crate) fn set_discovered(&mut self, d: Vec<String>) {
        self.discovered = d;
    }

    pub(crate) fn discovered(&self) -> &[String] {
        &self.discovered
    }

    /// Whether the controller's assignment has `stream` with a share: the
    /// reader reads it without a wake-up.
    pub(crate) fn assigned(&self, stream: &str) -> bool {
        self.assigned
            .as_ref()
            .is_some_and(|a| a.get(stream).is_some_and(|c| *c > 0))
    }

    pub(crate) fn controlled(&self) -> bool {
        self.assigned.is_some()
    }

    pub(crate) fn wake(&mut self, stream: String) {
        self.woken.insert(stream, Instant::now() + PROVISIONAL);
    }

    /// The streams to read now and the concurrency of each. `default` is the
    /// concurrency of a stream nobody assigned (a wake-up, or no controller).
    pub(crate) fn wanted(&mut self, default: u32) -> BTreeMap<String, u32> {
        let now = Instant::now();
        self.woken.retain(|_, until| *until > now);
        let mut want: BTreeMap<String, u32> = match &self.assigned {
            Some(a) => a
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(s, c)| (s.clone(), *c))
                .collect(),
            None => self
                .discovered
                .iter()
                .map(|s| (s.clone(), default))
                .collect(),
        };
        for s in self.woken.keys() {
            want.entry(s.clone()).or_insert(default);
        }
        for (s, limit) in &want {
            let slot = self.slots.entry(s.clone()).or_insert_with(|| Slot {
                limit: *limit,
                permits: Arc::new(Semaphore::new(*limit as usize)),
                held: Arc::default(),
                wanted: now,
            });
            slot.wanted = now;
            if slot.limit != *limit {
                // Resize: a fresh semaphore with the new share. Invocations
                // running on the old one finish there; for that moment the
                // stream may run a little over its new share, never stuck
                // under it.
                slot.permits = Arc::new(Semaphore::new(*limit as usize));
                slot.limit = *limit;
            }
        }
        want
    }

    /// The permits of `stream`, if it is read, and its count of held
    /// deliveries.
    pub(crate) fn permits(&self, stream: &str) -> Option<(Arc<Semaphore>, Arc<AtomicUsize>)> {
        self.slots
            .get(stream)
            .map(|s| (s.permits.clone(), s.held.clone()))
    }

    /// Streams of the read set with room for at least one more delivery,
    /// the most any one of them can take, and whether some wanted stream is
    /// full (left out for now).
    pub(crate) fn readable(&mut self, default: u32) -> (Vec<String>, usize, bool) {
        let want = self.wanted(default);
        let mut most = 0;
        let streams = want
            .keys()
            .filter(|s| {
                let room = self
                    .slots
                    .get(*s)
                    .map(|x| prefetch(x.limit).saturating_sub(x.held.load(Ordering::Acquire)))
                    .unwrap_or(0);
                most = most.max(room);
                room > 0
            })
            .cloned()
            .collect::<Vec<String>>();
        let full = streams.len() < want.len();
        (streams, most, full)
    }

    /// Forgets streams not wanted for `grace`; returns them so that their
    /// loaded functions can be released (scale to zero).
    pub(crate) fn expire(&mut self, grace: Duration) -> Vec<String> {
        let now = Instant::now();
        let gone: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                now.duration_since(s.wanted) >= grace && s.held.load(Ordering::Acquire) == 0
            })
            .map(|(k, _)| k.clone())
            .collect();
        for g in &gone {
            self.slots.remove(g);
        }
        gone
    }

    /// Every stream read now (for leases, reclaim and trimming).
    pub(crate) fn streams(&self) -> Vec<String> {
        let mut v: Vec<String> = self.slots.keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_wakeups_and_discovery() {
        let mut c = Capacity::default();
        c.set_discovered(vec!["a".into(), "b".into()]);
        assert_eq!(
            c.wanted(4),
            BTreeMap::from([("a".into(), 4), ("b".into(), 4)])
        );
        // A controller leads: only what it assigned, with its shares.
        let t0 = Instant::now();
        c.set_assigned(BTreeMap::from([("b".into(), 2), ("z".into(), 0)]), t0);
        assert_eq!(c.wanted(4), BTreeMap::from([("b".into(), 2)]));
        // A wake-up adds a stream provisionally.
        c.wake("cold".into());
        assert_eq!(
            c.wanted(4),
            BTreeMap::from([("b".into(), 2), ("cold".into(), 4)])
        );
        let (readable, most, full) = c.readable(4);
        assert_eq!((readable.len(), most, full), (2, 12, false));
        // Unwanted streams expire after the grace and are reported.
        c.set_assigned(BTreeMap::new(), t0);
        c.woken.clear();
        c.wanted(4);
        assert_eq!(c.expire(Duration::ZERO).len(), 3, "a, b and cold");
        assert!(c.streams().is_empty());
    }

    #[test]
    fn a_lapsed_leader_keeps_its_assignment_for_the_grace() {
        let mut c = Capacity::default();
        c.set_discovered((0..2_000).map(|i| format!("s{i}")).collect());
        let t0 = Instant::now();
        c.set_assigned(BTreeMap::new(), t0);
        // Within the grace the (empty) assignment stands: nothing is read,
        // not every discovered stream.
        c.leaderless(t0 + LEADERLESS_GRACE - Duration::from_millis(1));
        assert!(c.controlled());
        assert!(c.wanted(4).is_empty());
        // A leader again: the grace starts over from its assignment.
        let t1 = t0 + Duration::from_secs(20);
        c.set_assigned(BTreeMap::from([("s7".into(), 1)]), t1);
        c.leaderless(t0 + LEADERLESS_GRACE);
        assert_eq!(c.wanted(4), BTreeMap::from([("s7".into(), 1)]));
        // Past it, the worker reads what discovery finds.
        c.leaderless(t1 + LEADERLESS_GRACE);
        assert!(!c.controlled());
        assert_eq!(c.wanted(4).len(), 2_000);
        // A worker that never had a controller falls back at once.
        let mut fresh = Capacity::default();
        fresh.leaderless(t0);
        assert!(!fresh.controlled());
    }
}
