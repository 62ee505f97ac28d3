//! Bounded capture of everything a guest says: `log` calls, stdout and stderr
//! share one byte budget and land, in order, in the invocation's log. Every
//! line costs [`LOG_LINE_COST`] bytes on top of its text, so empty lines and
//! newline floods end at the limit like any other log, and the capture never
//! holds much more than its limit in memory.

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::error::LimitKind;
use crate::host::LimitHit;
use crate::limits::LOG_LINE_COST;

/// Bytes `s` takes once stored as a JSON string: what the budget charges,
/// so that control characters (6 bytes each as `\u00XX`) cannot stretch a
/// record past the limit.
fn json_len(s: &str) -> usize {
    s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// What a write of raw stdout/stderr bytes costs once stored: newlines end
/// lines (each costs [`LOG_LINE_COST`]); the rest as JSON, an invalid UTF-8
/// sequence as the 3-byte replacement character it becomes.
fn stream_cost(bytes: &[u8]) -> usize {
    let mut cost = 0usize;
    for line in bytes.split(|b| *b == b'\n') {
        for chunk in line.utf8_chunks() {
            cost += json_len(chunk.valid());
            if !chunk.invalid().is_empty() {
                cost += 3;
            }
        }
    }
    let lines = bytes.iter().filter(|b| **b == b'\n').count();
    cost.saturating_add(lines.saturating_mul(LOG_LINE_COST))
}

/// The message of a log budget that ran out (log calls, stdout and stderr
/// share it).
pub(crate) fn over_limit_message(limit: usize) -> String {
    format!(
        "the processor's logs (log calls, stdout and stderr) exceed the limit of {limit} bytes, \
         each line counting {LOG_LINE_COST} bytes more than its text"
    )
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The `log` import.
    Log,
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// Eddy, about what the guest asked of it (an outbound request it
    /// refused, for one).
    Host,
}

impl LogSource {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Log => "log",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Host => "host",
        }
    }
}

/// One line of an invocation's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub source: LogSource,
    pub message: String,
}

#[derive(Debug, Default)]
struct Inner {
    lines: Vec<LogLine>,
    /// Bytes of stdout / stderr not yet ended by a newline.
    partial: [Vec<u8>; 2],
    used: usize,
    limit: usize,
    exceeded: bool,
}

impl Inner {
    /// Charges `n` bytes to the budget; false (and remembered) when over.
    fn charge(&mut self, n: usize) -> bool {
        if self.exceeded || self.used.saturating_add(n) > self.limit {
            self.exceeded = true;
            return false;
        }
        self.used += n;
        true
    }

