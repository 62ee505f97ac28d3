//! Deploy, inspect, patch, roll back and delete functions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use eddy_protocol::{FunctionConfig, FunctionSpec, keys};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{body, function_name, json};
use crate::AppState;
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};

/// Config overrides in the query string of a deploy; unset fields keep the
/// current version's value (or the default on a first deploy). Config values
/// and nested settings go in the `X-Eddy-Config` header as JSON.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeployQuery {
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    max_retries: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    max_concurrency: Option<u32>,
    idle_timeout_ms: Option<u64>,
    max_output_bytes: Option<u64>,
    max_emits: Option<u32>,
    max_emit_bytes: Option<u64>,
    max_log_bytes: Option<u64>,
    max_depth: Option<u32>,
    max_invocations: Option<u64>,
    max_outbound_requests: Option<u32>,
    max_outbound_bytes: Option<u64>,
    /// Origins the processor may call, comma-separated (replaces the list).
    allowed_hosts: Option<String>,
}

/// Merges a JSON object into `base` (objects recursively, everything else
/// replaced), then checks the result is a valid config.
fn merge(base: &FunctionConfig, patch: Value) -> ApiResult<FunctionConfig> {
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "the config must be a JSON object".into(),
        ));
    }
    let mut value = serde_json::to_value(base).map_err(|e| ApiError::Internal(e.to_string()))?;
    eddy_protocol::merge_json(&mut value, patch);
    serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("invalid function config: {e}")))
}

/// Refuses a config the types admit but Eddy cannot use.
fn valid(config: &FunctionConfig) -> ApiResult<()> {
    config
        .validate()
        .map_err(|e| ApiError::BadRequest(format!("invalid function config: {e}")))
}

fn apply_query(config: &mut FunctionConfig, q: DeployQuery) {
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = q.$f { config.$f = v; } )* };
    }
    set!(
        timeout_ms,
        memory_mb,
        max_retries,
        backoff_base_ms,
        backoff_max_ms,
        max_concurrency,
        idle_timeout_ms,
        max_output_bytes,
        max_emits,
        max_emit_bytes,
        max_log_bytes,
        max_outbound_requests,
        max_outbound_bytes
    );
    if let Some(hosts) = q.allowed_hosts {
        config.allowed_hosts = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
    }
    if let Some(v) = q.max_depth {
        config.run.max_depth = v;
    }
    if let Some(v) = q.max_invocations {
        config.run.max_invocations = v;
    }
}

/// Functions a tenant may have (each holds a stream, versions and a
/// module in Redis).
const MAX_FUNCTIONS: usize = 1_000;

/// Deploys a new immutable version: the body is the `.wasm` component. It is
/// validated and precompiled before it is accepted.
#[utoipa::path(put, path = "/functions/{name}", params(("name" = String, Path), DeployQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, description = "the new version", body = Object),
              (status = 400, description = "invalid module or config (`invalid_module`, `bad_request`), or a limit above the operator's maximum (`limit_above_maximum`)", body = crate::ErrorBody),
              (status = 413, description = "module too large", body = crate::ErrorBody),
              (status = 429, description = "`limit_reached`: the tenant has 1,000 functions; `storage_quota_exceeded`: a new module over the tenant's max_stored_bytes (`Retry-After` when some stored bytes expire)", body = crate::ErrorBody)))]
pub async fn deploy(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(name): Path<String>,
    Query(query): Query<DeployQuery>,
    headers: HeaderMap,
    module: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<FunctionSpec>)> {
    let name = function_name(&name)?;
    let module = body(module, state.config.max_module_bytes)?;
    // What the tenant does not set comes from the current version (or the
    // defaults) lowered to the ceilings; what it sets must be under them.
    let ceilings = &state.config.ceilings;
    let base = ceilings.clamp(match state.queue.function(&tenant, &name, None).await? {
        Some(current) => current.config,
        None => {
            let n = state.queue.function_names(&tenant).await?.len();
            if n >= MAX_FUNCTIONS {
                return Err(ApiError::LimitReached(format!(
                    "the tenant has {n} functions, the most it may have; delete one first"
                )));
            }
            FunctionConfig::default()
        }
    });
    let mut config = match headers.get("x-eddy-config") {
        Some(h) => merge(&base, json(h.as_bytes())?)?,
        None => base,
    };
    apply_query(&mut config, query);
    valid(&config)?;
    ceilings.check(&config)?;
    let validator = state.validator.clone();
    let bytes = module.clone();
    let validated = tokio::task::spawn_blocking(move || validator.validate(&bytes))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::InvalidModule)?;
    let sha256 = validated.sha256;
    let spec = state
        .queue
        .deploy(&tenant, &name, &module, &sha256, config)
        .await?;
    // Shared after the deploy is accepted (a refused one leaves nothing);
    // a worker that loads it before this lands compiles and shares it.
    if let Some(artifact) = validated.artifact
        && let Err(error) = state
            .queue
            .put_artifact(&tenant, &sha256, &artifact, false)
            .await
    {
        tracing::warn!(%error, tenant = %tenant, function = %name, "sharing the compiled artifact");
    }
    state.specs.forget(&tenant, &name);
    tracing::info!(tenant = %tenant, function = %name, version = spec.version, "deployed");
    Ok((StatusCode::CREATED, Json(spec)))
}

