//! Reading streams as a consumer group member: new entries, reclaimed
//! entries of crashed consumers, lease extension, release on drain, trimming.

use eddy_protocol::envelope::{FIELD_ENVELOPE, FIELD_PAYLOAD};
use eddy_protocol::{Envelope, TenantId, keys};
use redis::Value;
use redis::streams::{StreamId, StreamReadReply};

use crate::conn::{BlockingConn, by_slot};
use crate::scripts::{FORGET, RELEASE};
use crate::{Error, Queue, Result};

/// One stream entry handed to this consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream it came from.
    pub stream: String,
    /// The stream entry id (not the invocation id).
    pub entry_id: String,
    pub envelope: Envelope,
    pub payload: Vec<u8>,
    /// How many times the entry was delivered, this time included.
    pub deliveries: u64,
}

/// An entry that could not be parsed into a delivery.
#[derive(Debug, Clone)]
pub struct Malformed {
    pub stream: String,
    pub entry_id: String,
    pub reason: String,
}

fn bytes(v: Option<&Value>) -> Option<Vec<u8>> {
    match v? {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn parse(stream: &str, entry: &StreamId, deliveries: u64) -> Result<Delivery, Malformed> {
    let malformed = |reason: String| Malformed {
        stream: stream.to_string(),
        entry_id: entry.id.clone(),
        reason,
    };
    let env =
        bytes(entry.map.get(FIELD_ENVELOPE)).ok_or_else(|| malformed("no envelope".into()))?;
    let envelope: Envelope =
        serde_json::from_slice(&env).map_err(|e| malformed(format!("bad envelope: {e}")))?;
    Ok(Delivery {
        stream: stream.to_string(),
        entry_id: entry.id.clone(),
        envelope,
        payload: bytes(entry.map.get(FIELD_PAYLOAD)).unwrap_or_default(),
        deliveries,
    })
}

/// A stream deleted under a reader (its function was deleted) reads as empty.
/// The group is not recreated here, or a deleted function's stream would come
/// back; deploy creates groups.
fn gone_is_empty(
    reply: redis::RedisResult<Option<StreamReadReply>>,
) -> Result<Option<StreamReadReply>> {
    match reply {
        Ok(r) => Ok(r),
        Err(e) if e.code() == Some("NOGROUP") || e.code() == Some("UNBLOCKED") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The deliveries of an XREADGROUP reply, and the entries that did not parse.
fn deliveries(reply: Option<StreamReadReply>) -> (Vec<Delivery>, Vec<Malformed>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for key in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in &key.ids {
            match parse(&key.key, entry, 1) {
                Ok(d) => out.push(d),
                Err(m) => bad.push(m),
            }
        }
    }
    (out, bad)
}

/// The tenant a stream key belongs to (`eddy:{t:<tenant>}:q:<fn>`).
fn tenant_of(stream: &str) -> Option<TenantId> {
    let start = stream.find("{t:")? + 3;
    let end = start + stream[start..].find('}')?;
    TenantId::new(&stream[start..end]).ok()
}

/// `XREADGROUP GROUP group consumer COUNT count [BLOCK ms] STREAMS … >…`.
fn xreadgroup(
    group: &str,
    consumer: &str,
    streams: &[String],
    count: usize,
    block_ms: Option<u64>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count.max(1));
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms.max(1));
    }
    cmd.arg("STREAMS").arg(streams);
    for _ in streams {
        cmd.arg(">");
    }
    cmd
}

/// On a cluster with streams on several slots: how long the one blocking
/// read (on one slot group, in turn) may block, since new entries on the
/// other groups wait for it.
const CLUSTER_BLOCK_MS: u64 = 10;

