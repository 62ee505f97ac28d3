//! Outbound HTTP for guests: `wasi:http/outgoing-handler`, behind the
//! function's `allowed_hosts`, the operator's SSRF guard and the
//! invocation's limits.
//!
//! Every request, in order:
//! 1. counts against `max_outbound_requests`;
//! 2. must match the function's `allowed_hosts` (none by default);
//! 3. resolves its host, drops every address the SSRF guard refuses
//!    (internal and special-purpose ones, unless the operator's
//!    `EDDY_OUTBOUND_ALLOWLIST` lets them through) and connects to one of
//!    the addresses it checked, never to a name resolved again (DNS
//!    rebinding);
//! 4. streams its body and the response's through a meter that stops both
//!    at `max_outbound_bytes` and at the invocation's deadline.
//!
//! Redirects are not followed here: the guest gets the 3xx, and a request
//! it makes to the new location passes the same checks. A refused or failed
//! request is an error code the guest sees (`HTTP-request-denied`,
//! `destination-IP-prohibited`, ...), not a trap; Eddy adds a `host` line
//! to the invocation's log naming the origin and the reason, and the
//! request's entry in the record says the same. A limit hit ends the
//! invocation as `limit-exceeded`, and a request stopped at the deadline as
//! `timeout`, whether the guest carried on or returned an error of its own.
//!
//! What a guest can make the host hold is bounded: at most
//! [`MAX_IN_FLIGHT`] requests of one invocation connect or wait for their
//! response's head at once (the others wait for a slot, within the
//! deadline); a response whose body is not read yet keeps its connection
//! and a [`READ_BUFFER`] (at most `max_requests` of them); an outgoing body
//! buffers two [`OUTGOING_CHUNK`]s, a header set [`FIELD_SIZE`]; the record
//! keeps `max_requests` entries plus the first refused one, with hosts of at
//! most 253 bytes; and at most [`MAX_LOOKUPS`] name lookups of the whole
//! process run at once, the permit held by the lookup's own thread
//! (`getaddrinfo` blocks it and cannot be cancelled).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use eddy_protocol::callback::{Allowlist, refused};
use eddy_protocol::outbound::{AllowedHosts, OutboundCall, default_port, normal_host, origin};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capture::{Capture, LogLevel};
use crate::error::LimitKind;
use crate::host::LimitHit;

/// What every invocation's outbound requests share in a process: the
/// operator's allowlist and the TLS roots.
pub(crate) struct Net {
    allowlist: Allowlist,
    tls: tokio_rustls::TlsConnector,
    lookups: Arc<tokio::sync::Semaphore>,
}

/// Name lookups running at once in a process.
const MAX_LOOKUPS: usize = 32;

/// Requests of one invocation on the wire at once.
const MAX_IN_FLIGHT: usize = 8;

/// Longest host name a request may name (DNS's limit; an IPv6 literal is
/// shorter).
const MAX_HOST: usize = 253;

/// Longest method kept in the record.
const MAX_METHOD: usize = 32;

impl Net {
    pub(crate) fn new(allowlist: Allowlist) -> Result<Self, String> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Net {
            allowlist,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            lookups: Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS)),
        })
    }
}

/// A function's outbound policy, as [`crate::Limits`] carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Origins the guest may call; empty: none.
    pub allowed_hosts: AllowedHosts,
    /// Requests one invocation may make.
    pub max_requests: u32,
    /// Request and response body bytes of one invocation together.
    pub max_bytes: u64,
}

/// One outbound request as the runtime reports it.
#[derive(Debug, Clone)]
pub struct OutboundReport {
    /// What goes into the invocation's record.
    pub call: OutboundCall,
    /// When it started (for its span).
    pub started: SystemTime,
    /// The span id sent in its `traceparent`, when the invocation had one.
    pub span_id: Option<String>,
}

/// Everything one invocation's requests wrote down; shared with their
/// futures, which outlive the host call that started them.
#[derive(Debug, Default)]
struct Ledger {
    calls: Vec<OutboundReport>,
    /// Requests the guest asked for, refused ones included.
    attempts: u64,
    bytes: u64,
    limit_hit: Option<LimitHit>,
    /// A request was stopped at the invocation's deadline: the invocation
    /// timed out, whatever the guest did with the error.
    timed_out: bool,
}

/// See [`Outbound::tasks`].
pub(crate) struct Tasks(Arc<Mutex<Ledger>>);

impl Tasks {
    /// Whether nothing but this handle holds the ledger any more.
    pub(crate) fn gone(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }
}

