//! Being told where work is: the wake channel (pub/sub), the reads it
//! triggers, the held blocking read of an interactive lane, and freed modules.

use super::*;
use eddy_protocol::messages::{AssignmentsChanged, ModulesFreed, Wake};
use eddy_queue::Event;
use reader::StreamReader;

/// The interactive lane's state (see [`Worker::lane`]).
#[derive(Debug, Default)]
pub(super) struct Lane {
    /// The lane's own connections, once it is up.
    queue: std::sync::OnceLock<Queue>,
    /// The lane's runtime, once it is up: a sync invocation the reader
    /// reads (it was blocked on the stream when the entry came, or read it
    /// in a batch before the lane's wake-up read) runs there, not on the
    /// bulk threads.
    rt: std::sync::OnceLock<tokio::runtime::Handle>,
    /// Whether the lane still runs what is handed to it (false once it
    /// stops, after the drain).
    open: AtomicBool,
    /// Streams that took a sync invocation lately (last urgent wake-up), for
    /// the held read (see [`Worker::held_read`]), and a wake-up for it when
    /// the first one arrives.
    recent: Mutex<HashMap<String, Instant>>,
    added: Notify,
    /// The streams the held read is waiting on now.
    held_now: Mutex<HashSet<String>>,
    /// When the last sync invocation arrived, while the bulk completions
    /// are narrowed for them (see [`Worker::saw_sync`]).
    sync_seen: Mutex<Option<tokio::time::Instant>>,
}

impl Lane {
    /// The lane's runtime while it takes work.
    pub(super) fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.rt.get().filter(|_| self.open.load(Ordering::Acquire))
    }

    /// Notes a sync invocation of `stream`. Whether the held read needs
    /// no other read for it: it waits on the stream already, so Redis
    /// handed it the entry with the enqueue (or the reader got it, and
    /// hands it over).
    fn note_sync(&self, stream: &str) -> bool {
        let new = self
            .recent
            .lock()
            .insert(stream.to_string(), Instant::now())
            .is_none();
        if new {
            self.added.notify_one();
            return false;
        }
        self.held_now.lock().contains(stream)
    }

    /// The streams that took a sync invocation in the last
    /// [`INTERACTIVE_FOR`].
    fn recent(&self) -> Vec<String> {
        let mut recent = self.recent.lock();
        recent.retain(|_, at| at.elapsed() < INTERACTIVE_FOR);
        recent.keys().cloned().collect()
    }
}

impl Worker {
    /// A sync invocation arrived. Until [`NARROW_FOR`] after the last one,
    /// the worker's bulk completions go one flush at a time instead of two
    /// (`Queue::narrow_bulk_completions`): a sync invocation's completion
    /// then finds at most one bulk completion script queued ahead of it in
    /// Redis. The bulk completions were in flight before the sync entry was
    /// even read, so only a narrowing that outlasts one call helps the
    /// next; while sync traffic lasts it costs the bulk some throughput.
    pub(super) fn saw_sync(self: &Arc<Self>) {
        if !self.config.sync_first.bulk_yields {
            return;
        }
        let first = self
            .lane
            .sync_seen
            .lock()
            .replace(tokio::time::Instant::now())
            .is_none();
        if !first {
            return;
        }
        let hold = self.queue.narrow_bulk_completions();
        let w = self.clone();
        self.main.spawn(async move {
            loop {
                let until = {
                    let mut seen = w.lane.sync_seen.lock();
                    match *seen {
                        Some(at) if at.elapsed() < NARROW_FOR => at + NARROW_FOR,
                        _ => {
                            *seen = None;
                            break;
                        }
                    }
                };
                tokio::time::sleep_until(until).await;
            }
            drop(hold);
        });
    }

