//! Sync invocations wait here for their result without polling Redis: the
//! completion publishes the finished record (or, when it is large, the id) on
//! this gateway's reply channel, and the waiter wakes with it. The record is
//! re-read on a slow timer and after every resubscription, because pub/sub
//! may drop a message.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use eddy_protocol::{InvocationRecord, TenantId};
use eddy_queue::{Queue, Reply};
use tokio::sync::Notify;

/// How often a waiter re-reads its record even without a message.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Arc<Slot>>>,
}

/// One waiting request: its wake-up, and the record when the message
/// carried it.
#[derive(Debug, Default)]
struct Slot {
    notify: Notify,
    record: Mutex<Option<InvocationRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
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
