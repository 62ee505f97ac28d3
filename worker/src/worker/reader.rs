//! Reading streams: the one blocking read with its reconnection, shared by
//! the reader (every stream this worker has, as slots free up) and the
//! lane's held read (the streams that took a sync invocation lately).

use super::*;
use eddy_queue::BlockingConn;

/// A blocking reader's own connection (a blocked `XREADGROUP` holds it),
/// made on first use and again after an error; after an error the reader
/// backs off from 50 ms to 2 s while Redis is away.
pub(super) struct StreamReader {
    conn: Option<BlockingConn>,
    backoff: Duration,
    /// Who reads, for the log.
    name: &'static str,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl StreamReader {
    pub(super) fn new(name: &'static str) -> Self {
        StreamReader {
            conn: None,
            backoff: FIRST_BACKOFF,
            name,
        }
    }

    /// Connects unless connected.
    pub(super) async fn connect(&mut self, queue: &Queue) -> eddy_queue::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(queue.blocking_connection().await?);
        }
        Ok(())
    }

    /// Up to `count` new entries of `streams`, blocking up to `block_ms`
    /// for the first. The read is never cancelled midway (a cancelled
    /// `XREADGROUP` may still deliver entries nobody sees): the short
    /// block bounds how long a drain, or a new read set, waits for it. An
    /// error drops the connection; [`StreamReader::back_off`] before the
    /// next try.
    pub(super) async fn read(
        &mut self,
        queue: &Queue,
        consumer: &str,
        streams: &[String],
        count: usize,
        block_ms: u64,
    ) -> eddy_queue::Result<(Vec<Delivery>, Vec<eddy_queue::Malformed>)> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => queue.blocking_connection().await?,
        };
        // Kept only after a read that worked.
        let read = queue
            .read(&mut conn, consumer, streams, count, block_ms)
            .await?;
        self.conn = Some(conn);
        self.backoff = FIRST_BACKOFF;
        Ok(read)
    }

    /// After a failed connection or read: logs it and waits, each time
    /// twice as long, up to 2 s.
    pub(super) async fn back_off(&mut self, error: eddy_queue::Error) {
        warn!(%error, reader = self.name, "reading streams; reconnecting");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

impl Worker {
    /// The reader: reads what can start now from the streams this worker
    /// has, until `shutdown`. `slots` bounds the deliveries it starts
    /// (`concurrency`).
    pub(super) async fn read_loop(
        self: &Arc<Self>,
        slots: Arc<Semaphore>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut reader = StreamReader::new("reader");
        while !*shutdown.borrow() {
            if self.slots.completions_full() {
                // Finished invocations wait for Redis: read nothing more.
                tokio::select! {
                    _ = self.slots.some_freed(Duration::from_millis(10)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // Wait for a free slot first: read only what can start now.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            let free = slots.available_permits() + 1;
            let (streams, most, full) = self.slots.capacity().readable(self.default_concurrency());
            if streams.is_empty() {
                // Nothing readable: no streams, or every one holds all it
                // may. Wait for an invocation to end (or for news).
                drop(first);
                tokio::select! {
                    _ = self.slots.some_freed(Duration::from_millis(100)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let count = free.max(1).min(most.max(1));
            // While some stream is full (its share and prefetch are in use),
            // block only briefly: a long block on the other streams would
            // keep the full one waiting after its invocations end.
            let block_ms = if full { 2 } else { 200 };
            let read = reader
                .read(&self.queue, &self.consumer, &streams, count, block_ms)
                .await;
            // The slot waited for above only gated the read; each delivery
            // takes its stream's share first and a global slot second, so a
            // backlog of one stream queues on its own share, not in front of
            // other tenants' work.
            drop(first);
            match read {
                Ok(read) => self.take(read, Some(&slots), || *shutdown.borrow()).await,
                Err(error) => {
                    tokio::select! {
                        _ = reader.back_off(error) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Starts what a read returned, quarantining what does not parse; while
    /// `stopping`, gives it back instead.
    pub(super) async fn take(
        self: &Arc<Self>,
        (deliveries, malformed): (Vec<Delivery>, Vec<eddy_queue::Malformed>),
        global: Option<&Arc<Semaphore>>,
        stopping: impl Fn() -> bool,
    ) {
        self.quarantine(malformed).await;
        for d in deliveries {
            if stopping() {
                self.slots.hold(&d);
                self.give_back(&d).await;
            } else {
                self.dispatch(d, global.cloned()).await;
            }
        }
    }

    async fn quarantine(&self, malformed: Vec<eddy_queue::Malformed>) {
        for m in malformed {
            warn!(stream = %m.stream, entry = %m.entry_id, reason = %m.reason, "quarantining malformed entry");
            if let Err(error) = self.queue.quarantine(&m).await {
                warn!(%error, "quarantine failed; the entry will be reclaimed");
            }
        }
    }
}
