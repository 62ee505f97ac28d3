//! Retries (a delayed sorted set per tenant) and dead letters (a stream per
//! tenant), with redrive.

use std::collections::HashMap;

use eddy_protocol::{Envelope, ErrorClass, FunctionName, InvocationStatus, TenantId, keys};
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;

use crate::scripts::{PROMOTE, REDRIVE};
use crate::{DeadLetter, Error, Queue, Result};

impl Queue {
    /// Moves retries of `tenant` that are due by `now_ms` back into their
    /// streams, at most `limit`. Returns the streams that got one (to wake)
    /// and when the next retry is due (`None`: none waits).
    pub async fn promote_due(
        &self,
        tenant: &TenantId,
        now_ms: u64,
        limit: usize,
    ) -> Result<(Vec<String>, Option<u64>)> {
        let mut conn = self.conn();
        let delayed = keys::delayed(tenant);
        let due: Vec<String> = conn
            .zrangebyscore_limit(&delayed, 0, now_ms, 0, limit as isize)
            .await?;
        // Retries are the exception, not the hot path: one script call each
        // (EVALSHA with EVAL fallback, so a restarted Redis is fine).
        let mut moved = Vec::new();
        for member in &due {
            let parsed = member
                .split_once('|')
                .and_then(|(f, id)| FunctionName::new(f).ok().map(|f| (f, id)));
            let Some((function, id)) = parsed else {
                let _: i64 = conn.zrem(&delayed, member).await?;
                continue;
            };
            let n: i64 = PROMOTE
                .key(&delayed)
                .key(keys::invocation(tenant, id))
                .key(keys::stream(tenant, &function))
                .arg(member)
                .invoke_async(&mut conn)
                .await?;
            if n == 1 {
                moved.push(keys::stream(tenant, &function));
            }
        }
        moved.sort();
        moved.dedup();
        let next = if due.len() >= limit {
            Some(now_ms)
        } else {
            let first: Vec<(String, f64)> = conn.zrange_withscores(&delayed, 0, 0).await?;
            first.first().map(|(_, at)| at.max(0.0) as u64)
        };
        Ok((moved, next))
    }

    /// Invocations waiting for a retry.
    pub async fn delayed_count(&self, tenant: &TenantId) -> Result<u64> {
        Ok(self.conn().zcard(keys::delayed(tenant)).await?)
    }

    /// The oldest `count` dead letters of `tenant`.
    pub async fn dead_letters(&self, tenant: &TenantId, count: usize) -> Result<Vec<DeadLetter>> {
        let reply: StreamRangeReply = self
            .conn()
            .xrange_count(keys::dead_letters(tenant), "-", "+", count)
            .await?;
        reply
            .ids
            .iter()
            .map(|e| {
                let what = format!("dead letter {}", e.id);
                let f: HashMap<&str, String> = e
                    .map
                    .iter()
                    .filter_map(|(k, v)| {
                        redis::from_redis_value::<String>(v.clone())
                            .ok()
                            .map(|v| (k.as_str(), v))
                    })
                    .collect();
                let env: Option<Envelope> = f.get("e").and_then(|e| serde_json::from_str(e).ok());
                let status = f.get("status").map_or("", String::as_str);
                let status = match InvocationStatus::parse(status) {
                    Some(s @ (InvocationStatus::Failed | InvocationStatus::Dead)) => s,
                    _ => {
                        return Err(Error::Corrupt(format!(
                            "{what}: status `{status}` is neither failed nor dead"
                        )));
                    }
                };
                Ok(DeadLetter {
                    entry_id: e.id.clone(),
                    invocation_id: f.get("id").cloned().unwrap_or_default(),
                    function: env.as_ref().map(|e| e.function.to_string()),
                    status,
                    class: ErrorClass::parse(f.get("class").map_or("", String::as_str)),
                    error: f.get("error").cloned().unwrap_or_default(),
                    attempts: env.as_ref().map(|e| e.attempt),
                    at_ms: crate::fields::number(&what, "at", f.get("at"))?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// Puts dead letter `entry_id` back into its stream as a fresh first
    /// attempt, on the current version, and reopens its run. Returns the invocation id, or `None` when
    /// there is no such dead letter (already redriven).
    pub async fn redrive(&self, tenant: &TenantId, entry_id: &str) -> Result<Option<String>> {
        let mut conn = self.conn();
        let dlq = keys::dead_letters(tenant);
        let reply: StreamRangeReply = conn.xrange_count(&dlq, entry_id, entry_id, 1).await?;
        let Some(entry) = reply.ids.first() else {
            return Ok(None);
        };
        let field = |k: &str| -> Option<Vec<u8>> {
            entry
                .map
                .get(k)
                .and_then(|v| redis::from_redis_value::<Vec<u8>>(v.clone()).ok())
        };
        let Some(env) = field("e") else {
            return Err(Error::Corrupt(format!(
                "dead letter {entry_id} has no envelope (a malformed entry cannot be redriven)"
            )));
        };
        let mut envelope: Envelope = serde_json::from_slice(&env)
            .map_err(|e| Error::Corrupt(format!("dead letter {entry_id}: {e}")))?;
        if envelope.tenant != *tenant {
            return Err(Error::Corrupt(format!(
                "dead letter {entry_id} of another tenant"
            )));
        }
        if field("dropped").is_some_and(|d| d == b"1") {
            return Err(Error::PayloadNotKept(entry_id.to_string()));
        }
        // A redrive is a fresh start on the function's current version: the
        // usual reason to redrive is that a fix was deployed.
        envelope.attempt = 1;
        envelope.version = None;
        let status = field("status")
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_else(|| "failed".into());
        let moved: redis::Value = REDRIVE
            .key(&dlq)
            .key(keys::invocation(tenant, &envelope.id))
            .key(keys::run(tenant, &envelope.run_id))
            .key(keys::stream(tenant, &envelope.function))
            .key(keys::tenant(tenant))
            .key(keys::rate_window(tenant, eddy_protocol::now_ms() / 1000))
            .key(keys::stored(tenant))
            .arg(entry_id)
            .arg(serde_json::to_string(&envelope).map_err(|e| Error::Corrupt(e.to_string()))?)
            .arg(field("p").unwrap_or_default())
            .arg(if status == "dead" { "dead" } else { "failed" })
            .arg(self.ttl_secs())
            .arg(eddy_protocol::now_ms())
            .invoke_async(&mut conn)
            .await?;
        match moved {
            redis::Value::Int(1) => {
                // Work for a stream that may have gone cold: marked and woken
                // like an invocation's.
                self.touch(&[keys::stream(tenant, &envelope.function)])
                    .await?;
                Ok(Some(envelope.id))
            }
            redis::Value::Int(_) => Ok(None),
            reply @ redis::Value::Array(_) => {
                let reply: Vec<String> = redis::from_redis_value(reply)
                    .map_err(|e| Error::Corrupt(format!("redrive replied {e}")))?;
                Err(crate::invocations::quota_refusal(&reply))
            }
            other => Err(Error::Corrupt(format!("redrive replied {other:?}"))),
        }
    }
}
