//! The sandbox: a wasmtime host that runs one processor invocation at a time in a
//! fresh instance and returns everything it did as values.
//!
//! This crate owns the [`Runtime`] (one wasmtime `Engine` per process, on the
//! pooling allocator with copy-on-write memory images), the on-disk artifact
//! cache, the per-function [`Limits`], the host imports (`emit`, `log`, captured
//! stdout/stderr) and the classification of every failure into an
//! [`InvokeError`].
//!
//! It never touches Redis: `invoke` takes bytes and limits and returns
//! output, logs, follow-ups and the outbound requests made. Its only network
//! I/O is a guest's own outbound HTTP, behind the checks in `outbound.rs`.

mod bindings;
mod cache;
mod capture;
mod error;
mod host;
mod limits;
mod outbound;
mod pool;
mod runtime;
mod shape;
mod ticker;
mod variables;

pub use cache::ArtifactCache;
pub use capture::{LogLevel, LogLine, LogSource};
pub use error::{ErrorClass, InvokeError, LimitKind, LoadError};
pub use host::Emit;
pub use limits::{ComponentLimits, EMIT_COST, LOG_LINE_COST, Limits};
pub use outbound::{OutboundLimits, OutboundReport};
pub use pool::{Admission, Pool};
pub use runtime::{Input, Output, Processor, Report, Runtime, RuntimeConfig, Timings, sha256_hex};
pub use shape::{PROVIDED, check_imports};
pub use variables::{Entry, FixedVariables, REDACTED, VariableSource};

/// Result type of this crate's fallible set-up functions.
pub type Result<T, E = LoadError> = std::result::Result<T, E>;
