//! The engine, module loading and the invocation itself.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline, WasmBacktrace,
};
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::{v1, v2};
use crate::cache::ArtifactCache;
use crate::capture::{Capture, LogLine, LogSource};
use crate::error::{InvokeError, LimitKind, LoadError};
use crate::host::{
    Emit, GuestFault, HostState, LimitHit, MAX_ERROR_CODE, MAX_ERROR_MESSAGE, truncate,
};
use crate::limits::{ComponentLimits, EMIT_COST, LOG_LINE_COST, Limits};
use crate::outbound::{Net, Outbound, OutboundReport};
use crate::pool::{Admission, Pool};
use crate::ticker::Ticker;
use crate::variables::{Redactor, VariableSource, Vars};

/// What an outbound request's record entry costs besides its method,
/// origin and error: its numbers and field names as JSON.
const OUTBOUND_CALL_COST: usize = 96;

/// Process-wide runtime settings. Per-function limits are [`Limits`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled artifacts are kept.
    pub cache_dir: PathBuf,
    /// Component instances that may be alive at once (pooling allocator
    /// slots); each tenant may hold half of them (see [`Pool`]).
    pub max_instances: u32,
    /// Upper bound for any function's memory limit.
    pub max_memory_bytes: u64,
    /// The largest component shape admitted.
    pub component: ComponentLimits,
    /// Memory all live guests may reserve together (their memory limits
    /// added up); each tenant may hold half (see [`Pool`]).
    pub guest_memory_bytes: u64,
    /// Largest module accepted.
    pub max_module_bytes: usize,
    /// Granularity of wall-clock timeouts.
    pub epoch_tick: Duration,
    /// Internal addresses guests may still reach over outbound HTTP (see
    /// `outbound.rs`); empty: none.
    pub outbound_allowlist: eddy_protocol::callback::Allowlist,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: PathBuf::from(".eddy/artifacts"),
            max_instances: 1_000,
            max_memory_bytes: 512 << 20,
            component: ComponentLimits::default(),
            guest_memory_bytes: 4 << 30,
            max_module_bytes: 64 << 20,
            epoch_tick: Duration::from_millis(1),
            outbound_allowlist: Default::default(),
        }
    }
}

/// One invocation as the runtime sees it.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub id: String,
    pub run_id: String,
    pub function: String,
    pub attempt: u32,
    pub depth: u32,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub config: Vec<(String, String)>,
    /// The tenant that owns the function.
    pub tenant: String,
    /// The function's version that runs (0 outside a deployment).
    pub version: u32,
    /// The invocation's trace context; its outbound requests carry children
    /// of it.
    pub traceparent: Option<String>,
    /// Where `wasi:config/store` reads come from; none: the guest sees no
    /// variables.
    pub variables: Option<Arc<dyn VariableSource>>,
}

/// A processor's successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub content_type: String,
    pub payload: Vec<u8>,
}

/// Time spent per phase of one invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Creating the store and instantiating the component.
    pub instantiate: Duration,
    /// The `handle` call.
    pub run: Duration,
}

/// Everything one invocation did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The output, or why there is none.
    pub result: Result<Output, InvokeError>,
    /// Follow-ups to commit. Always empty when `result` is an error: emits
    /// exist only if the invocation succeeded.
    pub emits: Vec<Emit>,
    /// `log` calls, stdout and stderr, in order.
    pub logs: Vec<LogLine>,
    pub timings: Timings,
    /// Epoch ticks that passed while it ran.
    pub epoch_ticks: u64,
    /// Its outbound HTTP requests, in order.
    pub outbound: Vec<OutboundReport>,
}

