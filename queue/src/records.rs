//! Reading invocation and run records (a run that is still its root alone
//! is read from the root's record).

use std::collections::HashMap;

use eddy_protocol::{
    InvocationRecord, InvocationStatus, Outcome, RunRecord, RunStatus, TenantId, keys,
};
use redis::AsyncCommands;

use crate::{Error, Queue, Result};

impl Queue {
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
        let what = format!("run {id}");
        let n = |k: &str| crate::fields::counter(&what, k, map.get(k));
        Ok(Some(RunRecord {
            id: id.to_string(),
            tenant: tenant.to_string(),
            function: map.get("function").cloned().unwrap_or_default(),
            status: map
                .get("status")
                .and_then(|s| RunStatus::parse(s))
                .ok_or_else(|| Error::Corrupt(format!("run {id}: no status")))?,
            total: n("total")?,
            outstanding: n("outstanding")?,
            succeeded: n("succeeded")?,
            failed: n("failed")?,
            dead: n("dead")?,
            max_depth: n("max_depth")? as u32,
            max_invocations: n("max_invocations")?,
            created_at_ms: n("created")?,
            completed_at_ms: crate::fields::number(&what, "completed", map.get("completed"))?,
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
    let what = format!("invocation {id}");
    let n = |k: &str| crate::fields::counter(&what, k, map.get(k));
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
        .filter(|e| e.class == eddy_protocol::ErrorClass::RunLimit)
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
        max_depth: n("max_depth")? as u32,
        max_invocations: n("max_inv")?,
        created_at_ms: root.created_at_ms,
        completed_at_ms: root.completed_at_ms,
        error,
    })))
}

/// An invocation record from its hash's fields (`tenant` from the hash when
/// not given).
pub(crate) fn record_from_map(
    id: &str,
    tenant: Option<&str>,
    map: &HashMap<String, Vec<u8>>,
) -> Result<InvocationRecord> {
    let s = |k: &str| map.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    let what = format!("invocation {id}");
    let n = |k: &str| crate::fields::number::<u64>(&what, k, map.get(k));
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
        version: n("version")?.map(|v| v as u32),
        status,
        // A root's record leaves out its run: itself (see enqueue.lua).
        run_id: s("run").unwrap_or_else(|| id.to_string()),
        parent_id: s("parent"),
        depth: n("depth")?.unwrap_or(0) as u32,
        attempt: n("attempt")?.unwrap_or(1) as u32,
        completions: n("completions")?.unwrap_or(0) as u32,
        created_at_ms: n("created")?.unwrap_or(0),
        completed_at_ms: n("completed")?,
        content_type: s("ct"),
        output: if status == InvocationStatus::Succeeded {
            map.get("output").cloned()
        } else {
            None
        },
        outcome,
    })
}