    /// The interactive lane: a thread of its own with a single-threaded
    /// runtime and Redis connections of its own, where wake-ups are heard
    /// and the invocations somebody waits for (sync) run from their read to
    /// their completion. It runs until `may_stop` (after the drain), so
    /// that what it started finishes.
    pub(super) fn lane(
        self: Arc<Self>,
        stop: watch::Receiver<bool>,
        mut may_stop: watch::Receiver<bool>,
    ) -> Result<std::thread::JoinHandle<()>, WorkerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WorkerError::Executor)?;
        std::thread::Builder::new()
            .name("eddy-lane".into())
            .spawn(move || {
                ON_LANE.with(|l| l.set(true));
                rt.block_on(async move {
                    let config = QueueConfig {
                        record_ttl: self.config.record_ttl,
                    };
                    match Queue::connect(&self.config.redis_url, config).await {
                        Ok(q) => {
                            q.start_batching();
                            let _ = self.lane.queue.set(q);
                            let _ = self.lane.rt.set(tokio::runtime::Handle::current());
                            self.lane.open.store(true, Ordering::Release);
                        }
                        Err(error) => {
                            warn!(%error, "connecting the interactive lane; sync invocations share the reader's connections");
                        }
                    }
                    let held = tokio::spawn(self.clone().held_read(stop.clone()));
                    self.clone().listen(stop).await;
                    let _ = held.await;
                    let _ = may_stop.wait_for(|s| *s).await;
                    self.lane.open.store(false, Ordering::Release);
                });
            })
            .map_err(WorkerError::Executor)
    }

    /// The connections for a delivery: the lane's for one somebody waits
    /// for (once the lane is up), the worker's own otherwise.
    pub(super) fn queue_for(&self, d: &Delivery) -> &Queue {
        match (&d.envelope.reply_to, self.lane.queue.get()) {
            (Some(_), Some(lane)) => lane,
            _ => &self.queue,
        }
    }

    /// Wake-ups and assignment changes, as they are published.
    pub(super) async fn listen(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let q = self.lane.queue.get().unwrap_or(&self.queue).clone();
        let mut wake = q.subscribe::<Wake>();
        let mut assign = q.subscribe::<AssignmentsChanged>();
        let mut freed = q.subscribe::<ModulesFreed>();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                Some(msg) = wake.recv() => {
                    match msg {
                        // A sync invocation: read and run it here.
                        Event::Message(Wake::Interactive(stream)) => self.woken(stream, true).await,
                        // A cold stream's work is no business of the
                        // lane: read it on the reader's runtime.
                        Event::Message(Wake::Backlog(stream)) => {
                            let w = self.clone();
                            self.main.spawn(async move { w.woken(stream, false).await });
                        }
                        Event::Resubscribed => {}
                    }
                }
                Some(_) = assign.recv() => self.refresh_assignment().await,
                Some(msg) = freed.recv() => {
                    if let Event::Message(freed) = msg {
                        self.drop_artifacts(freed);
                    }
                }
            }
        }
    }

    /// Drops the modules a delete freed (`<tenant> <sha256>...`): the
    /// tenant's loaded versions of them, and their compiled artifacts unless
    /// another tenant's loaded function runs the same bytes (a component
    /// mapped from a removed artifact stays valid; the removal only costs
    /// a compile on a later cold start).
    pub(super) fn drop_artifacts(&self, freed: ModulesFreed) {
        for sha in &freed.shas {
            self.functions.evict_module(&freed.tenant, sha);
            if !self.functions.uses(sha) && self.runtime.cache().remove(sha) {
                info!(sha256 = sha, "removed the artifact of a deleted module");
            }
        }
    }

    /// A stream got work and may be cold: read it at once, without waiting
    /// for the blocked reader or the controller. An `urgent` wake-up (a sync
    /// invocation: somebody waits) is read at once even where the reader
    /// has the stream: under load the reader's next read may be a round
    /// trip or two away, and it reads whatever stream has work, in turn.
    pub(super) async fn woken(self: &Arc<Self>, stream: String, urgent: bool) {
        // `stream` is a stream key: `Wake` decoding checked it.
        if self.draining.load(Ordering::Acquire) {
            return;
        }
        let permits = {
            let mut cap = self.slots.capacity();
            let here = cap.permits(&stream).is_some();
            let assigned = cap.assigned(&stream);
            match (urgent, here, cap.controlled()) {
                // Urgent, read here: read it now (and hold a read on the
                // stream from now on), unless the held read has it: another
                // read would only cost Redis a command.
                (true, true, _) => {
                    if self.lane.note_sync(&stream) {
                        return;
                    }
                }
                // Urgent, but a controller gave the stream to other workers
                // (or to none yet: then the plain wake-up that comes with a
                // cold stream's first invocation is the one to act on).
                (true, false, true) => return,
                // Assigned already: the reader has it. A stream that is
                // here only for a while (woken, or no longer assigned: with
                // no leader nobody assigns it) is woken again.
                (false, true, true) if assigned => return,
                _ => {
                    cap.wake(stream.clone());
                    cap.wanted(self.default_concurrency());
                }
            }
            cap.permits(&stream)
        };
        let free = permits.map(|(p, _)| p.available_permits()).unwrap_or(0);
        if free == 0 {
            return;
        }
        // An urgent wake-up is for one invocation: read one (the stream's
        // oldest; with a backlog the sync one waits its turn in it).
        let free = if urgent { 1 } else { free };
        let q = self.lane.queue.get().unwrap_or(&self.queue);
        match q.read_now(&self.consumer, &stream, free, urgent).await {
            // Wake-ups run beside the reader's global slots (bounded by the
            // stream's own permits): they are few, and the point is to
            // start now.
            Ok(read) => self.take(read, None, || false).await,
            Err(error) => debug!(%error, stream, "reading a woken stream"),
        }
    }

    /// The lane's held read: a blocking `XREADGROUP` of its own, kept open
    /// on the streams that took a sync invocation in the last
    /// [`INTERACTIVE_FOR`]. Redis hands a new entry of such a stream to a
    /// blocked reader within the enqueue's own event-loop iteration. So,
    /// under another tenant's burst, a sync invocation reaches the lane
    /// without a second trip through a busy Redis (the wake-up message,
    /// then a read), and without waiting for the bulk threads (the reader,
    /// then the handoff). What it reads is dispatched like any delivery:
    /// a sync one runs on the lane, anything else on the reader's runtime.
    pub(super) async fn held_read(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(q) = self.lane.queue.get().cloned() else {
            return;
        };
        let mut reader = StreamReader::new("lane");
        loop {
            if *stop.borrow() || self.draining.load(Ordering::Acquire) {
                return;
            }
            // One lock at a time: `woken` takes the capacity's and then
            // the lane's.
            let recent = self.lane.recent();
            let streams: Vec<String> = {
                let cap = self.slots.capacity();
                recent
                    .into_iter()
                    .filter(|s| {
                        cap.permits(s)
                            .is_some_and(|(p, _)| p.available_permits() > 0)
                    })
                    .collect()
            };
            if streams.is_empty() {
                tokio::select! {
                    _ = self.lane.added.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            // Connected first: while the read is not held (no connection,
            // or backing off after an error), wake-ups read for themselves.
            let read = match reader.connect(&q).await {
                Ok(()) => {
                    *self.lane.held_now.lock() = streams.iter().cloned().collect();
                    let read = reader.read(&q, &self.consumer, &streams, 1, 200).await;
                    self.lane.held_now.lock().clear();
                    read
                }
                Err(error) => Err(error),
            };
            match read {
                Ok(read) => {
                    self.meters.lane_held_reads.increment(read.0.len() as u64);
                    self.take(read, None, || self.draining.load(Ordering::Acquire))
                        .await;
                }
                Err(error) => {
                    tokio::select! {
                        _ = reader.back_off(error) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}
