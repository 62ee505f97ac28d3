//! Enqueue and completion (records are read back in `records.rs`).

use std::collections::HashMap;

use eddy_protocol::{
    Envelope, FunctionName, LazyRun, Outcome, RunLimits, RunStatus, TenantId, keys,
};

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

/// Command arguments in one buffer: a job's keys or arguments without an
/// allocation per argument, copied once into the command that carries them.
#[derive(Debug, Default)]
pub(crate) struct Args {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Args {
    fn with_capacity(count: usize, bytes: usize) -> Self {
        Args {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, arg: impl AsRef<[u8]>) -> &mut Self {
        self.data.extend_from_slice(arg.as_ref());
        self.ends.push(self.data.len());
        self
    }

    /// An argument written by `f` (a number, some JSON) straight into the
    /// buffer.
    fn push_with(&mut self, f: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<&mut Self> {
        f(&mut self.data)?;
        self.ends.push(self.data.len());
        Ok(self)
    }

    fn push_num(&mut self, n: u64) -> &mut Self {
        self.push(Digits::of(n).as_bytes())
    }

    fn count(&self) -> usize {
        self.ends.len()
    }

    fn bytes(&self) -> usize {
        self.data.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let arg = &self.data[start..end];
            start = end;
            arg
        })
    }
}

/// Decimal digits of a number without a formatter.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn of(mut n: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Digits { buf, start: i }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn json_into<T: serde::Serialize>(value: &T) -> impl FnOnce(&mut Vec<u8>) -> Result<()> + '_ {
    move |out| {
        serde_json::to_writer(out, value).map_err(|e| Error::Corrupt(format!("encoding: {e}")))
    }
}

/// One root invocation ready for the enqueue script: its keys and
/// arguments (see `lua/enqueue.lua`), built by the caller.
pub(crate) struct EnqueueJob {
    tenant: TenantId,
    keys: Args,
    args: Args,
}

/// One completion ready for the completion script: its keys and arguments
/// (see `lua/complete.lua`), built by the caller.
pub(crate) struct CompleteJob {
    tenant: TenantId,
    /// When a retry would be due (0: not a retry).
    retry_at: u64,
    keys: Args,
    args: Args,
}

pub(crate) fn enqueue_size(job: &EnqueueJob) -> usize {
    job.args.bytes()
}

pub(crate) fn complete_size(job: &CompleteJob) -> usize {
    job.args.bytes()
}

/// Jobs grouped by tenant (one script call each: one cluster slot), in
/// first-seen order, with each job's index in the batch.
fn by_tenant<J>(jobs: Vec<J>, tenant: impl Fn(&J) -> &TenantId) -> Vec<Vec<(usize, J)>> {
    let mut groups: Vec<Vec<(usize, J)>> = Vec::new();
    let mut index: HashMap<TenantId, usize> = HashMap::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let g = *index.entry(tenant(&job).clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push((i, job));
    }
    groups
}

