//! Callbacks waiting for delivery: a stream per tenant (consumer group
//! `callbacks`), a retry set, and a dead-letter stream for callbacks that
//! could not be delivered within their maximum age.

use std::collections::HashMap;

use crate::{Callback, DeadCallback};
use eddy_protocol::{TenantId, keys};
use redis::AsyncCommands;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};

use crate::scripts::{CALLBACK_PROMOTE, CALLBACK_RETRY};
use crate::{Queue, Result};

/// The consumer group of the callback streams.
pub const CALLBACK_GROUP: &str = "callbacks";

fn fields(entry: &StreamId) -> HashMap<&str, String> {
    entry
        .map
        .iter()
        .filter_map(|(k, v)| {
            redis::from_redis_value::<String>(v.clone())
                .ok()
                .map(|v| (k.as_str(), v))
        })
        .collect()
}

fn parse(stream: &str, entry: &StreamId) -> Callback {
    let f = fields(entry);
    Callback {
        kind: f.get("kind").cloned().unwrap_or_default(),
        id: f.get("id").cloned().unwrap_or_default(),
        url: f.get("url").cloned().unwrap_or_default(),
        at: f.get("at").and_then(|a| a.parse().ok()).unwrap_or(0),
        attempt: f.get("attempt").and_then(|a| a.parse().ok()).unwrap_or(0),
        traceparent: f.get("tp").cloned().unwrap_or_default(),
        tenant: keys::tenant_of(stream),
        stream: stream.to_string(),
        entry_id: entry.id.clone(),
    }
}

impl Queue {
    /// Creates the `callbacks` group of a tenant's callback stream.
    pub async fn ensure_callback_group(&self, tenant: &TenantId) -> Result<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys::callbacks(tenant))
            .arg(CALLBACK_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Reads up to `count` new callbacks of `tenant`, without blocking.
    pub async fn read_callbacks(
        &self,
        tenant: &TenantId,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Callback>> {
        let stream = keys::callbacks(tenant);
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(CALLBACK_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut self.conn())
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_callback_group(tenant).await?;
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .iter()
            .flat_map(|k| k.ids.iter().map(|e| parse(&k.key, e)))
            .collect())
    }

    /// Takes over callbacks whose deliverer crashed (idle past `min_idle_ms`).
    pub async fn reclaim_callbacks(
        &self,
        tenant: &TenantId,
        consumer: &str,
        min_idle_ms: u64,
    ) -> Result<Vec<Callback>> {
        let stream = keys::callbacks(tenant);
        let reply: redis::RedisResult<(String, StreamRangeReply, redis::Value)> =
            redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(CALLBACK_GROUP)
                .arg(consumer)
                .arg(min_idle_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(64)
                .query_async(&mut self.conn())
                .await;
        match reply {
            Ok((_, claimed, _)) => Ok(claimed.ids.iter().map(|e| parse(&stream, e)).collect()),
            Err(e) if e.code() == Some("NOGROUP") => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The callback was delivered.
    pub async fn callback_delivered(&self, cb: &Callback) -> Result<()> {
        let _: i64 = self
            .conn()
            .xack(&cb.stream, CALLBACK_GROUP, &[&cb.entry_id])
            .await?;
        Ok(())
    }

    /// Delivery failed: try again at `due_ms`, or (`due_ms = None`) give up
    /// and dead-letter it with `error`.
    pub async fn callback_failed(
        &self,
        cb: &Callback,
        due_ms: Option<u64>,
        error: &str,
    ) -> Result<()> {
        let Some(tenant) = &cb.tenant else {
            return Ok(());
        };
        let next = Callback {
            attempt: cb.attempt + 1,
            ..cb.clone()
        };
        let member =
            serde_json::to_string(&next).map_err(|e| crate::Error::Corrupt(e.to_string()))?;
        let _: i64 = CALLBACK_RETRY
            .key(&cb.stream)
            .key(keys::callback_retries(tenant))
            .key(keys::callback_dead_letters(tenant))
            .arg(CALLBACK_GROUP)
            .arg(&cb.entry_id)
            .arg(if due_ms.is_some() { "retry" } else { "dead" })
            .arg(due_ms.unwrap_or(0))
            .arg(member)
            .arg(&cb.kind)
            .arg(&cb.id)
            .arg(&cb.url)
            .arg(cb.at)
            .arg(cb.attempt + 1)
            .arg(error)
            .arg(eddy_protocol::now_ms())
            .invoke_async(&mut self.conn())
            .await?;
        if let Some(at) = due_ms {
            self.mark_due(crate::DueIndex::Callbacks, tenant, at)
                .await?;
        }
        Ok(())
    }

    /// Moves due callback retries of `tenant` back into its stream.
    pub async fn promote_callbacks(&self, tenant: &TenantId, now_ms: u64) -> Result<usize> {
        let mut conn = self.conn();
        let zset = keys::callback_retries(tenant);
        let due: Vec<String> = conn.zrangebyscore_limit(&zset, 0, now_ms, 0, 256).await?;
        let mut moved = 0;
        for member in due {
            let n: i64 = CALLBACK_PROMOTE
                .key(&zset)
                .key(keys::callbacks(tenant))
                .arg(member)
                .invoke_async(&mut conn)
                .await?;
            moved += n as usize;
        }
        Ok(moved)
    }

    /// Callbacks given up on, oldest first.
    pub async fn callback_dead_letters(
        &self,
        tenant: &TenantId,
        count: usize,
    ) -> Result<Vec<DeadCallback>> {
        let reply: StreamRangeReply = self
            .conn()
            .xrange_count(keys::callback_dead_letters(tenant), "-", "+", count)
            .await?;
        Ok(reply
            .ids
            .iter()
            .map(|e| {
                let f = fields(e);
                let n = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                DeadCallback {
                    entry_id: e.id.clone(),
                    kind: f.get("kind").cloned().unwrap_or_default(),
                    id: f.get("id").cloned().unwrap_or_default(),
                    url: f.get("url").cloned().unwrap_or_default(),
                    attempts: n("attempts") as u32,
                    error: f.get("error").cloned().unwrap_or_default(),
                    at_ms: n("at"),
                    dead_at_ms: n("dead_at"),
                }
            })
            .collect())
    }

    /// Callbacks waiting for a retry.
    pub async fn callback_retries(&self, tenant: &TenantId) -> Result<u64> {
        Ok(self.conn().zcard(keys::callback_retries(tenant)).await?)
    }
}
