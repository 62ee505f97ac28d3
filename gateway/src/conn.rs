//! The gateway's connection loop and the limits a slow client meets: the
//! request head must arrive within [`HEADER_READ`] (hyper's timer closes
//! the connection otherwise, idle keep-alive connections included), and a
//! request body within [`BODY_READ`] of the request (a total deadline, not
//! one between frames: a client sending a byte every few seconds is cut off
//! too). Each tenant's share of in-flight requests is in `auth.rs`.

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

/// How long a client has to send a request's head.
pub const HEADER_READ: Duration = Duration::from_secs(10);

/// How long a client has to send a request's body, from its head.
pub const BODY_READ: Duration = Duration::from_secs(30);

/// The body did not arrive within [`BODY_READ`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", BODY_READ.as_secs())]
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
        let open = open.clone();
        open.0.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ)
                .serve_connection(TokioIo::new(stream), service);
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
            if open.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                open.1.notify_waiters();
            }
        });
    }
    let _ = stop_tx.send(true);
    loop {
        let notified = open.1.notified();
        if open.0.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        notified.await;
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
