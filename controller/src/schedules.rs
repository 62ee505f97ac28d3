//! Fires scheduled invocations: the leader reads the due index
//! ([`keys::SCHEDULES`]) and enqueues each due tick through the same path
//! as `POST /invoke` (the tenant's quota applies), then records it.
//!
//! Once per tick, across leaders: the invocation's idempotency key is
//! `schedule:<name>:<tick ms>`, so a tick enqueued by a leader that died
//! before recording it is a duplicate when the next leader fires it again;
//! the record is a compare-and-set on the schedule's state, so two leaders
//! (one that lost its lease mid-pass) cannot both advance it.
//!
//! Missed ticks (no controller ran, or the leader fell behind): one up to
//! [`CATCH_UP_MS`] late (or the record TTL, if shorter: the idempotency
//! key's life) is fired late, oldest first; older ones are skipped and
//! counted in `missed` (up to [`COUNT_MISSED`] per gap).
//!
//! A look is bounded: [`PER_SCHEDULE`] ticks of a schedule,
//! [`PER_TENANT`] schedules of a tenant, [`TICKS_PER_LOOK`] ticks and
//! [`LOOK_BUDGET`] in all; what is left stays due for the next look, which
//! comes at the leader's next tick.

use std::time::{Duration, Instant};

use eddy_protocol::schedules::{CATCH_UP_MS, Cron, Firing, KEEP_FIRINGS, Outcome, ScheduleSpec};
use eddy_protocol::{Envelope, FunctionName, LazyRun, TenantId, keys};
use eddy_queue::{Queue, Schedule};
use tracing::{debug, info, warn};

use crate::ControllerConfig;

/// Schedules read from the index per look, earliest first.
const BATCH: usize = 256;
/// Ticks of one schedule fired per look: a long catch-up goes on at the
/// next look, behind the schedules due earlier.
const PER_SCHEDULE: usize = 10;
/// Schedules of one tenant fired per look: the rest stay due, so that one
/// tenant's many schedules cannot hold the others'.
const PER_TENANT: usize = 16;
/// Ticks fired per look, all tenants together, and the time a look may
/// take: the leader's scaling decisions wait behind it.
const TICKS_PER_LOOK: usize = 256;
const LOOK_BUDGET: Duration = Duration::from_millis(500);
/// Missed ticks counted one by one per catch-up; past this many the count
/// stops (a per-second schedule away for days) and the skip jumps.
const COUNT_MISSED: u64 = 10_000;
/// The index is read at least this often when nothing is due (a schedule
/// created meanwhile is due a second after it is created at the earliest).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// When the leader looks at the index next.
#[derive(Debug, Default)]
pub(crate) struct Timer {
    next_look: Option<Instant>,
}

/// Fires what is due, when it is time to look. Errors are logged; what was
/// not fired is still due at the next look.
pub(crate) async fn fire_due(queue: &Queue, config: &ControllerConfig, timer: &mut Timer) {
    if timer.next_look.is_some_and(|at| Instant::now() < at) {
        return;
    }
    match look(queue, config).await {
        Ok(wait) => timer.next_look = Some(Instant::now() + wait),
        Err(error) => {
            warn!(%error, "firing schedules");
            timer.next_look = Some(Instant::now() + LOOK_EVERY);
        }
    }
}

/// One look: fires every due schedule and says how long to wait.
async fn look(queue: &Queue, config: &ControllerConfig) -> Result<Duration, eddy_queue::Error> {
    let started = Instant::now();
    let now = eddy_protocol::now_ms();
    let due = queue.due_schedules(now, BATCH).await?;
    let mut more = due.len() == BATCH;
    let mut per_tenant: std::collections::HashMap<TenantId, usize> = Default::default();
    let mut fired = 0;
    for (tenant, name, indexed) in due {
        if fired >= TICKS_PER_LOOK || started.elapsed() >= LOOK_BUDGET {
            more = true;
            break;
        }
        let n = per_tenant.entry(tenant.clone()).or_default();
        if *n >= PER_TENANT {
            more = true;
            continue;
        }
        *n += 1;
        match fire(queue, config, &tenant, &name, indexed).await {
            Ok(n) => fired += n,
            Err(error) => warn!(%error, %tenant, schedule = name, "firing a schedule"),
        }
    }
    if more {
        return Ok(Duration::ZERO);
    }
    let now = eddy_protocol::now_ms();
    Ok(match queue.next_schedule_ms().await? {
        Some(at) => Duration::from_millis(at.saturating_sub(now)).min(LOOK_EVERY),
        None => LOOK_EVERY,
    })
}

