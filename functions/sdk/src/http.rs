//! Outbound HTTP (feature `http`): blocking requests through
//! `wasi:http/outgoing-handler`, the standard interface every WASI toolchain
//! targets.
//!
//! Eddy denies every origin a function's `allowed_hosts` does not list,
//! refuses internal addresses unless the operator allows them, and bounds
//! each invocation's requests and body bytes; a refusal is an [`HttpError`]
//! (its [`code`](HttpError::code) says which), not a trap. Redirects are not
//! followed: a 3xx comes back as it is.
//!
//! ```no_run
//! # fn f() -> Result<(), eddy_sdk::Error> {
//! let doc = eddy_sdk::http::get("https://files.example.com/doc.txt")?;
//! let text = doc.text()?;
//! let reply = eddy_sdk::http::Request::post("https://api.example.com/classify")
//!     .header("authorization", "Bearer ...")
//!     .json(&serde_json::json!({ "text": text }))?
//!     .send()?;
//! # Ok(()) }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::Error;

/// Bytes written to the request body per call.
const WRITE_CHUNK: usize = 4096;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The `wasi:http` error code in kebab case (`HTTP-request-denied`,
    /// `destination-IP-prohibited`, `connection-refused`, ...), or
    /// `bad-url` for a URL this module cannot send.
    pub code: String,
    /// What happened, with the origin (`scheme://host[:port]`; never the
    /// path or query, which may carry tokens and end up in records).
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    /// A denied request or an address the platform refuses will be refused
    /// again: not retryable. Timeouts and connection failures are.
    fn from(e: HttpError) -> Error {
        let permanent = matches!(
            e.code.as_str(),
            "HTTP-request-denied"
                | "destination-IP-prohibited"
                | "connection-limit-reached"
                | "bad-url"
        ) || e.code.ends_with("-size")
            || e.code.ends_with("-invalid");
        let message = e.to_string();
        if permanent {
            Error::new("http", message)
        } else {
            Error::retryable("http", message)
        }
    }
}

/// The WIT name of `code` (`HTTP-request-denied`), and its payload when it
/// has one.
fn code_name(code: &ErrorCode) -> (String, Option<String>) {
    let debug = format!("{code:?}");
    let debug = debug.strip_prefix("ErrorCode::").unwrap_or(&debug);
    let (name, payload) = match debug.split_once('(') {
        Some((name, rest)) => (name, Some(rest.trim_end_matches(')').to_string())),
        None => (debug, None),
    };
    let mut words = Vec::new();
    let mut word = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c);
    }
    words.push(word);
    let words: Vec<String> = words
        .into_iter()
        .map(|w| match w.as_str() {
            "Http" | "Ip" | "Dns" | "Tls" | "Uri" => w.to_ascii_uppercase(),
            _ => w.to_ascii_lowercase(),
        })
        .collect();
    (words.join("-"), payload)
}

/// `scheme://host[:port]` of `url`, without userinfo, path or query.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

fn fail(url: &str, code: &ErrorCode) -> HttpError {
    let url = origin_of(url);
    let (code, payload) = code_name(code);
    let message = match payload {
        Some(p) => format!("request to {url} failed: {code} {p}"),
        None => format!("request to {url} failed: {code}"),
    };
    HttpError { code, message }
}

fn bad_url(url: &str, why: &str) -> HttpError {
    HttpError {
        code: "bad-url".into(),
        message: format!("cannot send to {}: {why}", origin_of(url)),
    }
}

/// A request to build and [`send`](Request::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with `method` (`GET`, `POST`, ...) to `url`.
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Request, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("serializing the request body: {e}")))?;
        Ok(self.header("content-type", crate::mime::JSON).body(body))
    }

    /// Sends it and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = self.url.as_str();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad_url(url, "expected scheme://host/path"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(bad_url(url, "the scheme must be http or https")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let pairs: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let fields =
            Fields::from_list(&pairs).map_err(|e| bad_url(url, &format!("bad header: {e:?}")))?;
        let request = OutgoingRequest::new(fields);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let refused = |what: &str| bad_url(url, what);
        request
            .set_method(&method)
            .map_err(|()| refused("bad method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| refused("bad scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| refused("bad host"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| refused("bad path"))?;
        let body = request
            .body()
            .map_err(|()| refused("the request body is gone"))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| fail(url, &e))?;
        {
            let stream = body
                .write()
                .map_err(|()| refused("the request body stream is gone"))?;
            for chunk in self.body.chunks(WRITE_CHUNK) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    // A refused request drops its body: the response says
                    // why, not the closed stream.
                    pending.subscribe().block();
                    return Err(match pending.get() {
                        Some(Ok(Err(code))) => fail(url, &code),
                        _ => stream_error(url, e),
                    });
                }
            }
        }
        OutgoingBody::finish(body, None).map_err(|e| fail(url, &e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(fail(url, &e)),
            _ => return Err(refused("the response was lost")),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| refused("the response body is gone"))?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| refused("the response body stream is gone"))?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(bytes) => body.extend_from_slice(&bytes),
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(stream_error(url, e)),
                }
            }
        }
        let _ = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn stream_error(url: &str, e: StreamError) -> HttpError {
    let url = origin_of(url);
    match e {
        StreamError::LastOperationFailed(io) => match wasip2::http::types::http_error_code(&io) {
            Some(code) => fail(&url, &code),
            None => HttpError {
                code: "internal-error".into(),
                message: format!(
                    "request to {url} failed: internal-error {}",
                    io.to_debug_string()
                ),
            },
        },
        StreamError::Closed => HttpError {
            code: "connection-terminated".into(),
            message: format!("request to {url} failed: connection-terminated"),
        },
    }
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::new("bad-response", format!("the body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                "bad-response",
                format!("the body is not the JSON expected: {e}"),
            )
        })
    }
}

/// `GET url`, read whole.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn messages_name_the_origin_only() {
        assert_eq!(
            origin_of("https://user:pw@api.example.com:8443/v1/x?token=s3cret"),
            "https://api.example.com:8443"
        );
        assert_eq!(origin_of("http://h?k=v"), "http://h");
    }
}
