//! One event stream: its scope, the runs it watches, its record cache, and
//! the deltas it sends.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct TreeNode {
    pub(super) id: String,
    pub(super) function: String,
    pub(super) status: String,
    pub(super) depth: u32,
    pub(super) attempt: u32,
    pub(super) ms: Option<f64>,
    pub(super) cold: bool,
    /// Follow-ups it emitted, and those not shown below.
    pub(super) follow_ups: usize,
    pub(super) more: usize,
    pub(super) children: Vec<TreeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct RunRow {
    pub(super) id: String,
    pub(super) tenant: String,
    /// The run was not found (unknown, another tenant's, or expired).
    pub(super) missing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) run: Option<RunRecord>,
    /// Finished / accepted, 0 to 100.
    pub(super) percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tree: Option<TreeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct DeadRow {
    pub(super) tenant: String,
    #[serde(flatten)]
    pub(super) dead: DeadLetter,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct InvocationRow {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) function: String,
    pub(super) run_id: String,
    pub(super) status: String,
    pub(super) attempt: u32,
    pub(super) depth: u32,
    pub(super) created_at_ms: u64,
    pub(super) completed_at_ms: Option<u64>,
    pub(super) queue_ms: f64,
    pub(super) ms: Option<f64>,
    pub(super) cold: bool,
    pub(super) worker: Option<String>,
    pub(super) error_class: Option<String>,
    pub(super) error: Option<String>,
    /// Log lines, and the first one cut short.
    pub(super) logs: usize,
    pub(super) log: Option<String>,
    /// Where the dashboard met it: `run` or `dead-letter`.
    pub(super) source: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Totals {
    pub(super) functions: usize,
    pub(super) active: usize,
    pub(super) lag: u64,
    pub(super) pending: u64,
    pub(super) arrivals: f64,
    pub(super) completions: f64,
    pub(super) warm: u64,
    pub(super) in_flight: u64,
    pub(super) workers: usize,
    pub(super) dead_letters: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct ScopeView {
    pub(super) admin: bool,
    pub(super) tenant: Option<String>,
}

/// Where the numbers come from, for the page to say.
#[derive(Debug, Serialize)]
pub(super) struct Notes {
    /// A tenant's dead-letter stream held at least as many as were read
    /// (the queue reads the oldest first): newer ones are not shown.
    pub(super) dead_letters_truncated: bool,
    /// Records sampled for durations and cold starts.
    pub(super) sampled_records: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct Payload<'a> {
    pub(super) v: u32,
    pub(super) seq: u64,
    pub(super) at_ms: u64,
    pub(super) interval_ms: u64,
    /// `functions` holds every function (the first event of a stream);
    /// otherwise only those that changed, and `removed` those gone.
    pub(super) full: bool,
    pub(super) scope: ScopeView,
    pub(super) controller: Option<&'a ControllerView>,
    pub(super) totals: Totals,
    pub(super) functions: Vec<&'a FunctionRow>,
    pub(super) removed: Vec<String>,
    pub(super) workers: Vec<WorkerRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) runs: Option<&'a [RunRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dead_letters: Option<&'a [DeadRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) invocations: Option<&'a [InvocationRow]>,
    /// The tenant's schedules (a tenant's view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) schedules: Option<&'a [ScheduleRow]>,
    pub(super) notes: Notes,
}

#[derive(Debug)]
pub(super) struct Cached {
    pub(super) tenant: TenantId,
    /// Slim: no output, the first log line, the first follow-up ids.
    pub(super) record: InvocationRecord,
    /// Log lines and follow-ups the record had.
    pub(super) logs: usize,
    pub(super) follow_ups: usize,
    pub(super) source: &'static str,
}

#[derive(Debug, Default)]
pub(super) struct Durations {
    pub(super) ms: VecDeque<f64>,
    pub(super) cold: u32,
    pub(super) p50: Option<f64>,
    pub(super) p99: Option<f64>,
    pub(super) dirty: bool,
}

/// A schedule as the dashboard shows it: its newest firing only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ScheduleRow {
    pub(super) name: String,
    pub(super) cron: String,
    pub(super) function: String,
    pub(super) next_ms: u64,
    pub(super) fired: u64,
    pub(super) refused: u64,
    pub(super) missed: u64,
    pub(super) last: Option<eddy_protocol::schedules::Firing>,
}