/// The `WasiHttpHooks` of one invocation.
pub(crate) struct Outbound {
    net: Arc<Net>,
    limits: OutboundLimits,
    ledger: Arc<Mutex<Ledger>>,
    capture: Capture,
    deadline: tokio::time::Instant,
    /// The invocation's trace context: each request gets a child of it.
    traceparent: Option<String>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Bytes of a guest's outgoing body per buffered chunk (two per body;
/// wasmtime's default is 1 MiB).
const OUTGOING_CHUNK: usize = 16 << 10;

/// Bytes one header set (`fields`) may hold (wasmtime's default is 128 KiB,
/// and a guest may hold hundreds of them).
pub(crate) const FIELD_SIZE: usize = 16 << 10;

/// Largest read buffer of one connection (hyper's default is ~400 KiB).
const READ_BUFFER: usize = 64 << 10;

impl Outbound {
    pub(crate) fn new(
        net: Arc<Net>,
        limits: OutboundLimits,
        capture: Capture,
        deadline: tokio::time::Instant,
        traceparent: Option<String>,
    ) -> Self {
        Outbound {
            net,
            limits,
            ledger: Arc::default(),
            capture,
            deadline,
            traceparent,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// The limit an outbound request hit, if any.
    pub(crate) fn limit_hit(&self) -> Option<LimitHit> {
        self.ledger.lock().limit_hit.clone()
    }

    /// A handle that tells when every task of this invocation's requests
    /// is gone (each holds the ledger).
    pub(crate) fn tasks(&self) -> Tasks {
        Tasks(self.ledger.clone())
    }

    /// Whether a request was stopped at the invocation's deadline.
    pub(crate) fn timed_out(&self) -> bool {
        self.ledger.lock().timed_out
    }

    /// The requests made, in order. Tasks still finishing a request after
    /// this find their entry gone and record nothing.
    pub(crate) fn take(&self) -> Vec<OutboundReport> {
        std::mem::take(&mut self.ledger.lock().calls)
    }

    /// Records a new request, or refuses it: the first request past the
    /// limit is recorded with its reason, later ones are not recorded.
    fn begin(&self, method: &str, origin: String, span: Option<String>) -> Result<Entry, Error> {
        let max = u64::from(self.limits.max_requests);
        let mut ledger = self.ledger.lock();
        ledger.attempts += 1;
        if ledger.attempts > max + 1 {
            return Err(Error::ConnectionLimitReached);
        }
        let over = ledger.attempts > max;
        let mut method = method.to_string();
        method.truncate(MAX_METHOD);
        ledger.calls.push(OutboundReport {
            call: OutboundCall {
                method,
                origin,
                ..OutboundCall::default()
            },
            started: SystemTime::now(),
            span_id: span,
        });
        let entry = Entry {
            ledger: self.ledger.clone(),
            capture: self.capture.clone(),
            index: ledger.calls.len() - 1,
            started: Instant::now(),
            max_bytes: self.limits.max_bytes,
            deadline: self.deadline,
        };
        drop(ledger);
        if max == 0 {
            let why = "denied: outbound HTTP is turned off on this platform".to_string();
            return Err(entry.fail(why, None, Error::HttpRequestDenied));
        }
        if over {
            let why = format!(
                "the invocation made more than {} outbound requests",
                self.limits.max_requests
            );
            return Err(entry.fail(
                why,
                Some(LimitKind::OutboundRequests),
                Error::ConnectionLimitReached,
            ));
        }
        Ok(entry)
    }
}

/// A request's entry in the ledger, with what it needs to finish it.
#[derive(Clone)]
struct Entry {
    ledger: Arc<Mutex<Ledger>>,
    capture: Capture,
    index: usize,
    started: Instant,
    max_bytes: u64,
    deadline: tokio::time::Instant,
}

impl Entry {
    /// Records why the request failed (the first reason only, with one
    /// `host` log line) and hands back `code` for the guest.
    fn fail(&self, why: String, limit: Option<LimitKind>, code: Error) -> Error {
        let mut ledger = self.ledger.lock();
        // Whatever failed at the deadline failed because of it (a guest's
        // own timeout may fire in the same tick).
        if tokio::time::Instant::now() >= self.deadline {
            ledger.timed_out = true;
        }
        if let Some(limit) = limit {
            ledger.limit_hit.get_or_insert(LimitHit {
                limit,
                detail: why.clone(),
            });
        }
        let Some(report) = ledger.calls.get_mut(self.index) else {
            return code;
        };
        let call = &mut report.call;
        if call.error.is_some() {
            return code;
        }
        call.duration_us = self.started.elapsed().as_micros() as u64;
        let line = format!("outbound {} {}: {why}", call.method, call.origin);
        call.error = Some(why);
        drop(ledger);
        self.capture.note(LogLevel::Warn, line);
        code
    }

    /// Ends the request at the invocation's deadline.
    fn expire(&self, code: Error) -> Error {
        self.ledger.lock().timed_out = true;
        self.fail("stopped at the invocation's deadline".into(), None, code)
    }

    fn call(&self, f: impl FnOnce(&mut OutboundCall)) {
        if let Some(report) = self.ledger.lock().calls.get_mut(self.index) {
            f(&mut report.call);
        }
    }

    fn finish(&self) {
        let us = self.started.elapsed().as_micros() as u64;
        self.call(|c| c.duration_us = us);
    }

    /// The response's head is in.
    fn status(&self, status: u16) {
        let us = self.started.elapsed().as_micros() as u64;
        self.call(|c| {
            c.status = Some(status);
            c.duration_us = us;
        });
    }

    /// Charges `n` body bytes; an error once the invocation's budget is
    /// spent.
    fn charge(&self, n: usize, outgoing: bool) -> Result<(), Error> {
        let mut ledger = self.ledger.lock();
        let n = n as u64;
        ledger.bytes = ledger.bytes.saturating_add(n);
        let over = ledger.bytes > self.max_bytes;
        if let Some(report) = ledger.calls.get_mut(self.index) {
            if outgoing {
                report.call.bytes_out += n;
            } else {
                report.call.bytes_in += n;
            }
        }
        drop(ledger);
        if over {
            let why = format!(
                "the invocation's outbound bodies exceed the limit of {} bytes",
                self.max_bytes
            );
            let code = if outgoing {
                Error::HttpRequestBodySize(None)
            } else {
                Error::HttpResponseBodySize(None)
            };
            return Err(self.fail(why, Some(LimitKind::OutboundBytes), code));
        }
        Ok(())
    }
}

/// A body that charges every data frame to the invocation's byte budget
/// and stops at its deadline.
struct Metered<B> {
    inner: B,
    entry: Entry,
    outgoing: bool,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                self.done = true;
                self.entry.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                let e: Error = e.into();
                let why = format!("the body failed: {e}");
                Poll::Ready(Some(Err(self.entry.fail(why, None, e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(e) = self.entry.charge(data.len(), self.outgoing)
                {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.done = true;
                    let code = if self.outgoing {
                        Error::ConnectionWriteTimeout
                    } else {
                        Error::ConnectionReadTimeout
                    };
                    return Poll::Ready(Some(Err(self.entry.expire(code))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A fresh span id, as 16 lower-case hex digits (never all zero).
fn span_id() -> String {
    let id: u64 = rand::random::<u64>() | 1;
    format!("{id:016x}")
}

/// The `traceparent` of a child of `parent` with span id `span`.
fn child_traceparent(parent: &str, span: &str) -> Option<String> {
    let mut parts = parent.split('-');
    let (_version, trace, _span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(format!("00-{trace}-{span}-{flags}"))
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

/// `host`, in brackets when it is an IPv6 address.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `host[:port]` for the `Host` header.
fn host_header(scheme: &str, host: &str, port: u16) -> String {
    let host = bracketed(host);
    if port == default_port(scheme) {
        host
    } else {
        format!("{host}:{port}")
    }
}

impl WasiHttpHooks for Outbound {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_CHUNK
    }

    // wasmtime logs every failed request at WARN by default: guests would
    // write into the worker's own log. The record has them.
    fn p2_error_from_hyper(
        &mut self,
        err: &hyper::Error,
    ) -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
        tracing::debug!(%err, "outbound request failed");
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::HttpProtocolError
    }

    /// `send` sets it from the checked host, never from the guest's
    /// authority (which may carry userinfo).
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let raw = uri.host().unwrap_or_default();
        let host = if raw.len() > MAX_HOST {
            String::new()
        } else {
            normal_host(raw)
        };
        let port = uri.port_u16().unwrap_or_else(|| default_port(&scheme));
        let shown = if raw.len() > MAX_HOST {
            format!("{scheme}://<a host of {} bytes>", raw.len())
        } else {
            origin(&scheme, &bracketed(&host), port)
        };
        let span = self.traceparent.as_ref().map(|_| span_id());
        let method = request.method().clone();
        let entry = match self.begin(method.as_str(), shown.clone(), span.clone()) {
            Ok(entry) => entry,
            Err(e) => return Box::new(async move { Err(e) }),
        };
        let refuse = |why: String, code: Error| -> Box<dyn Future<Output = Sent> + Send> {
            let e = entry.fail(why, None, code);
            Box::new(async move { Err(e) })
        };
        if host.is_empty() {
            return refuse(
                format!("the host must be 1 to {MAX_HOST} bytes"),
                Error::HttpRequestUriInvalid,
            );
        }
        if method == http::Method::CONNECT || method == http::Method::TRACE {
            return refuse(
                format!("{method} requests are not allowed"),
                Error::HttpRequestMethodInvalid,
            );
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        if !path.starts_with('/') {
            return refuse(
                "the path must start with `/`".into(),
                Error::HttpRequestUriInvalid,
            );
        }
        if !self.limits.allowed_hosts.allows(&scheme, &host, port) {
            return refuse(
                format!("denied: `{shown}` is not in this function's allowed_hosts"),
                Error::HttpRequestDenied,
            );
        }
        // The connection is to the origin itself: the request line carries
        // the path only, and `Host` names the host that was checked.
        *request.uri_mut() = match http::Uri::builder().path_and_query(path).build() {
            Ok(uri) => uri,
            Err(e) => return refuse(format!("bad path: {e}"), Error::HttpRequestUriInvalid),
        };
        if let Ok(value) = http::HeaderValue::from_str(&host_header(&scheme, &host, port)) {
            request.headers_mut().insert(http::header::HOST, value);
        }
        if let (Some(parent), Some(span)) = (&self.traceparent, &span)
            && !request.headers().contains_key("traceparent")
            && let Some(tp) = child_traceparent(parent, span)
            && let Ok(value) = http::HeaderValue::from_str(&tp)
        {
            request.headers_mut().insert("traceparent", value);
        }
        let target = Target {
            net: self.net.clone(),
            https: scheme == "https",
            host,
            port,
            head: method == http::Method::HEAD,
            deadline: self.deadline,
        };
        let slots = self.in_flight.clone();
        Box::new(async move {
            let deadline = target.deadline;
            let sent = tokio::time::timeout_at(deadline, async {
                // One of the invocation's in-flight slots, held until the
                // response body is done.
                let slot = slots
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::InternalError(None))?;
                send(&target, request, options, &entry, slot).await
            })
            .await;
            match sent {
                Ok(sent) => sent,
                Err(_) => Err(entry.expire(Error::ConnectionTimeout)),
            }
        })
    }
}

/// Where a checked request goes.
struct Target {
    net: Arc<Net>,
    https: bool,
    /// As [`normal_host`] made it.
    host: String,
    port: u16,
    head: bool,
    deadline: tokio::time::Instant,
}

/// The addresses the target may be reached at: every resolved address the
/// guard lets through, or why there is none. A name's refused addresses
/// are not named to the tenant: that would tell it the operator's network.
async fn resolve(target: &Target, entry: &Entry) -> Result<Vec<SocketAddr>, Error> {
    let (net, host, port) = (&target.net, target.host.as_str(), target.port);
    let literal = host.parse::<IpAddr>().ok();
    let all: Vec<SocketAddr> = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => {
            let permit = net
                .lookups
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::InternalError(None))?;
            let name = host.to_string();
            // The permit goes with the thread: it is given back when
            // `getaddrinfo` returns, not when this request gives up.
            let lookup = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
                    .map(Iterator::collect::<Vec<_>>)
            });
            let looked_up = lookup
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            match looked_up {
                Ok(addrs) => addrs,
                Err(e) => {
                    return Err(entry.fail(
                        format!("could not resolve `{host}`: {e}"),
                        None,
                        Error::DnsError {
                            rcode: Some(e.to_string()),
                            info_code: None,
                        },
                    ));
                }
            }
        }
    };
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| match refused(a.ip(), &net.allowlist) {
            Some(kind) => {
                refusal.get_or_insert((a.ip(), kind));
                false
            }
            None => true,
        })
        .collect();
    if !allowed.is_empty() {
        return Ok(allowed);
    }
    let why = match (literal, refusal) {
        (Some(ip), Some((_, kind))) => format!(
            "refused: {ip} is {kind}, which the operator does not allow (EDDY_OUTBOUND_ALLOWLIST)"
        ),
        (None, Some((ip, kind))) => {
            tracing::debug!(host, %ip, kind, "outbound request refused");
            format!(
                "refused: `{host}` resolves only to internal or special-purpose addresses, which the operator does not allow (EDDY_OUTBOUND_ALLOWLIST)"
            )
        }
        (_, None) => {
            return Err(entry.fail(
                format!("`{host}` resolves to no address"),
                None,
                Error::DnsError {
                    rcode: None,
                    info_code: None,
                },
            ));
        }
    };
    Err(entry.fail(why, None, Error::DestinationIpProhibited))
}

async fn send(
    target: &Target,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    entry: &Entry,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Sent {
    let addrs = resolve(target, entry).await?;
    let connect_timeout = options.and_then(|o| o.connect_timeout);
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        let connect = TcpStream::connect(addr);
        let result = match connect_timeout {
            Some(t) => tokio::time::timeout(t, connect)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => connect.await,
        };
        match result {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    let Some(tcp) = stream else {
        let why = match last {
            Some((addr, e)) => format!("could not connect to {addr}: {e}"),
            None => "could not connect".into(),
        };
        return Err(entry.fail(why, None, Error::ConnectionRefused));
    };
    let _ = tcp.set_nodelay(true);
    let deadline = target.deadline;
    let (parts, body) = request.into_parts();
    let body = Metered {
        inner: body,
        entry: entry.clone(),
        outgoing: true,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        done: false,
    };
    let request = http::Request::from_parts(parts, body);
    let conn = if target.https {
        let name = match target.host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => {
                rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| {
                    entry.fail(format!("bad TLS name: {e}"), None, Error::TlsProtocolError)
                })?
            }
        };
        let tls = target
            .net
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| entry.fail(format!("TLS: {e}"), None, Error::TlsProtocolError))?;
        handshake(TokioIo::new(tls), entry).await?
    } else {
        handshake(TokioIo::new(tcp), entry).await?
    };
    let (mut sender, conn) = conn;
    // The connection is driven here until the response's head is in, then
    // handed to wasmtime, which drops it with the store.
    let first_byte = options.and_then(|o| o.first_byte_timeout);
    let mut conn = Some(conn);
    let mut response = std::pin::pin!(sender.send_request(request));
    let head = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = response.as_mut().poll(cx) {
            return Poll::Ready(r.map_err(Error::from));
        }
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(r) = c.as_mut().poll(cx)
        {
            conn = None;
            return match r {
                Ok(()) => response.as_mut().poll(cx).map_err(Error::from),
                Err(e) => Poll::Ready(Err(e)),
            };
        }
        Poll::Pending
    });
    let response = match first_byte {
        Some(t) => tokio::time::timeout(t, head).await.map_err(|_| {
            entry.fail(
                format!("no response within {} ms", t.as_millis()),
                None,
                Error::ConnectionReadTimeout,
            )
        })?,
        None => head.await,
    }
    .map_err(|e| entry.fail(format!("{e:?}"), None, e))?;
    // The head is in: the slot goes to the next request, so that a guest
    // that waits for several heads before reading bodies does not wait on
    // itself.
    drop(slot);
    let status = response.status();
    entry.status(status.as_u16());
    // A body is coming (not for HEAD, 1xx, 204 or 304): refuse at once one
    // whose announced length is over what is left of the budget.
    let bodyless = target.head
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    if let Some(len) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| !bodyless)
    {
        let spent = entry.ledger.lock().bytes;
        if spent.saturating_add(len) > entry.max_bytes {
            let why = format!(
                "the response's {len} bytes would take the invocation's outbound bodies past the limit of {} bytes",
                entry.max_bytes
            );
            return Err(entry.fail(
                why,
                Some(LimitKind::OutboundBytes),
                Error::HttpResponseBodySize(Some(len)),
            ));
        }
    }
    let entry = entry.clone();
    let response = response.map(move |incoming| {
        Metered {
            inner: incoming.map_err(Error::from),
            entry,
            outgoing: false,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            done: false,
        }
        .boxed_unsync()
    });
    let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        match conn {
            Some(conn) => conn.await,
            None => Ok(()),
        }
    });
    Ok((response, io))
}

type Driver = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// An HTTP/1 client connection over `io`: its sender and its driver.
async fn handshake<T>(
    io: TokioIo<T>,
    entry: &Entry,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Metered<WasiBody>>,
        Driver,
    ),
    Error,
>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.max_buf_size(READ_BUFFER);
    let (sender, conn) = builder.handshake(io).await.map_err(|e| {
        entry.fail(
            format!("HTTP handshake: {e}"),
            None,
            Error::HttpProtocolError,
        )
    })?;
    let driver: Driver = Box::pin(async move { conn.await.map_err(Error::from) });
    Ok((sender, driver))
}
