//! Callback delivery: POSTs results and finished runs to their callback URLs,
//! signed the Standard Webhooks way, retried with exponential backoff and
//! jitter up to a maximum age, then dead-lettered. Internal addresses are
//! refused unless allowlisted, at every delivery, on every resolved address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use eddy_protocol::callback::{Allowlist, check_ip, check_url};
use eddy_protocol::{TenantId, keys, trace};
use eddy_queue::{Callback, DueIndex, Queue};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, info, warn};

/// Settings of callback delivery.
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// Internal addresses callbacks may target anyway.
    pub allowlist: Allowlist,
    /// Give up (dead-letter) this long after the first attempt.
    pub max_age: Duration,
    /// First retry delay; doubled per attempt with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            allowlist: Allowlist::default(),
            max_age: Duration::from_secs(24 * 3600),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            concurrency: 64,
        }
    }
}

/// Signs `body` per Standard Webhooks: base64 HMAC-SHA256 over
/// `{id}.{timestamp}.{body}` with the secret's bytes (`whsec_<base64>`).
pub fn sign(secret: &str, msg_id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Resolves names and drops every address the allowlist does not permit, so
/// a callback host cannot resolve (or re-resolve) into the cluster.
#[derive(Debug)]
struct GuardedResolver(Allowlist);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match check_ip(a.ip(), &allow) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                let why = refused
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| format!("`{host}` has no address"));
                return Err(why.into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Delivers callbacks until told to stop.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    queue: Queue,
    config: CallbackConfig,
    consumer: String,
    http: reqwest::Client,
    /// When each tenant was last marked for a trimming look (one mark a
    /// second serves every delivery of that second).
    marked: parking_lot::Mutex<std::collections::HashMap<TenantId, std::time::Instant>>,
}