/// Runs a script with `EVALSHA` on the keys and arguments of its parts
/// (in order), loading the script first when Redis does not know it (after
/// a restart or a failover).
async fn eval(
    conn: &mut crate::conn::Conn,
    script: &redis::Script,
    keys: &[&Args],
    args: &[&Args],
) -> redis::RedisResult<redis::Value> {
    let n_keys: usize = keys.iter().map(|k| k.count()).sum();
    let count = 3 + n_keys + args.iter().map(|a| a.count()).sum::<usize>();
    let bytes = 64 + keys.iter().chain(args).map(|a| a.bytes()).sum::<usize>();
    let mut cmd = redis::Cmd::with_capacity(count, bytes);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(n_keys);
    for part in keys.iter().chain(args) {
        for a in part.iter() {
            cmd.arg(a);
        }
    }
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            let _: String = script.prepare_invoke().load_async(conn).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// The answers of a script that answers one array per job of its batch.
fn answers(value: redis::Value, n: usize, what: &str) -> Vec<Result<Vec<String>>> {
    let replies: Vec<Vec<String>> = match redis::from_redis_value(value) {
        Ok(r) => r,
        Err(e) => {
            let e = Error::Corrupt(format!("{what} reply: {e}"));
            return (0..n).map(|_| Err(e.clone())).collect();
        }
    };
    let mut out: Vec<Result<Vec<String>>> = replies.into_iter().map(Ok).collect();
    while out.len() < n {
        out.push(Err(Error::Corrupt(format!(
            "{what}: fewer replies than jobs"
        ))));
    }
    out
}

/// One script call per tenant of `jobs`, all at once; each job's answer
/// goes back to its place in `jobs`.
async fn scatter<J, Fut>(
    jobs: Vec<J>,
    tenant: impl Fn(&J) -> &TenantId,
    call: impl FnMut(Vec<(usize, J)>) -> Fut,
) -> Vec<Result<Vec<String>>>
where
    Fut: Future<Output = Vec<(usize, Result<Vec<String>>)>>,
{
    let n = jobs.len();
    let calls = by_tenant(jobs, tenant).into_iter().map(call);
    let mut out: Vec<Result<Vec<String>>> = (0..n).map(|_| Err(Error::Closed)).collect();
    for group in futures::future::join_all(calls).await {
        for (i, r) in group {
            out[i] = r;
        }
    }
    out
}

/// The head's arguments, then each job's.
fn head_and<'a, J>(
    head: &'a Args,
    group: &'a [(usize, J)],
    of: impl Fn(&J) -> &Args,
) -> Vec<&'a Args> {
    std::iter::once(head)
        .chain(group.iter().map(|(_, j)| of(j)))
        .collect()
}

/// One script call answering `n` jobs; a failed call fails each of them.
async fn eval_each(
    conn: &mut crate::conn::Conn,
    script: &redis::Script,
    keys: &[&Args],
    args: &[&Args],
    n: usize,
    what: &str,
) -> Vec<Result<Vec<String>>> {
    match eval(conn, script, keys, args).await {
        Ok(v) => answers(v, n, what),
        Err(e) => (0..n).map(|_| Err(Error::Redis(e.clone()))).collect(),
    }
}

fn with_indices<J>(
    group: Vec<(usize, J)>,
    replies: Vec<Result<Vec<String>>>,
) -> Vec<(usize, Result<Vec<String>>)> {
    group.into_iter().map(|(i, _)| i).zip(replies).collect()
}

impl Queue {
    /// Accepts a root invocation atomically (see `lua/enqueue.lua`): checks
    /// that the function exists, dedupes on the idempotency key, checks the
    /// tenant's quotas, appends the stream entry and writes the invocation
    /// record. Calls made at the same time share one script call (group
    /// commit, see `batch.rs`); each is still all or nothing on its own. A
    /// sync invocation (someone waits for it) goes out at once.
    pub async fn enqueue(
        &self,
        envelope: &Envelope,
        payload: &[u8],
        limits: RunLimits,
        run_callback: Option<&str>,
    ) -> Result<Enqueued> {
        let lazy = self.lazy_run(envelope, run_callback);
        let envelope = lazy.as_ref().unwrap_or(envelope);
        let job = enqueue_job(envelope, payload, limits, run_callback)?;
        let reply = self.enqueuer().call(job, envelope.is_interactive()).await?;
        enqueue_reply(envelope, &reply)
    }

