//! Enqueue, completion, and the records clients read back.

use std::collections::HashMap;

use eddy_protocol::{
    Envelope, FunctionName, InvocationRecord, InvocationStatus, Outcome, RunLimits, RunRecord,
    RunStatus, TenantId, keys,
};
use redis::AsyncCommands;

use crate::consume::Delivery;
use crate::scripts::{COMPLETE, ENQUEUE};
use crate::{Error, Queue, Result};

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The invocation id: the new one, or the earlier one for a duplicate
    /// idempotency key.
    pub id: String,
    /// Whether the idempotency key had been seen: nothing was enqueued.
    pub duplicate: bool,
}

/// A follow-up to commit with a successful completion.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub envelope: Envelope,
    pub payload: Vec<u8>,
}

/// How an invocation ended, as far as this delivery is concerned.
#[derive(Debug, Clone)]
pub enum Disposition {
    /// It succeeded: store the output, commit the follow-ups.
    Succeeded {
        output: Vec<u8>,
        content_type: String,
        follow_ups: Vec<FollowUp>,
    },
    /// It failed and will run again at `at_ms` (attempt + 1).
    Retry { at_ms: u64 },
    /// It failed for good with a non-retryable error.
    Failed,
    /// It failed for good: retries or deliveries exhausted.
    Dead,
}

impl Disposition {
    /// `succeeded`, `retry`, `failed` or `dead`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Disposition::Succeeded { .. } => "succeeded",
            Disposition::Retry { .. } => "retry",
            Disposition::Failed => "failed",
            Disposition::Dead => "dead",
        }
    }
}

/// One completion: the disposition plus the record's outcome part (error,
/// timings, logs).
#[derive(Debug, Clone)]
pub struct Completion {
    pub disposition: Disposition,
    pub outcome: Outcome,
    /// The trace context of the attempt (W3C `traceparent`), carried to its
    /// callbacks so that their spans join the trace.
    pub traceparent: Option<String>,
}

/// What the completion script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// `succeeded`, `retry`, `failed`, `dead`, or `stale` when the delivery
    /// had already been completed by someone else (nothing changed).
    pub status: String,
    /// The run's status after this completion.
    pub run_status: Option<RunStatus>,
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Corrupt(format!("encoding: {e}")))
}

impl Queue {
    /// Accepts a root invocation in one atomic script: checks that the
    /// function exists, dedupes on the idempotency key, appends the stream
    /// entry, writes the invocation record and opens its run.
    pub async fn enqueue(
        &self,
        envelope: &Envelope,
        payload: &[u8],
        limits: RunLimits,
        run_callback: Option<&str>,
    ) -> Result<Enqueued> {
        let reply: Vec<String> = self
            .enqueue_invocation(envelope, payload, limits, run_callback)?
            .invoke_async(&mut self.conn())
            .await?;
        enqueue_reply(envelope, &reply)
    }

    /// Enqueues many root invocations in one pipelined round trip (bulk
    /// ingestion). Each gets its own result; a quota refusal of one does not
    /// stop the others.
    pub async fn enqueue_batch(
        &self,
        batch: &[(Envelope, Vec<u8>)],
        limits: RunLimits,
    ) -> Result<Vec<Result<Enqueued>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        // Pipelined scripts go as EVALSHA: make sure Redis knows the script
        // (after a restart it does not).
        let _: String = ENQUEUE.prepare_invoke().load_async(&mut conn).await?;
        let mut pipe = redis::pipe();
        for (envelope, payload) in batch {
            pipe.invoke_script(&self.enqueue_invocation(envelope, payload, limits, None)?);
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        Ok(batch
            .iter()
            .zip(replies)
            .map(|((envelope, _), reply)| {
                let reply: Vec<String> = redis::from_redis_value(reply)
                    .map_err(|e| Error::Corrupt(format!("enqueue reply: {e}")))?;
                enqueue_reply(envelope, &reply)
            })
            .collect())
    }