    fn push_stream(&mut self, source: LogSource, bytes: &[u8]) {
        let (idx, level) = match source {
            LogSource::Stderr => (1, LogLevel::Warn),
            _ => (0, LogLevel::Info),
        };
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[idx]);
            line.extend_from_slice(&rest[..pos]);
            self.lines.push(LogLine {
                level,
                source,
                message: String::from_utf8_lossy(&line).into_owned(),
            });
            rest = &rest[pos + 1..];
        }
        self.partial[idx].extend_from_slice(rest);
    }

    fn flush_partials(&mut self) {
        for (idx, source, level) in [
            (0, LogSource::Stdout, LogLevel::Info),
            (1, LogSource::Stderr, LogLevel::Warn),
        ] {
            if !self.partial[idx].is_empty() {
                let line = std::mem::take(&mut self.partial[idx]);
                self.lines.push(LogLine {
                    level,
                    source,
                    message: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        }
    }
}

/// The shared, bounded log of one invocation.
#[derive(Debug, Clone)]
pub(crate) struct Capture(Arc<Mutex<Inner>>);

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture(Arc::new(Mutex::new(Inner {
            limit,
            ..Inner::default()
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // log itself is still consistent enough to keep.
        self.0.lock()
    }

    /// Records a `log` call. Returns false when the budget is exhausted.
    pub(crate) fn log(&self, level: LogLevel, message: String) -> bool {
        let mut inner = self.lock();
        if !inner.charge(json_len(&message).saturating_add(LOG_LINE_COST)) {
            return false;
        }
        inner.lines.push(LogLine {
            level,
            source: LogSource::Log,
            message,
        });
        true
    }

    /// Adds a line of Eddy's own. Not charged to the guest's budget: the
    /// callers bound how many there are (one per outbound request at most).
    pub(crate) fn note(&self, level: LogLevel, message: String) {
        self.lock().lines.push(LogLine {
            level,
            source: LogSource::Host,
            message,
        });
    }

    fn write(&self, source: LogSource, bytes: &[u8]) -> bool {
        let cost = stream_cost(bytes);
        let mut inner = self.lock();
        if !inner.charge(cost) {
            return false;
        }
        inner.push_stream(source, bytes);
        true
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.lock().exceeded
    }

    pub(crate) fn limit(&self) -> usize {
        self.lock().limit
    }

    /// The guest's panic message, if its stderr holds one.
    ///
    /// Rust guests print `panicked at <file>:<line>:<col>:` followed by the
    /// message, then abort with `unreachable`.
    pub(crate) fn panic_message(&self) -> Option<String> {
        let mut inner = self.lock();
        inner.flush_partials();
        let lines: Vec<&str> = inner
            .lines
            .iter()
            .filter(|l| l.source == LogSource::Stderr)
            .map(|l| l.message.as_str())
            .collect();
        let start = lines.iter().rposition(|l| l.contains("panicked at "))?;
        let location = lines[start]
            .split("panicked at ")
            .nth(1)
            .map(|l| l.trim_end_matches(':').to_string())
            .unwrap_or_default();
        let message: Vec<&str> = lines[start + 1..]
            .iter()
            .take_while(|l| !l.starts_with("note:"))
            .copied()
            .collect();
        Some(format!("{} (panicked at {location})", message.join("\n")))
    }

    /// Takes the lines out, ending any unterminated stdout/stderr line.
    pub(crate) fn take(&self) -> Vec<LogLine> {
        let mut inner = self.lock();
        inner.flush_partials();
        std::mem::take(&mut inner.lines)
    }

    pub(crate) fn stream(&self, source: LogSource) -> CaptureStream {
        CaptureStream {
            capture: self.clone(),
            source,
        }
    }
}

/// stdout or stderr of one guest, writing into its [`Capture`].
#[derive(Debug, Clone)]
pub(crate) struct CaptureStream {
    capture: Capture,
    source: LogSource,
}

/// How much the guest may write per `check-write` permit.
const PERMIT: usize = 64 * 1024;

impl CaptureStream {
    fn over_limit(&self) -> LimitHit {
        LimitHit {
            limit: LimitKind::Logs,
            detail: over_limit_message(self.capture.limit()),
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.capture.write(self.source, &bytes) {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::Error::new(self.over_limit())))
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.capture.write(self.source, buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(self.over_limit().detail)))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cost_what_they_take_stored() {
        assert_eq!(json_len("abc"), 3);
        assert_eq!(json_len("a\"b\\c\n"), 9);
        assert_eq!(json_len("\u{1}"), 6);
        assert_eq!(json_len("日本"), 6);
        assert_eq!(stream_cost(b"ab\n"), 2 + LOG_LINE_COST);
        assert_eq!(stream_cost(b"\n\n"), 2 * LOG_LINE_COST);
        assert_eq!(stream_cost(b"\x01\xff"), 6 + 3);
        // Each line of a newline flood costs the same.
        let c = Capture::new(10 * LOG_LINE_COST);
        assert!(c.write(LogSource::Stdout, &[b'\n'; 10]));
        assert!(!c.write(LogSource::Stdout, b"\n"));
        assert!(c.exceeded());
    }
}
