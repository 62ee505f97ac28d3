//! The worker's own HTTP endpoints: `/healthz` (alive, also while draining),
//! `/readyz` (takes work: not draining, Redis answers), `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use eddy_protocol::MetricsRender;
use eddy_queue::Queue;
use tokio::sync::watch;

#[derive(Clone)]
struct Http {
    queue: Queue,
    draining: Arc<AtomicBool>,
    metrics: Option<MetricsRender>,
}

async fn readyz(State(h): State<Http>) -> (StatusCode, &'static str) {
    if h.draining.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match h.queue.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable"),
    }
}

async fn metrics(State(h): State<Http>) -> (StatusCode, String) {
    match &h.metrics {
        Some(render) => (StatusCode::OK, render()),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled".into()),
    }
}

/// Serves until `stop` turns true.
pub(crate) async fn serve(
    listen: SocketAddr,
    queue: Queue,
    draining: Arc<AtomicBool>,
    metrics: Option<MetricsRender>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(self::metrics))
        .with_state(Http {
            queue,
            draining,
            metrics,
        });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "worker endpoints listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}
