//! Loaded function versions, kept warm in this worker.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use eddy_protocol::variables::Keyring;
use eddy_protocol::{Ceilings, FunctionName, FunctionSpec, TenantId};
use eddy_queue::Queue;
use eddy_runtime::{Limits, Processor, Runtime};

/// A function version ready to invoke.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) spec: FunctionSpec,
    pub(crate) processor: Arc<Processor>,
    pub(crate) limits: Limits,
    pub(crate) config: Vec<(String, String)>,
    /// Smoothed run time of this version here, in µs (decides where it runs:
    /// see `fair.rs`).
    pub(crate) run_us: std::sync::atomic::AtomicU64,
}

impl Loaded {
    /// Folds one run time into the smoothed figure (EWMA, 1/8 weight).
    pub(crate) fn observe_run(&self, us: u64) {
        use std::sync::atomic::Ordering;
        let old = self.run_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        self.run_us.store(new.max(1), Ordering::Relaxed);
    }

    pub(crate) fn typical_run_us(&self) -> u64 {
        self.run_us.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Why a function could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadFailure {
    /// Not there (never deployed, or deleted): a final error.
    Missing(String),
    /// The module is not a processor: a final error.
    Invalid(String),
    /// The function exists but its module is gone from Redis: Eddy lost
    /// it, a final error that is not the function's.
    Lost(String),
    /// Redis or the disk failed: try again later.
    Transient(String),
}

type Key = (TenantId, FunctionName, u32);

/// How long a resolved "current version" is trusted. A deploy is picked up by
/// new invocations within this time; pinned versions never go stale.
const CURRENT_TTL: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub(crate) struct Functions {
    /// Every loaded spec is clamped to these: a spec written before the
    /// operator lowered a ceiling (or by a gateway with other ceilings)
    /// cannot lift a limit here.
    ceilings: Ceilings,
    loaded: Mutex<HashMap<Key, Arc<Loaded>>>,
    /// The operator's keys: they check artifacts shared through Redis
    /// before one is mapped, and sign the ones this worker compiles.
    keys: Option<Arc<Keyring>>,
    current: Mutex<HashMap<(TenantId, FunctionName), (u32, Instant)>>,
}

fn limits_of(spec: &FunctionSpec, ceilings: &Ceilings) -> Limits {
    let c = &spec.config;
    Limits {
        memory_bytes: c.memory_mb.saturating_mul(1 << 20),
        timeout: Duration::from_millis(c.timeout_ms),
        max_output_bytes: usize::try_from(c.max_output_bytes).unwrap_or(usize::MAX),
        max_emits: c.max_emits,
        max_emit_bytes: usize::try_from(c.max_emit_bytes).unwrap_or(usize::MAX),
        max_log_bytes: usize::try_from(c.max_log_bytes).unwrap_or(usize::MAX),
        max_completion_bytes: usize::try_from(ceilings.completion_bytes).unwrap_or(usize::MAX),
        outbound: eddy_runtime::OutboundLimits {
            // Checked when the version was deployed; a spec that does not
            // parse here (written by another release) allows nothing.
            allowed_hosts: eddy_protocol::AllowedHosts::parse(&c.allowed_hosts).unwrap_or_else(
                |e| {
                    tracing::warn!(tenant = %spec.tenant, function = %spec.name, error = %e,
                        "allowed_hosts does not parse; outbound HTTP is denied");
                    eddy_protocol::AllowedHosts::default()
                },
            ),
            max_requests: c.max_outbound_requests,
            max_bytes: c.max_outbound_bytes,
        },
    }
}

impl Functions {
    pub(crate) fn new(ceilings: Ceilings, keys: Option<Arc<Keyring>>) -> Self {
        Functions {
            ceilings,
            keys,
            ..Functions::default()
        }
    }

    fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
        m.lock()
    }

    /// Versions loaded now.
    pub(crate) fn len(&self) -> usize {
        Self::lock(&self.loaded).len()
    }

    /// Whether a loaded version runs module `sha256`.
    pub(crate) fn uses(&self, sha256: &str) -> bool {
        Self::lock(&self.loaded)
            .values()
            .any(|l| l.spec.sha256 == sha256)
    }

    /// Drops a tenant's loaded versions of module `sha256` (deleted).
    pub(crate) fn evict_module(&self, tenant: &TenantId, sha256: &str) {
        Self::lock(&self.loaded).retain(|(t, _, _), l| !(t == tenant && l.spec.sha256 == sha256));
    }

    /// Drops every loaded version of a function (its memory goes with the
    /// last running invocation). Returns how many were dropped.
    pub(crate) fn evict(&self, tenant: &TenantId, name: &FunctionName) -> usize {
        let mut loaded = Self::lock(&self.loaded);
        let before = loaded.len();
        loaded.retain(|(t, f, _), _| !(t == tenant && f == name));
        before - loaded.len()
    }

    /// The version to run: the pinned one, or the current one.
    pub(crate) async fn resolve(
        &self,
        queue: &Queue,
        tenant: &TenantId,
        name: &FunctionName,
        pinned: Option<u32>,
    ) -> Result<u32, LoadFailure> {
        if let Some(v) = pinned {
            return Ok(v);
        }
        let key = (tenant.clone(), name.clone());
        if let Some((v, at)) = Self::lock(&self.current).get(&key)
            && at.elapsed() < CURRENT_TTL
        {
            return Ok(*v);
        }
        match queue.current_version(tenant, name).await {
            Ok(Some(v)) => {
                Self::lock(&self.current).insert(key, (v, Instant::now()));
                Ok(v)
            }
            Ok(None) => Err(LoadFailure::Missing(format!("function `{name}` not found"))),
            Err(e) => Err(LoadFailure::Transient(e.to_string())),
        }
    }

    /// The module's artifact shared through Redis, checked against the
    /// operator's keys and mapped: a new worker's first invocation of a big
    /// component costs a download, not a compile. None when there is no
    /// usable one (then the caller compiles).
    async fn shared(
        &self,
        queue: &Queue,
        runtime: &Arc<Runtime>,
        tenant: &TenantId,
        sha256: &str,
    ) -> Option<Arc<Processor>> {
        let keys = self.keys.as_ref()?;
        let started = Instant::now();
        let engine = runtime.cache().engine_key();
        let (signature, chunks) = match queue.artifact(tenant, sha256, engine).await {
            Ok(Some(shared)) => shared,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, "reading a shared artifact; compiling instead");
                return None;
            }
        };
        let fetched = started.elapsed();
        let (keys, rt, sha) = (keys.clone(), runtime.clone(), sha256.to_string());
        let mapped = tokio::task::spawn_blocking(move || {
            let engine = rt.cache().engine_key();
            let pieces: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            if !keys.verify_artifact(&sha, engine, &signature, &pieces) {
                return Err("its signature does not verify with the operator's keys".to_string());
            }
            let artifact = eddy_queue::unpack_artifact(&chunks)?;
            drop(chunks);
            rt.load_artifact(&sha, artifact).map_err(|e| e.to_string())
        })
        .await;
        tracing::debug!(%tenant, sha256, ?fetched, took = ?started.elapsed(), "mapped a shared artifact");
        match mapped {
            Ok(Ok(p)) => Some(p),
            Ok(Err(why)) => {
                tracing::warn!(%tenant, sha256, why, "ignoring a shared artifact; compiling instead");
                None
            }
            Err(_) => None,
        }
    }

    /// Compiles the module (off the async threads) and shares the artifact.
    async fn compile(
        &self,
        queue: &Queue,
        runtime: &Arc<Runtime>,
        tenant: &TenantId,
        name: &FunctionName,
        sha256: &str,
    ) -> Result<Arc<Processor>, LoadFailure> {
        let bytes = match queue.module(tenant, sha256).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(LoadFailure::Lost(format!(
                    "module {sha256} of `{name}` is missing"
                )));
            }
            Err(e) => return Err(LoadFailure::Transient(e.to_string())),
        };
        // Compiling takes milliseconds to seconds: off the async threads,
        // which keep serving leases, reads and completions (with
        // `EDDY_THREADS=1` there is only one).
        let rt = runtime.clone();
        let processor = match tokio::task::spawn_blocking(move || rt.load(&bytes)).await {
            Ok(Ok(p)) => p,
            Ok(Err(eddy_runtime::LoadError::InvalidModule(m))) => {
                return Err(LoadFailure::Invalid(m));
            }
            Ok(Err(e)) => return Err(LoadFailure::Transient(e.to_string())),
            Err(e) => return Err(LoadFailure::Transient(format!("compiling: {e}"))),
        };
        // The bytes are the module the spec names (its address is their hash).
        if processor.sha256() != sha256 {
            return Err(LoadFailure::Lost(format!(
                "module {sha256} of `{name}` holds other bytes (sha256 {})",
                processor.sha256()
            )));
        }
        if let Some(keys) = self.keys.clone()
            && !processor.from_cache()
        {
            // Off the invocation's path: the next worker maps it.
            let (queue, rt, tenant, sha) = (
                queue.clone(),
                runtime.clone(),
                tenant.clone(),
                sha256.to_string(),
            );
            tokio::spawn(async move {
                let engine = rt.cache().engine_key().to_string();
                let signed = tokio::task::spawn_blocking(move || {
                    let bytes = rt.cache().read(&sha)?;
                    Some((
                        eddy_queue::SharedArtifact::sign(&keys, &sha, engine, &bytes),
                        sha,
                    ))
                })
                .await;
                if let Ok(Some((artifact, sha))) = signed
                    && let Err(error) = queue.put_artifact(&tenant, &sha, &artifact, true).await
                {
                    tracing::warn!(%error, "sharing a compiled artifact");
                }
            });
        }
        Ok(processor)
    }

    /// The loaded version, loading it if needed. The flag says whether this
    /// call loaded it (a cold start).
    pub(crate) async fn get(
        &self,
        queue: &Queue,
        runtime: &Arc<Runtime>,
        tenant: &TenantId,
        name: &FunctionName,
        version: u32,
    ) -> Result<(Arc<Loaded>, Option<Duration>), LoadFailure> {
        let key = (tenant.clone(), name.clone(), version);
        if let Some(l) = Self::lock(&self.loaded).get(&key) {
            return Ok((l.clone(), None));
        }
        let start = Instant::now();
        let mut spec = match queue.function(tenant, name, Some(version)).await {
            Ok(Some(spec)) => spec,
            Ok(None) => {
                return Err(LoadFailure::Missing(format!(
                    "function `{name}` version {version} not found"
                )));
            }
            Err(e) => return Err(LoadFailure::Transient(e.to_string())),
        };
        let processor = match runtime.load_cached(&spec.sha256) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => match self.shared(queue, runtime, tenant, &spec.sha256).await {
                Some(p) => p,
                None => {
                    self.compile(queue, runtime, tenant, name, &spec.sha256)
                        .await?
                }
            },
        };
        spec.config = self.ceilings.clamp(spec.config);
        let loaded = Arc::new(Loaded {
            limits: limits_of(&spec, &self.ceilings),
            config: spec.config.values.clone().into_iter().collect(),
            spec,
            processor,
            run_us: std::sync::atomic::AtomicU64::new(0),
        });
        Self::lock(&self.loaded).insert(key, loaded.clone());
        Ok((loaded, Some(start.elapsed())))
    }
}
