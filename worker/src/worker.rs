//! The worker loop: read, dispatch, maintain leases, reclaim, retry, drain.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_protocol::keys;
use eddy_queue::{Completion, Delivery, Queue, QueueConfig};
use eddy_runtime::{Runtime, RuntimeConfig};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::callbacks::{CallbackConfig, Dispatcher};
use crate::functions::Functions;
use crate::process;

/// Settings of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub redis_url: String,
    /// Invocations running at once.
    pub concurrency: usize,
    /// How long a delivery may go without a heartbeat before another worker
    /// reclaims it.
    pub lease: Duration,
    /// Deliveries after which an entry that never completes is dead-lettered.
    pub max_deliveries: u64,
    pub cache_dir: PathBuf,
    /// Pooling allocator slots (at least `concurrency`).
    pub max_instances: u32,
    /// This consumer's name; unique per process when absent.
    pub consumer: Option<String>,
    pub record_ttl: Duration,
    /// Callback delivery.
    pub callbacks: CallbackConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            concurrency: 16,
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            cache_dir: PathBuf::from(".eddy/artifacts"),
            max_instances: 256,
            consumer: None,
            record_ttl: QueueConfig::default().record_ttl,
            callbacks: CallbackConfig::default(),
        }
    }
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("runtime: {0}")]
    Runtime(#[from] eddy_runtime::LoadError),
    #[error("queue: {0}")]
    Queue(#[from] eddy_queue::Error),
    #[error("callback client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Entries this worker holds, per stream: started ones need their lease
/// extended.
type InFlight = Arc<Mutex<HashMap<String, HashSet<String>>>>;

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    consumer: String,
    queue: Queue,
    runtime: Arc<Runtime>,
    functions: Arc<Functions>,
    inflight: InFlight,
    streams: Arc<Mutex<Vec<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unique_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

impl Worker {
    /// Connects to Redis and builds the runtime.
    pub async fn start(config: WorkerConfig) -> Result<Self, WorkerError> {
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: config.cache_dir.clone(),
            max_instances: config.max_instances.max(config.concurrency as u32),
            ..RuntimeConfig::default()
        })?;
        let queue = Queue::connect(
            &config.redis_url,
            QueueConfig {
                record_ttl: config.record_ttl,
            },
        )
        .await?;
        let consumer = config.consumer.clone().unwrap_or_else(unique_consumer);
        info!(consumer, concurrency = config.concurrency, "worker started");
        Ok(Worker {
            config,
            consumer,
            queue,
            runtime: Arc::new(runtime),
            functions: Arc::new(Functions::default()),
            inflight: Arc::default(),
            streams: Arc::default(),
        })
    }

    /// This worker's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs until `shutdown` turns true, then drains: stops reading, finishes
    /// in-flight work, gives back what it had not started, leaves the group.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let this = Arc::new(self);
        let (stop_maint, maint_rx) = watch::channel(false);
        let maintenance = tokio::spawn(this.clone().maintain(maint_rx.clone()));
        let dispatcher = Arc::new(Dispatcher::new(
            this.queue.clone(),
            this.config.callbacks.clone(),
            this.consumer.clone(),
        )?);
        let callbacks = tokio::spawn(dispatcher.run(maint_rx));

        let slots = Arc::new(Semaphore::new(this.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut conn = None;
        let mut backoff = Duration::from_millis(50);
        this.discover().await;

        while !*shutdown.borrow() {
            // Wait for a free slot first: read only what can start now.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits() + 1;
            let streams = lock(&this.streams).clone();
            if streams.is_empty() {
                drop(first);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.changed() => {}
                }
                this.discover().await;
                continue;
            }
            if conn.is_none() {
                match this.queue.blocking_connection().await {
                    Ok(c) => conn = Some(c),
                    Err(error) => {
                        warn!(%error, "connecting the reader; retrying");
                        drop(first);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            // The read is never cancelled midway (a cancelled XREADGROUP may
            // still deliver entries nobody sees); its short block bounds how
            // long a drain waits for it.
            let read = this
                .queue
                .read(c, &this.consumer, &streams, free, 500)
                .await;
            let (deliveries, malformed) = match read {
                Ok(r) => {
                    backoff = Duration::from_millis(50);
                    r
                }
                Err(error) => {
                    warn!(%error, "reading streams; reconnecting");
                    conn = None;
                    drop(first);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            for m in malformed {
                warn!(stream = %m.stream, entry = %m.entry_id, reason = %m.reason, "quarantining malformed entry");
                if let Err(error) = this.queue.quarantine(&m).await {
                    warn!(%error, "quarantine failed; the entry will be reclaimed");
                }
            }
            let mut first = Some(first);
            for d in deliveries {
                this.hold(&d);
                let permit = match first.take() {
                    Some(p) => Some(p),
                    None if *shutdown.borrow() => None,
                    None => tokio::select! {
                        p = slots.clone().acquire_owned() => p.ok(),
                        _ = shutdown.changed() => None,
                    },
                };
                match permit {
                    Some(permit) => {
                        let w = this.clone();
                        tasks.spawn(async move {
                            w.handle(d).await;
                            drop(permit);
                        });
                    }
                    None => this.give_back(&d).await,
                }
            }
        }

        info!(in_flight = tasks.len(), "draining");
        while tasks.join_next().await.is_some() {}
        let _ = stop_maint.send(true);
        let _ = maintenance.await;
        let _ = callbacks.await;
        let streams = lock(&this.streams).clone();
        for stream in streams {
            match this.queue.forget_consumer(&stream, &this.consumer).await {
                Ok(_) => {}
                Err(error) => warn!(%error, stream, "leaving the group"),
            }
        }
        info!("drained");
        Ok(())
    }

    fn hold(&self, d: &Delivery) {
        lock(&self.inflight)
            .entry(d.stream.clone())
            .or_default()
            .insert(d.entry_id.clone());
    }

    fn let_go(&self, d: &Delivery) {
        if let Some(set) = lock(&self.inflight).get_mut(&d.stream) {
            set.remove(&d.entry_id);
        }
    }

    /// Hands a delivery that will not be started back to the group.
    async fn give_back(&self, d: &Delivery) {
        if let Err(error) = self.queue.release(d).await {
            warn!(%error, entry = %d.entry_id, "release failed; the entry will be reclaimed after its lease");
        }
        self.let_go(d);
    }

    /// Runs one delivery to its completion.
    async fn handle(&self, d: Delivery) {
        let completion = if d.deliveries > self.config.max_deliveries {
            Some(process::failed(
                process::final_error(
                    "crashed",
                    format!(
                        "delivered {} times without completing: the worker running it crashed or stalled each time",
                        d.deliveries - 1
                    ),
                ),
                true,
                &self.consumer,
            ))
        } else {
            self.execute(&d).await
        };
        // None: a transient failure before running. The entry stays pending
        // and comes back through reclaim after its lease.
        if let Some(c) = completion {
            self.complete(&d, &c).await;
        }
        self.let_go(&d);
    }

    async fn execute(&self, d: &Delivery) -> Option<Completion> {
        let env = &d.envelope;
        if env
            .deadline_ms
            .is_some_and(|dl| eddy_protocol::now_ms() > dl)
        {
            return Some(process::failed(
                process::final_error(
                    "timeout",
                    "the invocation's deadline passed before it started".into(),
                ),
                false,
                &self.consumer,
            ));
        }
        let loaded = async {
            let version = self
                .functions
                .resolve(&self.queue, &env.tenant, &env.function, env.version)
                .await?;
            self.functions
                .get(
                    &self.queue,
                    &self.runtime,
                    &env.tenant,
                    &env.function,
                    version,
                )
                .await
        }
        .await;
        match loaded {
            Ok((loaded, load_time)) => {
                Some(process::run(&self.runtime, &loaded, d, load_time, &self.consumer).await)
            }
            Err(failure) => match process::load_failure(failure) {
                Ok(error) => Some(process::failed(error, false, &self.consumer)),
                Err(reason) => {
                    warn!(invocation = %env.id, reason, "could not load the function; leaving it for reclaim");
                    None
                }
            },
        }
    }

    /// Completes, retrying while Redis is away. Gives up only after several
    /// leases: by then the entry has been reclaimed and the other completion
    /// wins the XACK.
    async fn complete(&self, d: &Delivery, c: &Completion) {
        let mut wait = Duration::from_millis(50);
        let give_up = tokio::time::Instant::now() + self.config.lease * 4;
        loop {
            match self.queue.complete(d, c).await {
                Ok(done) => {
                    debug!(invocation = %d.envelope.id, status = %done.status, "completed");
                    return;
                }
                Err(error) if error.is_transient() && tokio::time::Instant::now() < give_up => {
                    warn!(%error, invocation = %d.envelope.id, "completion failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    warn!(%error, invocation = %d.envelope.id, "completion failed; the entry will be reclaimed");
                    return;
                }
            }
        }
    }

    /// Refreshes the list of streams to read: every function of every tenant
    /// (the controller narrows this to assignments).
    async fn discover(&self) {
        let found = async {
            let mut streams = Vec::new();
            for tenant in self.queue.tenants().await? {
                for f in self.queue.function_names(&tenant).await? {
                    streams.push(keys::stream(&tenant, &f));
                }
            }
            Ok::<_, eddy_queue::Error>(streams)
        }
        .await;
        match found {
            Ok(mut streams) => {
                streams.sort();
                // A stream seen for the first time gets its group made sure
                // of (deploy creates it; a lost stream key is re-created for
                // a function that still exists).
                let known = lock(&self.streams).clone();
                for s in streams.iter().filter(|s| known.binary_search(s).is_err()) {
                    if let Err(error) = self.queue.ensure_group(s).await {
                        debug!(%error, stream = %s, "creating the consumer group");
                    }
                }
                *lock(&self.streams) = streams;
            }
            Err(error) => warn!(%error, "discovering streams"),
        }
    }

    /// Background duties: lease heartbeats, reclaiming crashed work, moving
    /// due retries, discovering streams, trimming.
    async fn maintain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(100);
        let lease = self.config.lease;
        let every = |d: Duration| (d.as_millis() / tick.as_millis()).max(1) as u64;
        let (extend_every, reclaim_every) = (every(lease / 3), every(lease / 2));
        let (discover_every, trim_every) = (
            every(Duration::from_secs(1)),
            every(Duration::from_secs(10)),
        );
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => return,
            }
            n += 1;
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
            }
            if n.is_multiple_of(trim_every) {
                let streams = lock(&self.streams).clone();
                for s in streams {
                    if let Err(error) = self.queue.trim(&s).await {
                        debug!(%error, stream = s, "trimming");
                    }
                }
            }
        }
    }

    async fn extend_leases(&self) {
        let held: Vec<(String, Vec<String>)> = lock(&self.inflight)
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(s, ids)| (s.clone(), ids.iter().cloned().collect()))
            .collect();
        for (stream, ids) in held {
            if let Err(error) = self.queue.extend(&stream, &self.consumer, &ids).await {
                warn!(%error, stream, "extending leases");
            }
        }
    }

    async fn promote_retries(&self) -> Result<(), eddy_queue::Error> {
        let now = eddy_protocol::now_ms();
        for tenant in self.queue.tenants().await? {
            self.queue.promote_due(&tenant, now, 256).await?;
        }
        Ok(())
    }

    /// Takes over entries whose lease ran out and runs them here.
    async fn reclaim(self: &Arc<Self>) {
        let min_idle = self.config.lease.as_millis() as u64;
        let streams = lock(&self.streams).clone();
        for stream in streams {
            match self
                .queue
                .reclaim(&stream, &self.consumer, min_idle, 64)
                .await
            {
                Ok((deliveries, malformed)) => {
                    for m in malformed {
                        let _ = self.queue.quarantine(&m).await;
                    }
                    for d in deliveries {
                        info!(invocation = %d.envelope.id, deliveries = d.deliveries, "reclaimed");
                        self.hold(&d);
                        let w = self.clone();
                        tokio::spawn(async move { w.handle(d).await });
                    }
                }
                Err(error) => debug!(%error, stream, "reclaiming"),
            }
        }
    }
}