#[derive(Debug)]
pub(super) struct Connection {
    pub(super) _slot: Slot,
    pub(super) queue: Queue,
    pub(super) _sampler: Arc<Sampler>,
    pub(super) rx: watch::Receiver<Arc<Shared>>,
    pub(super) scope: Scope,
    pub(super) runs: Vec<(TenantId, String)>,
    pub(super) started: Instant,
    pub(super) seq: u64,
    /// Function key → the JSON last sent for it.
    pub(super) sent: HashMap<String, String>,
    /// Section → the JSON last sent for it.
    pub(super) sections: HashMap<&'static str, String>,
    pub(super) records: HashMap<String, Cached>,
    pub(super) counted: HashSet<String>,
    pub(super) durations: HashMap<String, Durations>,
    pub(super) run_cache: HashMap<String, (RunRecord, Instant)>,
    pub(super) dead: Vec<DeadRow>,
    pub(super) dead_at: Option<Instant>,
    pub(super) dead_counts: HashMap<String, u32>,
    pub(super) dead_truncated: bool,
    /// The tenant's schedules as last read, and when.
    pub(super) schedules: Vec<ScheduleRow>,
    pub(super) schedules_at: Option<Instant>,
}

pub(super) fn busy_ms(r: &InvocationRecord) -> Option<f64> {
    let t = &r.outcome.timings;
    (r.completed_at_ms.is_some() && (t.run_us > 0 || t.instantiate_us > 0))
        .then(|| round((t.instantiate_us + t.run_us) as f64 / 1000.0, 3))
}

impl Connection {
    pub(super) fn new(
        queue: Queue,
        sampler: Arc<Sampler>,
        scope: Scope,
        runs: Vec<(TenantId, String)>,
        slot: Slot,
    ) -> Self {
        Connection {
            _slot: slot,
            queue,
            rx: sampler.rx.clone(),
            _sampler: sampler,
            scope,
            runs,
            started: Instant::now(),
            seq: 0,
            sent: HashMap::new(),
            sections: HashMap::new(),
            records: HashMap::new(),
            counted: HashSet::new(),
            durations: HashMap::new(),
            run_cache: HashMap::new(),
            dead: Vec::new(),
            dead_at: None,
            dead_counts: HashMap::new(),
            dead_truncated: false,
            schedules: Vec::new(),
            schedules_at: None,
        }
    }

    /// The next event, or `None` to end the stream.
    pub(super) async fn next_event(&mut self) -> Option<Event> {
        if self.seq == 0 {
            // The first event goes out as soon as the sampler has something.
            if self.rx.borrow().at_ms == 0 {
                let _ = tokio::time::timeout(Duration::from_millis(2500), self.rx.changed()).await;
            }
        } else {
            if self.started.elapsed() >= STREAM_LIFETIME {
                return None;
            }
            if let Ok(Err(_)) = tokio::time::timeout(TICK * 3, self.rx.changed()).await {
                return None;
            }
        }
        let shared = self.rx.borrow_and_update().clone();
        if shared.stopping || STOPPING.load(Ordering::Acquire) {
            return None;
        }
        let json = self.build(&shared).await;
        let mut event = Event::default().data(json);
        if self.seq == 0 {
            event = event.retry(Duration::from_secs(2));
        }
        self.seq += 1;
        Some(event)
    }