/// Fires one schedule's due ticks and moves it in the index from where it
/// was read (`indexed`) to its next tick. Every index write here is a
/// compare-and-set on `indexed`: an owner that replaced or re-created the
/// schedule meanwhile indexed its new first tick, which must stand.
async fn fire(
    queue: &Queue,
    config: &ControllerConfig,
    tenant: &TenantId,
    name: &str,
    indexed: u64,
) -> Result<usize, eddy_queue::Error> {
    let reindex = |next: u64| async move {
        queue
            .reindex_schedule(tenant, name, indexed, next)
            .await
            .map(|_| 0)
    };
    // A tick enqueued by a dead leader is recognised by its idempotency
    // key only while the key lives (the record TTL).
    let catch_up = CATCH_UP_MS.min(config.record_ttl.as_millis() as u64);
    let Some(Schedule {
        spec,
        mut state,
        raw_state: mut raw,
    }) = queue.schedule(tenant, name).await?
    else {
        // Deleted: out of the index.
        return reindex(0).await;
    };
    let cron: Cron = match spec.cron.parse() {
        Ok(c) => c,
        Err(e) => {
            warn!(%tenant, schedule = name, "a stored schedule's cron does not parse: {e}");
            return reindex(0).await;
        }
    };
    let mut fired = 0;
    for _ in 0..PER_SCHEDULE {
        let now = eddy_protocol::now_ms();
        let tick = state.next_ms;
        if tick == 0 || tick > now {
            break;
        }
        let mut next = state.clone();
        if tick + catch_up < now {
            // Too late: skip to the first tick inside the window.
            let from = now - catch_up;
            let mut t = tick;
            let mut counted = 0;
            while t != 0 && t < from && counted < COUNT_MISSED {
                counted += 1;
                t = cron.next_after(t).unwrap_or(0);
            }
            if t != 0 && t < from {
                t = cron.next_after(from - 1).unwrap_or(0);
            }
            next.missed += counted;
            next.next_ms = t;
            info!(%tenant, schedule = name, skipped = next.missed - state.missed,
                  "ticks missed for longer than the catch-up window skipped");
        } else {
            let firing = enqueue(queue, config, tenant, &spec, tick, now).await?;
            fired += 1;
            match firing.outcome {
                Outcome::Enqueued => next.fired += 1,
                Outcome::Refused => next.refused += 1,
            }
            next.last.insert(0, firing);
            next.last.truncate(KEEP_FIRINGS);
            next.next_ms = cron.next_after(tick).unwrap_or(0);
        }
        match queue.settle_schedule(tenant, name, &raw, &next).await? {
            Some(stored) => (raw, state) = (stored, next),
            None => {
                // Replaced, deleted or settled by another firer: the index
                // follows what is stored now.
                debug!(%tenant, schedule = name, "the schedule changed while it fired");
                let now = queue.schedule(tenant, name).await?;
                reindex(now.map_or(0, |s| s.state.next_ms)).await?;
                return Ok(fired);
            }
        }
    }
    reindex(state.next_ms).await?;
    Ok(fired)
}

/// Enqueues one tick. A refusal the tenant can act on (quota, the function
/// gone) is a firing that says so; a Redis failure is an error (the tick
/// stays due).
async fn enqueue(
    queue: &Queue,
    config: &ControllerConfig,
    tenant: &TenantId,
    spec: &ScheduleSpec,
    tick: u64,
    now: u64,
) -> Result<Firing, eddy_queue::Error> {
    let refused = |error: String| Firing {
        tick_ms: tick,
        at_ms: now,
        outcome: Outcome::Refused,
        invocation_id: None,
        run_id: None,
        error: Some(error),
    };
    let Ok(function) = FunctionName::new(&spec.function) else {
        return Ok(refused(format!("function `{}` not found", spec.function)));
    };
    let Some(fspec) = queue.function(tenant, &function, None).await? else {
        return Ok(refused(format!("function `{function}` not found")));
    };
    let span = tracing::info_span!(target: eddy_protocol::trace::TARGET, "schedule",
        otel.kind = "producer", eddy.schedule = spec.name.as_str(), eddy.tick_ms = tick);
    let mut env = Envelope::root(tenant.clone(), function.clone(), "application/json".into());
    env.version = Some(fspec.version);
    env.idempotency_key = Some(format!("schedule:{}:{tick}", spec.name));
    env.lazy_run = Some(LazyRun { callback_url: None });
    env.traceparent = eddy_protocol::trace::traceparent(&span);
    let payload = serde_json::to_vec(&spec.data).unwrap_or_else(|_| b"{}".to_vec());
    let limits = config.ceilings.clamp_run(fspec.config.run);
    match queue.enqueue(&env, &payload, limits, None).await {
        Ok(done) => {
            if let Err(error) = queue.touch(&[keys::stream(tenant, &function)]).await {
                debug!(%error, "waking the schedule's function");
            }
            // A duplicate is the tick an earlier leader enqueued: its
            // invocation, a root, is its own run.
            let run_id = if done.duplicate {
                done.id.clone()
            } else {
                env.run_id.clone()
            };
            Ok(Firing {
                tick_ms: tick,
                at_ms: now,
                outcome: Outcome::Enqueued,
                invocation_id: Some(done.id),
                run_id: Some(run_id),
                error: None,
            })
        }
        Err(e @ eddy_queue::Error::Redis(_)) | Err(e @ eddy_queue::Error::Closed) => Err(e),
        Err(eddy_queue::Error::Quota { which, limit }) => {
            Ok(refused(format!("quota: {}", which.describe(limit))))
        }
        Err(e) => Ok(refused(e.to_string())),
    }
}
