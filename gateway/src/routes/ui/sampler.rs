//! The shared sampler: one per gateway process while a page is open; reads
//! the controller's decisions, the workers' heartbeats and the stream counters
//! once a second.

use super::*;

/// The controller, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ControllerView {
    pub(super) leader: String,
    /// How old its last decision is.
    pub(super) age_ms: u64,
    pub(super) desired_replicas: u32,
    pub(super) current_replicas: u32,
}

/// One function, as the sampler sees it (the per-stream fields are filled
/// in by each stream).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct FunctionRow {
    /// `tenant/function`.
    pub(super) key: String,
    pub(super) tenant: String,
    pub(super) function: String,
    /// Entries not yet delivered / delivered and not acknowledged.
    pub(super) lag: u64,
    pub(super) pending: u64,
    /// Measured over the last probe interval, per second (`None` before the
    /// second probe).
    pub(super) arrivals: Option<f64>,
    pub(super) completions: Option<f64>,
    /// The controller's smoothed arrival rate, per second.
    pub(super) arrival_rate: f64,
    /// Attempts completed since the function's counters began.
    pub(super) completed: u64,
    /// Warm concurrency decided by the controller, and the workers holding it.
    pub(super) warm: u32,
    pub(super) workers: u32,
    /// Mean busy time per completed attempt over the last probe interval.
    pub(super) mean_ms: Option<f64>,
    /// The controller's smoothed mean service time.
    pub(super) service_ms: f64,
    /// When it was last active and when it scales to zero (0: unknown / not
    /// scheduled), ms since the epoch.
    pub(super) last_active_ms: u64,
    pub(super) zero_at_ms: u64,
    pub(super) reason: String,
    // Per stream, from sampled records and dead letters.
    pub(super) p50_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
    /// Durations sampled, of which cold starts.
    pub(super) samples: u32,
    pub(super) cold: u32,
    /// Dead letters (final failures) of the function, in what was read.
    pub(super) errors: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct WorkerRow {
    pub(super) id: String,
    pub(super) concurrency: u32,
    pub(super) in_flight: u32,
    pub(super) completed: u64,
    /// Invocations per second, from `completed` between heartbeats.
    pub(super) rate: Option<f64>,
    pub(super) draining: bool,
    pub(super) rss_bytes: u64,
    pub(super) warm: u32,
    pub(super) started_at_ms: u64,
    pub(super) seen_ms_ago: u64,
    /// In flight per `tenant/function` (a tenant sees its own only).
    pub(super) streams: BTreeMap<String, u32>,
}

/// What the sampler publishes every tick.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) at_ms: u64,
    pub(super) controller: Option<ControllerView>,
    /// Sorted by key.
    pub(super) functions: Vec<FunctionRow>,
    pub(super) workers: Vec<WorkerRow>,
    pub(super) stopping: bool,
}

/// A handle on the sampler; the task runs while one exists.
#[derive(Debug)]
pub(super) struct Sampler {
    pub(super) rx: watch::Receiver<Arc<Shared>>,
}

pub(super) type Samplers = Mutex<HashMap<String, Weak<Sampler>>>;
pub(super) static SAMPLERS: LazyLock<Samplers> = LazyLock::new(Samplers::default);

/// The sampler of `state`'s Redis, started if none runs.
pub(super) fn sampler(state: &AppState) -> Arc<Sampler> {
    let mut map = SAMPLERS.lock();
    let url = state.config.redis_url.clone();
    if let Some(s) = map.get(&url).and_then(Weak::upgrade) {
        return s;
    }
    let (tx, rx) = watch::channel(Arc::new(Shared::default()));
    let s = Arc::new(Sampler { rx });
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(url, Arc::downgrade(&s));
    tokio::spawn(sample(state.queue.clone(), tx));
    s
}

/// Resolves at SIGTERM or SIGINT (never, if they cannot be watched). The
/// `eddy` binary watches them too; every listener is told.
pub(super) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

pub(super) async fn sample(queue: Queue, tx: watch::Sender<Arc<Shared>>) {
    let mut memory = SamplerMemory::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => {
                STOPPING.store(true, Ordering::Release);
                tx.send_replace(Arc::new(Shared { stopping: true, ..Shared::default() }));
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
        let shared = memory.tick(&queue).await;
        tx.send_replace(Arc::new(shared));
    }
}

/// One probe of a function's stream counters, and the rates since the one
/// before.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pub(super) stats: (u64, u64, u64),
    pub(super) lag: u64,
    pub(super) pending: u64,
    pub(super) at: Instant,
    pub(super) changed_at: Option<Instant>,
    pub(super) arrivals: Option<f64>,
    pub(super) completions: Option<f64>,
    pub(super) mean_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct WorkerProbe {
    pub(super) completed: u64,
    pub(super) seen_at_ms: u64,
    pub(super) rate: Option<f64>,
}