impl Report {
    /// What the completion of this report carries, in bytes: the output,
    /// every log line (text plus [`LOG_LINE_COST`]) and every follow-up
    /// (payload, function name and content type plus [`EMIT_COST`]).
    pub fn completion_bytes(&self) -> usize {
        let output = match &self.result {
            Ok(o) => o.payload.len(),
            Err(e) => e.to_string().len(),
        };
        let logs: usize = self
            .logs
            .iter()
            .map(|l| l.message.len() + LOG_LINE_COST)
            .sum();
        let emits: usize = self
            .emits
            .iter()
            .map(|e| e.payload.len() + e.function.len() + e.content_type.len() + EMIT_COST)
            .sum();
        let outbound: usize = self
            .outbound
            .iter()
            .map(|o| {
                o.call.method.len()
                    + o.call.origin.len()
                    + o.call.error.as_ref().map_or(0, String::len)
                    + OUTBOUND_CALL_COST
            })
            .sum();
        output + logs + emits + outbound
    }
}

/// A loaded function version: compiled, linked, ready to instantiate.
pub struct Processor {
    sha256: String,
    pre: Pre,
    load_time: Duration,
    from_cache: bool,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("sha256", &self.sha256)
            .field("load_time", &self.load_time)
            .field("from_cache", &self.from_cache)
            .finish_non_exhaustive()
    }
}

/// A linked component of one of the worlds Eddy runs.
enum Pre {
    V2(v2::ProcessorPre<HostState>),
    V1(v1::ProcessorPre<HostState>),
}

impl Processor {
    /// The world the component implements, e.g. `eddy:processor@0.2.0`.
    pub fn world(&self) -> &'static str {
        match self.pre {
            Pre::V2(_) => "eddy:processor@0.2.0",
            Pre::V1(_) => "eddy:processor@0.1.0",
        }
    }

    /// sha256 of the module bytes, lower-case hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// How long loading took (deserialize or compile, plus linking).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Whether the artifact came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}

/// The wasmtime host of one process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ArtifactCache,
    ticker: Ticker,
    pool: Pool,
    net: Arc<Net>,
    config: RuntimeConfig,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// sha256 of `bytes` as lower-case hex: the content address of a module.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Extra time the async timeout grants over the epoch deadline. The epoch
/// trap is the normal path; the async timeout catches a guest blocked in a
/// host call, where no epoch check runs.
fn async_grace(timeout: Duration) -> Duration {
    (timeout / 2).clamp(Duration::from_millis(20), Duration::from_secs(5))
}

impl Runtime {
    /// Builds the engine, the linker and the artifact cache.
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances.max(2);
        let shape = config.component;
        // Room for `n` components of the largest admitted shape, so the
        // pool cannot run out of any kind of slot while `Pool` keeps to `n`
        // instances, whatever the components look like.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(shape.core_instances))
            .total_memories(n.saturating_mul(shape.memories))
            .total_tables(n.saturating_mul(shape.tables))
            .total_stacks(n)
            .max_core_instances_per_component(shape.core_instances)
            .max_memories_per_component(shape.memories)
            .max_tables_per_component(shape.tables)
            .max_memories_per_module(shape.memories)
            .max_tables_per_module(shape.tables)
            .table_elements(shape.table_elements as usize)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            // Reset small memories with memset instead of madvise + page
            // faults on the next use: teardown and re-instantiation dominate
            // the cost of a short invocation otherwise.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10)
            .max_unused_warm_slots(n.min(100))
            .pagemap_scan(Enabled::Auto);

        let mut wasm = Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .memory_init_cow(true)
            .wasm_backtrace_max_frames(NonZeroUsize::new(32))
            // Shared memories bypass the store's memory budget: no threads.
            .wasm_threads(false)
            .wasm_component_model(true);
        let engine = Engine::new(&wasm)
            .map_err(|e| LoadError::Host(format!("creating the wasmtime engine: {e}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Host(format!("linking WASI: {e}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Host(format!("linking wasi:http: {e}")))?;
        v2::Processor::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Host(format!("linking the eddy host: {e}")))?;
        v1::Processor::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Host(format!("linking the eddy 0.1.0 host: {e}")))?;
        crate::variables::add_to_linker(&mut linker)
            .map_err(|e| LoadError::Host(format!("linking wasi:config: {e}")))?;

