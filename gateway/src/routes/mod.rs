//! Route handlers, one module per resource.

pub mod functions;
pub mod health;
pub mod invoke;
pub mod records;
pub mod schedules;
pub mod tenants;
pub mod ui;
pub mod variables;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use eddy_protocol::FunctionName;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A body, with the limit rejection turned into our 413.
pub(crate) fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(limit),
        _ if crate::conn::timed_out(&e) => {
            ApiError::RequestTimeout(crate::conn::BodyTimedOut.to_string())
        }
        _ => ApiError::BadRequest(e.body_text()),
    })
}

/// A JSON body, with our error format.
pub(crate) fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// A function name from the path.
pub(crate) fn function_name(name: &str) -> Result<FunctionName, ApiError> {
    FunctionName::new(name).map_err(|e| ApiError::BadRequest(e.to_string()))
}
