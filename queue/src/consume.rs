//! Reading streams as a consumer group member: new entries, reclaimed
//! entries of crashed consumers, lease extension, release on drain, trimming.

use eddy_protocol::{Envelope, keys};
use redis::Value;

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

/// The bytes of a bulk string, moved out.
fn take_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

fn take_string(v: Value) -> Option<String> {
    take_bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// The items of an array (RESP2) or the flattened pairs of a map (RESP3).
fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// One entry `[id, [field, value, …]]` of `stream` as a delivery. The values
/// are moved out of the reply, not copied.
fn parse_entry(stream: &str, entry: Value, deliveries: u64) -> Option<Result<Delivery, Malformed>> {
    let mut parts = items(entry).into_iter();
    let entry_id = take_string(parts.next()?)?;
    let malformed = |reason: String| Malformed {
        stream: stream.to_string(),
        entry_id: entry_id.clone(),
        reason,
    };
    let (mut env, mut payload) = (None, None);
    let mut fields = items(parts.next().unwrap_or(Value::Nil)).into_iter();
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        match take_bytes(k).as_deref() {
            Some(b"e") => env = take_bytes(v),
            Some(b"p") => payload = take_bytes(v),
            _ => {}
        }
    }
    let Some(env) = env else {
        return Some(Err(malformed(String::from("no envelope"))));
    };
    Some(match serde_json::from_slice::<Envelope>(&env) {
        Ok(envelope) => Ok(Delivery {
            stream: stream.to_string(),
            entry_id,
            envelope,
            payload: payload.unwrap_or_default(),
            deliveries,
        }),
        Err(e) => Err(malformed(format!("bad envelope: {e}"))),
    })
}

/// A stream deleted under a reader (its function was deleted) reads as empty.
/// The group is not recreated here, or a deleted function's stream would come
/// back; deploy creates groups.
fn gone_is_empty(reply: redis::RedisResult<Value>) -> Result<Value> {
    match reply {
        Ok(r) => Ok(r),
        Err(e) if e.code() == Some("NOGROUP") || e.code() == Some("UNBLOCKED") => Ok(Value::Nil),
        Err(e) => Err(e.into()),
    }
}