        let cache = ArtifactCache::open(&config.cache_dir, &engine)?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| LoadError::Host(format!("starting the epoch ticker: {e}")))?;
        Ok(Runtime {
            engine,
            linker,
            cache,
            ticker,
            pool: Pool::new(n, config.guest_memory_bytes),
            net: Arc::new(Net::new(config.outbound_allowlist.clone()).map_err(LoadError::Host)?),
            config,
        })
    }

    /// The artifact cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// The instance pool's admission gate.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Waits until `tenant` may have an instance with `limits`' memory:
    /// call before taking any shared execution slot, and pass the admission
    /// to [`Runtime::invoke`].
    pub async fn admit(&self, tenant: &str, limits: &Limits) -> Admission {
        self.pool.admit(tenant, limits.memory_bytes).await
    }

    /// Validates and compiles `bytes` (or maps its cached artifact) and links
    /// it against the `eddy:processor` world.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Processor>, LoadError> {
        let start = Instant::now();
        if bytes.len() > self.config.max_module_bytes {
            return Err(LoadError::InvalidModule(format!(
                "module is {} bytes, more than the limit of {} bytes",
                bytes.len(),
                self.config.max_module_bytes
            )));
        }
        let sha256 = sha256_hex(bytes);
        let (component, from_cache) = match self.cache.get(&self.engine, &sha256) {
            Some(component) => (component, true),
            None => {
                let component = self.compile(bytes)?;
                let artifact = component
                    .serialize()
                    .map_err(|e| LoadError::Host(format!("serializing artifact: {e}")))?;
                self.cache.put(&sha256, &artifact)?;
                (component, false)
            }
        };
        self.link(sha256, &component, start, from_cache)
    }

    /// Loads the artifact of `sha256` from the cache only: `Ok(None)` when it
    /// is not there (the caller then fetches the module bytes and calls
    /// [`Runtime::load`]).
    pub fn load_cached(&self, sha256: &str) -> Result<Option<Arc<Processor>>, LoadError> {
        let start = Instant::now();
        match self.cache.get(&self.engine, sha256) {
            Some(component) => self
                .link(sha256.to_string(), &component, start, true)
                .map(Some),
            None => Ok(None),
        }
    }

    /// Loads a serialized artifact of `sha256` from memory, one this process
    /// did not compile: a worker's copy of the artifact another process
    /// compiled and shared. It is mapped as native code, so the caller
    /// vouches for the bytes (their signature verified with the operator's
    /// keys). The cache gets a copy, written on another thread.
    pub fn load_artifact(
        &self,
        sha256: &str,
        artifact: Vec<u8>,
    ) -> Result<Arc<Processor>, LoadError> {
        let start = Instant::now();
        let component = self.cache.deserialize_vouched(&self.engine, &artifact)?;
        let processor = self.link(sha256.to_string(), &component, start, true)?;
        let (cache, sha) = (self.cache.clone(), sha256.to_string());
        std::thread::spawn(move || {
            if let Err(error) = cache.put(&sha, &artifact) {
                tracing::warn!(%error, "caching a shared artifact");
            }
        });
        Ok(processor)
    }

    /// Compiles without touching the cache (for benchmarks and validation).
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        check_header(bytes)?;
        crate::shape::check_imports(bytes)?;
        Component::new(&self.engine, bytes).map_err(|e| {
            let e = format!("{e:#}");
            // The pooling allocator checks the component's shape against
            // the operator's ceilings and names the count and the limit.
            if e.contains("exceeds the configured maximum") || e.contains("does not fit in pooling")
            {
                LoadError::InvalidModule(format!(
                    "the component is bigger than this platform admits: {}",
                    e.replace(" in the pooling allocator", "")
                ))
            } else {
                LoadError::InvalidModule(format!("failed to compile the component: {e}"))
            }
        })
    }

    fn link(
        &self,
        sha256: String,
        component: &Component,
        start: Instant,
        from_cache: bool,
    ) -> Result<Arc<Processor>, LoadError> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            LoadError::InvalidModule(format!(
                "the component does not fit the eddy:processor world: {e:#}"
            ))
        })?;
        let pre = match v2::ProcessorPre::new(pre.clone()) {
            Ok(p) => Pre::V2(p),
            Err(e2) => Pre::V1(v1::ProcessorPre::new(pre).map_err(|e1| {
                LoadError::InvalidModule(format!(
                    "the component does not export `handle` of the eddy:processor@0.2.0 \
                     world ({e2:#}) nor of 0.1.0 ({e1:#})"
                ))
            })?),
        };
        Ok(Arc::new(Processor {
            sha256,
            pre,
            load_time: start.elapsed(),
            from_cache,
        }))
    }

    /// Runs one invocation in a fresh instance, on the pool slot `admission`
    /// holds (given back when the instance is gone).
    pub async fn invoke(
        &self,
        processor: &Processor,
        input: Input,
        limits: &Limits,
        admission: Admission,
    ) -> Report {
        let capture = Capture::new(limits.max_log_bytes);
        let wasi = WasiCtxBuilder::new()
            .stdout(capture.stream(LogSource::Stdout))
            .stderr(capture.stream(LogSource::Stderr))
            // A host buffer per call, outside the guest's memory budget.
            .max_random_size(64 << 10)
            .build();
        // The budget is what the pool reserved (cut to the tenant's share
        // when the limit is above it).
        let memory = limits.memory_bytes.min(admission.bytes());
        let outbound = Outbound::new(
            self.net.clone(),
            limits.outbound.clone(),
            capture.clone(),
            tokio::time::Instant::now() + limits.timeout,
            input.traceparent.clone(),
        );
        let state = HostState::new(
            wasi,
            capture.clone(),
            memory,
            limits,
            self.config.component,
            outbound,
            Vars::new(input.variables.clone()),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        // The guest meets the epoch every tick: it yields to the async
        // scheduler (so a CPU-bound guest shares its thread with the
        // platform's I/O and other tenants' work instead of holding it), and
        // traps once its time is up. A new store's deadline is 0 (already
        // expired): always set it. One tick more than the limit, because the
        // current tick is partly gone.
        let tick = self.ticker.tick().as_nanos().max(1);
        let ticks = u64::try_from(limits.timeout.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX);
        let clock = self.ticker.clock();
        let deadline = clock().saturating_add(ticks).saturating_add(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if clock() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);

        let running = self.ticker.enter();
        let epoch_start = self.ticker.now();
        let start = Instant::now();
        let deadline_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(limits.timeout)
            .as_millis() as u64;
        let invocation = v2::eddy::processor::types::Invocation {
            id: input.id,
            run_id: input.run_id,
            function: input.function,
            attempt: input.attempt,
            depth: input.depth,
            content_type: input.content_type,
            payload: input.payload,
            config: input.config,
            tenant: input.tenant,
            version: input.version,
            deadline_ms,
            traceparent: input.traceparent,
        };

        let mut timings = Timings::default();
        let outcome = tokio::time::timeout(limits.timeout + async_grace(limits.timeout), async {
            match &processor.pre {
                Pre::V2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    timings.instantiate = start.elapsed();
                    instance.call_handle(&mut store, &invocation).await
                }
                Pre::V1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    timings.instantiate = start.elapsed();
                    let invocation = v1::eddy::processor::types::Invocation {
                        id: invocation.id,
                        run_id: invocation.run_id,
                        function: invocation.function,
                        attempt: invocation.attempt,
                        depth: invocation.depth,
                        content_type: invocation.content_type,
                        payload: invocation.payload,
                        config: invocation.config,
                    };
                    let result = instance.call_handle(&mut store, &invocation).await?;
                    Ok(result
                        .map(|o| v2::eddy::processor::types::Output {
                            content_type: o.content_type,
                            payload: o.payload,
                        })
                        .map_err(|e| v2::eddy::processor::types::Error {
                            code: e.code,
                            message: e.message,
                            retryable: e.retryable,
                        }))
                }
            }
        })
        .await;
        let total = start.elapsed();
        timings.run = total.saturating_sub(timings.instantiate);
        let epoch_ticks = self.ticker.now().saturating_sub(epoch_start);
        drop(running);

        let state = store.data_mut();
        // The secrets the guest read leave everything the report quotes;
        // its own error first, before it is cut to size.
        let redactor = Redactor::new(state.vars.revealed());
        let redact = |mut s: String| {
            if let Some(r) = &redactor {
                r.redact(&mut s);
            }
            s
        };
        // A limit an outbound request hit ends the invocation, even if the
        // guest carried on after the error it got.
        if let Some(hit) = state.outbound.limit_hit() {
            state.limit_hit.get_or_insert(hit);
        }
        let result = match outcome {
            Err(_elapsed) => Err(InvokeError::Timeout {
                limit: limits.timeout,
            }),
            Ok(Err(error)) => Err(classify(&error, state, limits)),
            Ok(Ok(Err(e))) => Err(InvokeError::Processor {
                code: truncate(redact(e.code), MAX_ERROR_CODE),
                message: truncate(redact(e.message), MAX_ERROR_MESSAGE),
                retryable: e.retryable,
            }),
            Ok(Ok(Ok(out))) if out.payload.len() > limits.max_output_bytes => {
                Err(InvokeError::LimitExceeded {
                    limit: LimitKind::Output,
                    detail: format!(
                        "the output is {} bytes, more than the limit of {} bytes",
                        out.payload.len(),
                        limits.max_output_bytes
                    ),
                })
            }
            Ok(Ok(Ok(out))) => Ok(Output {
                content_type: out.content_type,
                payload: out.payload,
            }),
        };
        let result = match (result, state.limit_hit.clone()) {
            // A request stopped at the deadline: the guest got an error
            // and may have ended before its next epoch check.
            _ if state.outbound.timed_out() => Err(InvokeError::Timeout {
                limit: limits.timeout,
            }),
            // The guest's own error after a refusal is the refusal's doing.
            (Ok(_) | Err(InvokeError::Processor { .. }), Some(hit)) => {
                Err(InvokeError::LimitExceeded {
                    limit: hit.limit,
                    detail: hit.detail,
                })
            }
            (result, _) => result,
        };
        let emits = match result {
            Ok(_) => std::mem::take(&mut state.emits),
            Err(_) => Vec::new(),
        };
        let mut outbound = state.outbound.take();
        let tasks = store.data().outbound.tasks();
        drop(store);
        if !outbound.is_empty() {
            // Dropping the store aborted its requests' tasks; on a
            // current-thread runtime they go only when it runs them, a
            // few dozen per yield.
            for _ in 0..64 {
                if tasks.gone() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        drop(admission);
        let mut logs = capture.take();
        let mut result = result;
        if let Some(r) = &redactor {
            redact_report(&mut result, &mut logs, &mut outbound, r);
        }
        let mut report = Report {
            result,
            emits,
            logs,
            timings,
            epoch_ticks,
            outbound,
        };
        let size = report.completion_bytes();
        if size > limits.max_completion_bytes {
            report.emits = Vec::new();
            report.result = Err(InvokeError::LimitExceeded {
                limit: LimitKind::Completion,
                detail: format!(
                    "the output, logs and follow-ups total {size} bytes, more than the limit of {} bytes",
                    limits.max_completion_bytes
                ),
            });
        }
        report
    }
}

