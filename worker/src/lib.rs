//! The worker: consumes streams, runs each invocation in a fresh sandbox,
//! completes it atomically, reclaims work of crashed workers, retries with
//! backoff, and drains on shutdown.
//!
//! **Invariant:** an invocation's effects reach Redis only through
//! [`eddy_queue::Queue::complete`], one atomic script gated on the XACK of the
//! delivery: a duplicate execution (a reclaimed entry whose first worker was
//! only slow) changes nothing.
#![forbid(unsafe_code)]

mod callbacks;
mod capacity;
mod fair;
mod functions;
mod http;
mod process;
mod telemetry;
mod variables;
mod worker;

pub use callbacks::{CallbackConfig, sign};
pub use fair::lower_thread_priority;
pub use worker::{Worker, WorkerConfig, WorkerError, default_guest_memory, runtime_config};
