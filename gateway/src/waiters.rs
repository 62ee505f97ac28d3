//! Sync invocations wait here for their result without polling Redis: the
//! completion publishes the finished record (or, when it is large, the id) on
//! this gateway's reply channel, and the waiter wakes with it. The record is
//! re-read on a slow timer and after every resubscription, because pub/sub
//! may drop a message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_protocol::{InvocationRecord, TenantId};
use eddy_queue::{Queue, Reply};
use tokio::sync::Notify;

/// How often a waiter re-reads its record even without a message.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Slot>>>,
    /// Requests registered and not yet dropped (`map` can hold fewer: two
    /// registrations of one id share an entry).
    waiting: AtomicUsize,
    /// Told when the last waiting request goes.
    none_waiting: Notify,
}

/// The longest a bulk load pauses for sync calls after one of its chunks.
const MAX_YIELD: Duration = Duration::from_millis(2);

/// One waiting request: its wake-up, and the record when the message
/// carried it.
#[derive(Debug, Default)]
struct Slot {
    notify: Notify,
    record: Mutex<Option<InvocationRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes its waiter when dropped (the request finished or went away).
#[derive(Debug)]
pub struct Registration<'a> {
    waiters: &'a Waiters,
    id: String,
    slot: Arc<Slot>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.waiters.map).remove(&self.id);
        if self.waiters.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waiters.none_waiting.notify_waiters();
        }
    }
}

impl Waiters {
    /// Starts dispatching `replies` to the waiters.
    pub fn listen(self: &Arc<Self>, mut replies: tokio::sync::mpsc::Receiver<Reply>) {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(reply) = replies.recv().await {
                match reply {
                    Reply::Done(id) => {
                        if let Some(slot) = lock(&this.map).get(&id) {
                            slot.notify.notify_one();
                        }
                    }
                    Reply::Finished(id, rec) => {
                        if let Some(slot) = lock(&this.map).get(&id) {
                            *lock(&slot.record) = Some(*rec);
                            slot.notify.notify_one();
                        }
                    }
                    Reply::Resubscribed => {
                        for slot in lock(&this.map).values() {
                            slot.notify.notify_one();
                        }
                    }
                }
            }
        });
    }

    /// Registers interest in `id` before it is enqueued, so that no reply can
    /// slip between the enqueue and the wait.
    pub fn register(&self, id: &str) -> Registration<'_> {
        let slot = Arc::new(Slot::default());
        lock(&self.map).insert(id.to_string(), slot.clone());
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Registration {
            waiters: self,
            id: id.to_string(),
            slot,
        }
    }

    /// Number of requests waiting.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A bulk load's pause for this gateway's sync calls, after a chunk of
    /// its lines took `spent` to enqueue: while any sync request waits for
    /// its result, the next chunk waits until none does, for `share` times
    /// as long as the chunk took, at most [`MAX_YIELD`] (`share` 0: never).
    /// Redis is single-threaded, and a bulk load sending its script calls
    /// back to back puts one ahead of every round trip a sync call makes
    /// (its enqueue, and the completion that answers it); pausing, it leaves
    /// them a Redis with at most the chunk already sent ahead of them. With
    /// `share` 1 a bulk load keeps at least half its pace under any amount
    /// of sync traffic. Returns the time paused.
    pub async fn yield_to_sync(&self, spent: Duration, share: f64) -> Duration {
        if share.is_nan() || share <= 0.0 || self.waiting.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let pause = Duration::try_from_secs_f64(spent.as_secs_f64() * share).unwrap_or(MAX_YIELD);
        self.pause_while_waiting(pause.min(MAX_YIELD)).await
    }

    /// Waits until no sync request waits, at most `limit`; the time waited.
    async fn pause_while_waiting(&self, limit: Duration) -> Duration {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let started = tokio::time::Instant::now();
        let gone = self.none_waiting.notified();
        tokio::pin!(gone);
        gone.as_mut().enable();
        // The last one may have gone before `enable`.
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let _ = tokio::time::timeout(limit, gone).await;
        started.elapsed()
    }
}

impl Registration<'_> {
    /// Waits until the invocation is final or `timeout` passes. Returns the
    /// final record, or `None` on timeout.
    pub async fn wait(
        &self,
        queue: &Queue,
        tenant: &TenantId,
        timeout: Duration,
    ) -> Result<Option<InvocationRecord>, eddy_queue::Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                _ = self.slot.notify.notified() => {}
                _ = tokio::time::sleep(FALLBACK_POLL) => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
            // The message carried the record: no read.
            if let Some(rec) = lock(&self.slot.record).take()
                && rec.status.is_final()
            {
                return Ok(Some(rec));
            }
            if let Some(rec) = queue.invocation(tenant, &self.id).await?
                && rec.status.is_final()
            {
                return Ok(Some(rec));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bulk_load_pauses_only_while_a_sync_call_waits_and_at_most_its_share() {
        let waiters = Arc::new(Waiters::default());
        // Nobody waits: no pause, whatever the chunk took.
        let paused = tokio::time::timeout(
            Duration::from_secs(10),
            waiters.pause_while_waiting(Duration::from_secs(60)),
        )
        .await
        .expect("no pause without sync calls");
        assert_eq!(paused, Duration::ZERO);

        // A sync call that does not end: the pause ends at its bound
        // (MAX_YIELD), not with the call.
        let stuck = waiters.register("stuck");
        let paused = tokio::time::timeout(
            Duration::from_secs(10),
            waiters.yield_to_sync(Duration::from_secs(60), 1.0),
        )
        .await
        .expect("the pause has a bound");
        assert!(paused >= MAX_YIELD, "{paused:?}");
        drop(stuck);

        // A sync call that ends: the pause ends with it, long before the
        // chunk's share (a minute here) and its bound would.
        let w = waiters.clone();
        let (registered, ready) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let call = tokio::spawn(async move {
            let r = w.register("call");
            registered.send(()).unwrap();
            released.await.unwrap();
            drop(r);
        });
        ready.await.unwrap();
        let pause = tokio::spawn({
            let w = waiters.clone();
            async move { w.pause_while_waiting(Duration::from_secs(60)).await }
        });
        // (One thread: the pause runs up to its wait before this goes on.)
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        call.await.unwrap();
        let paused = tokio::time::timeout(Duration::from_secs(10), pause)
            .await
            .expect("the pause ends with the last sync call")
            .unwrap();
        assert!(
            !paused.is_zero() && paused < Duration::from_secs(10),
            "{paused:?}"
        );
        assert!(waiters.is_empty());
    }
}