/// Takes the secrets the guest read out of everything the invocation
/// reports but its output and follow-ups (its data, passed on as they are).
fn redact_report(
    result: &mut Result<Output, InvokeError>,
    logs: &mut [LogLine],
    outbound: &mut [OutboundReport],
    r: &Redactor,
) {
    // The last line of stdout and of stderr may have been cut off (the
    // budget ran out, the guest trapped) in the middle of a secret.
    let last = |source| logs.iter().rposition(|l: &LogLine| l.source == source);
    let cut = [last(LogSource::Stdout), last(LogSource::Stderr)];
    for (i, line) in logs.iter_mut().enumerate() {
        if cut.contains(&Some(i)) {
            r.redact_tail(&mut line.message);
        } else {
            r.redact(&mut line.message);
        }
    }
    for o in outbound {
        r.redact(&mut o.call.method);
        r.redact(&mut o.call.origin);
        if let Some(e) = &mut o.call.error {
            r.redact(e);
        }
    }
    match result {
        Ok(_) => {}
        // Done before it was cut to size.
        Err(InvokeError::Processor { .. }) => {}
        Err(InvokeError::Trap {
            trap,
            guest_message,
            backtrace,
        }) => {
            r.redact(trap);
            if let Some(m) = guest_message {
                r.redact_tail(m);
            }
            if let Some(b) = backtrace {
                r.redact(b);
            }
        }
        Err(InvokeError::LimitExceeded { detail: s, .. })
        | Err(InvokeError::InvalidModule(s))
        | Err(InvokeError::Host(s)) => r.redact(s),
        Err(InvokeError::Timeout { .. })
        | Err(InvokeError::OutOfMemory { .. })
        | Err(InvokeError::StackOverflow) => {}
    }
}

