//! The pure core of the controller: from what it measured to warm
//! concurrency per function, assignments per worker and worker replicas.
//! No I/O here, so every rule is tested directly.

use std::collections::{BTreeMap, HashMap};

use eddy_protocol::control::Assignment;

/// What the controller knows about one (tenant, function).
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub stream: String,
    pub tenant: String,
    pub lag: u64,
    pub pending: u64,
    /// Arrivals per second.
    pub arrival_rate: f64,
    /// Mean service time, seconds.
    pub service_s: f64,
    /// Ms since the last arrival or completion.
    pub idle_ms: u64,
    pub max_concurrency: u32,
    pub idle_timeout_ms: u64,
}

/// Warm concurrency for one function, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub stream: String,
    pub tenant: String,
    pub concurrency: u32,
    pub reason: String,
}

/// Enough concurrency to serve arrivals (Little's law: λ·S) and to drain the
/// backlog within `target_age_s`, at least 1 while the function is warm,
/// at most its `max_concurrency`; 0 once idle past its idle timeout.
///
/// Work-conserving: queued work never waits for capacity that is there, so
/// with a backlog the concurrency is at least min(backlog, `burst`), the
/// slots of one worker.
pub fn concurrency(i: &Input, target_age_s: f64, burst: u32) -> (u32, String) {
    let backlog = i.lag + i.pending;
    if backlog == 0 && i.idle_ms >= i.idle_timeout_ms {
        return (
            0,
            format!(
                "idle {} ms ≥ idle timeout {} ms: scaled to zero",
                i.idle_ms, i.idle_timeout_ms
            ),
        );
    }
    // Below a millisecond the platform's own round trips dominate what a
    // slot can do, whatever the guest's own time.
    let service = i.service_s.max(0.001);
    let steady = i.arrival_rate * service;
    let drain = backlog as f64 * service / target_age_s.max(0.001);
    let want = (steady + drain)
        .ceil()
        .max(1.0)
        .max((backlog as f64).min(f64::from(burst)));
    let max = i.max_concurrency.max(1);
    let c = (want.min(f64::from(max))) as u32;
    let reason = if want > f64::from(max) {
        format!("capped at max_concurrency {max} (wanted {want:.0})")
    } else if backlog == 0 {
        "warm: recent activity, no backlog".to_string()
    } else {
        format!("λ·S {steady:.2} + backlog {backlog}·S/target {drain:.2}")
    };
    (c, reason)
}

/// Decides every function, then enforces each tenant's concurrency cap by
/// scaling its functions down proportionally (each warm one keeps ≥ 1).
pub fn decide(
    inputs: &[Input],
    tenant_caps: &HashMap<String, u32>,
    target_age_s: f64,
    burst: u32,
) -> Vec<Decision> {
    let mut out: Vec<Decision> = inputs
        .iter()
        .map(|i| {
            let (concurrency, reason) = concurrency(i, target_age_s, burst);
            Decision {
                stream: i.stream.clone(),
                tenant: i.tenant.clone(),
                concurrency,
                reason,
            }
        })
        .collect();
    let mut per_tenant: HashMap<&str, u32> = HashMap::new();
    for d in &out {
        *per_tenant.entry(d.tenant.as_str()).or_default() += d.concurrency;
    }
    let over: HashMap<String, (u32, u32)> = per_tenant
        .iter()
        .filter_map(|(t, sum)| {
            let cap = *tenant_caps.get(*t)?;
            (cap > 0 && *sum > cap).then(|| (t.to_string(), (*sum, cap)))
        })
        .collect();
    for d in &mut out {
        if let Some((sum, cap)) = over.get(&d.tenant)
            && d.concurrency > 0
        {
            let scaled =
                ((u64::from(d.concurrency) * u64::from(*cap)) / u64::from(*sum)).max(1) as u32;
            d.reason = format!("{}; tenant cap {cap} (tenant wanted {sum})", d.reason);
            d.concurrency = scaled;
        }
    }
    out
}

/// Spreads each function's concurrency over the live workers: over as many
/// workers as it has units (so one worker dying loses a share, not all),
/// preferring workers that already hold it (their artifact is loaded), then
/// the least loaded. Deterministic for the same inputs.
pub fn assign(
    decisions: &[Decision],
    workers: &[String],
    previous: &HashMap<String, Assignment>,
) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = workers
        .iter()
        .map(|w| (w.clone(), Assignment::new()))
        .collect();
    if workers.is_empty() {
        return out;
    }
    let mut load: BTreeMap<&str, u32> = workers.iter().map(|w| (w.as_str(), 0)).collect();
    let mut sorted: Vec<&Decision> = decisions.iter().filter(|d| d.concurrency > 0).collect();
    sorted.sort_by(|a, b| {
        b.concurrency
            .cmp(&a.concurrency)
            .then(a.stream.cmp(&b.stream))
    });
    for d in sorted {
        let k = (d.concurrency as usize).min(workers.len());
        let mut candidates: Vec<&str> = workers.iter().map(String::as_str).collect();
        candidates.sort_by_key(|w| {
            let had = previous.get(*w).is_some_and(|a| a.contains_key(&d.stream));
            (!had, load.get(w).copied().unwrap_or(0), w.to_string())
        });
        let chosen = &candidates[..k];
        let base = d.concurrency / k as u32;
        let extra = d.concurrency % k as u32;
        for (n, w) in chosen.iter().enumerate() {
            let share = base + u32::from((n as u32) < extra);
            if let Some(a) = out.get_mut(*w) {
                a.insert(d.stream.clone(), share);
            }
            *load.entry(w).or_default() += share;
        }
    }
    out
}

