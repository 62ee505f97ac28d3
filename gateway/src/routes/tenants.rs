//! Tenants, quotas and API keys. Creating tenants and setting quotas needs
//! the admin key; a tenant manages its own keys.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;

use crate::extract::Path;
use axum::http::StatusCode;
use eddy_protocol::TenantId;
use eddy_queue::{ApiKey, Quota, TenantInfo};
use serde::{Deserialize, Serialize};

use super::{body, json};
use crate::AppState;
use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    id: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    quota: Quota,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedTenant {
    #[schema(value_type = Object)]
    tenant: TenantInfo,
    /// Standard Webhooks signing secret of the tenant's callbacks.
    webhook_secret: String,
    /// A first API key. Shown once.
    key: String,
    key_id: String,
}

fn tenant_id(s: &str) -> ApiResult<TenantId> {
    TenantId::new(s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The caller may act on `tenant`: the admin, or the tenant itself.
fn may_manage(caller: &Caller, tenant: &TenantId) -> ApiResult<()> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Tenant(t) if t == tenant => Ok(()),
        // Another tenant's existence is not revealed.
        Caller::Tenant(_) => Err(ApiError::NotFound {
            what: "tenant",
            name: tenant.to_string(),
        }),
    }
}

/// Creates a tenant (admin).
#[utoipa::path(post, path = "/tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), (status = 403, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    req: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedTenant>)> {
    let req: CreateTenant = json(&body(req, crate::JSON_BODY)?)?;
    let id = tenant_id(&req.id)?;
    let Some((tenant, webhook_secret)) = state.queue.create_tenant(&id, req.quota).await? else {
        return Err(ApiError::Conflict(format!("tenant `{id}` already exists")));
    };
    let (key, plaintext) = state.queue.create_key(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTenant {
            tenant,
            webhook_secret,
            key: plaintext,
            key_id: key.id,
        }),
    ))
}

/// A tenant's quota and pending count.
#[utoipa::path(get, path = "/tenants/{tenant}", params(("tenant" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<TenantInfo>> {
    let id = tenant_id(&tenant)?;
    may_manage(&caller, &id)?;
    state
        .queue
        .tenant(&id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound {
            what: "tenant",
            name: tenant,
        })
}

/// Replaces a tenant's quota (admin).
#[utoipa::path(put, path = "/tenants/{tenant}/quota", params(("tenant" = String, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn set_quota(
    State(state): State<AppState>,
    _admin: Admin,
    Path(tenant): Path<String>,
    req: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Quota>> {
    let id = tenant_id(&tenant)?;
    let quota: Quota = json(&body(req, crate::JSON_BODY)?)?;
    if !state.queue.set_quota(&id, quota).await? {
        return Err(ApiError::NotFound {
            what: "tenant",
            name: tenant,
        });
    }
    Ok(Json(quota))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    id: String,
    /// The key itself. Shown once; only its hash is stored.
    key: String,
}

/// Active API keys a tenant may have.
const MAX_KEYS: usize = 100;

/// Creates an API key.
#[utoipa::path(post, path = "/tenants/{tenant}/keys", params(("tenant" = String, Path)),
    responses((status = 201, body = CreatedKey), (status = 404, body = crate::ErrorBody),
              (status = 429, description = "`limit_reached`: 100 active keys", body = crate::ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let id = tenant_id(&tenant)?;
    may_manage(&caller, &id)?;
    if state.queue.tenant(&id).await?.is_none() {
        return Err(ApiError::NotFound {
            what: "tenant",
            name: tenant,
        });
    }
    let active = state
        .queue
        .keys_of(&id)
        .await?
        .iter()
        .filter(|k| !k.revoked)
        .count();
    if active >= MAX_KEYS {
        return Err(ApiError::LimitReached(format!(
            "the tenant has {active} active API keys, the most it may have; revoke one first"
        )));
    }
    let (key, plaintext) = state.queue.create_key(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: key.id,
            key: plaintext,
        }),
    ))
}

/// Lists a tenant's keys (never their secrets).
#[utoipa::path(get, path = "/tenants/{tenant}/keys", params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::ErrorBody)))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<ApiKey>>> {
    let id = tenant_id(&tenant)?;
    may_manage(&caller, &id)?;
    Ok(Json(state.queue.keys_of(&id).await?))
}

/// Revokes an API key at once: on this gateway at the response, on the
/// others as the revocation's pub/sub message arrives (milliseconds; at most
/// their key cache's 5 s if it were lost).
#[utoipa::path(delete, path = "/tenants/{tenant}/keys/{key}", params(("tenant" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = tenant_id(&tenant)?;
    may_manage(&caller, &id)?;
    if state.queue.revoke_key(&id, &key).await? {
        state.keys.forget_tenant(&id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound {
            what: "key",
            name: key,
        })
    }
}
