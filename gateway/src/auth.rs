//! Who is calling: `Authorization: Bearer <key>`. The admin key comes from
//! the gateway's config; tenant keys are looked up by their sha256. Every
//! tenant-scoped route takes a [`TenantCtx`], so nothing of another tenant
//! can be named, let alone touched.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use eddy_protocol::TenantId;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Tenant(TenantId),
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// How long a valid key is trusted without asking Redis again. A revocation
/// reaches every gateway at once over pub/sub (`eddy:keys:revoked`); this
/// bounds how long a lost message could keep a revoked key working.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most (the cache starts over when full).
const KEY_CACHE_MAX: usize = 100_000;

/// Valid tenant keys seen lately, by their hash: most requests need no
/// Redis round trip to authenticate.
#[derive(Debug, Default)]
pub struct KeyCache {
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// Valid keys by hash, with when Redis was asked about them.
    valid: HashMap<String, (TenantId, Instant)>,
    /// Keys revoked lately (kept for a TTL): a lookup that read one just
    /// before its revocation must not put it back.
    revoked: HashMap<String, Instant>,
    /// When this gateway last revoked a key of each tenant (same purpose,
    /// before its own revocation message arrives).
    revoked_tenants: HashMap<TenantId, Instant>,
}

impl KeyCache {
    fn lock(&self) -> parking_lot::MutexGuard<'_, CacheState> {
        self.state.lock()
    }

    pub(crate) fn get(&self, hash: &str) -> Option<TenantId> {
        match self.lock().valid.get(hash) {
            Some((tenant, at)) if at.elapsed() < KEY_CACHE_TTL => Some(tenant.clone()),
            _ => None,
        }
    }

    /// Trusts `hash` for `tenant`, as Redis said when asked at `asked`;
    /// unless a revocation has been seen since.
    fn put(&self, hash: String, tenant: TenantId, asked: Instant) {
        let mut s = self.lock();
        let since = |at: Option<&Instant>| at.is_some_and(|at| *at >= asked);
        if since(s.revoked.get(&hash)) || since(s.revoked_tenants.get(&tenant)) {
            return;
        }
        if s.valid.len() >= KEY_CACHE_MAX {
            s.valid.clear();
        }
        s.valid.insert(hash, (tenant, asked));
    }

    /// Forgets every key of `tenant` (this gateway revoked one of them).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut s = self.lock();
        s.valid.retain(|_, (t, _)| t != tenant);
        s.revoked_tenants.insert(tenant.clone(), Instant::now());
    }

    fn revoked(&self, hash: String) {
        let mut s = self.lock();
        let now = Instant::now();
        s.valid.remove(&hash);
        s.revoked
            .retain(|_, at| now.duration_since(*at) < KEY_CACHE_TTL);
        s.revoked_tenants
            .retain(|_, at| now.duration_since(*at) < KEY_CACHE_TTL);
        s.revoked.insert(hash, now);
    }

    /// Follows revocations: a revoked key's hash is dropped at once; after a
    /// resubscription (messages may have been lost) everything is.
    pub fn listen(
        self: &Arc<Self>,
        mut revoked: tokio::sync::mpsc::Receiver<
            eddy_queue::Event<eddy_protocol::messages::KeyRevoked>,
        >,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = revoked.recv().await {
                match msg {
                    eddy_queue::Event::Message(revoked) => this.revoked(revoked.0),
                    eddy_queue::Event::Resubscribed => this.lock().valid.clear(),
                }
            }
        });
    }
}

/// The credentials of an `Authorization: Bearer <key>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1).
pub(crate) fn bearer(header: &str) -> Option<&str> {
    let (scheme, key) = header.trim_start().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// Authenticates every request that reaches it; puts the [`Caller`] into
/// the request's extensions.
pub async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or(ApiError::MissingKey)?;
    let key = bearer(header).ok_or(ApiError::MissingKey)?;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let caller = match identify(&state, key, peer).await {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, ApiError::InvalidKey | ApiError::KeyRevoked)
                && let Some(ip) = peer
            {
                state.failed_auths.failed(ip);
            }
            return Err(e);
        }
    };
    // A tenant holds at most half of the gateway's requests, so that its
    // slow or many requests leave room for everyone else's.
    let _share = match &caller {
        Caller::Tenant(t) => Some(
            state
                .in_flight
                .enter(t, (state.config.max_in_flight / 2).max(1))
                .ok_or(ApiError::TenantBusy(
                    (state.config.max_in_flight / 2).max(1),
                ))?,
        ),
        Caller::Admin => None,
    };
    req.extensions_mut().insert(caller);
    let response = next.run(req).await;
    // A streamed answer (a batch, an event stream) holds the tenant's place
    // until it ends, not only until its handler returns.
    Ok(match _share {
        Some(entered) => {
            let (parts, body) = response.into_parts();
            Response::from_parts(
                parts,
                axum::body::Body::new(Held {
                    body,
                    _entered: entered,
                }),
            )
        }
        None => response,
    })
}