    async fn build(&mut self, shared: &Shared) -> String {
        let mut budget = FETCH_BUDGET;
        let runs = self.runs_view(&mut budget).await;
        let tenants: Vec<TenantId> = match &self.scope.tenant {
            Some(t) => vec![t.clone()],
            None => {
                let mut ts: Vec<&str> =
                    shared.functions.iter().map(|f| f.tenant.as_str()).collect();
                ts.dedup();
                ts.into_iter()
                    .filter_map(|t| TenantId::new(t).ok())
                    .take(DEAD_LETTER_TENANTS)
                    .collect()
            }
        };
        self.read_dead_letters(&tenants, &mut budget).await;
        self.update_percentiles();

        // Functions: this stream's scope, with its own samples merged in.
        let full = self.seq == 0;
        let mut totals = Totals::default();
        let mut rows: Vec<FunctionRow> = Vec::new();
        let mut keys_now = HashSet::new();
        for f in shared
            .functions
            .iter()
            .filter(|f| self.scope.sees(&f.tenant))
        {
            let mut row = f.clone();
            if let Some(d) = self.durations.get(&row.key) {
                row.p50_ms = d.p50;
                row.p99_ms = d.p99;
                row.samples = d.ms.len() as u32;
                row.cold = d.cold;
            }
            row.errors = self.dead_counts.get(&row.key).copied().unwrap_or(0);
            totals.functions += 1;
            totals.lag += row.lag;
            totals.pending += row.pending;
            totals.arrivals += row.arrivals.unwrap_or(0.0);
            totals.completions += row.completions.unwrap_or(0.0);
            totals.warm += u64::from(row.warm);
            if row.lag + row.pending > 0
                || row.arrivals.unwrap_or(0.0) > 0.0
                || row.completions.unwrap_or(0.0) > 0.0
            {
                totals.active += 1;
            }
            keys_now.insert(row.key.clone());
            let json = serde_json::to_string(&row).unwrap_or_default();
            if full || self.sent.get(&row.key) != Some(&json) {
                self.sent.insert(row.key.clone(), json);
                rows.push(row);
            }
        }
        totals.arrivals = round(totals.arrivals, 2);
        totals.completions = round(totals.completions, 2);
        let removed: Vec<String> = self
            .sent
            .keys()
            .filter(|k| !keys_now.contains(*k))
            .cloned()
            .collect();
        for k in &removed {
            self.sent.remove(k);
        }

        let workers: Vec<WorkerRow> = shared
            .workers
            .iter()
            .map(|w| {
                let mut w = w.clone();
                if let Some(t) = &self.scope.tenant {
                    // Workers are shared: a tenant sees how busy they are,
                    // not what else they run.
                    let prefix = format!("{t}/");
                    w.streams.retain(|k, _| k.starts_with(&prefix));
                }
                w
            })
            .collect();
        totals.workers = workers.len();
        totals.in_flight = workers.iter().map(|w| u64::from(w.in_flight)).sum();
        totals.dead_letters = self.dead_counts.values().map(|n| *n as usize).sum();

        let invocations = self.recent_invocations();
        let schedules = self.schedules_view(&mut budget).await;
        let dead = self.dead.clone();
        let runs_changed = self.changed("runs", &runs, full);
        let dead_changed = self.changed("dead_letters", &dead, full);
        let inv_changed = self.changed("invocations", &invocations, full);
        let schedules_changed = self.changed("schedules", &schedules, full);
        let payload = Payload {
            v: 1,
            seq: self.seq,
            at_ms: shared.at_ms,
            interval_ms: TICK.as_millis() as u64,
            full,
            scope: ScopeView {
                admin: self.scope.admin,
                tenant: self.scope.tenant.as_ref().map(|t| t.to_string()),
            },
            controller: shared.controller.as_ref(),
            totals,
            functions: rows.iter().collect(),
            removed,
            workers,
            runs: runs_changed.then_some(runs.as_slice()),
            dead_letters: dead_changed.then_some(dead.as_slice()),
            invocations: inv_changed.then_some(invocations.as_slice()),
            schedules: (schedules_changed && self.scope.tenant.is_some())
                .then_some(schedules.as_slice()),
            notes: Notes {
                dead_letters_truncated: self.dead_truncated,
                sampled_records: self.counted.len(),
            },
        };
        serde_json::to_string(&payload).unwrap_or_else(|_| "{}".into())
    }

