//! The one error type of the API: every variant maps to a status and a
//! stable machine-readable `code`. Internal details go to the log, never to
//! the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing `Authorization: Bearer <key>` header")]
    MissingKey,
    #[error("the API key is not valid")]
    InvalidKey,
    #[error("the API key has been revoked")]
    KeyRevoked,
    #[error("{0}")]
    Forbidden(String),
    #[error("{what} `{name}` not found")]
    NotFound { what: &'static str, name: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidModule(String),
    /// A function setting above the operator's ceiling.
    #[error("{0}")]
    AboveMaximum(eddy_protocol::CeilingError),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    BadCallback(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Conflict(String),
    /// Too many failed authentications from this address lately.
    #[error("too many failed authentications from this address; retry in {0} s")]
    AuthThrottled(u64),
    /// A per-tenant count limit (functions, API keys): waiting does not
    /// help, removing something does.
    #[error("{0}")]
    LimitReached(String),
    /// An `Idempotency-Key` reused with another payload.
    #[error("the Idempotency-Key was used with another payload for this function (invocation {0})")]
    IdempotencyMismatch(String),
    #[error("quota exceeded: {0}")]
    Quota(String, u64),
    /// The tenant keeps its `max_stored_bytes`: `Retry-After` says when
    /// some of it expires (none when only modules fill it).
    #[error(
        "the tenant stores {stored} bytes; {needed} more would take it over its max_stored_bytes of {limit}{}",
        if *retry_after == 0 { "; delete functions, variables or schedules to make room".to_string() } else { format!("; some expire in {retry_after} s") }
    )]
    StorageQuota {
        stored: u64,
        limit: u64,
        retry_after: u64,
        needed: u64,
    },
    #[error("the gateway is overloaded; retry later")]
    Overloaded,
    /// The tenant holds its whole share of this gateway's requests.
    #[error("the tenant has {0} requests in flight on this gateway, its share; retry later")]
    TenantBusy(usize),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("the queue is unavailable; retry later")]
    Unavailable,
    #[error("the queue is out of memory; retry later")]
    StorageFull,
    /// Secrets need the operator's keys, which this gateway does not have.
    #[error("secrets are turned off on this platform: the operator has not set EDDY_SECRETS_KEYS")]
    SecretsDisabled,
    #[error("internal error")]
    Internal(String),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingKey | ApiError::InvalidKey | ApiError::KeyRevoked => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_)
            | ApiError::InvalidModule(_)
            | ApiError::AboveMaximum(_)
            | ApiError::InvalidJson(_)
            | ApiError::BadCallback(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TenantBusy(_) | ApiError::LimitReached(_) | ApiError::AuthThrottled(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::IdempotencyMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Quota(..) | ApiError::StorageQuota { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded | ApiError::Unavailable | ApiError::StorageFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::SecretsDisabled => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingKey => "missing_key",
            ApiError::InvalidKey => "invalid_key",
            ApiError::KeyRevoked => "key_revoked",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { what, .. } => match *what {
                "function" => "function_not_found",
                "invocation" => "invocation_not_found",
                "run" => "run_not_found",
                "tenant" => "tenant_not_found",
                "dead letter" => "dead_letter_not_found",
                "key" => "key_not_found",
                "version" => "version_not_found",
                "variable" => "variable_not_found",
                "schedule" => "schedule_not_found",
                _ => "not_found",
            },
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidModule(_) => "invalid_module",
            ApiError::AboveMaximum(_) => "limit_above_maximum",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::BadCallback(_) => "bad_callback_url",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Conflict(_) => "conflict",
            ApiError::IdempotencyMismatch(_) => "idempotency_key_reused",
            ApiError::LimitReached(_) => "limit_reached",
            ApiError::AuthThrottled(_) => "too_many_failed_auths",
            ApiError::Quota(..) => "quota_exceeded",
            ApiError::StorageQuota { .. } => "storage_quota_exceeded",
            ApiError::Overloaded => "overloaded",
            ApiError::TenantBusy(_) => "too_many_in_flight",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Unavailable => "unavailable",
            ApiError::StorageFull => "storage_full",
            ApiError::SecretsDisabled => "secrets_disabled",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<eddy_protocol::CeilingError> for ApiError {
    fn from(e: eddy_protocol::CeilingError) -> Self {
        ApiError::AboveMaximum(e)
    }
}

impl From<eddy_queue::Error> for ApiError {
    fn from(e: eddy_queue::Error) -> Self {
        match e {
            eddy_queue::Error::IdempotencyMismatch(id) => ApiError::IdempotencyMismatch(id),
            eddy_queue::Error::NoFunction(name) => ApiError::NotFound {
                what: "function",
                name,
            },
            eddy_queue::Error::Quota { which, limit } => ApiError::Quota(
                which.describe(limit),
                match which {
                    eddy_queue::QuotaKind::Pending => 5,
                    eddy_queue::QuotaKind::Rate => 1,
                },
            ),
            eddy_queue::Error::StorageQuota {
                limit,
                stored,
                retry_after_s,
                needed,
            } => ApiError::StorageQuota {
                stored,
                limit,
                retry_after: retry_after_s,
                needed,
            },
            e @ eddy_queue::Error::PayloadNotKept(_) => ApiError::Conflict(e.to_string()),
            e if e.is_out_of_memory() => {
                tracing::warn!(error = %e, "redis is out of memory");
                ApiError::StorageFull
            }
            e if e.is_transient() => {
                tracing::warn!(error = %e, "queue unavailable");
                ApiError::Unavailable
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let status = self.status();
        let body = ErrorBody {
            code: self.code(),
            message: self.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Quota(_, retry_after)
        | ApiError::AuthThrottled(retry_after)
        | ApiError::StorageQuota { retry_after, .. } = &self
            && *retry_after > 0
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if matches!(
            self,
            ApiError::Unavailable | ApiError::Overloaded | ApiError::TenantBusy(_)
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        if matches!(self, ApiError::StorageFull) {
            // Records expire and operators add memory on a scale of seconds.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(5));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
