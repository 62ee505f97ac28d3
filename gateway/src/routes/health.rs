//! Liveness, readiness, and the JSON 404.

use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::error::ApiError;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: Redis answers.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "Redis unreachable (`unavailable`) or at its maxmemory (`storage_full`)", body = crate::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state
        .queue
        .ping()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    // A Redis at its maxmemory refuses every enqueue: say so here too.
    if state.queue.out_of_memory().await.unwrap_or(false) {
        return Err(ApiError::StorageFull);
    }
    Ok("ready")
}

pub async fn not_found() -> (StatusCode, axum::Json<crate::ErrorBody>) {
    (
        StatusCode::NOT_FOUND,
        axum::Json(crate::ErrorBody {
            code: "route_not_found",
            message: "no such route; see /openapi.json".into(),
        }),
    )
}

/// Prometheus metrics of this process, for the operator: they name every
/// tenant and function, so the admin key is required here
/// (`EDDY_METRICS_LISTEN` serves them without a key on an internal port).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format"),
    (status = 401, body = crate::ErrorBody), (status = 403, description = "not the admin key", body = crate::ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<(StatusCode, String), crate::error::ApiError> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    crate::auth::admin_only(&state, request.headers(), peer)?;
    Ok(match &state.metrics {
        Some(render) => (StatusCode::OK, render()),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled".into()),
    })
}