impl Dispatcher {
    pub(crate) fn new(
        queue: Queue,
        config: CallbackConfig,
        consumer: String,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect could lead anywhere, internal addresses included.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(config.allowlist.clone())))
            .user_agent("eddy-callbacks/0.1")
            .build()?;
        Ok(Dispatcher {
            queue,
            config,
            consumer,
            http,
            marked: Default::default(),
        })
    }

    /// Runs until `stop` turns true; then finishes the deliveries under way.
    /// It looks only at tenants the callbacks' due index says have work
    /// (see `eddy_queue::DueIndex`): at once when a completion in this
    /// process queued one, else every 100 ms. A tenant without callbacks
    /// costs nothing.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        // Few at a time: each visit may wait for delivery slots, and all of
        // them should settle well within their lease.
        const CLAIM: usize = 8;
        while !*stop.borrow() {
            let now = eddy_protocol::now_ms();
            let claimed = match self.queue.claim_due(DueIndex::Callbacks, now, CLAIM).await {
                Ok(c) => c,
                Err(error) => {
                    debug!(%error, "claiming tenants with callbacks");
                    Vec::new()
                }
            };
            for claim in &claimed {
                match self.visit(&claim.tenant, &slots).await {
                    Ok(next) => {
                        if let Err(error) = self
                            .queue
                            .settle_due(DueIndex::Callbacks, claim, next)
                            .await
                        {
                            debug!(%error, "settling a callback visit (its lease will end)");
                        }
                    }
                    // The claim's lease ends and the tenant is looked at again.
                    Err(error) => debug!(%error, tenant = %claim.tenant, "visiting callbacks"),
                }
            }
            if claimed.len() == CLAIM {
                continue;
            }
            tokio::select! {
                _ = self.queue.callback_news() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => {}
            }
        }
        // Drain: wait for the deliveries under way.
        let _ = slots
            .acquire_many(self.config.concurrency.max(1) as u32)
            .await;
    }

    /// One tenant's callback work: due retries back into its stream, the
    /// deliveries of a deliverer that died taken over, new callbacks sent.
    /// Returns when to look again.
    async fn visit(
        self: &Arc<Self>,
        tenant: &TenantId,
        slots: &Arc<Semaphore>,
    ) -> Result<Option<u64>, eddy_queue::Error> {
        let now = eddy_protocol::now_ms();
        let idle = self.reclaim_idle().as_millis() as u64;
        // Each step on its own: one failing does not keep the others back.
        if let Err(error) = self.queue.promote_callbacks(tenant, now).await {
            debug!(%error, %tenant, "moving due callback retries");
        }
        match self
            .queue
            .reclaim_callbacks(tenant, &self.consumer, idle)
            .await
        {
            Ok(claimed) => {
                for cb in claimed {
                    self.spawn(cb, slots).await;
                }
            }
            Err(error) => debug!(%error, %tenant, "reclaiming callbacks"),
        }
        // A few reads at most; what is left makes the next look immediate.
        for _ in 0..4 {
            let free = slots.available_permits().max(1);
            let batch = self
                .queue
                .read_callbacks(tenant, &self.consumer, free)
                .await?;
            let n = batch.len();
            for cb in batch {
                self.spawn(cb, slots).await;
            }
            if n < free {
                break;
            }
        }
        self.queue.callbacks_next(tenant, now, idle).await
    }

    /// After an acknowledgement: a look within a second trims the stream
    /// (one mark, one look, for all the deliveries of that second: not a
    /// Redis round trip per callback).
    async fn look_again(&self, tenant: &TenantId) {
        {
            let mut marked = self.marked.lock();
            let now = std::time::Instant::now();
            let horizon = Duration::from_millis(eddy_queue::MARK_HORIZON_MS);
            if marked
                .get(tenant)
                .is_some_and(|at| now.duration_since(*at) < horizon)
            {
                return;
            }
            marked.retain(|_, at| now.duration_since(*at) < horizon);
            marked.insert(tenant.clone(), now);
        }
        let soon = eddy_protocol::now_ms() + eddy_queue::MARK_HORIZON_MS;
        if let Err(error) = self.queue.mark_due(DueIndex::Callbacks, tenant, soon).await {
            debug!(%error, "marking callbacks for trimming");
        }
    }

    /// A delivery unacknowledged this long was lost with its deliverer.
    fn reclaim_idle(&self) -> Duration {
        self.config.timeout * 3
    }

    async fn spawn(self: &Arc<Self>, cb: Callback, slots: &Arc<Semaphore>) {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            this.deliver(cb).await;
            drop(permit);
        });
    }

    async fn body(&self, cb: &Callback, tenant: &TenantId) -> Result<Vec<u8>, String> {
        let value = match cb.kind.as_str() {
            "run" => match self
                .queue
                .run(tenant, &cb.id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(run) => {
                    let mut v = serde_json::to_value(run).map_err(|e| e.to_string())?;
                    v["type"] = "run.completed".into();
                    v
                }
                None => {
                    serde_json::json!({ "type": "run.completed", "id": cb.id, "status": "expired" })
                }
            },
            _ => match self
                .queue
                .invocation(tenant, &cb.id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(rec) => {
                    let mut v = serde_json::to_value(rec).map_err(|e| e.to_string())?;
                    v["type"] = "invocation.completed".into();
                    v
                }
                None => {
                    serde_json::json!({ "type": "invocation.completed", "id": cb.id, "status": "expired" })
                }
            },
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }

    async fn attempt(&self, cb: &Callback, tenant: &TenantId) -> Result<(), String> {
        check_url(&cb.url, &self.config.allowlist).map_err(|e| e.to_string())?;
        let secret = self
            .queue
            .webhook_secret(tenant)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("tenant `{tenant}` has no webhook secret"))?;
        let body = self.body(cb, tenant).await?;
        // Stable across attempts, so that receivers can dedupe.
        let msg_id = format!("msg_{}_{}", cb.kind, cb.id);
        let ts = eddy_protocol::now_ms() / 1000;
        let signature =
            sign(&secret, &msg_id, ts, &body).ok_or("the webhook secret is malformed")?;
        let response = self
            .http
            .post(&cb.url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // The guarded resolver's refusal is the interesting part.
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg = s.to_string();
                    source = s.source();
                }
                msg
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", response.status()))
        }
    }

    async fn deliver(&self, cb: Callback) {
        let Some(tenant) = cb.tenant.clone() else {
            return;
        };
        // A child of the attempt that queued it: the callback closes the
        // invocation's (or the run's) trace.
        let span = tracing::info_span!(
            target: trace::TARGET,
            "callback",
            otel.name = %format_args!("callback {}", cb.kind),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
            http.request.method = "POST",
            url.full = %cb.url,
            eddy.tenant = %tenant,
            eddy.callback.kind = %cb.kind,
            eddy.callback.id = %cb.id,
            eddy.callback.attempt = cb.attempt + 1,
        );
        trace::set_parent(&span, Some(cb.traceparent.as_str()));
        let result = self.attempt(&cb, &tenant).instrument(span.clone()).await;
        match &result {
            Ok(()) => span.record("otel.status_code", "OK"),
            Err(e) => span
                .record("otel.status_code", "ERROR")
                .record("otel.status_message", e.as_str()),
        };
        drop(span);
        match result {
            Ok(()) => {
                metrics::counter!("eddy_callbacks_total", "outcome" => "delivered").increment(1);
                debug!(kind = %cb.kind, id = %cb.id, attempt = cb.attempt + 1, "callback delivered");
                if let Err(error) = self.queue.callback_delivered(&cb).await {
                    warn!(%error, "acknowledging a delivered callback; it may be sent again");
                }
                self.look_again(&tenant).await;
            }
            Err(error) => {
                let now = eddy_protocol::now_ms();
                let age = Duration::from_millis(now.saturating_sub(cb.at));
                let delay = crate::process::backoff(
                    cb.attempt + 1,
                    self.config.backoff_base.as_millis() as u64,
                    self.config.backoff_max.as_millis() as u64,
                    crate::process::jitter(),
                );
                let due = (age + Duration::from_millis(delay) < self.config.max_age)
                    .then_some(now + delay);
                metrics::counter!("eddy_callbacks_total", "outcome" => if due.is_some() { "retried" } else { "dead" })
                    .increment(1);
                if due.is_none() {
                    info!(kind = %cb.kind, id = %cb.id, %error, stream = keys::callback_dead_letters(&tenant), "callback dead-lettered");
                } else {
                    debug!(kind = %cb.kind, id = %cb.id, %error, delay, "callback failed; retrying");
                }
                if let Err(e) = self.queue.callback_failed(&cb, due, &error).await {
                    warn!(error = %e, "recording a failed callback; it will be reclaimed");
                }
                self.look_again(&tenant).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks spec's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
