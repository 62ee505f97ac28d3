//! The control plane in Redis: activity marks and wake-ups, worker
//! heartbeats, assignments, the controller's leader lease and its decisions.

use std::collections::HashMap;

use eddy_protocol::control::{Assignment, ControllerState, WorkerInfo};
use eddy_protocol::keys;
use redis::AsyncCommands;

use crate::{Error, Queue, Result};

const LEASE_SCRIPT: &str = r#"
-- Takes or renews the lease: only the holder (or anyone when free) may.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Counters and backlog of one stream, as the controller reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    pub lag: u64,
    pub pending: u64,
    /// Entries ever added (Redis `entries-added`).
    pub added: u64,
    /// Completed attempts and their busy time (from the stats hash).
    pub done: u64,
    pub busy_us: u64,
}

fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

impl Queue {
    /// Marks `streams` active now and wakes whoever may need to start
    /// consuming them. One round trip (two on a cluster, where the activity
    /// set and the wake channel live on different slots).
    pub async fn touch(&self, streams: &[String]) -> Result<()> {
        if streams.is_empty() {
            return Ok(());
        }
        let now = eddy_protocol::now_ms();
        // One pipeline on a single server; on a cluster the activity set and
        // the wake channel are two slots, so two.
        let mut mark = redis::pipe();
        let mut wake = redis::pipe();
        let cluster = self.is_cluster();
        for s in streams {
            // GT: a writer whose clock is behind never moves a mark back.
            mark.cmd("ZADD")
                .arg(keys::ACTIVE)
                .arg("GT")
                .arg(now)
                .arg(s)
                .ignore();
            let msg = eddy_protocol::messages::Message::encode(
                &eddy_protocol::messages::Wake::Backlog(s.to_string()),
            );
            if cluster { &mut wake } else { &mut mark }
                .publish(keys::WAKE, msg)
                .ignore();
        }
        mark.exec_async(&mut self.conn()).await?;
        if cluster {
            wake.exec_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Marks streams active at the given times (ms) without waking anyone
    /// (a deploy; a worker keeping the streams it drains in the activity
    /// window). A mark never moves back.
    pub async fn mark_active(&self, marks: &[(String, u64)]) -> Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(keys::ACTIVE).arg("GT");
        for (s, at) in marks {
            cmd.arg(*at).arg(s);
        }
        let _: i64 = cmd.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Streams active since `since_ms`, with their last activity.
    pub async fn active_streams(&self, since_ms: u64) -> Result<Vec<(String, u64)>> {
        let v: Vec<(String, f64)> = self
            .conn()
            .zrangebyscore_withscores(keys::ACTIVE, since_ms as f64, "+inf")
            .await?;
        Ok(v.into_iter().map(|(s, t)| (s, t as u64)).collect())
    }

    /// One step of a walk over every activity mark: up to about `count`
    /// (stream, last activity) from `cursor` (0 starts a pass), and the
    /// cursor of the next step (0: the pass ended).
    pub async fn scan_active(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<(String, u64)>)> {
        let (next, flat): (u64, Vec<(String, f64)>) = redis::cmd("ZSCAN")
            .arg(keys::ACTIVE)
            .arg(cursor)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok((
            next,
            flat.into_iter()
                .map(|(s, t)| (s, t.max(0.0) as u64))
                .collect(),
        ))
    }

    /// Forgets activity older than `before_ms`.
    pub async fn forget_inactive(&self, before_ms: u64) -> Result<()> {
        let _: u64 = self
            .conn()
            .zrembyscore(keys::ACTIVE, 0, before_ms as f64)
            .await?;
        Ok(())
    }

    /// Backlog and counters of each stream (a few round trips per stream;
    /// only active streams are asked).
    pub async fn stream_stats(&self, streams: &[(String, String)]) -> Result<Vec<StreamStats>> {
        // (stream key, stats key) pairs.
        let mut out = Vec::with_capacity(streams.len());
        for (stream, stats) in streams {
            let backlog = self.backlog(stream).await?;
            let info: redis::RedisResult<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(stream)
                .query_async(&mut self.conn())
                .await;
            let added = info
                .ok()
                .and_then(|m| m.get("entries-added").cloned())
                .and_then(|v| redis::from_redis_value::<u64>(v).ok())
                .unwrap_or(0);
            let (done, busy): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
                .arg(stats)
                .arg("done")
                .arg("busy_us")
                .query_async(&mut self.conn())
                .await?;
            out.push(StreamStats {
                lag: backlog.lag,
                pending: backlog.pending,
                added,
                done: done.unwrap_or(0),
                busy_us: busy.unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Publishes a worker's heartbeat.
    pub async fn heartbeat(&self, info: &WorkerInfo) -> Result<()> {
        let _: () = self
            .conn()
            .hset(keys::WORKERS, &info.id, encode(info)?)
            .await?;
        Ok(())
    }

    /// Removes a worker from the registry (drained or found dead).
    pub async fn unregister(&self, id: &str) -> Result<()> {
        // Two keys of two slots (on a cluster): two commands.
        let _: () = self.conn().hdel(keys::WORKERS, id).await?;
        let _: () = self.conn().hdel(keys::ASSIGNMENTS, id).await?;
        Ok(())
    }

    /// Every registered worker's last heartbeat.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let map: HashMap<String, String> = self.conn().hgetall(keys::WORKERS).await?;
        let mut v: Vec<WorkerInfo> = map.values().filter_map(|j| decode(j).ok()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    /// The streams assigned to `worker`.
    pub async fn assignment(&self, worker: &str) -> Result<Assignment> {
        let json: Option<String> = self.conn().hget(keys::ASSIGNMENTS, worker).await?;
        Ok(match json {
            Some(j) => decode(&j)?,
            None => Assignment::new(),
        })
    }

    /// Replaces all assignments and tells the workers.
    pub async fn set_assignments(&self, all: &HashMap<String, Assignment>) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(keys::ASSIGNMENTS).ignore();
        for (worker, a) in all {
            pipe.hset(keys::ASSIGNMENTS, worker, encode(a)?).ignore();
        }
        pipe.exec_async(&mut self.conn()).await?;
        // After the transaction (the channel is another slot on a cluster).
        self.publish(&eddy_protocol::messages::AssignmentsChanged)
            .await?;
        Ok(())
    }

    /// Takes or renews the controller lease for `ttl_ms`. True if `me` leads.
    pub async fn lead(&self, me: &str, ttl_ms: u64) -> Result<bool> {
        let n: i64 = redis::Script::new(LEASE_SCRIPT)
            .key(keys::CONTROLLER_LEADER)
            .arg(me)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Gives up the lease if `me` holds it.
    pub async fn resign(&self, me: &str) -> Result<()> {
        let _: i64 = redis::Script::new(RELEASE_SCRIPT)
            .key(keys::CONTROLLER_LEADER)
            .arg(me)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The current leader, if any.
    pub async fn leader(&self) -> Result<Option<String>> {
        Ok(self.conn().get(keys::CONTROLLER_LEADER).await?)
    }

    /// Stores the controller's decisions (expiring, so stale ones vanish).
    pub async fn set_controller_state(&self, state: &ControllerState) -> Result<()> {
        let _: () = self
            .conn()
            .set_ex(keys::CONTROLLER_STATE, encode(state)?, 30)
            .await?;
        Ok(())
    }

    /// The controller's last decisions.
    pub async fn controller_state(&self) -> Result<Option<ControllerState>> {
        let json: Option<String> = self.conn().get(keys::CONTROLLER_STATE).await?;
        json.as_deref().map(decode).transpose()
    }
}
