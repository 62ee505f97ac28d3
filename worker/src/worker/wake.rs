//! Being told where work is: the wake channel (pub/sub), the reads it
//! triggers, the held blocking read of an interactive lane, and freed modules.

use super::*;
use eddy_protocol::messages::{AssignmentsChanged, ModulesFreed, Wake};
use eddy_queue::Event;

impl Worker {
    /// A sync invocation arrived. Until [`NARROW_FOR`] after the last one,
    /// the worker's bulk completions go one flush at a time instead of two
    /// (`Queue::narrow_bulk_completions`): a sync invocation's completion
    /// then finds at most one bulk completion script queued ahead of it in
    /// Redis. The bulk completions were in flight before the sync entry was
    /// even read, so only a narrowing that outlasts one call helps the
    /// next; while sync traffic lasts it costs the bulk some throughput.
    pub(super) fn saw_sync(self: &Arc<Self>) {
        if !self.config.bulk_yield {
            return;
        }
        let first = lock(&self.sync_seen)
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
                    let mut seen = lock(&w.sync_seen);
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
                            let _ = self.lane.set(q);
                            let _ = self.lane_rt.set(tokio::runtime::Handle::current());
                            self.lane_open.store(true, Ordering::Release);
                        }
                        Err(error) => {
                            warn!(%error, "connecting the interactive lane; sync invocations share the reader's connections");
                        }
                    }
                    let held = tokio::spawn(self.clone().held_read(stop.clone()));
                    self.clone().listen(stop).await;
                    let _ = held.await;
                    let _ = may_stop.wait_for(|s| *s).await;
                    self.lane_open.store(false, Ordering::Release);
                });
            })
            .map_err(WorkerError::Executor)
    }

    /// The connections for a delivery: the lane's for one somebody waits
    /// for (once the lane is up), the worker's own otherwise.
    pub(super) fn queue_for(&self, d: &Delivery) -> &Queue {
        match (&d.envelope.reply_to, self.lane.get()) {
            (Some(_), Some(lane)) => lane,
            _ => &self.queue,
        }
    }

    /// Wake-ups and assignment changes, as they are published.
    pub(super) async fn listen(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let q = self.lane.get().unwrap_or(&self.queue).clone();
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
        if self.draining.load(Ordering::Acquire) || keys::parse_stream(&stream).is_none() {
            return;
        }
        let permits = {
            let mut cap = lock(&self.capacity);
            let here = cap.permits(&stream).is_some();
            match (urgent, here, cap.controlled()) {
                // Urgent, read here: read it now (and hold a read on the
                // stream from now on).
                (true, true, _) => {
                    let new = lock(&self.interactive)
                        .insert(stream.clone(), Instant::now())
                        .is_none();
                    if !new && lock(&self.held_now).contains(&stream) {
                        // The held read waits on the stream: Redis handed it
                        // the entry with the enqueue (or the reader got it,
                        // and hands it over). Another read would only cost
                        // Redis a command.
                        return;
                    }
                    if new {
                        self.interactive_added.notify_one();
                    }
                }
                // Urgent, but a controller gave the stream to other workers
                // (or to none yet: then the plain wake-up that comes with a
                // cold stream's first invocation is the one to act on).
                (true, false, true) => return,
                // Assigned already: the reader has it.
                (false, true, true) => return,
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
        match self
            .lane
            .get()
            .unwrap_or(&self.queue)
            .read_now(&self.consumer, &stream, free, urgent)
            .await
        {
            Ok((deliveries, malformed)) => {
                self.quarantine(malformed).await;
                for d in deliveries {
                    // Wake-ups run beside the reader's global slots (bounded
                    // by the stream's own permits): they are few, and the
                    // point is to start now.
                    self.dispatch(d, None).await;
                }
            }
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
        let Some(q) = self.lane.get().cloned() else {
            return;
        };
        let mut conn = None;
        loop {
            if *stop.borrow() || self.draining.load(Ordering::Acquire) {
                return;
            }
            // One lock at a time: `woken` takes the capacity's and then
            // this one.
            let recent: Vec<String> = {
                let mut interactive = lock(&self.interactive);
                interactive.retain(|_, at| at.elapsed() < INTERACTIVE_FOR);
                interactive.keys().cloned().collect()
            };
            let streams: Vec<String> = {
                let cap = lock(&self.capacity);
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
                    _ = self.interactive_added.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            if conn.is_none() {
                match q.blocking_connection().await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        debug!(%error, "connecting the lane's held read");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            // Never cancelled midway (see the reader); the short block
            // bounds how long a drain or a new stream waits for it.
            *lock(&self.held_now) = streams.iter().cloned().collect();
            let read = q.read(c, &self.consumer, &streams, 1, 200).await;
            lock(&self.held_now).clear();
            match read {
                Ok((deliveries, malformed)) => {
                    self.quarantine(malformed).await;
                    for d in deliveries {
                        self.meters.lane_held_reads.increment(1);
                        if self.draining.load(Ordering::Acquire) {
                            self.hold(&d);
                            self.give_back(&d).await;
                        } else {
                            self.dispatch(d, None).await;
                        }
                    }
                }
                Err(error) => {
                    debug!(%error, "the lane's held read; reconnecting");
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
