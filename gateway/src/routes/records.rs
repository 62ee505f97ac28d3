//! Invocation and run records, dead letters and redrive.

use axum::Json;
use axum::extract::State;

use crate::extract::{Path, Query};
use eddy_protocol::{InvocationRecord, RunRecord};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};

/// An invocation: status, output or error, attempts, timings per phase,
/// logs, follow-ups.
#[utoipa::path(get, path = "/invocations/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody)))]
pub async fn invocation(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<InvocationRecord>> {
    if id.len() > 64 {
        return Err(ApiError::NotFound {
            what: "invocation",
            name: id.chars().take(64).collect(),
        });
    }
    state
        .queue
        .invocation(&tenant, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound {
            what: "invocation",
            name: id,
        })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    run: RunRecord,
    /// Finished invocations / accepted ones, 0 to 100.
    percent: f64,
}

/// A run: status, counts and progress.
#[utoipa::path(get, path = "/runs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = crate::ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    if id.len() > 64 {
        return Err(ApiError::NotFound {
            what: "run",
            name: id.chars().take(64).collect(),
        });
    }
    let run = state
        .queue
        .run(&tenant, &id)
        .await?
        .ok_or(ApiError::NotFound {
            what: "run",
            name: id,
        })?;
    let done = run.total.saturating_sub(run.outstanding);
    let percent = if run.total == 0 {
        0.0
    } else {
        100.0 * done as f64 / run.total as f64
    };
    Ok(Json(RunView { run, percent }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeadLetterQuery {
    /// At most this many, oldest first (default 100).
    limit: Option<usize>,
}

/// The tenant's dead letters, oldest first.
#[utoipa::path(get, path = "/dead-letters", params(DeadLetterQuery), responses((status = 200, body = Vec<Object>)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Query(q): Query<DeadLetterQuery>,
) -> ApiResult<Json<Vec<eddy_queue::DeadLetter>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(state.queue.dead_letters(&tenant, limit).await?))
}

/// Puts a dead letter back into its stream (attempt 1, current version) and
/// reopens its run.
#[utoipa::path(post, path = "/dead-letters/{entry}/redrive", params(("entry" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody),
              (status = 409, description = "`conflict`: the dead letter kept no payload (its tenant was at its max_stored_bytes)", body = crate::ErrorBody),
              (status = 429, description = "a quota: `quota_exceeded`, `storage_quota_exceeded`; `Retry-After`", body = crate::ErrorBody)))]
pub async fn redrive(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(entry): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    // A stream entry id is `<ms>-<seq>`, two 64-bit numbers.
    let valid = entry.split_once('-').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|n| n.bytes().all(|c| c.is_ascii_digit()) && n.parse::<u64>().is_ok())
    });
    if !valid {
        return Err(ApiError::BadRequest(format!(
            "`{}` is not a dead-letter entry id (`<ms>-<seq>`, two 64-bit numbers)",
            entry.chars().take(64).collect::<String>()
        )));
    }
    match state.queue.redrive(&tenant, &entry).await {
        Ok(Some(id)) => Ok(Json(
            serde_json::json!({ "entry": entry, "id": id, "status": "queued" }),
        )),
        Ok(None) => Err(ApiError::NotFound {
            what: "dead letter",
            name: entry,
        }),
        Err(eddy_queue::Error::Corrupt(m)) => Err(ApiError::Conflict(m)),
        Err(e) => Err(e.into()),
    }
}

/// Callbacks that could not be delivered within their maximum age.
#[utoipa::path(get, path = "/callbacks/dead-letters", params(DeadLetterQuery), responses((status = 200, body = Vec<Object>)))]
pub async fn callback_dead_letters(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Query(q): Query<DeadLetterQuery>,
) -> ApiResult<Json<Vec<eddy_queue::DeadCallback>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(
        state.queue.callback_dead_letters(&tenant, limit).await?,
    ))
}

/// What the controller decided: per function backlog, arrival rate, warm
/// concurrency, workers, and the time left before it scales to zero; the
/// workers; the replicas the load needs. A tenant sees its own functions
/// only; the admin key (without `X-Eddy-Tenant`) sees everything.
#[utoipa::path(get, path = "/status", responses((status = 200, body = Object), (status = 503, body = crate::ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    headers: axum::http::HeaderMap,
) -> ApiResult<Json<eddy_protocol::control::ControllerState>> {
    let mut s = state
        .queue
        .controller_state()
        .await?
        .ok_or(ApiError::Unavailable)?;
    let tenant = match caller {
        crate::auth::Caller::Tenant(t) => Some(t.to_string()),
        crate::auth::Caller::Admin => headers
            .get("x-eddy-tenant")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string),
    };
    if let Some(t) = tenant {
        s.functions.retain(|f| f.tenant == t);
        // Workers are shared; a tenant sees how many, not what else they run.
        for w in &mut s.workers {
            w.streams.retain(|k, _| k.contains(&format!("{{t:{t}}}")));
        }
    }
    Ok(Json(s))
}
