//! The HTTP side of the client: one [`Api`] per command, holding the base
//! URL, the key and the tenant, and turning every non-2xx answer into an
//! [`ApiFailure`] with the gateway's `code` and `message`.

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::Conn;

/// Timeout of control requests (deploy, records, tenants). Invokes and
/// batches have none: the gateway bounds a sync wait itself.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// A non-2xx answer of the gateway.
#[derive(Debug)]
pub struct ApiFailure {
    /// The API's machine-readable code (`http_<status>` when the body was not
    /// an API error).
    pub code: String,
    pub message: String,
    /// The JSON body, when it was JSON.
    pub body: Option<Value>,
    /// The body as sent.
    pub raw: Vec<u8>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// Builds the failure from a status and the body bytes.
    pub fn from_body(status: StatusCode, body: &[u8]) -> Self {
        let json = serde_json::from_slice::<Value>(body).ok();
        let field = |k: &str| {
            json.as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (code, message) = match (field("code"), field("message")) {
            (Some(c), Some(m)) => (c, m),
            (Some(c), None) => (c, status.canonical_reason().unwrap_or("").to_string()),
            _ => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    status.canonical_reason().unwrap_or("no body").to_string()
                } else {
                    text.chars().take(500).collect()
                };
                (format!("http_{}", status.as_u16()), message)
            }
        };
        ApiFailure {
            code,
            message,
            body: json,
            raw: body.to_vec(),
        }
    }

    /// What to try next, for the errors people hit first.
    pub fn hint(&self) -> Option<String> {
        if let Some(id) = self
            .body
            .as_ref()
            .and_then(|b| b.get("invocation_id"))
            .and_then(Value::as_str)
        {
            let attempts = self
                .body
                .as_ref()
                .and_then(|b| b.get("attempts"))
                .and_then(Value::as_u64)
                .unwrap_or(1);
            return Some(format!(
                "invocation {id} ended after {attempts} attempt(s); see `eddy invocation {id}` and `eddy logs {id}`"
            ));
        }
        match self.code.as_str() {
            "missing_key" | "invalid_key" => Some(
                "set EDDY_KEY or pass --key (`eddy up` writes its admin key to .eddy/admin-key)"
                    .into(),
            ),
            "bad_request" if self.message.contains("X-Eddy-Tenant") => {
                Some("with the admin key, name the tenant: --tenant <id> or EDDY_TENANT".into())
            }
            _ => None,
        }
    }
}

/// The key to send: `--key`/`EDDY_KEY`, else the admin key `eddy up` wrote
/// (`$EDDY_DATA_DIR/admin-key`, `.eddy/admin-key` by default).
pub fn resolve_key(explicit: Option<&str>) -> Option<String> {
    if let Some(k) = explicit.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(k.to_string());
    }
    let dir = std::env::var_os("EDDY_DATA_DIR").unwrap_or_else(|| ".eddy".into());
    let path = std::path::Path::new(&dir).join("admin-key");
    std::fs::read_to_string(path)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved
/// characters).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON answer: parsed, and as sent (so that `--output json` keeps the
/// gateway's field order).
#[derive(Debug)]
pub struct Reply {
    pub value: Value,
    pub raw: Vec<u8>,
}

impl std::ops::Deref for Reply {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

/// A connection to the gateway.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    tenant: Option<String>,
}

impl Api {
    pub fn new(conn: &Conn) -> Result<Self> {
        let base = conn.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!(
                "--url must start with http:// or https://, got `{}`",
                conn.url
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("eddy/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base,
            key: resolve_key(conn.key.as_deref()),
            tenant: conn.tenant.clone().filter(|t| !t.is_empty()),
        })
    }

    /// The headers every request carries: the key and the tenant.
    pub fn auth_headers(&self) -> Result<HeaderMap> {
        let mut h = HeaderMap::new();
        if let Some(k) = &self.key {
            h.insert(
                AUTHORIZATION,
                format!("Bearer {k}")
                    .parse()
                    .context("the API key is not a valid header value")?,
            );
        }
        if let Some(t) = &self.tenant {
            h.insert(
                "x-eddy-tenant",
                t.parse()
                    .context("the tenant is not a valid header value")?,
            );
        }
        Ok(h)
    }

    /// A request to `path` (starting with `/`), authenticated, with the
    /// control timeout.
    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        Ok(self.streaming(method, path)?.timeout(CONTROL_TIMEOUT))
    }

    /// A request without a total timeout (invokes, batches).
    pub fn streaming(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .headers(self.auth_headers()?))
    }

    /// Sends; a non-2xx answer becomes an [`ApiFailure`].
    pub async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let response = req.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(ApiFailure::from_body(status, &body).into())
    }

    /// Sends and parses the JSON answer.
    pub async fn json(&self, req: RequestBuilder) -> Result<Reply> {
        let response = self.send(req).await?;
        let raw = response.bytes().await?.to_vec();
        let value = serde_json::from_slice(&raw).with_context(|| {
            format!(
                "the gateway answered something that is not JSON: {}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            )
        })?;
        Ok(Reply { value, raw })
    }

    /// GET `path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.json(self.request(Method::GET, path)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_code_and_message() {
        let f = ApiFailure::from_body(
            StatusCode::NOT_FOUND,
            br#"{"code":"function_not_found","message":"function `x` not found"}"#,
        );
        assert_eq!(f.to_string(), "function_not_found: function `x` not found");
        assert!(f.hint().is_none());
    }

    #[test]
    fn non_json_errors_get_an_http_code() {
        let f = ApiFailure::from_body(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(f.code, "http_502");
        assert_eq!(f.message, "upstream down");
        let f = ApiFailure::from_body(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(f.message, "Bad Gateway");
    }

    #[test]
    fn failed_invocations_point_at_their_record() {
        let f = ApiFailure::from_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"code":"processor_error","message":"bad input","invocation_id":"abc","status":"failed","attempts":1}"#,
        );
        assert_eq!(f.to_string(), "processor_error: bad input");
        let hint = f.hint().unwrap_or_default();
        assert!(hint.contains("eddy logs abc"), "{hint}");
    }

    #[test]
    fn auth_and_tenant_errors_have_hints() {
        let f = ApiFailure::from_body(
            StatusCode::BAD_REQUEST,
            br#"{"code":"bad_request","message":"the admin key acts for a tenant only with an `X-Eddy-Tenant` header"}"#,
        );
        assert!(f.hint().unwrap_or_default().contains("--tenant"));
        let f = ApiFailure::from_body(
            StatusCode::UNAUTHORIZED,
            br#"{"code":"missing_key","message":"m"}"#,
        );
        assert!(f.hint().unwrap_or_default().contains("EDDY_KEY"));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("word-count_1.v2"), "word-count_1.v2");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("1700000000000-0"), "1700000000000-0");
    }

    #[test]
    fn an_explicit_key_wins() {
        assert_eq!(resolve_key(Some(" k1 ")).as_deref(), Some("k1"));
    }
}