/// Worker processes needed for `total` warm concurrency at `per_worker` each.
pub fn replicas(total: u32, per_worker: u32, min: u32, max: u32) -> u32 {
    let need = total.div_ceil(per_worker.max(1));
    need.clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        stream: &str,
        tenant: &str,
        lag: u64,
        rate: f64,
        service_ms: f64,
        idle_ms: u64,
    ) -> Input {
        Input {
            stream: stream.into(),
            tenant: tenant.into(),
            lag,
            pending: 0,
            arrival_rate: rate,
            service_s: service_ms / 1000.0,
            idle_ms,
            max_concurrency: 100,
            idle_timeout_ms: 60_000,
        }
    }

    #[test]
    fn concurrency_follows_littles_law_and_the_backlog() {
        let c = |i: Input| concurrency(&i, 0.5, 1).0;
        // Idle past the timeout, nothing queued: zero.
        assert_eq!(c(input("s", "t", 0, 0.0, 10.0, 60_000)), 0);
        // Recently active, nothing queued: stays warm at 1.
        assert_eq!(c(input("s", "t", 0, 0.0, 10.0, 1_000)), 1);
        // A backlog keeps it warm even past the idle timeout.
        assert_eq!(c(input("s", "t", 1, 0.0, 10.0, 90_000)), 1);
        // 1000/s at 10 ms each: 10 busy; + 500 queued · 10 ms / 0.5 s = 10.
        assert_eq!(c(input("s", "t", 500, 1000.0, 10.0, 0)), 20);
        // Capped at max_concurrency.
        assert_eq!(c(input("s", "t", 1_000_000, 0.0, 10.0, 0)), 100);
        // Work-conserving: a small backlog of a fast function still gets the
        // slots of a worker.
        assert_eq!(
            concurrency(&input("s", "t", 50, 0.0, 0.01, 0), 0.5, 16).0,
            16
        );
        assert_eq!(concurrency(&input("s", "t", 3, 0.0, 0.01, 0), 0.5, 16).0, 3);
    }

    #[test]
    fn tenant_caps_scale_their_functions_down_and_spare_others() {
        let inputs = vec![
            input("a1", "a", 1_000_000, 0.0, 10.0, 0),
            input("a2", "a", 1_000_000, 0.0, 10.0, 0),
            input("b1", "b", 1_000_000, 0.0, 10.0, 0),
        ];
        let caps = HashMap::from([("a".to_string(), 20)]);
        let d = decide(&inputs, &caps, 0.5, 16);
        let c: Vec<u32> = d.iter().map(|d| d.concurrency).collect();
        assert_eq!(c, vec![10, 10, 100]);
        assert!(
            d[0].reason.ends_with("tenant cap 20 (tenant wanted 200)"),
            "{}",
            d[0].reason
        );
    }

    #[test]
    fn assignments_spread_stick_and_balance() {
        let d = |s: &str, c: u32| Decision {
            stream: s.into(),
            tenant: "t".into(),
            concurrency: c,
            reason: String::new(),
        };
        let workers = vec!["w1".to_string(), "w2".to_string(), "w3".to_string()];
        let a = assign(
            &[d("big", 7), d("small", 1), d("off", 0)],
            &workers,
            &HashMap::new(),
        );
        let total: u32 = a.values().filter_map(|x| x.get("big")).sum();
        assert_eq!(total, 7);
        assert_eq!(a.values().filter(|x| x.contains_key("big")).count(), 3);
        assert_eq!(a.values().filter(|x| x.contains_key("small")).count(), 1);
        assert!(a.values().all(|x| !x.contains_key("off")));
        // Sticky: the worker that had `small` keeps it.
        let prev = HashMap::from([(
            "w3".to_string(),
            Assignment::from([("small".to_string(), 1)]),
        )]);
        let a = assign(&[d("small", 1)], &workers, &prev);
        assert_eq!(a["w3"].get("small"), Some(&1));
        // A dead worker's share moves: fewer workers, same total.
        let a = assign(&[d("big", 7)], &workers[..2], &HashMap::new());
        assert_eq!(a.values().filter_map(|x| x.get("big")).sum::<u32>(), 7);
    }

    #[test]
    fn replicas_cover_the_total_within_bounds() {
        assert_eq!(replicas(0, 16, 1, 10), 1);
        assert_eq!(replicas(33, 16, 1, 10), 3);
        assert_eq!(replicas(1000, 16, 1, 10), 10);
        assert_eq!(replicas(0, 16, 0, 10), 0);
    }
}