    /// Enqueues many root invocations of one tenant in one script call (bulk
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
        let jobs = batch
            .iter()
            .map(|(env, payload)| {
                let lazy = self.lazy_run(env, None);
                enqueue_job(lazy.as_ref().unwrap_or(env), payload, limits, None)
            })
            .collect::<Result<Vec<_>>>()?;
        let replies = self.enqueue_jobs(jobs, false).await;
        Ok(batch
            .iter()
            .zip(replies)
            .map(|((envelope, _), reply)| reply.and_then(|r| enqueue_reply(envelope, &r)))
            .collect())
    }

    /// A root goes without a run record until it fans out, as its envelope
    /// says ([`Envelope::lazy_run`], with the run's callback): a corrected
    /// copy when the caller did not set it so (callers on the hot path set
    /// it themselves).
    fn lazy_run(&self, envelope: &Envelope, run_callback: Option<&str>) -> Option<Envelope> {
        let want = envelope.is_root();
        let fits = match &envelope.lazy_run {
            None => !want,
            Some(l) => want && l.callback_url.as_deref() == run_callback,
        };
        if fits {
            return None;
        }
        let mut e = envelope.clone();
        e.lazy_run = want.then(|| LazyRun {
            callback_url: run_callback.map(str::to_string),
        });
        Some(e)
    }

    /// One flush of the enqueue batcher: a script call per tenant.
    pub(crate) async fn enqueue_jobs(
        &self,
        jobs: Vec<EnqueueJob>,
        urgent: bool,
    ) -> Vec<Result<Vec<String>>> {
        let now = eddy_protocol::now_ms();
        let ttl = self.ttl_secs().to_string();
        let now_s = now.to_string();
        let (now_s, ttl) = (&now_s, &ttl);
        scatter(
            jobs,
            |j| &j.tenant,
            |group| {
                let mut conn = self.conn_for(urgent);
                async move {
                    let t = &group[0].1.tenant;
                    let mut head_keys = Args::with_capacity(3, 160);
                    head_keys
                        .push(keys::tenant(t))
                        .push(keys::rate_window(t, now / 1000))
                        .push(keys::stored(t));
                    let mut head_args = Args::with_capacity(3, 64);
                    head_args
                        .push(now_s)
                        .push(ttl)
                        .push(if urgent { keys::WAKE } else { "" });
                    let keys = head_and(&head_keys, &group, |j| &j.keys);
                    let args = head_and(&head_args, &group, |j| &j.args);
                    let replies =
                        eval_each(&mut conn, &ENQUEUE, &keys, &args, group.len(), "enqueue").await;
                    with_indices(group, replies)
                }
            },
        )
        .await
    }

    /// Completes one delivery atomically (see `lua/complete.lua`): result,
    /// follow-ups, run counts, retry or dead letter, callbacks, XACK.
    /// Completions made at the same time share one script call (group
    /// commit); each is still all or nothing on its own. The completion of
    /// a sync invocation goes out at once.
    pub async fn complete(
        &self,
        delivery: &Delivery,
        completion: &Completion,
    ) -> Result<Completed> {
        let job = complete_job(delivery, completion, self.config.record_ttl)?;
        let reply = self
            .completer()
            .call(job, delivery.envelope.is_interactive())
            .await?;
        Ok(Completed {
            status: reply.first().cloned().unwrap_or_default(),
            run_status: reply.get(1).and_then(|s| RunStatus::parse(s)),
        })
    }

    /// One flush of the completion batcher: a script call per tenant.
    pub(crate) async fn complete_jobs(
        &self,
        jobs: Vec<CompleteJob>,
        urgent: bool,
    ) -> Vec<Result<Vec<String>>> {
        let now_s = eddy_protocol::now_ms().to_string();
        let ttl = self.ttl_secs().to_string();
        let (now_s, ttl) = (&now_s, &ttl);
        scatter(
            jobs,
            |j| &j.tenant,
            |group| {
                let mut conn = self.conn_for(urgent);
                async move {
                    let t = &group[0].1.tenant;
                    let mut head_keys = Args::with_capacity(5, 224);
                    head_keys
                        .push(keys::tenant(t))
                        .push(keys::delayed(t))
                        .push(keys::dead_letters(t))
                        .push(keys::callbacks(t))
                        .push(keys::stored(t));
                    let mut head_args = Args::with_capacity(4, 64);
                    head_args
                        .push(keys::GROUP)
                        .push(now_s)
                        .push(ttl)
                        .push(t.as_str());
                    let keys = head_and(&head_keys, &group, |j| &j.keys);
                    let args = head_and(&head_args, &group, |j| &j.args);
                    let replies =
                        eval_each(&mut conn, &COMPLETE, &keys, &args, group.len(), "complete")
                            .await;
                    self.mark_completed(t, &group, &replies).await;
                    with_indices(group, replies)
                }
            },
        )
        .await
    }

    /// Marks the due indexes for what a completion call wrote: the
    /// earliest retry it scheduled, and whether it queued callbacks. A mark
    /// lost here (Redis went away) is found again by the audit.
    async fn mark_completed(
        &self,
        tenant: &TenantId,
        group: &[(usize, CompleteJob)],
        replies: &[Result<Vec<String>>],
    ) {
        let mut retry_at: Option<u64> = None;
        let mut callbacks = false;
        for ((_, job), reply) in group.iter().zip(replies) {
            let Ok(reply) = reply else { continue };
            if reply.first().is_some_and(|s| s == "retry") {
                let at = reply
                    .get(3)
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(job.retry_at);
                retry_at = Some(retry_at.map_or(at, |r: u64| r.min(at)));
            }
            callbacks |= reply.get(2).is_some_and(|c| c == "1");
        }
        if let Some(at) = retry_at
            && let Err(error) = self.mark_due(crate::DueIndex::Retries, tenant, at).await
        {
            tracing::debug!(%error, "marking a retry (the audit will find it)");
        }
        if callbacks
            && let Err(error) = self
                .mark_due(crate::DueIndex::Callbacks, tenant, eddy_protocol::now_ms())
                .await
        {
            tracing::debug!(%error, "marking a callback (the audit will find it)");
        }
    }
}