    /// Whether `section` differs from what was last sent (and remembers it).
    fn changed<T: Serialize>(&mut self, section: &'static str, value: &T, full: bool) -> bool {
        let json = serde_json::to_string(value).unwrap_or_default();
        if !full && self.sections.get(section) == Some(&json) {
            return false;
        }
        self.sections.insert(section, json);
        true
    }

    /// Caches a record read; a final one adds its duration to the samples
    /// once.
    fn remember(&mut self, tenant: &TenantId, record: InvocationRecord, source: &'static str) {
        if self.records.len() >= RECORD_CACHE {
            self.records.clear();
        }
        if record.status.is_final() && !self.counted.contains(&record.id) {
            if let Some(ms) = busy_ms(&record) {
                let key = format!("{tenant}/{}", record.function);
                let d = self.durations.entry(key).or_default();
                if d.ms.len() >= SAMPLES_PER_FUNCTION {
                    d.ms.pop_front();
                }
                d.ms.push_back(ms);
                if record.outcome.timings.cold {
                    d.cold += 1;
                }
                d.dirty = true;
            }
            if self.counted.len() >= RECORD_CACHE * 5 {
                self.counted.clear();
            }
            self.counted.insert(record.id.clone());
        }
        let source = self.records.get(&record.id).map_or(source, |c| c.source);
        // Only what the page shows is kept: logs and outputs can be large.
        let mut record = record;
        let logs = record.outcome.logs.len();
        let follow_ups = record.outcome.follow_ups.len();
        record.output = None;
        record.outcome.logs.truncate(1);
        for l in &mut record.outcome.logs {
            l.message = l.message.chars().take(LOG_PREVIEW).collect();
        }
        if let Some(e) = &mut record.outcome.error {
            e.message = e.message.chars().take(LOG_PREVIEW).collect();
        }
        record.outcome.follow_ups.truncate(TREE_NODES);
        self.records.insert(
            record.id.clone(),
            Cached {
                tenant: tenant.clone(),
                record,
                logs,
                follow_ups,
                source,
            },
        );
    }