    fn enqueue_invocation<'a>(
        &self,
        envelope: &Envelope,
        payload: &[u8],
        limits: RunLimits,
        run_callback: Option<&str>,
    ) -> Result<redis::ScriptInvocation<'a>> {
        let t = &envelope.tenant;
        let idem = envelope.idempotency_key.as_deref().unwrap_or("");
        let mut inv = ENQUEUE.prepare_invoke();
        inv.key(keys::stream(t, &envelope.function))
            .key(keys::invocation(t, &envelope.id))
            .key(keys::run(t, &envelope.run_id))
            .key(keys::idempotency(t, idem))
            .key(keys::function(t, &envelope.function))
            .key(keys::tenant(t))
            .key(keys::rate_window(t, eddy_protocol::now_ms() / 1000))
            .arg(encode(envelope)?)
            .arg(payload)
            .arg(&envelope.id)
            .arg(envelope.function.as_str())
            .arg(envelope.enqueued_at_ms)
            .arg(self.ttl_secs())
            .arg(idem)
            .arg(t.as_str())
            .arg(limits.max_depth)
            .arg(limits.max_invocations)
            .arg(envelope.version.map(|v| v.to_string()).unwrap_or_default())
            .arg(run_callback.unwrap_or(""))
            .arg(
                if self.runs_of_one.load(std::sync::atomic::Ordering::Relaxed) {
                    "1"
                } else {
                    ""
                },
            );
        Ok(inv)
    }

    /// Completes one delivery atomically (see `lua/complete.lua`): result,
    /// follow-ups, run counts, retry or dead letter, callbacks, XACK.
    pub async fn complete(
        &self,
        delivery: &Delivery,
        completion: &Completion,
    ) -> Result<Completed> {
        let env = &delivery.envelope;
        let t = &env.tenant;
        let mut inv = COMPLETE.prepare_invoke();
        inv.key(&delivery.stream)
            .key(keys::invocation(t, &env.id))
            .key(keys::run(t, &env.run_id))
            .key(keys::delayed(t))
            .key(keys::dead_letters(t))
            .key(keys::callbacks(t))
            .key(keys::tenant(t))
            .key(keys::stats(t, &env.function));

        let (outcome, output, content_type, follow_ups, retry_at, attempt): (
            &str,
            &[u8],
            &str,
            &[FollowUp],
            u64,
            u32,
        ) = match &completion.disposition {
            Disposition::Succeeded {
                output,
                content_type,
                follow_ups,
            } => ("ok", output, content_type, follow_ups, 0, env.attempt),
            Disposition::Retry { at_ms } => ("retry", &[], "", &[], *at_ms, env.attempt + 1),
            Disposition::Failed => ("fail", &[], "", &[], 0, env.attempt),
            Disposition::Dead => ("dead", &[], "", &[], 0, env.attempt),
        };
        // The envelope and payload go back to Redis only where they may be
        // needed: a retry, a dead letter, or a guard that may fail the emits.
        let carry = outcome != "ok" || !follow_ups.is_empty();
        let carried_env = if carry {
            let mut next = env.clone();
            next.attempt = attempt;
            encode(&next)?
        } else {
            String::new()
        };
        let error = completion.outcome.error.as_ref();
        for f in follow_ups {
            let fe = &f.envelope;
            inv.key(keys::stream(t, &fe.function))
                .key(keys::invocation(t, &fe.id))
                .key(keys::function(t, &fe.function));
        }
        inv.arg(&delivery.entry_id)
            .arg(keys::GROUP)
            .arg(outcome)
            .arg(eddy_protocol::now_ms())
            .arg(self.ttl_secs())
            .arg(encode(&completion.outcome)?)
            .arg(output)
            .arg(content_type)
            .arg(retry_at)
            .arg(delayed_member(&env.function, &env.id))
            .arg(carried_env)
            .arg(if carry {
                delivery.payload.as_slice()
            } else {
                &[]
            })
            .arg(error.map(|e| e.class.as_str()).unwrap_or(""))
            .arg(error.map(|e| e.message.as_str()).unwrap_or(""))
            .arg(follow_ups.len())
            .arg(env.callback_url.as_deref().unwrap_or(""))
            .arg(&env.id)
            .arg(&env.run_id)
            .arg(attempt)
            .arg(env.depth + 1)
            .arg(t.as_str())
            .arg(env.reply_to.as_deref().unwrap_or(""))
            .arg(completion.outcome.timings.instantiate_us + completion.outcome.timings.run_us)
            .arg(completion.traceparent.as_deref().unwrap_or(""));
        for f in follow_ups {
            inv.arg(encode(&f.envelope)?)
                .arg(f.payload.as_slice())
                .arg(&f.envelope.id)
                .arg(f.envelope.function.as_str());
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.conn()).await?;
        Ok(Completed {
            status: reply.first().cloned().unwrap_or_default(),
            run_status: reply.get(1).and_then(|s| RunStatus::parse(s)),
        })
    }

    /// The record of invocation `id`.
    pub async fn invocation(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<InvocationRecord>> {
        let map: HashMap<String, Vec<u8>> =
            self.conn().hgetall(keys::invocation(tenant, id)).await?;
        if map.is_empty() {
            return Ok(None);
        }
        record_from_map(id, Some(tenant.as_str()), &map).map(Some)
    }

    /// The record of run `id`.
    pub async fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<RunRecord>> {
        let run_key = keys::run(tenant, id);
        let mut map: HashMap<String, String> = self.conn().hgetall(&run_key).await?;
        if map.is_empty() {
            // A run of one, or one whose root fanned out since the read
            // above: the root's record tells which (its follow-ups), and in
            // the second case the run's record exists now.
            let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(keys::invocation(tenant, id))
                .arg(&ROOT_FIELDS[..])
                .query_async(&mut self.conn())
                .await?;
            let root: HashMap<String, Vec<u8>> = ROOT_FIELDS
                .iter()
                .zip(fields)
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect();
            match single_run(tenant, id, &root)? {
                Some(Single::Run(run)) => return Ok(Some(run)),
                Some(Single::FannedOut) => map = self.conn().hgetall(&run_key).await?,
                None => return Ok(None),
            }
            if map.is_empty() {
                return Ok(None);
            }
        }
        let n = |k: &str| {
            map.get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as u64
        };
        Ok(Some(RunRecord {
            id: id.to_string(),
            tenant: tenant.to_string(),
            function: map.get("function").cloned().unwrap_or_default(),
            status: map
                .get("status")
                .and_then(|s| RunStatus::parse(s))
                .ok_or_else(|| Error::Corrupt(format!("run {id}: no status")))?,
            total: n("total"),
            outstanding: n("outstanding"),
            succeeded: n("succeeded"),
            failed: n("failed"),
            dead: n("dead"),
            max_depth: n("max_depth") as u32,
            max_invocations: n("max_invocations"),
            created_at_ms: n("created"),
            completed_at_ms: map.get("completed").and_then(|v| v.parse().ok()),
            error: map.get("error").cloned(),
        }))
    }
}