/// The deliveries of an `XREADGROUP` reply (`[[stream, [entry, …]], …]`, or
/// a map in RESP3; nil when nothing came), and the entries that did not
/// parse (a deleted entry, nil, among them).
fn deliveries(reply: Value) -> (Vec<Delivery>, Vec<Malformed>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut streams = items(reply).into_iter().peekable();
    // RESP2: each item is `[stream, entries]`; RESP3 (flattened map):
    // stream, entries, stream, entries…
    let flat = matches!(
        streams.peek(),
        Some(Value::BulkString(_) | Value::SimpleString(_))
    );
    let mut pairs: Vec<(Value, Value)> = Vec::new();
    if flat {
        while let (Some(k), Some(v)) = (streams.next(), streams.next()) {
            pairs.push((k, v));
        }
    } else {
        for s in streams {
            let mut kv = items(s).into_iter();
            if let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                pairs.push((k, v));
            }
        }
    }
    for (key, entries) in pairs {
        let Some(stream) = take_string(key) else {
            continue;
        };
        for entry in items(entries) {
            match parse_entry(&stream, entry, 1) {
                Some(Ok(d)) => out.push(d),
                Some(Err(m)) => bad.push(m),
                None => {}
            }
        }
    }
    (out, bad)
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
    ) -> redis::RedisResult<Value> {
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
                let r: redis::RedisResult<Value> = xreadgroup(group, consumer, g, count, None)
                    .query_async(&mut c)
                    .await;
                r
            }
        });
        let mut merged: Vec<Value> = Vec::new();
        let mut failure = None;
        for r in futures::future::join_all(reads).await {
            match r {
                // Each group's streams, as `[stream, entries]` pairs.
                Ok(Value::Map(m)) => {
                    merged.extend(m.into_iter().map(|(k, v)| Value::Array(vec![k, v])))
                }
                Ok(reply) => merged.extend(items(reply)),
                Err(e) => failure = Some(e),
            }
        }
        if !merged.is_empty() {
            return Ok(Value::Array(merged));
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
    /// shared connection (the urgent one for an urgent wake-up).
    pub async fn read_now(
        &self,
        consumer: &str,
        stream: &str,
        count: usize,
        urgent: bool,
    ) -> Result<(Vec<Delivery>, Vec<Malformed>)> {
        let reply: redis::RedisResult<Value> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut self.conn_for(urgent))
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
        let claimed: Value = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(keys::GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for entry in items(claimed) {
            let id = match &entry {
                Value::Array(parts) => parts.first().and_then(|v| match v {
                    Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_string),
                    _ => None,
                }),
                _ => None,
            };
            let before = pending
                .iter()
                .find(|p| Some(&p.0) == id.as_ref())
                .map(|p| p.3)
                .unwrap_or(0);
            match parse_entry(stream, entry, before + 1) {
                Some(Ok(d)) => out.push(d),
                Some(Err(m)) => bad.push(m),
                None => {}
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
        if let Some(t) = keys::tenant_of(&m.stream) {
            pipe.xadd(
                keys::dead_letters(&t),
                "*",
                &[
                    ("id", ""),
                    ("class", eddy_protocol::ErrorClass::Malformed.as_str()),
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
        // Whole nodes only (`~`), up to TRIM_LIMIT entries a call (Redis's
        // default with `~` is 10,000).
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg("~")
            .arg(&min_id)
            .arg("LIMIT")
            .arg(TRIM_LIMIT)
            .query_async(&mut conn)
            .await?;
        Ok(trimmed)
    }
}

/// Most entries one trim removes: 200 stream nodes, ~3 ms of Redis's time
/// (40,000 took 5.4 ms here). Trimmed every 500 ms, a stream keeps up with
/// 40,000 invocations/s; it was every 10 s with Redis's default of 10,000,
/// 1,000/s, so under load the stream grew with the load (bench/soak.sh:
/// Redis +320 MiB per 300,000 invocations).
const TRIM_LIMIT: u64 = 20_000;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
            ),
        ])
    }

    fn envelope_json(id: &str) -> String {
        let t = eddy_protocol::TenantId::new("acme").unwrap();
        let f = eddy_protocol::FunctionName::new("echo").unwrap();
        let mut e = Envelope::root(t, f, "application/json".into());
        e.id = id.into();
        serde_json::to_string(&e).unwrap()
    }

    #[test]
    fn read_replies_in_resp2_and_resp3_shapes() {
        let (e1, e2) = (envelope_json("a"), envelope_json("b"));
        let entries = || {
            Value::Array(vec![
                entry("1-0", &[("e", &e1), ("p", "{\"x\":1}")]),
                // Deleted while pending (nil fields): quarantined like any
                // entry without an envelope, so it leaves the pending list.
                Value::Array(vec![bulk("1-1"), Value::Nil]),
                entry("1-2", &[("p", "no envelope")]),
                entry("1-3", &[("e", "{not json"), ("p", "")]),
                entry("1-4", &[("e", &e2)]),
            ])
        };
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s1"), entries()])]);
        let resp3 = Value::Map(vec![(bulk("s1"), entries())]);
        for reply in [resp2, resp3] {
            let (ok, bad) = deliveries(reply);
            let got: Vec<(&str, &str, &[u8], u64)> = ok
                .iter()
                .map(|d| {
                    (
                        d.stream.as_str(),
                        d.entry_id.as_str(),
                        d.payload.as_slice(),
                        d.deliveries,
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    ("s1", "1-0", b"{\"x\":1}".as_slice(), 1),
                    ("s1", "1-4", b"".as_slice(), 1)
                ]
            );
            assert_eq!(ok[0].envelope.id, "a");
            let bad: Vec<(&str, &str)> = bad
                .iter()
                .map(|m| (m.entry_id.as_str(), m.reason.as_str()))
                .collect();
            assert_eq!(bad.len(), 3);
            assert_eq!(bad[0], ("1-1", "no envelope"));
            assert_eq!(bad[1], ("1-2", "no envelope"));
            assert!(bad[2].1.starts_with("bad envelope: "), "{:?}", bad[2]);
        }
        assert_eq!(deliveries(Value::Nil).0.len(), 0);
    }
}