impl Queue {
    /// `XREADGROUP` of `streams` on `conn`, blocking up to `block_ms`. One
    /// command on a single server. A cluster serves one command only for
    /// streams of one hash slot: there, each slot group (one tenant) is read
    /// without blocking, concurrently, and only when all are empty does one
    /// group (taking turns) block, briefly.
    pub(crate) async fn read_group(
        &self,
        conn: &mut BlockingConn,
        group: &str,
        consumer: &str,
        streams: &[String],
        count: usize,
        block_ms: u64,
    ) -> redis::RedisResult<Option<StreamReadReply>> {
        if !self.is_cluster() {
            return xreadgroup(group, consumer, streams, count, Some(block_ms))
                .query_async(conn)
                .await;
        }
        let groups = by_slot(streams);
        if groups.len() <= 1 {
            return xreadgroup(group, consumer, streams, count, Some(block_ms))
                .query_async(conn)
                .await;
        }
        let reads = groups.iter().map(|g| {
            let mut c = conn.clone();
            async move {
                let r: redis::RedisResult<Option<StreamReadReply>> =
                    xreadgroup(group, consumer, g, count, None)
                        .query_async(&mut c)
                        .await;
                r
            }
        });
        let mut merged = StreamReadReply::default();
        let mut failure = None;
        for r in futures::future::join_all(reads).await {
            match r {
                Ok(Some(reply)) => merged.keys.extend(reply.keys),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        if !merged.keys.is_empty() {
            return Ok(Some(merged));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let turn = (eddy_protocol::now_ms() / CLUSTER_BLOCK_MS) as usize % groups.len();
        xreadgroup(
            group,
            consumer,
            &groups[turn],
            count,
            Some(block_ms.min(CLUSTER_BLOCK_MS)),
        )
        .query_async(conn)
        .await
    }

    /// Reads new entries from `streams` for `consumer`, at most `count` per
    /// stream, blocking up to `block_ms`. Uses `conn`, a connection of its own
    /// (see [`Queue::blocking_connection`]).
    pub async fn read(
        &self,
        conn: &mut BlockingConn,
        consumer: &str,
        streams: &[String],
        count: usize,
        block_ms: u64,
    ) -> Result<(Vec<Delivery>, Vec<Malformed>)> {
        if streams.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let reply = self
            .read_group(conn, keys::GROUP, consumer, streams, count, block_ms)
            .await;
        let reply = gone_is_empty(reply)?;
        Ok(deliveries(reply))
    }

    /// Reads new entries of one stream without blocking (a wake-up), on the
    /// shared connection.
    pub async fn read_now(
        &self,
        consumer: &str,
        stream: &str,
        count: usize,
    ) -> Result<(Vec<Delivery>, Vec<Malformed>)> {
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut self.conn())
            .await;
        let reply = gone_is_empty(reply)?;
        Ok(deliveries(reply))
    }

    /// Takes over entries of `stream` idle for at least `min_idle_ms` (their
    /// consumer crashed or stalled), at most `count`. Each comes with its
    /// delivery count, so that the caller can dead-letter poison entries.
    pub async fn reclaim(
        &self,
        stream: &str,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<(Vec<Delivery>, Vec<Malformed>)> {
        let mut conn = self.conn();
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(keys::GROUP)
            .arg("IDLE")
            .arg(min_idle_ms)
            .arg("-")
            .arg("+")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        if pending.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids: Vec<&str> = pending.iter().map(|p| p.0.as_str()).collect();
        let claimed: redis::streams::StreamClaimReply = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(keys::GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for entry in &claimed.ids {
            let before = pending
                .iter()
                .find(|p| p.0 == entry.id)
                .map(|p| p.3)
                .unwrap_or(0);
            match parse(stream, entry, before + 1) {
                Ok(d) => out.push(d),
                Err(m) => bad.push(m),
            }
        }
        Ok((out, bad))
    }

    /// Resets the idle time of entries this consumer is still working on, so
    /// that nobody reclaims them (the lease).
    pub async fn extend(&self, stream: &str, consumer: &str, entry_ids: &[String]) -> Result<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let _: Value = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(keys::GROUP)
            .arg(consumer)
            .arg(0)
            .arg(entry_ids)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Gives a delivered, not started entry back to the group at once.
    pub async fn release(&self, delivery: &Delivery) -> Result<bool> {
        let env = serde_json::to_string(&delivery.envelope)
            .map_err(|e| Error::Corrupt(format!("encoding: {e}")))?;
        let n: i64 = RELEASE
            .key(&delivery.stream)
            .arg(keys::GROUP)
            .arg(&delivery.entry_id)
            .arg(env)
            .arg(delivery.payload.as_slice())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Leaves the group if `consumer` holds nothing pending in `stream`.
    pub async fn forget_consumer(&self, stream: &str, consumer: &str) -> Result<bool> {
        let n: i64 = FORGET
            .key(stream)
            .arg(keys::GROUP)
            .arg(consumer)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Entries `consumer` holds pending in `stream`.
    pub async fn pending_of(&self, stream: &str, consumer: &str) -> Result<u64> {
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(keys::GROUP)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(consumer)
            .query_async(&mut self.conn())
            .await?;
        Ok(pending.len() as u64)
    }

    /// Moves an unparseable entry to its tenant's dead-letter stream with the
    /// reason, and acknowledges it: garbage is kept, visibly, not retried.
    pub async fn quarantine(&self, m: &Malformed) -> Result<()> {
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(t) = tenant_of(&m.stream) {
            pipe.xadd(
                keys::dead_letters(&t),
                "*",
                &[
                    ("id", ""),
                    ("class", "malformed"),
                    ("error", m.reason.as_str()),
                    ("status", "failed"),
                    ("stream", m.stream.as_str()),
                    ("entry", m.entry_id.as_str()),
                ],
            );
        }
        pipe.xack(&m.stream, keys::GROUP, &[&m.entry_id]);
        pipe.exec_async(&mut conn).await?;
        Ok(())
    }

    /// Trims `stream` behind the group: only entries that were delivered and
    /// acknowledged go, so lag and pending stay true for autoscalers.
    pub async fn trim(&self, stream: &str) -> Result<u64> {
        let mut conn = self.conn();
        let groups: Vec<HashMapValue> = match redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async::<Vec<HashMapValue>>(&mut conn)
            .await
        {
            Ok(g) => g,
            Err(e) if e.code() == Some("ERR") => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let Some(group) = groups
            .iter()
            .find(|g| g.str("name").as_deref() == Some(keys::GROUP))
        else {
            return Ok(0);
        };
        let pending = group.int("pending").unwrap_or(0);
        let min_id = if pending > 0 {
            let summary: (u64, Option<String>, Option<String>, Value) = redis::cmd("XPENDING")
                .arg(stream)
                .arg(keys::GROUP)
                .query_async(&mut conn)
                .await?;
            summary.1
        } else {
            group.str("last-delivered-id")
        };
        let Some(min_id) = min_id.filter(|id| id != "0-0") else {
            return Ok(0);
        };
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg("~")
            .arg(&min_id)
            .query_async(&mut conn)
            .await?;
        Ok(trimmed)
    }
}

/// A flat `[k, v, k, v, ...]` reply (XINFO) as lookups.
#[derive(Debug)]
struct HashMapValue(Vec<(String, Value)>);

impl redis::FromRedisValue for HashMapValue {
    fn from_redis_value(v: Value) -> Result<Self, redis::ParsingError> {
        let items: Vec<(String, Value)> = match v {
            Value::Map(m) => m
                .into_iter()
                .filter_map(|(k, v)| redis::from_redis_value::<String>(k).ok().map(|k| (k, v)))
                .collect(),
            Value::Array(a) => a
                .chunks(2)
                .filter_map(|c| match c {
                    [k, v] => redis::from_redis_value::<String>(k.clone())
                        .ok()
                        .map(|k| (k, v.clone())),
                    _ => None,
                })
                .collect(),
            other => {
                return Err(redis::ParsingError::from(format!(
                    "expected a map, got {other:?}"
                )));
            }
        };
        Ok(HashMapValue(items))
    }
}

impl HashMapValue {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    fn str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
    }
    fn int(&self, key: &str) -> Option<i64> {
        self.get(key)
            .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
    }
}
