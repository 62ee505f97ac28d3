//! The worker's upkeep: heartbeat and assignment, discovery of streams,
//! lease extension, due retries and reclaiming abandoned entries.

use super::*;

impl Worker {
    pub(super) async fn refresh_assignment(&self) {
        match self.queue.leader().await {
            Ok(Some(_)) => match self.queue.assignment(&self.consumer).await {
                Ok(a) => self.slots.capacity().set_assigned(a, Instant::now()),
                Err(error) => debug!(%error, "reading the assignment"),
            },
            Ok(None) => self.slots.capacity().leaderless(Instant::now()),
            Err(error) => debug!(%error, "reading the leader"),
        }
    }

    /// Tells the controller this worker is alive, and what it does.
    pub(super) async fn heartbeat(&self) {
        let (free, waiting) = self.executor.load();
        metrics::gauge!("eddy_worker_exec_slots_free").set(free as f64);
        metrics::gauge!("eddy_worker_exec_waiting").set(waiting as f64);
        let info = WorkerInfo {
            id: self.consumer.clone(),
            concurrency: self.config.concurrency as u32,
            in_flight: self.slots.running() as u32,
            streams: self.slots.held_counts(),
            completed: self.completed.load(Ordering::Relaxed),
            draining: self.draining.load(Ordering::Acquire),
            started_at_ms: self.started_at_ms,
            seen_at_ms: eddy_protocol::now_ms(),
            warm: self.functions.len() as u32,
            rss_bytes: rss_bytes(),
        };
        if let Err(error) = self.queue.heartbeat(&info).await {
            debug!(%error, "heartbeat");
        }
    }