/// Rejects what is plainly not a component before handing it to the compiler,
/// with a message that says what it is instead.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(LoadError::InvalidModule(
            "not a WebAssembly binary (missing the `\\0asm` magic number)".into(),
        ));
    }
    match bytes[4..8] {
        [0x01, 0x00, 0x00, 0x00] => Err(LoadError::InvalidModule(
            "this is a core WebAssembly module, not a component: build the processor for \
             wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
                .into(),
        )),
        [_, _, 0x01, 0x00] => Ok(()),
        _ => Err(LoadError::InvalidModule(format!(
            "unsupported WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        ))),
    }
}

/// Turns the error out of a call into its class. The host's own records (a
/// limit it refused, memory it denied) come first: they say why the guest
/// trapped even when the guest reported it as something else.
fn classify(error: &wasmtime::Error, state: &HostState, limits: &Limits) -> InvokeError {
    if let Some(hit) = error
        .downcast_ref::<LimitHit>()
        .or(state.limit_hit.as_ref())
    {
        return InvokeError::LimitExceeded {
            limit: hit.limit,
            detail: hit.detail.clone(),
        };
    }
    if state.capture.exceeded() {
        return InvokeError::LimitExceeded {
            limit: LimitKind::Logs,
            detail: crate::capture::over_limit_message(limits.max_log_bytes),
        };
    }
    if state.memory.hit {
        return InvokeError::OutOfMemory {
            limit_bytes: limits.memory_bytes,
        };
    }
    let backtrace = || error.downcast_ref::<WasmBacktrace>().map(|b| b.to_string());
    if let Some(fault) = error.downcast_ref::<GuestFault>() {
        return InvokeError::Trap {
            trap: fault.0.clone(),
            guest_message: None,
            backtrace: backtrace(),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Timeout {
            limit: limits.timeout,
        },
        Some(Trap::StackOverflow) => InvokeError::StackOverflow,
        Some(trap) => InvokeError::Trap {
            trap: trap
                .to_string()
                .trim_start_matches("wasm trap: ")
                .to_string(),
            guest_message: state.capture.panic_message(),
            backtrace: backtrace(),
        },
        // The pool cannot run out while `Pool` admits (see pool.rs); if it
        // does anyway, that is Eddy's fault.
        None if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() => {
            InvokeError::Host(format!("{error:#}"))
        }
        // Anything else out of instantiating or calling the guest is the
        // guest's doing (a canonical ABI value out of bounds, a resource
        // table it filled, a WASI call it misused): a trap, not a platform
        // fault.
        None => InvokeError::Trap {
            trap: format!("{error:#}"),
            guest_message: None,
            backtrace: backtrace(),
        },
    }
}