/// What an idempotency key's reuse must match: the payload's SHA-256
/// (hex, first 32 characters).
fn fingerprint(payload: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(payload)[..16])
}

/// The enqueue script's keys and arguments for one root invocation.
fn enqueue_job(
    envelope: &Envelope,
    payload: &[u8],
    limits: RunLimits,
    run_callback: Option<&str>,
) -> Result<EnqueueJob> {
    let t = &envelope.tenant;
    let idem = envelope.idempotency_key.as_deref().unwrap_or("");
    let mut keys = Args::with_capacity(4, 256);
    keys.push(keys::stream(t, &envelope.function))
        .push(keys::invocation(t, &envelope.id))
        .push(keys::idempotency(t, &envelope.function, idem))
        .push(keys::function(t, &envelope.function));
    let mut args = Args::with_capacity(9, 512 + payload.len());
    args.push_with(json_into(envelope))?
        .push(payload)
        .push(&envelope.id)
        .push(envelope.function.as_str())
        // With a key: the payload's fingerprint, which a reuse of the key
        // must match (the script only tests this for being non-empty).
        .push(if idem.is_empty() {
            String::new()
        } else {
            fingerprint(payload)
        })
        .push_num(u64::from(limits.max_depth))
        .push_num(limits.max_invocations);
    match envelope.version {
        Some(v) => args.push_num(u64::from(v)),
        None => args.push(""),
    };
    args.push(run_callback.unwrap_or(""));
    Ok(EnqueueJob {
        tenant: t.clone(),
        keys,
        args,
    })
}

