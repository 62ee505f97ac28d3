//! The generator's one HTTP client: HTTP/1.1 keep-alive (one connection per
//! request in flight) or HTTP/2 with prior knowledge (h2c, every request a
//! stream on one connection), the key and tenant headers built once, and the
//! few control calls the scenarios need (records, runs, backlog, deploy).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

use eddy_cli::client::{ApiFailure, Conn};

/// Bound on any single request: a sync invoke waits at most the gateway's
/// sync timeout (30 s by default), everything else is quick.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

// Key resolution and path encoding are the client commands' own: one rule
// for every command that talks to a gateway.
pub use eddy_cli::client::api::{resolve_key, segment};

/// A gateway, as the generator talks to it.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub http: reqwest::Client,
    base: String,
    /// Authorization and tenant headers.
    auth: HeaderMap,
    /// The hot loops post over bare HTTP/1.1 connections (plain `http://`
    /// without `--http2`), see [`Poster`].
    lean: bool,
}

impl Gateway {
    pub fn new(conn: &Conn, http2: bool, connections: usize) -> Result<Self> {
        let base = conn.url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && http2 {
            bail!("--http2 speaks h2c (HTTP/2 without TLS): use an http:// URL");
        }
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--url must start with http:// or https://, got `{}`",
                conn.url
            );
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("eddy-bench/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(connections.max(1));
        builder = if http2 {
            builder
                .http2_prior_knowledge()
                .http2_initial_stream_window_size(1 << 20)
                .http2_initial_connection_window_size(16 << 20)
                .http2_adaptive_window(false)
        } else {
            builder.http1_only()
        };
        let http = builder.build().context("building the HTTP client")?;
        let mut auth = HeaderMap::new();
        if let Some(k) = resolve_key(conn.key.as_deref()) {
            auth.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {k}"))
                    .context("the API key is not a valid header value")?,
            );
        }
        if let Some(t) = conn.tenant.as_deref().filter(|t| !t.is_empty()) {
            auth.insert(
                "x-eddy-tenant",
                HeaderValue::from_str(t).context("the tenant is not a valid header value")?,
            );
        }
        let lean = !http2 && base.starts_with("http://");
        Ok(Gateway {
            http,
            base,
            auth,
            lean,
        })
    }

    /// A poster for one sender of a hot loop.
    pub fn poster(&self) -> Poster {
        if self.lean {
            Poster::Lean(None)
        } else {
            Poster::Pooled(self.http.clone())
        }
    }

    /// `base + path`, parsed once (the hot loops clone the parsed URL).
    pub fn url(&self, path: &str) -> Result<Url> {
        Url::parse(&format!("{}{path}", self.base)).with_context(|| format!("bad URL for {path}"))
    }

    /// The authentication headers plus `extra`, for a hot loop to clone.
    pub fn headers(&self, extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = self.auth.clone();
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        Ok(self
            .http
            .request(method, self.url(path)?)
            .headers(self.auth.clone()))
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

    /// GET `path` as JSON; `None` on 404.
    pub async fn get_json(&self, path: &str) -> Result<Option<Value>> {
        let response = self.request(Method::GET, path)?.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ApiFailure::from_body(status, &body).into());
        }
        serde_json::from_slice(&body)
            .map(Some)
            .with_context(|| format!("GET {path}: the answer is not JSON"))
    }

    /// `lag + pending` of a function's stream (`GET /functions/{name}`):
    /// what is still queued or running.
    pub async fn backlog(&self, function: &str) -> Result<u64> {
        let v = self
            .get_json(&format!("/functions/{}", segment(function)))
            .await?
            .with_context(|| format!("function `{function}` not found"))?;
        let b = v.get("backlog").unwrap_or(&Value::Null);
        let n = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok(n("lag") + n("pending"))
    }

    /// Deploys `module` as the new version of `function`.
    pub async fn deploy(&self, function: &str, module: Bytes) -> Result<Value> {
        let req = self
            .request(Method::PUT, &format!("/functions/{}", segment(function)))?
            .header(CONTENT_TYPE, "application/wasm")
            .body(module);
        let body = self.send(req).await?.bytes().await?;
        serde_json::from_slice(&body).context("the deploy answer is not JSON")
    }

    /// Deletes a function (best effort: refused while work is queued).
    pub async fn delete(&self, function: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &format!("/functions/{}", segment(function)))?;
        self.send(req).await?;
        Ok(())
    }
}

/// What a post failed on.
#[derive(Debug)]
pub enum PostError {
    Reqwest(reqwest::Error),
    /// Connecting, or the connection failed under the request.
    Lean {
        connect: bool,
        message: String,
    },
}