/// A response body that keeps its request counted in flight until it ends.
struct Held {
    body: axum::body::Body,
    _entered: Entered,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Who `key` is. A key this gateway saw valid lately needs no Redis; any
/// other costs a lookup, which an address with many failed attempts lately
/// is refused (see [`FailedAuths`]).
async fn identify(
    state: &AppState,
    key: &str,
    peer: Option<std::net::IpAddr>,
) -> Result<Caller, ApiError> {
    let hash = eddy_queue::hash_key(key);
    let asked = Instant::now();
    if let Some(tenant) = state.keys.get(&hash) {
        return Ok(Caller::Tenant(tenant));
    }
    // A blocked address may still use keys seen valid lately; every other
    // guess, the admin key's included, waits for the window to end.
    if let Some(wait) = peer.and_then(|ip| state.failed_auths.blocked(ip))
        && !state.failed_auths.seen_valid(&hash)
    {
        return Err(ApiError::AuthThrottled(wait));
    }
    if state
        .config
        .admin_key
        .as_deref()
        .is_some_and(|admin| same_secret(admin, key))
    {
        state.failed_auths.valid(hash);
        return Ok(Caller::Admin);
    }
    match state.queue.lookup_key_hash(&hash).await? {
        Some(k) if k.revoked => Err(ApiError::KeyRevoked),
        Some(k) => {
            state.keys.put(hash.clone(), k.tenant.clone(), asked);
            state.failed_auths.valid(hash);
            Ok(Caller::Tenant(k.tenant))
        }
        None => Err(ApiError::InvalidKey),
    }
}

/// Failed authentications per client address, in windows of
/// [`FAILED_AUTH_WINDOW`]: an address past [`FAILED_AUTHS`] in a window is
/// refused every key lookup until the window ends (429
/// `too_many_failed_auths`), so guessing keys is slow and cannot load Redis.
/// Keys that authenticated at this gateway within the hour still pass, so
/// that clients behind the same proxy as a guesser keep working. IPv6 is
/// counted per /64. Bounded: past [`FAILED_AUTH_ADDRESSES`] addresses the
/// expired windows go, then all.
#[derive(Debug, Default)]
pub struct FailedAuths {
    failures: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
    /// Hashes of keys that authenticated within [`SEEN_VALID_FOR`]: they
    /// pass a blocked address (clients behind the guesser's proxy).
    seen: Mutex<HashMap<String, Instant>>,
}

/// How long a key that authenticated passes a blocked address.
const SEEN_VALID_FOR: Duration = Duration::from_secs(3600);

/// Failed authentications an address may make per window.
pub const FAILED_AUTHS: u32 = 20;
/// The window of [`FAILED_AUTHS`].
pub const FAILED_AUTH_WINDOW: Duration = Duration::from_secs(10);
const FAILED_AUTH_ADDRESSES: usize = 10_000;

/// The unit an address is counted in: one IPv4 address, or an IPv6 /64
/// (what one host usually holds).
fn counted(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl FailedAuths {
    fn valid(&self, hash: String) {
        let mut seen = self.seen.lock();
        if seen.len() >= FAILED_AUTH_ADDRESSES * 10 && !seen.contains_key(&hash) {
            seen.retain(|_, at| at.elapsed() < SEEN_VALID_FOR);
            if seen.len() >= FAILED_AUTH_ADDRESSES * 10 {
                return;
            }
        }
        seen.insert(hash, Instant::now());
    }

    fn seen_valid(&self, hash: &str) -> bool {
        let seen = self.seen.lock();
        seen.get(hash)
            .is_some_and(|at| at.elapsed() < SEEN_VALID_FOR)
    }

    pub(crate) fn failed(&self, ip: std::net::IpAddr) {
        let ip = counted(ip);
        let mut map = self.failures.lock();
        let now = Instant::now();
        if map.len() >= FAILED_AUTH_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| now.duration_since(*start) < FAILED_AUTH_WINDOW);
            if map.len() >= FAILED_AUTH_ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILED_AUTH_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// How long `ip` is still refused, if it is.
    pub(crate) fn blocked(&self, ip: std::net::IpAddr) -> Option<u64> {
        let map = self.failures.lock();
        let (start, n) = map.get(&counted(ip))?;
        let left = FAILED_AUTH_WINDOW.checked_sub(start.elapsed())?;
        (*n >= FAILED_AUTHS).then(|| left.as_secs().max(1))
    }
}

/// Lets only the admin key through (operator endpoints on the public
/// port).
/// Failed guesses count toward the address's throttle as everywhere.
pub fn admin_only(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer)
        .ok_or(ApiError::MissingKey)?;
    if let Some(wait) = peer.and_then(|ip| state.failed_auths.blocked(ip))
        && !state.failed_auths.seen_valid(&eddy_queue::hash_key(key))
    {
        return Err(ApiError::AuthThrottled(wait));
    }
    match state.config.admin_key.as_deref() {
        Some(admin) if same_secret(admin, key) => Ok(()),
        _ => {
            if let Some(ip) = peer {
                state.failed_auths.failed(ip);
            }
            Err(ApiError::Forbidden(
                "only the admin key may read this gateway's metrics".into(),
            ))
        }
    }
}

/// Requests in flight per tenant.
#[derive(Debug, Default, Clone)]
pub struct InFlight(Arc<Mutex<HashMap<TenantId, usize>>>);

/// One request of a tenant in flight; leaves on drop.
pub struct Entered(InFlight, TenantId);

impl InFlight {
    /// Counts a request of `tenant` in, unless it already has `limit`.
    pub fn enter(&self, tenant: &TenantId, limit: usize) -> Option<Entered> {
        let mut map = self.0.lock();
        let n = map.entry(tenant.clone()).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Entered(self.clone(), tenant.clone()))
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock();
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::MissingKey)
    }
}

