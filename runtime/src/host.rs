//! The per-invocation host state and the imports a processor may call.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::v1::eddy::processor as v1;
use crate::bindings::v2::eddy::processor::{host, types};
use crate::capture::{Capture, LogLevel};
use crate::error::LimitKind;
use crate::limits::{ComponentLimits, Limits};
use crate::outbound::Outbound;
use crate::variables::Vars;

/// A follow-up invocation requested by a processor through `emit`.
///
/// Emits are values: they are committed by the worker only if the invocation
/// that made them succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    pub function: String,
    pub payload: Vec<u8>,
    pub content_type: String,
}

/// A limit hit inside a host call; the trap carries it out of the guest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("limit exceeded: {limit}: {detail}")]
pub(crate) struct LimitHit {
    pub(crate) limit: LimitKind,
    pub(crate) detail: String,
}

/// A guest that broke the host contract; reported as a trap.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GuestFault(pub(crate) String);

/// Resource handles one invocation may hold at once (WASI streams and
/// pollables; a processor needs a handful).
const MAX_HANDLES: usize = 1_000;

/// Longest error code, and message, a processor's error may carry; the rest
/// is cut (they land in records, responses and callbacks).
pub(crate) const MAX_ERROR_CODE: usize = 128;
pub(crate) const MAX_ERROR_MESSAGE: usize = 16 << 10;

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Longest function name a processor may emit to.
const MAX_FUNCTION_NAME: usize = 128;

/// Bytes one table element costs against the memory budget (elements are
/// pointer-sized in wasmtime).
const TABLE_ELEMENT_BYTES: usize = 8;

/// One memory budget for the whole invocation: every linear memory and
/// table of every core instance of the component, from their initial sizes
/// on, counts against `limit` together, so a component cannot multiply its
/// limit by defining many memories. Remembers a refusal, so that the trap
/// the guest raises next is classified as out-of-memory. The counts of
/// instances, memories and tables are capped at the component ceilings too
/// (the pool refuses bigger shapes when the component is loaded; this holds
/// for anything created later).
#[derive(Debug)]
pub(crate) struct StoreLimiter {
    pub(crate) limit: usize,
    pub(crate) used: usize,
    pub(crate) hit: bool,
    pub(crate) shape: ComponentLimits,
}

impl StoreLimiter {
    fn grow(&mut self, extra: usize, within_declared_max: bool) -> bool {
        let total = self.used.saturating_add(extra);
        if total > self.limit {
            // Only the budget makes it out-of-memory: a guest past its
            // own declared maximum gets the failed growth it asked for.
            self.hit = true;
            return false;
        }
        if within_declared_max {
            self.used = total;
        }
        within_declared_max
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let within = maximum.is_none_or(|max| desired <= max);
        Ok(self.grow(desired.saturating_sub(current), within))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let within = maximum.is_none_or(|max| desired <= max);
        let extra = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(extra, within))
    }

    fn instances(&self) -> usize {
        self.shape.core_instances as usize
    }

    fn memories(&self) -> usize {
        self.shape.memories as usize
    }

    fn tables(&self) -> usize {
        self.shape.tables as usize
    }
}

/// Everything one store owns. Dropped with the store after the invocation.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: StoreLimiter,
    pub(crate) capture: Capture,
    pub(crate) emits: Vec<Emit>,
    pub(crate) emit_bytes: usize,
    pub(crate) max_emits: u32,
    pub(crate) max_emit_bytes: usize,
    /// The first limit a host call refused, kept even if the guest ignores it.
    pub(crate) limit_hit: Option<LimitHit>,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: Outbound,
    /// `wasi:config/store`.
    pub(crate) vars: Vars,
}

impl HostState {
    pub(crate) fn new(
        wasi: WasiCtx,
        capture: Capture,
        memory_bytes: u64,
        limits: &Limits,
        shape: ComponentLimits,
        outbound: Outbound,
        vars: Vars,
    ) -> Self {
        HostState {
            wasi,
            // Handles a guest can open (streams, pollables): bounded, as
            // each costs host memory outside the guest's budget.
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_HANDLES);
                table
            },
            memory: StoreLimiter {
                limit: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
                used: 0,
                hit: false,
                shape,
            },
            capture,
            emits: Vec::new(),
            emit_bytes: 0,
            max_emits: limits.max_emits,
            max_emit_bytes: limits.max_emit_bytes,
            limit_hit: None,
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(crate::outbound::FIELD_SIZE);
                http
            },
            outbound,
            vars,
        }
    }

    fn refuse(&mut self, limit: LimitKind, detail: String) -> wasmtime::Error {
        let hit = LimitHit { limit, detail };
        self.limit_hit.get_or_insert_with(|| hit.clone());
        wasmtime::Error::new(hit)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.outbound,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn emit(
        &mut self,
        function: String,
        payload: Vec<u8>,
        options: types::EmitOptions,
    ) -> wasmtime::Result<()> {
        if self.emits.len() >= self.max_emits as usize {
            let detail = format!(
                "the processor emitted more than {} follow-ups",
                self.max_emits
            );
            return Err(self.refuse(LimitKind::Emits, detail));
        }
        let total = self.emit_bytes.saturating_add(payload.len());
        if total > self.max_emit_bytes {
            let detail = format!(
                "the processor's follow-ups total more than {} bytes",
                self.max_emit_bytes
            );
            return Err(self.refuse(LimitKind::EmitBytes, detail));
        }
        if function.is_empty() || function.len() > MAX_FUNCTION_NAME {
            // Not a resource limit but a contract violation: surface it as a
            // trap with a clear message instead of queueing garbage.
            return Err(wasmtime::Error::new(GuestFault(format!(
                "emit: the function name must be 1 to {MAX_FUNCTION_NAME} bytes, got {}",
                function.len()
            ))));
        }
        self.emit_bytes = total;
        self.emits.push(Emit {
            function,
            payload,
            content_type: options
                .content_type
                .unwrap_or_else(|| "application/json".to_string()),
        });
        Ok(())
    }

    fn log(&mut self, level: types::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            types::Level::Trace => LogLevel::Trace,
            types::Level::Debug => LogLevel::Debug,
            types::Level::Info => LogLevel::Info,
            types::Level::Warn => LogLevel::Warn,
            types::Level::Error => LogLevel::Error,
        };
        if self.capture.log(level, message) {
            return Ok(());
        }
        let detail = crate::capture::over_limit_message(self.capture.limit());
        Err(self.refuse(LimitKind::Logs, detail))
    }
}

impl v1::types::Host for HostState {}

/// The 0.1.0 imports are the 0.2.0 ones.
impl v1::host::Host for HostState {
    fn emit(
        &mut self,
        function: String,
        payload: Vec<u8>,
        options: v1::types::EmitOptions,
    ) -> wasmtime::Result<()> {
        let options = types::EmitOptions {
            content_type: options.content_type,
        };
        host::Host::emit(self, function, payload, options)
    }

    fn log(&mut self, level: v1::types::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            v1::types::Level::Trace => types::Level::Trace,
            v1::types::Level::Debug => types::Level::Debug,
            v1::types::Level::Info => types::Level::Info,
            v1::types::Level::Warn => types::Level::Warn,
            v1::types::Level::Error => types::Level::Error,
        };
        host::Host::log(self, level, message)
    }
}