/// The fields of a root's record that a run of one is read from.
const ROOT_FIELDS: [&str; 10] = [
    "status",
    "function",
    "run",
    "parent",
    "depth",
    "created",
    "completed",
    "outcome",
    "max_depth",
    "max_inv",
];

/// What the root's record says about a run without a record of its own.
enum Single {
    /// The run is the root alone.
    Run(RunRecord),
    /// The root added follow-ups: the run has a record of its own.
    FannedOut,
}

/// A run that is still its root alone has no record of its own (the enqueue
/// script does not write one; the completion script does when the root first
/// fans out): it is read from the root's record, `map` (its [`ROOT_FIELDS`]).
/// None when there is no such root.
fn single_run(
    tenant: &TenantId,
    id: &str,
    map: &HashMap<String, Vec<u8>>,
) -> Result<Option<Single>> {
    if map.is_empty() {
        return Ok(None);
    }
    let root = record_from_map(id, Some(tenant.as_str()), map)?;
    if root.run_id != id || root.parent_id.is_some() {
        return Ok(None);
    }
    if root.status == InvocationStatus::Succeeded && !root.outcome.follow_ups.is_empty() {
        return Ok(Some(Single::FannedOut));
    }
    let n = |k: &str| {
        map.get(k)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (status, outstanding, succeeded, failed, dead) = match root.status {
        InvocationStatus::Queued | InvocationStatus::Retrying => (RunStatus::Running, 1, 0, 0, 0),
        InvocationStatus::Succeeded => (RunStatus::Succeeded, 0, 1, 0, 0),
        InvocationStatus::Failed => (RunStatus::Failed, 0, 0, 1, 0),
        InvocationStatus::Dead => (RunStatus::Failed, 0, 0, 0, 1),
    };
    let error = root
        .outcome
        .error
        .as_ref()
        .filter(|e| e.class == "run-limit")
        .map(|e| e.message.clone());
    Ok(Some(Single::Run(RunRecord {
        id: id.to_string(),
        tenant: tenant.to_string(),
        function: root.function,
        status,
        total: 1,
        outstanding,
        succeeded,
        failed,
        dead,
        max_depth: n("max_depth") as u32,
        max_invocations: n("max_inv"),
        created_at_ms: root.created_at_ms,
        completed_at_ms: root.completed_at_ms,
        error,
    })))
}

fn enqueue_reply(envelope: &Envelope, reply: &[String]) -> Result<Enqueued> {
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(Enqueued {
            id: envelope.id.clone(),
            duplicate: false,
        }),
        Some("duplicate") => Ok(Enqueued {
            id: reply.get(1).cloned().unwrap_or_default(),
            duplicate: true,
        }),
        Some("no-function") => Err(Error::NoFunction(envelope.function.to_string())),
        Some("quota") => Err(Error::Quota {
            which: reply.get(1).cloned().unwrap_or_default(),
            limit: reply.get(2).and_then(|l| l.parse().ok()).unwrap_or(0),
        }),
        other => Err(Error::Corrupt(format!("enqueue script replied {other:?}"))),
    }
}