/// The tenant a request acts for: the key's own tenant, or, for the admin
/// key, the tenant named by `X-Eddy-Tenant`.
#[derive(Debug, Clone)]
pub struct TenantCtx(pub TenantId);

impl<S: Send + Sync> FromRequestParts<S> for TenantCtx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Tenant(t) => Ok(TenantCtx(t)),
            Caller::Admin => {
                let name = parts
                    .headers
                    .get("x-eddy-tenant")
                    .and_then(|h| h.to_str().ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest(
                            "the admin key acts for a tenant only with an `X-Eddy-Tenant` header"
                                .into(),
                        )
                    })?;
                TenantId::new(name)
                    .map(TenantCtx)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))
            }
        }
    }
}

/// Only the admin key.
#[derive(Debug, Clone)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin => Ok(Admin),
            Caller::Tenant(_) => Err(ApiError::Forbidden("this route needs the admin key".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for h in ["Bearer k1", "bearer k1", "BEARER  k1 ", " Bearer k1"] {
            assert_eq!(bearer(h), Some("k1"), "{h:?}");
        }
        for h in ["Basic k1", "Bearer ", "Bearerk1", "k1", ""] {
            assert_eq!(bearer(h), None, "{h:?}");
        }
    }

    #[test]
    fn a_lookup_that_raced_a_revocation_is_not_cached() {
        let cache = KeyCache::default();
        let asked = Instant::now();
        // The revocation is seen while the lookup is in flight.
        cache.revoked("h1".into());
        cache.put("h1".into(), tenant("acme"), asked);
        assert_eq!(cache.get("h1"), None);
        // Same when this gateway revoked a key of the tenant.
        let asked = Instant::now();
        cache.forget_tenant(&tenant("globex"));
        cache.put("h2".into(), tenant("globex"), asked);
        assert_eq!(cache.get("h2"), None);
        // A lookup that started after the revocation is trusted again.
        cache.put("h3".into(), tenant("acme"), Instant::now());
        assert_eq!(cache.get("h3"), Some(tenant("acme")));
    }
}