    /// Marks streams active (at most once a second each from this worker).
    pub(crate) async fn touch(&self, streams: impl IntoIterator<Item = String>) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut t = self.touched.lock();
            streams
                .into_iter()
                .filter(|s| match t.get(s) {
                    Some(at) if now.duration_since(*at) < Duration::from_secs(1) => false,
                    _ => {
                        t.insert(s.clone(), now);
                        true
                    }
                })
                .collect()
        };
        if let Err(error) = self.queue.touch(&due).await {
            debug!(%error, "marking streams active");
        }
    }

    /// Refreshes the read set's inputs: the assignment when a controller
    /// leads, else every stream marked active in the last day (a worker
    /// without a controller is for small setups: it reads all of them).
    pub(super) async fn discover(&self) {
        self.refresh_assignment().await;
        if self.slots.capacity().controlled() {
            return;
        }
        let since = eddy_protocol::now_ms().saturating_sub(UNCONTROLLED_WINDOW.as_millis() as u64);
        let found = self
            .queue
            .active_streams(since)
            .await
            .map(|v| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>());
        match found {
            Ok(mut streams) => {
                streams.sort();
                // A stream seen for the first time gets its group made sure
                // of (deploy creates it; a lost stream key is re-created for
                // a function that still exists).
                let known = self.slots.capacity().discovered().to_vec();
                for s in streams.iter().filter(|s| known.binary_search(s).is_err()) {
                    if let Err(error) = self.queue.ensure_group(s).await {
                        debug!(%error, stream = %s, "creating the consumer group");
                    }
                }
                self.slots.capacity().set_discovered(streams);
            }
            Err(error) => warn!(%error, "discovering streams"),
        }
    }

    /// Background duties: lease heartbeats, reclaiming crashed work, moving
    /// due retries, discovering streams, trimming.
    pub(super) async fn maintain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(100);
        let lease = self.config.lease;
        let every = |d: Duration| (d.as_millis() / tick.as_millis()).max(1) as u64;
        let (extend_every, reclaim_every) = (every(lease / 3), every(lease / 2));
        let (discover_every, trim_every) = (
            every(Duration::from_secs(1)),
            every(Duration::from_millis(500)),
        );
        let mark_every = every(Duration::from_secs(10));
        // Streams drained here since the last mark, and when (the mark says
        // when the work was done, not when it was sent).
        let mut drained: HashMap<String, u64> = HashMap::new();
        let mut n: u64 = 0;
        let (mut audit_cursor, mut audit_at) = (0, n);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => return,
            }
            n += 1;
            self.meters.in_flight.set(self.slots.running() as f64);
            if n.is_multiple_of(extend_every) {
                self.extend_leases().await;
            }
            if *stop.borrow() {
                continue;
            }
            if let Err(error) = self.promote_retries().await {
                debug!(%error, "moving due retries");
            }
            if n.is_multiple_of(reclaim_every) {
                self.reclaim().await;
            }
            if n.is_multiple_of(discover_every) {
                self.discover().await;
                self.heartbeat().await;
                // Streams no longer read for a while: release their loaded
                // functions (scale to zero frees the memory).
                let gone = self.slots.capacity().expire(Duration::from_secs(2));
                for s in gone {
                    if let Some((t, f)) = keys::parse_stream(&s) {
                        self.meters.forget(&t, &f);
                        let n = self.functions.evict(&t, &f);
                        if n > 0 {
                            info!(stream = %s, versions = n, "released (scaled to zero here)");
                        }
                    }
                }
            }
            if n >= audit_at {
                // A fixed budget of tenants a second, whatever their number:
                // a step that saw more (a small set comes back whole) waits
                // longer for the next.
                match self.queue.audit_due(audit_cursor, AUDIT_TENANTS).await {
                    Ok((next, seen)) => {
                        audit_cursor = next;
                        audit_at =
                            n + discover_every * (seen.div_ceil(AUDIT_TENANTS).max(1) as u64);
                    }
                    Err(error) => {
                        debug!(%error, "auditing the due indexes");
                        audit_at = n + discover_every;
                    }
                }
            }
            if n.is_multiple_of(trim_every) {
                // Only streams with deliveries finished here since the last
                // trim: an idle stream costs no round trip.
                let streams = self.slots.take_to_trim();
                for s in &streams {
                    if let Err(error) = self.queue.trim(s).await {
                        debug!(%error, stream = s, "trimming");
                    }
                }
                let at = eddy_protocol::now_ms();
                drained.extend(streams.into_iter().map(|s| (s, at)));
            }
            if n.is_multiple_of(mark_every) {
                // Streams being drained stay marked active, so that a long
                // backlog stays in the controller's view (and in a worker's
                // without one) however long ago it was enqueued.
                let streams: Vec<(String, u64)> =
                    std::mem::take(&mut drained).into_iter().collect();
                if let Err(error) = self.queue.mark_active(&streams).await {
                    debug!(%error, "marking drained streams active");
                }
            }
        }
    }

    pub(super) async fn extend_leases(&self) {
        for (stream, ids) in self.slots.held() {
            if let Err(error) = self.queue.extend(&stream, &self.consumer, &ids).await {
                warn!(%error, stream, "extending leases");
            }
        }
    }

    /// Moves due retries back into their streams, looking only at tenants
    /// the retries' due index says have one due (see `eddy_queue::DueIndex`).
    pub(super) async fn promote_retries(&self) -> Result<(), eddy_queue::Error> {
        let now = eddy_protocol::now_ms();
        for claim in self.queue.claim_due(DueIndex::Retries, now, 64).await? {
            // An error leaves the claim to its lease: the tenant comes back.
            match self.queue.promote_due(&claim.tenant, now, 256).await {
                Ok((moved, next)) => {
                    self.touch(moved).await;
                    if let Err(error) = self.queue.settle_due(DueIndex::Retries, &claim, next).await
                    {
                        debug!(%error, tenant = %claim.tenant, "settling a retry visit");
                    }
                }
                Err(error) => debug!(%error, tenant = %claim.tenant, "moving due retries"),
            }
        }
        Ok(())
    }

    /// Takes over entries whose lease ran out and runs them here.
    pub(super) async fn reclaim(self: &Arc<Self>) {
        let min_idle = self.config.lease.as_millis() as u64;
        let streams = self.slots.capacity().streams();
        for stream in streams {
            match self
                .queue
                .reclaim(&stream, &self.consumer, min_idle, 64)
                .await
            {
                Ok(read) => {
                    for d in &read.0 {
                        info!(invocation = %d.envelope.id, deliveries = d.deliveries, "reclaimed");
                    }
                    // Reclaimed work runs beside the reader's global slots:
                    // it is rare, and it was due long ago.
                    self.take(read, None, || false).await;
                }
                Err(error) => debug!(%error, stream, "reclaiming"),
            }
        }
    }
}
