//! Schedules: a cron expression (UTC) that invokes one of the tenant's
//! functions with fixed JSON data. The controller's leader fires each due
//! tick once; each firing is an invocation with a run of its own, listed
//! with the schedule.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use eddy_protocol::schedules::{self, Cron, MAX_DATA_BYTES, ScheduleSpec, ScheduleState};
use eddy_queue::Schedule;
use serde::{Deserialize, Serialize};

use super::{body, function_name};
use crate::AppState;
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;

/// `PUT` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSchedule {
    /// Five fields (minute hour day-of-month month day-of-week) or six
    /// (seconds first), UTC; or `@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`.
    cron: String,
    /// The function each tick invokes.
    function: String,
    /// The payload of each invocation (JSON, at most 64 KiB); `{}` when
    /// absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Option<serde_json::Value>,
}

/// A schedule as the API shows it: what was set, the next tick, and what
/// the last ticks did (newest first, each with its invocation and run).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    spec: ScheduleSpec,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    state: ScheduleState,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> Self {
        ScheduleView {
            spec: s.spec,
            state: s.state,
        }
    }
}

/// The largest `PUT` body: the data and room for the rest.
pub(crate) const BODY: usize = MAX_DATA_BYTES + 4096;

fn name(name: &str) -> ApiResult<()> {
    schedules::check_name(name).map_err(ApiError::BadRequest)
}

/// The tenant's schedules.
#[utoipa::path(get, path = "/schedules",
    responses((status = 200, body = Vec<ScheduleView>)))]
pub async fn list(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
) -> ApiResult<Json<Vec<ScheduleView>>> {
    Ok(Json(
        state
            .queue
            .schedules(&tenant)
            .await?
            .into_iter()
            .map(ScheduleView::from)
            .collect(),
    ))
}

/// One schedule, with its last firings.
#[utoipa::path(get, path = "/schedules/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(schedule): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    name(&schedule)?;
    state
        .queue
        .schedule(&tenant, &schedule)
        .await?
        .map(|s| Json(s.into()))
        .ok_or(ApiError::NotFound {
            what: "schedule",
            name: schedule,
        })
}

/// Creates or replaces a schedule. Its first tick is the first after now;
/// a replaced schedule keeps its counters and last firings.
#[utoipa::path(put, path = "/schedules/{name}", params(("name" = String, Path)), request_body = PutSchedule,
    responses((status = 201, body = ScheduleView), (status = 200, body = ScheduleView),
              (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
              (status = 413, body = crate::ErrorBody), (status = 429, body = crate::ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(schedule): Path<String>,
    req: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    name(&schedule)?;
    let req: PutSchedule = super::json(&body(req, BODY)?)?;
    let cron: Cron = req
        .cron
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("`cron`: {e}")))?;
    let now = eddy_protocol::now_ms();
    let next_ms = cron.next_after(now).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`cron`: `{}` is never due in the next five years",
            req.cron
        ))
    })?;
    let function = function_name(&req.function)?;
    let data = req.data.unwrap_or_else(|| serde_json::json!({}));
    let size = serde_json::to_vec(&data).map_or(usize::MAX, |d| d.len());
    let most = MAX_DATA_BYTES.min(state.config.max_payload_bytes);
    if size > most {
        return Err(ApiError::BadRequest(format!(
            "`data` is {size} bytes as JSON; a schedule's data may be at most {most}"
        )));
    }
    let created_at_ms = state
        .queue
        .schedule(&tenant, &schedule)
        .await?
        .map_or(now, |s| s.spec.created_at_ms);
    let spec = ScheduleSpec {
        name: schedule.clone(),
        cron: req.cron,
        function: function.to_string(),
        data,
        created_at_ms,
        updated_at_ms: now,
    };
    let created = state
        .queue
        .put_schedule(&tenant, &spec, next_ms)
        .await
        .map_err(|e| match e {
            eddy_queue::Error::TooManySchedules(n) => ApiError::LimitReached(format!(
                "the tenant has {n} schedules, the most it may have; delete one first"
            )),
            e => e.into(),
        })?;
    let view = state
        .queue
        .schedule(&tenant, &schedule)
        .await?
        .map(ScheduleView::from)
        .ok_or_else(|| ApiError::Internal("the schedule vanished as it was written".into()))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Deletes a schedule (a tick being fired at that moment may still run).
#[utoipa::path(delete, path = "/schedules/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(schedule): Path<String>,
) -> ApiResult<StatusCode> {
    name(&schedule)?;
    if state.queue.delete_schedule(&tenant, &schedule).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound {
            what: "schedule",
            name: schedule,
        })
    }
}