/// The delayed-set member of a retry: the function (to find its stream) and
/// the invocation id (to find its record).
pub(crate) fn delayed_member(function: &FunctionName, id: &str) -> String {
    format!("{function}|{id}")
}

/// An invocation record from its hash's fields (`tenant` from the hash when
/// not given).
pub(crate) fn record_from_map(
    id: &str,
    tenant: Option<&str>,
    map: &HashMap<String, Vec<u8>>,
) -> Result<InvocationRecord> {
    let s = |k: &str| map.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    let n = |k: &str| s(k).and_then(|v| v.parse::<u64>().ok());
    let status = s("status")
        .as_deref()
        .and_then(InvocationStatus::parse)
        .ok_or_else(|| Error::Corrupt(format!("invocation {id}: no status")))?;
    let outcome: Outcome = match map.get("outcome") {
        Some(json) => serde_json::from_slice(json)
            .map_err(|e| Error::Corrupt(format!("invocation {id} outcome: {e}")))?,
        None => Outcome::default(),
    };
    Ok(InvocationRecord {
        id: id.to_string(),
        tenant: tenant
            .map(str::to_string)
            .or_else(|| s("tenant"))
            .unwrap_or_default(),
        function: s("function").unwrap_or_default(),
        version: n("version").map(|v| v as u32),
        status,
        run_id: s("run").unwrap_or_default(),
        parent_id: s("parent"),
        depth: n("depth").unwrap_or(0) as u32,
        attempt: n("attempt").unwrap_or(1) as u32,
        completions: n("completions").unwrap_or(0) as u32,
        created_at_ms: n("created").unwrap_or(0),
        completed_at_ms: n("completed"),
        content_type: s("ct"),
        output: if status == InvocationStatus::Succeeded {
            map.get("output").cloned()
        } else {
            None
        },
        outcome,
    })
}
