//! The epoch clock behind wall-clock timeouts.
//!
//! One thread increments the engine's epoch every tick while at least one
//! invocation is running, and parks otherwise: an idle process costs no CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use wasmtime::Engine;

#[derive(Debug)]
struct Shared {
    running: AtomicUsize,
    ticks: AtomicU64,
    stop: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct Ticker {
    shared: Arc<Shared>,
    thread: Thread,
    handle: Option<JoinHandle<()>>,
    tick: Duration,
}

/// Held while an invocation runs; keeps the clock going.
#[derive(Debug)]
pub(crate) struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ticker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            running: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let worker = shared.clone();
        let handle = thread::Builder::new()
            .name("eddy-epoch".into())
            .spawn(move || {
                while !worker.stop.load(Ordering::Acquire) {
                    if worker.running.load(Ordering::Acquire) == 0 {
                        thread::park();
                        continue;
                    }
                    thread::sleep(tick);
                    engine.increment_epoch();
                    worker.ticks.fetch_add(1, Ordering::AcqRel);
                }
            })?;
        Ok(Ticker {
            shared,
            thread: handle.thread().clone(),
            handle: Some(handle),
            tick,
        })
    }

    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }

    /// Ticks since start; the difference over an invocation is its epoch use.
    pub(crate) fn now(&self) -> u64 {
        self.shared.ticks.load(Ordering::Acquire)
    }

    /// [`Ticker::now`] as a function that may outlive `self`'s borrow (for
    /// a store's epoch callback).
    pub(crate) fn clock(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.ticks.load(Ordering::Acquire)
    }

    pub(crate) fn enter(&self) -> Running<'_> {
        if self.shared.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running(self)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
