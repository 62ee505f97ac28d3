//! What the reader, the lane and the upkeep share: the streams this worker
//! reads and the room each has ([`Capacity`]), the deliveries it holds, and
//! the bounds on what runs and on what waits for Redis.

use super::*;

#[derive(Debug)]
pub(super) struct Slots {
    capacity: Mutex<Capacity>,
    /// Entries this worker holds, per stream: their leases are extended
    /// until they are completed or given back.
    held: Mutex<HashMap<String, HashSet<String>>>,
    /// Streams this worker finished deliveries of since its last trim: the
    /// only ones that can have acknowledged entries to trim.
    to_trim: Mutex<HashSet<String>>,
    /// Invocations dispatched and not finished, and a wake-up for the drain
    /// waiting on 0.
    running: AtomicUsize,
    idle: Notify,
    /// Signalled when an invocation ends: a stream may have room again.
    freed: Notify,
    /// Completions on their way to Redis. Reading pauses while all are
    /// taken, so that a slow Redis cannot pile up finished invocations.
    completing: Arc<Semaphore>,
}

impl Slots {
    pub(super) fn new(completions: usize) -> Self {
        Slots {
            capacity: Mutex::default(),
            held: Mutex::default(),
            to_trim: Mutex::default(),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            freed: Notify::new(),
            completing: Arc::new(Semaphore::new(completions)),
        }
    }

    pub(super) fn capacity(&self) -> parking_lot::MutexGuard<'_, Capacity> {
        self.capacity.lock()
    }

    /// Takes `d` into the leases this worker keeps.
    pub(super) fn hold(&self, d: &Delivery) {
        let mut held = self.held.lock();
        // The stream's name is copied only the first time.
        match held.get_mut(&d.stream) {
            Some(ids) => {
                ids.insert(d.entry_id.clone());
            }
            None => {
                held.insert(d.stream.clone(), HashSet::from([d.entry_id.clone()]));
            }
        }
    }

    /// `d` was completed or given back: no lease to keep, and its stream
    /// has an entry to trim.
    pub(super) fn let_go(&self, d: &Delivery) {
        if let Some(set) = self.held.lock().get_mut(&d.stream) {
            set.remove(&d.entry_id);
        }
        let mut due = self.to_trim.lock();
        if !due.contains(&d.stream) {
            due.insert(d.stream.clone());
        }
    }

    /// The entries held, per stream.
    pub(super) fn held(&self) -> Vec<(String, Vec<String>)> {
        self.held
            .lock()
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(s, ids)| (s.clone(), ids.iter().cloned().collect()))
            .collect()
    }

    /// How many entries are held, per stream.
    pub(super) fn held_counts(&self) -> std::collections::BTreeMap<String, u32> {
        self.held
            .lock()
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(s, ids)| (s.clone(), ids.len() as u32))
            .collect()
    }

    pub(super) fn take_to_trim(&self) -> HashSet<String> {
        std::mem::take(&mut *self.to_trim.lock())
    }

    pub(super) fn started(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn ended(&self) {
        self.freed.notify_one();
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Returns once nothing runs.
    pub(super) async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Waits until an invocation ends (or `at_most`).
    pub(super) async fn some_freed(&self, at_most: Duration) {
        tokio::select! {
            _ = self.freed.notified() => {}
            _ = tokio::time::sleep(at_most) => {}
        }
    }

    /// Whether every completion slot is taken.
    pub(super) fn completions_full(&self) -> bool {
        self.completing.available_permits() == 0
    }

    /// A place for a finished invocation's completion on its way to Redis.
    pub(super) async fn completion_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.completing.clone().acquire_owned().await.ok()
    }
}

/// A delivery's place: one of its stream's permits (the controller's warm
/// concurrency), one of the deliveries the stream may hold (its prefetch)
/// and one of the reader's slots. All go back as soon as the guest has run,
/// not after the completion's round trip to Redis: a function's concurrency
/// counts executing instances, its throughput does not shrink with the
/// latency of the (batched) completion, and another tenant's entry is read
/// while a burst's completions are on their way. Completions in flight have
/// a bound of their own ([`Slots::completion_slot`]).
pub(super) struct Share {
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) held: Option<Arc<AtomicUsize>>,
    /// One of the reader's slots (`concurrency`): reading waits for one.
    pub(super) global: Option<OwnedSemaphorePermit>,
    /// Told when the stream may take more.
    pub(super) worker: Arc<Worker>,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.permit.take();
        self.global.take();
        if let Some(held) = self.held.take() {
            held.fetch_sub(1, Ordering::AcqRel);
        }
        self.worker.slots.freed.notify_one();
    }
}