    /// Reads the records of `ids` that are not cached final, within budget,
    /// all at once (pipelined on the shared connection).
    async fn fetch(
        &mut self,
        tenant: &TenantId,
        ids: &[String],
        budget: &mut usize,
        source: &'static str,
    ) {
        let need: Vec<&String> = ids
            .iter()
            .filter(|id| {
                self.records
                    .get(*id)
                    .is_none_or(|c| !c.record.status.is_final())
            })
            .take(*budget)
            .collect();
        *budget -= need.len();
        let q = self.queue.clone();
        let got = futures::future::join_all(need.iter().map(|id| q.invocation(tenant, id))).await;
        for r in got {
            match r {
                Ok(Some(rec)) => self.remember(tenant, rec, source),
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "dashboard: reading an invocation"),
            }
        }
    }

    /// A tenant's schedules (none for the admin's view of every tenant),
    /// read every [`SCHEDULES_EVERY`]: each read brings every spec, data
    /// included. A read that cannot be made keeps the last rows.
    async fn schedules_view(&mut self, budget: &mut usize) -> Vec<ScheduleRow> {
        let Some(tenant) = &self.scope.tenant else {
            return Vec::new();
        };
        if *budget == 0
            || self
                .schedules_at
                .is_some_and(|t| t.elapsed() < SCHEDULES_EVERY)
        {
            return self.schedules.clone();
        }
        *budget -= 1;
        self.schedules_at = Some(Instant::now());
        match self.queue.schedules(tenant).await {
            Ok(all) => {
                self.schedules = all
                    .into_iter()
                    .map(|s| ScheduleRow {
                        name: s.spec.name,
                        cron: s.spec.cron,
                        function: s.spec.function,
                        next_ms: s.state.next_ms,
                        fired: s.state.fired,
                        refused: s.state.refused,
                        missed: s.state.missed,
                        last: s.state.last.into_iter().next(),
                    })
                    .collect();
            }
            Err(error) => tracing::debug!(%error, "reading schedules for the dashboard"),
        }
        self.schedules.clone()
    }

    async fn runs_view(&mut self, budget: &mut usize) -> Vec<RunRow> {
        let mut out = Vec::new();
        for (tenant, id) in self.runs.clone() {
            let run = match self.run_cache.get(&id) {
                // A finished run changes only by redrive: re-read it now and then.
                Some((r, at))
                    if r.status != RunStatus::Running && at.elapsed() < Duration::from_secs(5) =>
                {
                    Some(r.clone())
                }
                _ => match self.queue.run(&tenant, &id).await {
                    Ok(r) => r,
                    Err(error) => {
                        tracing::debug!(%error, "dashboard: reading a run");
                        self.run_cache.get(&id).map(|(r, _)| r.clone())
                    }
                },
            };
            let Some(run) = run else {
                out.push(RunRow {
                    id,
                    tenant: tenant.to_string(),
                    missing: true,
                    run: None,
                    percent: 0.0,
                    tree: None,
                });
                continue;
            };
            self.run_cache
                .insert(id.clone(), (run.clone(), Instant::now()));
            // The root invocation's id is the run's id.
            let tree = self.tree(&tenant, &id, budget).await;
            let done = run.total.saturating_sub(run.outstanding);
            out.push(RunRow {
                percent: if run.total == 0 {
                    0.0
                } else {
                    round(100.0 * done as f64 / run.total as f64, 1)
                },
                id,
                tenant: tenant.to_string(),
                missing: false,
                run: Some(run),
                tree,
            });
        }
        out
    }

    /// Walks a run's tree level by level through `follow_ups`.
    async fn tree(
        &mut self,
        tenant: &TenantId,
        root: &str,
        budget: &mut usize,
    ) -> Option<TreeNode> {
        let mut level = vec![root.to_string()];
        let mut seen = 0;
        for _ in 0..=TREE_LEVELS {
            self.fetch(tenant, &level, budget, "run").await;
            seen += level.len();
            let mut next = Vec::new();
            for id in &level {
                if let Some(c) = self.records.get(id) {
                    for f in &c.record.outcome.follow_ups {
                        if seen + next.len() < TREE_NODES {
                            next.push(f.clone());
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        self.node(root, 0)
    }

    fn node(&self, id: &str, level: u32) -> Option<TreeNode> {
        let c = self.records.get(id)?;
        let r = &c.record;
        let mut children = Vec::new();
        if level < TREE_LEVELS {
            for f in r.outcome.follow_ups.iter().take(TREE_CHILDREN) {
                if let Some(n) = self.node(f, level + 1) {
                    children.push(n);
                }
            }
        }
        Some(TreeNode {
            id: r.id.clone(),
            function: r.function.clone(),
            status: r.status.as_str().to_string(),
            depth: r.depth,
            attempt: r.attempt,
            ms: busy_ms(r),
            cold: r.outcome.timings.cold,
            follow_ups: c.follow_ups,
            more: c.follow_ups.saturating_sub(children.len()),
            children,
        })
    }

    async fn read_dead_letters(&mut self, tenants: &[TenantId], budget: &mut usize) {
        if self
            .dead_at
            .is_some_and(|t| t.elapsed() < DEAD_LETTERS_EVERY)
        {
            return;
        }
        self.dead_at = Some(Instant::now());
        let mut all = Vec::new();
        let mut truncated = false;
        let mut ok = true;
        for t in tenants {
            match self.queue.dead_letters(t, DEAD_LETTERS_READ).await {
                Ok(v) => {
                    truncated |= v.len() >= DEAD_LETTERS_READ;
                    all.extend(v.into_iter().map(|d| DeadRow {
                        tenant: t.to_string(),
                        dead: d,
                    }));
                }
                Err(error) => {
                    tracing::debug!(%error, "dashboard: reading dead letters");
                    ok = false;
                }
            }
        }
        if !ok && all.is_empty() {
            return;
        }
        let mut counts: HashMap<String, u32> = HashMap::new();
        for d in &all {
            if let Some(f) = &d.dead.function {
                *counts.entry(format!("{}/{f}", d.tenant)).or_default() += 1;
            }
        }
        all.sort_by(|a, b| (b.dead.at_ms, &b.dead.entry_id).cmp(&(a.dead.at_ms, &a.dead.entry_id)));
        all.truncate(DEAD_LETTERS_SHOWN);
        for d in &all {
            if d.dead.invocation_id.is_empty() || !valid_run_id(&d.dead.invocation_id) {
                continue;
            }
            if let Ok(t) = TenantId::new(&d.tenant) {
                self.fetch(
                    &t,
                    std::slice::from_ref(&d.dead.invocation_id),
                    budget,
                    "dead-letter",
                )
                .await;
            }
        }
        self.dead = all;
        self.dead_counts = counts;
        self.dead_truncated = truncated;
    }

    fn update_percentiles(&mut self) {
        for d in self.durations.values_mut().filter(|d| d.dirty) {
            let mut v: Vec<f64> = d.ms.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| {
                let i = ((v.len() as f64 - 1.0) * q).round() as usize;
                v.get(i).copied()
            };
            d.p50 = at(0.5);
            d.p99 = at(0.99);
            d.dirty = false;
        }
    }

    fn recent_invocations(&self) -> Vec<InvocationRow> {
        let mut v: Vec<&Cached> = self
            .records
            .values()
            .filter(|c| self.scope.sees(c.tenant.as_str()))
            .collect();
        let newest_first = |c: &&Cached| {
            std::cmp::Reverse((
                c.record.completed_at_ms.unwrap_or(c.record.created_at_ms),
                c.record.id.clone(),
            ))
        };
        v.sort_by_key(newest_first);
        let dead: Vec<&Cached> = v
            .iter()
            .filter(|c| c.source == "dead-letter")
            .take(RECENT_DEAD)
            .copied()
            .collect();
        let mut shown: Vec<&Cached> = v
            .iter()
            .filter(|c| c.source != "dead-letter")
            .take(RECENT_INVOCATIONS - dead.len())
            .copied()
            .collect();
        shown.extend(dead);
        shown.sort_by_key(newest_first);
        shown
            .into_iter()
            .map(|c| {
                let r = &c.record;
                let error = r.outcome.error.as_ref();
                InvocationRow {
                    id: r.id.clone(),
                    tenant: c.tenant.to_string(),
                    function: r.function.clone(),
                    run_id: r.run_id.clone(),
                    status: r.status.as_str().to_string(),
                    attempt: r.attempt,
                    depth: r.depth,
                    created_at_ms: r.created_at_ms,
                    completed_at_ms: r.completed_at_ms,
                    queue_ms: round(r.outcome.timings.queue_wait_us as f64 / 1000.0, 3),
                    ms: busy_ms(r),
                    cold: r.outcome.timings.cold,
                    worker: r.outcome.worker.clone(),
                    error_class: error.map(|e| e.class.to_string()),
                    error: error.map(|e| e.message.chars().take(LOG_PREVIEW).collect()),
                    logs: c.logs,
                    log: r.outcome.logs.first().map(|l| {
                        format!("[{}] {}", l.level, l.message)
                            .chars()
                            .take(LOG_PREVIEW)
                            .collect()
                    }),
                    source: c.source,
                }
            })
            .collect()
    }
}
