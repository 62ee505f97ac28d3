//! Variables and secrets: a tenant's (every function sees them) and a
//! function's own (they override the tenant's by name). Guests read them
//! through `wasi:config/store` on their next invocation; no redeploy.
//!
//! A secret is write-only: it is sealed here with the operator's key before
//! it reaches Redis, and no response ever carries its value (listings name
//! it; errors about a request body never quote it).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use eddy_protocol::variables::{Scope, Stored, check_name, check_value};
use eddy_protocol::{FunctionName, TenantId};
use eddy_queue::Resealed;
use serde::{Deserialize, Serialize};

use super::{body, function_name};
use crate::AppState;
use crate::auth::{Admin, TenantCtx};
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;

/// `PUT` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVariable {
    /// At most 8 KiB.
    value: String,
    /// Write-only, sealed at rest, redacted from the invocation's logs.
    #[serde(default)]
    secret: bool,
}

/// A variable as the API shows it: a secret without its value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VariableInfo {
    name: String,
    secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl VariableInfo {
    fn of(name: String, stored: &Stored) -> Self {
        VariableInfo {
            name,
            secret: stored.is_secret(),
            value: match stored {
                Stored::Plain(v) => Some(v.clone()),
                Stored::Sealed { .. } => None,
            },
        }
    }
}

/// The body, parsed without ever quoting it back: serde's messages may
/// include the values they saw.
fn parse(bytes: &[u8]) -> ApiResult<SetVariable> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::InvalidJson(format!(
            "expected {{\"value\": string, \"secret\": bool}} (at line {} column {})",
            e.line(),
            e.column()
        ))
    })
}

fn name(name: &str) -> ApiResult<()> {
    check_name(name).map_err(ApiError::BadRequest)
}

fn secrets_off() -> ApiError {
    ApiError::SecretsDisabled
}

async fn existing_function(
    state: &AppState,
    tenant: &TenantId,
    f: &str,
) -> ApiResult<FunctionName> {
    let f = function_name(f)?;
    if state.queue.versions(tenant, &f).await?.is_none() {
        return Err(ApiError::NotFound {
            what: "function",
            name: f.to_string(),
        });
    }
    Ok(f)
}

async fn set(
    state: &AppState,
    tenant: &TenantId,
    scope: Scope<'_>,
    var: &str,
    req: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<VariableInfo>)> {
    name(var)?;
    let req = parse(&body(req, crate::JSON_BODY)?)?;
    check_value(&req.value).map_err(ApiError::BadRequest)?;
    let stored = if req.secret {
        let keyring = state.config.secrets.as_ref().ok_or_else(secrets_off)?;
        keyring
            .seal(tenant, scope, var, &req.value)
            .map_err(ApiError::Internal)?
    } else {
        Stored::Plain(req.value)
    };
    let created = state
        .queue
        .set_variable(tenant, scope, var, &stored)
        .await
        .map_err(|e| match e {
            eddy_queue::Error::TooManyVariables(n) => ApiError::LimitReached(format!(
                "{} has {n} variables, the most it may have; delete one first",
                match scope {
                    Scope::Tenant => "the tenant".to_string(),
                    Scope::Function(f) => format!("function `{f}`"),
                }
            )),
            e => e.into(),
        })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(VariableInfo::of(var.to_string(), &stored))))
}

async fn delete(
    state: &AppState,
    tenant: &TenantId,
    scope: Scope<'_>,
    var: &str,
) -> ApiResult<StatusCode> {
    name(var)?;
    if state.queue.delete_variable(tenant, scope, var).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound {
            what: "variable",
            name: var.to_string(),
        })
    }
}

async fn list(
    state: &AppState,
    tenant: &TenantId,
    scope: Scope<'_>,
) -> ApiResult<Json<Vec<VariableInfo>>> {
    Ok(Json(
        state
            .queue
            .variables(tenant, scope)
            .await?
            .into_iter()
            .map(|(name, stored)| VariableInfo::of(name, &stored))
            .collect(),
    ))
}

/// The tenant's variables (secrets by name only).
#[utoipa::path(get, path = "/variables",
    responses((status = 200, body = Vec<VariableInfo>)))]
pub async fn list_tenant(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
) -> ApiResult<Json<Vec<VariableInfo>>> {
    list(&state, &tenant, Scope::Tenant).await
}

/// Sets a variable every function of the tenant sees.
#[utoipa::path(put, path = "/variables/{name}", params(("name" = String, Path)), request_body = SetVariable,
    responses((status = 201, body = VariableInfo), (status = 200, body = VariableInfo),
              (status = 400, body = crate::ErrorBody), (status = 429, body = crate::ErrorBody),
              (status = 501, description = "`secrets_disabled`: the operator has set no EDDY_SECRETS_KEYS", body = crate::ErrorBody)))]
pub async fn set_tenant(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(var): Path<String>,
    req: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<VariableInfo>)> {
    set(&state, &tenant, Scope::Tenant, &var, req).await
}

/// Deletes a tenant variable.
#[utoipa::path(delete, path = "/variables/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(var): Path<String>,
) -> ApiResult<StatusCode> {
    delete(&state, &tenant, Scope::Tenant, &var).await
}

/// A function's own variables (secrets by name only).
#[utoipa::path(get, path = "/functions/{name}/variables", params(("name" = String, Path)),
    responses((status = 200, body = Vec<VariableInfo>), (status = 404, body = crate::ErrorBody)))]
pub async fn list_function(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path(f): Path<String>,
) -> ApiResult<Json<Vec<VariableInfo>>> {
    let f = existing_function(&state, &tenant, &f).await?;
    list(&state, &tenant, Scope::Function(&f)).await
}

/// Sets a function's own variable (it overrides the tenant's of that name).
#[utoipa::path(put, path = "/functions/{name}/variables/{var}",
    params(("name" = String, Path), ("var" = String, Path)), request_body = SetVariable,
    responses((status = 201, body = VariableInfo), (status = 200, body = VariableInfo),
              (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
              (status = 429, body = crate::ErrorBody), (status = 501, body = crate::ErrorBody)))]
pub async fn set_function(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path((f, var)): Path<(String, String)>,
    req: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<VariableInfo>)> {
    let f = function_name(&f)?;
    set(&state, &tenant, Scope::Function(&f), &var, req).await
}

/// Deletes a function's own variable.
#[utoipa::path(delete, path = "/functions/{name}/variables/{var}",
    params(("name" = String, Path), ("var" = String, Path)),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn delete_function(
    State(state): State<AppState>,
    TenantCtx(tenant): TenantCtx,
    Path((f, var)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let f = existing_function(&state, &tenant, &f).await?;
    delete(&state, &tenant, Scope::Function(&f), &var).await
}

/// Seals every tenant's secrets with the first key of `EDDY_SECRETS_KEYS`
/// (admin): the step of a key rotation between adding the new key first and
/// dropping the old one.
#[utoipa::path(post, path = "/secrets/reseal",
    responses((status = 200, body = Object), (status = 403, body = crate::ErrorBody), (status = 501, body = crate::ErrorBody)))]
pub async fn reseal(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<Resealed>> {
    let keyring = state.config.secrets.as_ref().ok_or_else(secrets_off)?;
    Ok(Json(state.queue.reseal_secrets(keyring).await?))
}
