//! The gateway's connection loop and the limits a slow client meets: a new
//! connection's first request head must arrive within [`HEADER_READ`]
//! ([`FirstHead`]), a connection idle between requests is closed after
//! [`KEEP_ALIVE`] (hyper's head timer), and a
//! request body within [`BODY_READ`] of the request plus time for what it
//! sent (a deadline on the whole body, not between frames: a client sending
//! a byte every few seconds is cut off too). Each tenant's share of in-flight requests is in `auth.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// How long a new connection has to send its first request's head.
pub const HEADER_READ: Duration = Duration::from_secs(10);

/// How long a connection may stay idle between requests (hyper's head
/// timer, which starts when the previous answer is written): well above
/// the pool idle times clients use, so that a client never sends on a
/// connection the gateway is closing at that moment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// How long a client has to send a request's body, from its head, plus
/// [`BODY_GRACE_PER_MIB`] for every MiB it sent: a body that keeps coming at
/// 64 KiB/s or more never times out (a large module, a long batch, which
/// the server itself reads at its own pace), a trickle does.
pub const BODY_READ: Duration = Duration::from_secs(30);
/// The time each MiB of a body adds to its deadline.
pub const BODY_GRACE_PER_MIB: Duration = Duration::from_secs(16);

/// How long a shutdown waits for the requests under way before it lets go
/// of them.
const DRAIN: Duration = Duration::from_secs(60);

/// The body did not arrive within [`BODY_READ`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time ({} s, plus {} s per MiB received)", BODY_READ.as_secs(), BODY_GRACE_PER_MIB.as_secs())]
pub struct BodyTimedOut;

/// A request body with a total deadline.
struct Deadline {
    body: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
                && let Some(data) = data
            {
                let grace = BODY_GRACE_PER_MIB.mul_f64(data.len() as f64 / f64::from(1 << 20));
                let until = self.sleep.deadline() + grace;
                self.sleep.as_mut().reset(until);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets the requests under
/// way finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new((AtomicUsize::new(0), Notify::new()));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of descriptors, a reset before accept: wait a
                    // moment instead of spinning.
                    tracing::debug!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(ConnectInfo::<SocketAddr>(peer));
                let body = Body::new(Deadline {
                    body: Body::new(body),
                    sleep: Box::pin(tokio::time::sleep(BODY_READ)),
                });
                app.clone()
                    .oneshot(axum::http::Request::from_parts(parts, body))
            });
        let mut stop = stop_rx.clone();
        let open = Open::enter(&open);
        tokio::spawn(async move {
            let _open = open;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(KEEP_ALIVE)
                .serve_connection(TokioIo::new(FirstHead::new(stream)), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // New connections are refused from here on, not left in the backlog.
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = async {
        loop {
            let notified = open.1.notified();
            if open.0.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!(
            connections = open.0.load(Ordering::Acquire),
            "requests still under way after the drain; letting go of them"
        );
    }
    Ok(())
}

/// A new connection's first request head must end (`\r\n\r\n`) within
/// [`HEADER_READ`] of the connection, or reading fails and the connection
/// closes. Before that end every byte is head, so the scan is exact; after
/// it the connection is a client's that spoke HTTP, and hyper's head timer
/// ([`KEEP_ALIVE`]) governs the rest.
struct FirstHead<T> {
    io: T,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: usize,
}

impl<T> FirstHead<T> {
    fn new(io: T) -> Self {
        FirstHead {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(HEADER_READ))),
            matched: 0,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstHead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        let this = &mut *self;
        if this.deadline.is_none() {
            return read;
        }
        if let Poll::Ready(Ok(())) = read {
            for b in &buf.filled()[before..] {
                this.matched = match (this.matched, *b) {
                    (0 | 2, b'\r') => this.matched + 1,
                    (1 | 3, b'\n') => this.matched + 1,
                    (_, b'\r') => 1,
                    _ => 0,
                };
                if this.matched == 4 {
                    this.deadline = None;
                    return read;
                }
            }
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the first request head did not arrive in time",
            )));
        }
        read
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstHead<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// One open connection, counted until it is dropped (a panic included).
struct Open(Arc<(AtomicUsize, Notify)>);

impl Open {
    fn enter(open: &Arc<(AtomicUsize, Notify)>) -> Self {
        open.0.fetch_add(1, Ordering::AcqRel);
        Open(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.1.notify_waiters();
        }
    }
}

/// Whether a body error is [`BodyTimedOut`].
pub(crate) fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(error);
    while let Some(x) = e {
        if x.is::<BodyTimedOut>() {
            return true;
        }
        e = x.source();
    }
    false
}
