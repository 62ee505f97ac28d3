//! Schedules in Redis: per tenant, a hash of specs and a hash of states
//! (the next tick, counters, the last firings), both on the tenant's slot;
//! and one global sorted set, [`keys::SCHEDULES`], of every schedule by its
//! next tick, so that the controller reads only what is due. The state is
//! the truth: the index is written after it, and a firer moves a member
//! only from the tick it read (an owner's change made meanwhile stands).

use std::collections::HashMap;

use eddy_protocol::TenantId;
use eddy_protocol::keys;
use eddy_protocol::schedules::{MAX_PER_TENANT, ScheduleSpec, ScheduleState, member, parse_member};
use redis::AsyncCommands;

use crate::scripts::{DELETE_SCHEDULE, PUT_SCHEDULE, REINDEX_SCHEDULE, SETTLE_SCHEDULE};
use crate::{Error, Queue, Result};

/// A schedule and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    pub state: ScheduleState,
    /// The state as stored: what [`Queue::settle_schedule`] compares.
    pub raw_state: String,
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

/// A schedule from its stored spec and state (none yet: the default).
fn parse(spec: &str, raw_state: String) -> Result<Schedule> {
    Ok(Schedule {
        spec: decode("schedule", spec)?,
        state: if raw_state.is_empty() {
            ScheduleState::default()
        } else {
            decode("schedule state", &raw_state)?
        },
        raw_state,
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

impl Queue {
    /// Creates or replaces a schedule whose next tick is `next_ms` (0:
    /// none within five years). A replaced schedule keeps its counters and
    /// its last firings. `Ok(true)` when it is new. The function must exist
    /// (`Error::NoFunction`); a tenant has at most [`MAX_PER_TENANT`]
    /// (`Error::TooManySchedules`); the spec counts in the tenant's stored
    /// bytes (`Error::StorageQuota`).
    pub async fn put_schedule(
        &self,
        tenant: &TenantId,
        spec: &ScheduleSpec,
        next_ms: u64,
    ) -> Result<bool> {
        let function = eddy_protocol::FunctionName::new(&spec.function)
            .map_err(|_| Error::NoFunction(spec.function.clone()))?;
        let spec_json = encode(spec)?;
        // A firing may settle between the read and the write: read again.
        for _ in 0..8 {
            let read: Option<String> = self
                .conn()
                .hget(keys::schedule_states(tenant), &spec.name)
                .await?;
            let mut state = match &read {
                Some(json) => decode::<ScheduleState>("schedule state", json)?,
                None => ScheduleState::default(),
            };
            state.next_ms = next_ms;
            let reply: Vec<String> = PUT_SCHEDULE
                .key(keys::schedules(tenant))
                .key(keys::schedule_states(tenant))
                .key(keys::tenant(tenant))
                .key(keys::stored(tenant))
                .key(keys::function(tenant, &function))
                .arg(&spec.name)
                .arg(&spec_json)
                .arg(encode(&state)?)
                .arg(read.as_deref().unwrap_or(""))
                .arg(MAX_PER_TENANT)
                .arg(eddy_protocol::now_ms())
                .arg(self.ttl_secs())
                .invoke_async(&mut self.conn())
                .await?;
            let created = match reply.first().map(String::as_str) {
                Some("ok") => reply.get(1).map(String::as_str) == Some("1"),
                Some("stale") => continue,
                Some("no_function") => return Err(Error::NoFunction(spec.function.clone())),
                Some("full") => return Err(Error::TooManySchedules(MAX_PER_TENANT)),
                Some("quota") => return Err(crate::invocations::quota_refusal(&reply)),
                other => {
                    return Err(Error::Corrupt(format!(
                        "put_schedule script replied {other:?}"
                    )));
                }
            };
            self.index_schedule(tenant, &spec.name, next_ms).await?;
            return Ok(created);
        }
        Err(Error::Corrupt(format!(
            "schedule `{}` kept changing while it was written",
            spec.name
        )))
    }

    /// Puts a schedule in the due index at `next_ms`, or takes it out (0).
    pub async fn index_schedule(&self, tenant: &TenantId, name: &str, next_ms: u64) -> Result<()> {
        let m = member(tenant, name);
        if next_ms == 0 {
            let _: i64 = self.conn().zrem(keys::SCHEDULES, m).await?;
        } else {
            let _: i64 = self.conn().zadd(keys::SCHEDULES, m, next_ms).await?;
        }
        Ok(())
    }

    /// Moves a schedule in the due index from `read` (its score when the
    /// firer read the index) to `next_ms` (0: out), unless it was moved
    /// meanwhile (a replaced schedule's new tick stands). True when moved.
    pub async fn reindex_schedule(
        &self,
        tenant: &TenantId,
        name: &str,
        read: u64,
        next_ms: u64,
    ) -> Result<bool> {
        let n: i64 = REINDEX_SCHEDULE
            .key(keys::SCHEDULES)
            .arg(member(tenant, name))
            .arg(read)
            .arg(next_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Deletes a schedule; false when there was none.
    pub async fn delete_schedule(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        // Out of the index first: a PUT of the same name that lands between
        // the two indexes itself after this, and a member left behind by a
        // PUT that lands before is removed by the next firer.
        let _: i64 = self
            .conn()
            .zrem(keys::SCHEDULES, member(tenant, name))
            .await?;
        let n: i64 = DELETE_SCHEDULE
            .key(keys::schedules(tenant))
            .key(keys::schedule_states(tenant))
            .key(keys::tenant(tenant))
            .arg(name)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// A tenant's schedules, by name.
    pub async fn schedules(&self, tenant: &TenantId) -> Result<Vec<Schedule>> {
        let (specs, states): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .hgetall(keys::schedules(tenant))
            .hgetall(keys::schedule_states(tenant))
            .query_async(&mut self.conn())
            .await?;
        let mut out = Vec::with_capacity(specs.len());
        for (name, spec) in specs {
            out.push(parse(
                &spec,
                states.get(&name).cloned().unwrap_or_default(),
            )?);
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    /// One schedule.
    pub async fn schedule(&self, tenant: &TenantId, name: &str) -> Result<Option<Schedule>> {
        let (spec, state): (Option<String>, Option<String>) = redis::pipe()
            .hget(keys::schedules(tenant), name)
            .hget(keys::schedule_states(tenant), name)
            .query_async(&mut self.conn())
            .await?;
        spec.map(|spec| parse(&spec, state.unwrap_or_default()))
            .transpose()
    }

    /// Up to `limit` schedules of any tenant due by `now_ms`, with the tick
    /// the index has for them, earliest first. A member that names no
    /// tenant is dropped from the index.
    pub async fn due_schedules(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(TenantId, String, u64)>> {
        let due: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keys::SCHEDULES)
            .arg("-inf")
            .arg(now_ms)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await?;
        let mut out = Vec::with_capacity(due.len());
        for (m, at) in due {
            match parse_member(&m) {
                Some((t, name)) => out.push((t, name.to_string(), at as u64)),
                None => {
                    let _: i64 = self.conn().zrem(keys::SCHEDULES, &m).await?;
                }
            }
        }
        Ok(out)
    }

    /// The earliest tick of any schedule.
    pub async fn next_schedule_ms(&self) -> Result<Option<u64>> {
        let first: Vec<(String, f64)> =
            self.conn().zrange_withscores(keys::SCHEDULES, 0, 0).await?;
        Ok(first.first().map(|(_, at)| *at as u64))
    }

    /// Replaces a schedule's state `read` (as [`Schedule::raw_state`]) by
    /// `next`, and returns `next` as stored (the `read` of the next
    /// settle); `None` when it changed meanwhile or the schedule is gone.
    pub async fn settle_schedule(
        &self,
        tenant: &TenantId,
        name: &str,
        read: &str,
        next: &ScheduleState,
    ) -> Result<Option<String>> {
        let json = encode(next)?;
        let n: i64 = SETTLE_SCHEDULE
            .key(keys::schedules(tenant))
            .key(keys::schedule_states(tenant))
            .arg(name)
            .arg(read)
            .arg(&json)
            .invoke_async(&mut self.conn())
            .await?;
        Ok((n == 1).then_some(json))
    }
}