impl PostError {
    /// `connect`, `timeout` or `transport`.
    pub fn code(&self) -> &'static str {
        match self {
            PostError::Reqwest(e) if e.is_timeout() => "timeout",
            PostError::Reqwest(e) if e.is_connect() => "connect",
            PostError::Lean { connect: true, .. } => "connect",
            _ => "transport",
        }
    }
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Reqwest(e) => write!(f, "{e:#}"),
            PostError::Lean { message, .. } => f.write_str(message),
        }
    }
}

/// An answer: status, headers, body.
pub type Answer = (StatusCode, HeaderMap, Bytes);

/// Posts invocations for one sender. `Pooled` is reqwest (HTTP/2, TLS);
/// `Lean` is one bare HTTP/1.1 keep-alive connection of hyper's, opened on
/// first use and again after a failure: no pool, redirect handling or
/// per-request timers, so that the generator, which shares the machine with
/// what it measures, costs a few microseconds per request instead of tens.
#[derive(Debug)]
pub enum Poster {
    Pooled(reqwest::Client),
    Lean(Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>>),
}

impl Poster {
    pub async fn post(
        &mut self,
        url: &Url,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, PostError> {
        match self {
            Poster::Pooled(http) => {
                let resp = http
                    .post(url.clone())
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await
                    .map_err(PostError::Reqwest)?;
                let (status, headers) = (resp.status(), resp.headers().clone());
                let body = resp.bytes().await.map_err(PostError::Reqwest)?;
                Ok((status, headers, body))
            }
            Poster::Lean(conn) => {
                let result =
                    tokio::time::timeout(REQUEST_TIMEOUT, lean_post(conn, url, headers, body))
                        .await
                        .unwrap_or_else(|_| {
                            Err(PostError::Lean {
                                connect: false,
                                message: format!("no answer within {REQUEST_TIMEOUT:?}"),
                            })
                        });
                if result.is_err() {
                    // The connection may be half-used: the next post opens
                    // a new one.
                    *conn = None;
                }
                result
            }
        }
    }
}

async fn lean_post(
    conn: &mut Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>>,
    url: &Url,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, PostError> {
    use http_body_util::BodyExt;
    let failed = |connect: bool| {
        move |e: &dyn std::fmt::Display| PostError::Lean {
            connect,
            message: e.to_string(),
        }
    };
    let host = url.host_str().unwrap_or("localhost");
    let port = url.port_or_known_default().unwrap_or(80);
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| failed(true)(&e))?;
        let _ = stream.set_nodelay(true);
        let (send, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| failed(true)(&e))?;
        tokio::spawn(connection);
        *conn = Some(send);
    }
    let Some(send) = conn.as_mut() else {
        return Err(failed(true)(&"no connection"));
    };
    send.ready().await.map_err(|e| failed(false)(&e))?;
    let mut req = hyper::Request::post(&url[url::Position::BeforePath..])
        .body(http_body_util::Full::new(body))
        .map_err(|e| failed(false)(&e))?;
    let h = req.headers_mut();
    h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Ok(v) = HeaderValue::from_str(&match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }) {
        h.insert(reqwest::header::HOST, v);
    }
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| failed(false)(&e))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| failed(false)(&e))?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

/// The invocation id of an invoke answer: the `Location` of a 202
/// (`/invocations/<id>`) or the `X-Eddy-Invocation-Id` of a finished sync
/// invoke, as a 128-bit UUID (cheap to keep a million of).
pub fn invocation_id(headers: &HeaderMap) -> Option<u128> {
    let id = headers
        .get("x-eddy-invocation-id")
        .map(HeaderValue::as_bytes)
        .or_else(|| {
            headers
                .get(reqwest::header::LOCATION)
                .map(|v| v.as_bytes())
                .map(|l| l.rsplit(|b| *b == b'/').next().unwrap_or(l))
        })?;
    uuid::Uuid::try_parse_ascii(id).ok().map(|u| u.as_u128())
}

/// A UUID as the gateway writes it.
pub fn id_string(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_location_or_the_id_header() {
        let id = "0190b0e2-7c3a-7def-8a00-0123456789ab";
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LOCATION,
            HeaderValue::from_str(&format!("/invocations/{id}")).unwrap(),
        );
        let got = invocation_id(&h).unwrap();
        assert_eq!(id_string(got), id);
        let mut h = HeaderMap::new();
        h.insert("x-eddy-invocation-id", HeaderValue::from_static(id));
        assert_eq!(invocation_id(&h), Some(got));
        assert_eq!(invocation_id(&HeaderMap::new()), None);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("cold-ab_1"), "cold-ab_1");
        assert_eq!(segment("a/b"), "a%2Fb");
    }
}