/// Changes the config: a new version with the same module.
#[utoipa::path(patch, path = "/functions/{name}", params(("name" = String, Path)),
    request_body(content = Object, description = "partial FunctionConfig"),
    responses((status = 200, description = "the new version", body = Object),
              (status = 400, description = "invalid config, or a limit above the operator's maximum (`limit_above_maximum`)", body = crate::ErrorBody),
              (status = 404, body = crate::ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(name): Path<String>,
    patch: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<FunctionSpec>> {
    let name = function_name(&name)?;
    let patch: Value = json(&body(patch, state.config.max_payload_bytes)?)?;
    let current = state
        .queue
        .function(&tenant, &name, None)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "function",
            name: name.to_string(),
        })?;
    let ceilings = &state.config.ceilings;
    let config = merge(&ceilings.clamp(current.config.clone()), patch)?;
    valid(&config)?;
    ceilings.check(&config)?;
    let module = state
        .queue
        .module(&tenant, &current.sha256)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("module {} missing", current.sha256)))?;
    let spec = state
        .queue
        .deploy(&tenant, &name, &module, &current.sha256, config)
        .await?;
    state.specs.forget(&tenant, &name);
    Ok(Json(spec))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunctionSummary {
    name: String,
    current: Option<u32>,
    #[schema(value_type = Object)]
    spec: Option<FunctionSpec>,
    #[schema(value_type = Object)]
    backlog: eddy_queue::Backlog,
}

/// The tenant's functions with their current version and backlog.
#[utoipa::path(get, path = "/functions", responses((status = 200, body = Vec<FunctionSummary>)))]
pub async fn list(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
) -> ApiResult<Json<Vec<FunctionSummary>>> {
    let mut out = Vec::new();
    for name in state.queue.function_names(&tenant).await? {
        let spec = state.queue.function(&tenant, &name, None).await?;
        let backlog = state.queue.backlog(&keys::stream(&tenant, &name)).await?;
        out.push(FunctionSummary {
            name: name.to_string(),
            current: spec.as_ref().map(|s| s.version),
            spec,
            backlog,
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunctionDetail {
    name: String,
    current: Option<u32>,
    #[schema(value_type = Vec<Object>)]
    versions: Vec<FunctionSpec>,
    #[schema(value_type = Object)]
    backlog: eddy_queue::Backlog,
}

/// One function: every version, which is current, and its backlog.
#[utoipa::path(get, path = "/functions/{name}", params(("name" = String, Path)),
    responses((status = 200, body = FunctionDetail), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(name): Path<String>,
) -> ApiResult<Json<FunctionDetail>> {
    let name = function_name(&name)?;
    let v = state
        .queue
        .versions(&tenant, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "function",
            name: name.to_string(),
        })?;
    let backlog = state.queue.backlog(&keys::stream(&tenant, &name)).await?;
    Ok(Json(FunctionDetail {
        name: name.to_string(),
        current: v.current,
        versions: v.versions,
        backlog,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to make current; the one before the current when absent.
    version: Option<u32>,
}

/// Makes an earlier version current again.
#[utoipa::path(post, path = "/functions/{name}/rollback", params(("name" = String, Path)),
    request_body(content = RollbackRequest, description = "optional"),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(name): Path<String>,
    req: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let name = function_name(&name)?;
    let req = body(req, crate::SMALL_BODY)?;
    let req: RollbackRequest = if req.is_empty() {
        RollbackRequest::default()
    } else {
        json(&req)?
    };
    let v = state
        .queue
        .versions(&tenant, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: "function",
            name: name.to_string(),
        })?;
    let current = v.current.unwrap_or(0);
    let target = match req.version {
        Some(t) => t,
        None => v
            .versions
            .iter()
            .map(|s| s.version)
            .filter(|n| *n < current)
            .max()
            .ok_or_else(|| {
                ApiError::Conflict(format!("`{name}` has no version before {current}"))
            })?,
    };
    let moved = state.queue.set_current(&tenant, &name, target).await?;
    state.specs.forget(&tenant, &name);
    if !moved {
        return Err(ApiError::NotFound {
            what: "version",
            name: format!("{name}@{target}"),
        });
    }
    Ok(Json(
        serde_json::json!({ "name": name.to_string(), "current": target, "previous": current }),
    ))
}

/// Deletes a function whose queue is empty.
#[utoipa::path(delete, path = "/functions/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::ErrorBody), (status = 409, description = "work still queued", body = crate::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let name = function_name(&name)?;
    let deleted = state.queue.delete_function(&tenant, &name).await?;
    state.specs.forget(&tenant, &name);
    match deleted {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound {
            what: "function",
            name: name.to_string(),
        }),
        Err(b) => Err(ApiError::Conflict(format!(
            "`{name}` still has {} queued and {} running invocations; delete it when they are done",
            b.lag, b.pending
        ))),
    }
}