#[derive(Debug, Default)]
pub(super) struct SamplerMemory {
    pub(super) index: Vec<(TenantId, FunctionName)>,
    pub(super) index_at: Option<Instant>,
    pub(super) probes: HashMap<String, Probe>,
    pub(super) workers: HashMap<String, WorkerProbe>,
    /// Where the idle round robin goes on.
    pub(super) cursor: String,
}

pub(super) fn round(x: f64, places: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let p = 10f64.powi(places);
    (x * p).round() / p
}

impl SamplerMemory {
    async fn refresh_index(&mut self, queue: &Queue) {
        let tenants = match queue.tenants().await {
            Ok(t) => t,
            Err(error) => {
                tracing::debug!(%error, "dashboard: listing tenants");
                return;
            }
        };
        let mut index = Vec::new();
        for t in tenants.into_iter().take(INDEX_TENANTS) {
            match queue.function_names(&t).await {
                Ok(names) => index.extend(names.into_iter().map(|f| (t.clone(), f))),
                Err(error) => tracing::debug!(%error, "dashboard: listing functions"),
            }
        }
        self.index = index;
        self.index_at = Some(Instant::now());
    }

    async fn tick(&mut self, queue: &Queue) -> Shared {
        let now_ms = eddy_protocol::now_ms();
        let controller: Option<ControllerState> = queue
            .controller_state()
            .await
            .inspect_err(|error| tracing::debug!(%error, "dashboard: controller state"))
            .ok()
            .flatten();
        if self.index_at.is_none_or(|t| t.elapsed() >= INDEX_EVERY) {
            self.refresh_index(queue).await;
        }

        // Every function: deployed ones, and whatever the controller decided on.
        let mut rows: BTreeMap<String, (String, String, Option<&FunctionDecision>)> =
            BTreeMap::new();
        for (t, f) in &self.index {
            rows.insert(format!("{t}/{f}"), (t.to_string(), f.to_string(), None));
        }
        if let Some(c) = &controller {
            for d in &c.functions {
                rows.insert(
                    format!("{}/{}", d.tenant, d.function),
                    (d.tenant.clone(), d.function.clone(), Some(d)),
                );
            }
        }

        // Which streams to probe: the active ones, longest unprobed first,
        // then idle ones round robin.
        let now = Instant::now();
        let mut active = Vec::new();
        let mut idle = Vec::new();
        for (key, (_, _, d)) in &rows {
            let probe = self.probes.get(key);
            let busy = d.is_some_and(|d| d.idle_ms < ACTIVE_FOR_MS || d.lag + d.pending > 0)
                || probe.is_some_and(|p| {
                    p.lag + p.pending > 0
                        || p.changed_at.is_some_and(|c| {
                            now.duration_since(c) < Duration::from_millis(ACTIVE_FOR_MS)
                        })
                });
            if busy || probe.is_none() && active.len() < ACTIVE_PROBES {
                active.push((probe.map(|p| p.at), key.clone()));
            } else {
                idle.push(key.clone());
            }
        }
        active.sort();
        let mut chosen: Vec<String> = active
            .into_iter()
            .take(ACTIVE_PROBES)
            .map(|(_, k)| k)
            .collect();
        let start = idle.partition_point(|k| *k <= self.cursor);
        let picked: Vec<String> = idle
            .iter()
            .cycle()
            .skip(start)
            .take(IDLE_PROBES.min(idle.len()))
            .cloned()
            .collect();
        if let Some(last) = picked.last() {
            self.cursor = last.clone();
        }
        chosen.extend(picked);

        let pairs: Vec<(String, String)> = chosen
            .iter()
            .filter_map(|k| {
                let (t, f, _) = rows.get(k)?;
                let (t, f) = (TenantId::new(t).ok()?, FunctionName::new(f).ok()?);
                Some((keys::stream(&t, &f), keys::stats(&t, &f)))
            })
            .collect();
        match queue.stream_stats(&pairs).await {
            Ok(stats) => {
                let at = Instant::now();
                for (key, st) in chosen.iter().zip(stats) {
                    self.record_probe(key, &st, at);
                }
            }
            Err(error) => tracing::debug!(%error, "dashboard: stream counters"),
        }
        self.probes.retain(|k, _| rows.contains_key(k));

        let c_at = controller.as_ref().map(|c| c.at_ms).unwrap_or(now_ms);
        let functions = rows
            .into_iter()
            .map(|(key, (tenant, function, d))| {
                let p = self.probes.get(&key);
                FunctionRow {
                    lag: d.map(|d| d.lag).or(p.map(|p| p.lag)).unwrap_or(0),
                    pending: d.map(|d| d.pending).or(p.map(|p| p.pending)).unwrap_or(0),
                    arrivals: p.and_then(|p| p.arrivals),
                    completions: p.and_then(|p| p.completions),
                    arrival_rate: round(d.map(|d| d.arrival_rate).unwrap_or(0.0), 2),
                    completed: p.map(|p| p.stats.1).unwrap_or(0),
                    warm: d.map(|d| d.concurrency).unwrap_or(0),
                    workers: d.map(|d| d.workers.len() as u32).unwrap_or(0),
                    mean_ms: p.and_then(|p| p.mean_ms),
                    service_ms: round(d.map(|d| d.service_ms).unwrap_or(0.0), 3),
                    // Rounded so that a steady value stays the same between
                    // ticks (and is not sent again).
                    last_active_ms: d
                        .map(|d| c_at.saturating_sub(d.idle_ms) / 100 * 100)
                        .unwrap_or(0),
                    zero_at_ms: d
                        .filter(|d| d.zero_in_ms > 0)
                        .map(|d| (c_at + d.zero_in_ms) / 100 * 100)
                        .unwrap_or(0),
                    reason: d.map(|d| d.reason.clone()).unwrap_or_default(),
                    key,
                    tenant,
                    function,
                    p50_ms: None,
                    p99_ms: None,
                    samples: 0,
                    cold: 0,
                    errors: 0,
                }
            })
            .collect();

        let workers = match queue.workers().await {
            Ok(w) => w,
            Err(error) => {
                tracing::debug!(%error, "dashboard: workers");
                Vec::new()
            }
        };
        let mut seen = HashSet::new();
        let workers = workers
            .into_iter()
            .map(|w| {
                seen.insert(w.id.clone());
                let prev = self.workers.get(&w.id).copied();
                let rate = match prev {
                    Some(p) if w.seen_at_ms > p.seen_at_ms => Some(round(
                        w.completed.saturating_sub(p.completed) as f64 * 1000.0
                            / (w.seen_at_ms - p.seen_at_ms) as f64,
                        1,
                    )),
                    Some(p) => p.rate,
                    None => None,
                };
                let stale = w.is_stale(now_ms, eddy_protocol::control::WORKER_TIMEOUT);
                self.workers.insert(
                    w.id.clone(),
                    WorkerProbe {
                        completed: w.completed,
                        seen_at_ms: w.seen_at_ms,
                        rate,
                    },
                );
                WorkerRow {
                    rate: if stale { Some(0.0) } else { rate },
                    streams: w
                        .streams
                        .iter()
                        .filter_map(|(s, n)| {
                            keys::parse_stream(s).map(|(t, f)| (format!("{t}/{f}"), *n))
                        })
                        .collect(),
                    id: w.id,
                    concurrency: w.concurrency,
                    in_flight: w.in_flight,
                    completed: w.completed,
                    draining: w.draining,
                    rss_bytes: w.rss_bytes,
                    warm: w.warm,
                    started_at_ms: w.started_at_ms,
                    seen_ms_ago: now_ms.saturating_sub(w.seen_at_ms) / 100 * 100,
                }
            })
            .collect();
        self.workers.retain(|id, _| seen.contains(id));

        Shared {
            at_ms: now_ms,
            controller: controller.map(|c| ControllerView {
                leader: c.leader,
                age_ms: now_ms.saturating_sub(c.at_ms),
                desired_replicas: c.desired_replicas,
                current_replicas: c.current_replicas,
            }),
            functions,
            workers,
            stopping: false,
        }
    }

    fn record_probe(&mut self, key: &str, st: &StreamStats, at: Instant) {
        let stats = (st.added, st.done, st.busy_us);
        let next = match self.probes.get(key) {
            Some(p) => {
                let dt = at.duration_since(p.at).as_secs_f64().max(0.001);
                let added = st.added.saturating_sub(p.stats.0);
                let done = st.done.saturating_sub(p.stats.1);
                let busy = st.busy_us.saturating_sub(p.stats.2);
                let changed = stats != p.stats || st.lag != p.lag || st.pending != p.pending;
                Probe {
                    stats,
                    lag: st.lag,
                    pending: st.pending,
                    at,
                    changed_at: if changed { Some(at) } else { p.changed_at },
                    arrivals: Some(round(added as f64 / dt, 2)),
                    completions: Some(round(done as f64 / dt, 2)),
                    mean_ms: (done > 0).then(|| round(busy as f64 / done as f64 / 1000.0, 3)),
                }
            }
            None => Probe {
                stats,
                lag: st.lag,
                pending: st.pending,
                at,
                changed_at: None,
                arrivals: None,
                completions: None,
                mean_ms: None,
            },
        };
        self.probes.insert(key.to_string(), next);
    }
}