/// The completion script's keys and arguments for one completion.
fn complete_job(
    delivery: &Delivery,
    completion: &Completion,
    record_ttl: std::time::Duration,
) -> Result<CompleteJob> {
    let env = &delivery.envelope;
    let t = &env.tenant;
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
    let error = completion.outcome.error.as_ref();
    let nf = follow_ups.len();
    let mut keys = Args::with_capacity(4 + 3 * nf, 192 * (1 + nf));
    keys.push(&delivery.stream)
        .push(keys::invocation(t, &env.id))
        .push(keys::run(t, &env.run_id))
        .push(keys::stats(t, &env.function));
    for f in follow_ups {
        let fe = &f.envelope;
        keys.push(keys::stream(t, &fe.function))
            .push(keys::invocation(t, &fe.id))
            .push(keys::function(t, &fe.function));
    }
    // A record written when it was queued still has most of its TTL: a
    // success need not refresh it unless it has been waiting (or retrying)
    // for a quarter of the TTL.
    let age_ms = eddy_protocol::now_ms().saturating_sub(env.enqueued_at_ms);
    let refresh = u128::from(age_ms) * 4 > record_ttl.as_millis();
    let follow_bytes: usize = follow_ups.iter().map(|f| 512 + f.payload.len()).sum();
    let mut args = Args::with_capacity(23 + 4 * nf, 1024 + output.len() + follow_bytes);
    args.push(&delivery.entry_id)
        .push(outcome)
        .push_with(json_into(&completion.outcome))?
        .push(output)
        .push(content_type)
        .push_num(retry_at)
        .push(delayed_member(&env.function, &env.id));
    if carry {
        let mut next = env.clone();
        next.attempt = attempt;
        args.push_with(json_into(&next))?.push(&delivery.payload);
    } else {
        args.push("").push("");
    }
    args.push(error.map(|e| e.class.as_str()).unwrap_or(""))
        .push(error.map(|e| e.message.as_str()).unwrap_or(""))
        .push_num(nf as u64)
        .push(env.callback_url.as_deref().unwrap_or(""))
        .push(&env.id)
        .push(&env.run_id)
        .push_num(u64::from(attempt))
        .push_num(u64::from(env.depth) + 1)
        .push(env.reply_to.as_deref().unwrap_or(""))
        .push_num(completion.outcome.timings.instantiate_us + completion.outcome.timings.run_us)
        .push(completion.traceparent.as_deref().unwrap_or(""))
        .push(if refresh { "1" } else { "" });
    match &env.lazy_run {
        Some(lazy) => args
            .push("1")
            .push(lazy.callback_url.as_deref().unwrap_or("")),
        None => args.push("").push(""),
    };
    for f in follow_ups {
        args.push_with(json_into(&f.envelope))?
            .push(&f.payload)
            .push(&f.envelope.id)
            .push(f.envelope.function.as_str());
    }
    Ok(CompleteJob {
        tenant: t.clone(),
        retry_at,
        keys,
        args,
    })
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
        Some("idempotency-mismatch") => Err(Error::IdempotencyMismatch(
            reply.get(1).cloned().unwrap_or_default(),
        )),
        Some("no-function") => Err(Error::NoFunction(envelope.function.to_string())),
        Some("quota") => Err(quota_refusal(reply)),
        other => Err(Error::Corrupt(format!("enqueue script replied {other:?}"))),
    }
}

/// A script's `{'quota', 'pending' | 'rate', limit}` or `{'quota', 'stored',
/// limit, stored, retry after, needed}` reply as an error; anything else is
/// corrupt.
pub(crate) fn quota_refusal(reply: &[String]) -> Error {
    let corrupt = || Error::Corrupt(format!("quota reply {reply:?}"));
    let nums: Option<Vec<u64>> = reply.iter().skip(2).map(|l| l.parse().ok()).collect();
    match (reply.get(1).map(String::as_str), nums.as_deref()) {
        (Some("stored"), Some(&[limit, stored, retry_after_s, needed])) => Error::StorageQuota {
            limit,
            stored,
            retry_after_s,
            needed,
        },
        (Some("pending"), Some(&[limit])) => Error::Quota {
            which: crate::QuotaKind::Pending,
            limit,
        },
        (Some("rate"), Some(&[limit])) => Error::Quota {
            which: crate::QuotaKind::Rate,
            limit,
        },
        _ => corrupt(),
    }
}

/// The delayed-set member of a retry: the function (to find its stream) and
/// the invocation id (to find its record).
pub(crate) fn delayed_member(function: &FunctionName, id: &str) -> String {
    format!("{function}|{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_keep_each_argument_apart_in_one_buffer() {
        let mut a = Args::with_capacity(1, 1);
        a.push("key").push("").push(b"\x00bin:\n".as_slice());
        for n in [0, 7, 10, 1_796_250_674_903, u64::MAX] {
            a.push_num(n);
        }
        a.push_with(json_into(&serde_json::json!({"k": "v"})))
            .unwrap();
        let got: Vec<&[u8]> = a.iter().collect();
        let want: Vec<&[u8]> = vec![
            b"key",
            b"",
            b"\x00bin:\n",
            b"0",
            b"7",
            b"10",
            b"1796250674903",
            b"18446744073709551615",
            br#"{"k":"v"}"#,
        ];
        assert_eq!(got, want);
        assert_eq!(a.count(), 9);
        assert_eq!(a.bytes(), want.iter().map(|w| w.len()).sum::<usize>());
        let mut cmd = redis::Cmd::new();
        for arg in a.iter() {
            cmd.arg(arg);
        }
        assert_eq!(cmd.args_iter().count(), 9);
    }
}
