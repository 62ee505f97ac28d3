//! Histograms, error tallies, record facts and their per-phase aggregate,
//! sampling, and the generator's own CPU time.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// An HDR histogram of microseconds (1 µs to 1 h, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Hist {
    pub fn new() -> Result<Self> {
        Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map(Hist)
            .map_err(|e| anyhow!("creating a histogram: {e:?}"))
    }

    pub fn record(&mut self, v: u64) {
        self.0.saturating_record(v);
    }

    pub fn add(&mut self, other: &Hist) -> Result<()> {
        self.0
            .add(&other.0)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn quantile(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    pub fn max(&self) -> u64 {
        self.0.max()
    }

    /// `{count, mean, p50, p90, p99, p999, max}`, or null when empty.
    pub fn summary(&self) -> Value {
        if self.0.is_empty() {
            return Value::Null;
        }
        json!({
            "count": self.0.len(),
            "mean": (self.0.mean() * 10.0).round() / 10.0,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "p999": self.quantile(0.999),
            "max": self.max(),
        })
    }
}

/// Failed requests by code, with the first few messages.
#[derive(Debug, Default, Clone)]
pub struct Errors {
    pub total: u64,
    by_code: BTreeMap<String, u64>,
    samples: Vec<String>,
}

const ERROR_SAMPLES: usize = 5;

impl Errors {
    pub fn add(&mut self, code: &str, n: u64, message: impl FnOnce() -> String) {
        self.total += n;
        *self.by_code.entry(code.to_string()).or_default() += n;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(format!("{code}: {}", message()));
        }
    }

    pub fn merge(&mut self, other: Errors) {
        self.total += other.total;
        for (k, v) in other.by_code {
            *self.by_code.entry(k).or_default() += v;
        }
        for s in other.samples {
            if self.samples.len() < ERROR_SAMPLES {
                self.samples.push(s);
            }
        }
    }

    /// A failed request: its status and body, or the transport error.
    pub fn add_reqwest(&mut self, n: u64, e: &reqwest::Error) {
        let code = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "transport"
        };
        self.add(code, n, || format!("{e:#}"));
    }

    pub fn add_post(&mut self, n: u64, e: &super::http::PostError) {
        self.add(e.code(), n, || e.to_string());
    }

    pub fn add_status(&mut self, n: u64, status: reqwest::StatusCode, body: &[u8]) {
        let f = eddy_cli::client::ApiFailure::from_body(status, body);
        self.add(&f.code, n, || f.message.clone());
    }

    pub fn summary(&self) -> Value {
        json!({ "total": self.total, "by_code": self.by_code, "samples": self.samples })
    }
}

/// What a record (`GET /invocations/{id}`) says about one invocation.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `succeeded`, `failed`, `dead`, `queued`, `retrying`, or `missing`
    /// (404: unknown or expired).
    pub status: String,
    pub tenant: String,
    pub created_ms: u64,
    pub completed_ms: Option<u64>,
    pub attempt: u64,
    pub queue_wait_us: u64,
    pub slot_wait_us: u64,
    pub load_us: u64,
    pub instantiate_us: u64,
    pub run_us: u64,
    pub cold: bool,
    pub follow_ups: Vec<String>,
}

impl Facts {
    pub fn missing() -> Self {
        Facts {
            status: "missing".into(),
            ..Facts::default()
        }
    }

    pub fn from_record(v: &Value) -> Self {
        let u = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let t = v.get("timings").unwrap_or(&Value::Null);
        Facts {
            status: s("status"),
            tenant: s("tenant"),
            created_ms: u(v, "created_at_ms"),
            completed_ms: v.get("completed_at_ms").and_then(Value::as_u64),
            attempt: u(v, "attempt"),
            queue_wait_us: u(t, "queue_wait_us"),
            slot_wait_us: u(t, "slot_wait_us"),
            load_us: u(t, "load_us"),
            instantiate_us: u(t, "instantiate_us"),
            run_us: u(t, "run_us"),
            cold: t.get("cold").and_then(Value::as_bool).unwrap_or(false),
            follow_ups: v
                .get("follow_ups")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "dead" | "missing"
        )
    }
}

/// Per-phase percentiles over records: where an invocation's time went.
pub fn phases(facts: &[Facts]) -> Result<Value> {
    let mut queue_wait = Hist::new()?;
    let mut slot_wait = Hist::new()?;
    let mut load = Hist::new()?;
    let mut instantiate = Hist::new()?;
    let mut run = Hist::new()?;
    let mut server_ms = Hist::new()?;
    let mut statuses: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut cold, mut retried) = (0u64, 0u64);
    for f in facts {
        *statuses.entry(f.status.as_str()).or_default() += 1;
        if f.status == "missing" {
            continue;
        }
        if let Some(done) = f.completed_ms {
            server_ms.record(done.saturating_sub(f.created_ms));
            queue_wait.record(f.queue_wait_us);
            slot_wait.record(f.slot_wait_us);
            load.record(f.load_us);
            instantiate.record(f.instantiate_us);
            run.record(f.run_us);
            cold += u64::from(f.cold);
            retried += u64::from(f.attempt > 1);
        }
    }
    Ok(json!({
        "sampled": facts.len(),
        "statuses": statuses,
        "cold": cold,
        "retried": retried,
        "queue_wait_us": queue_wait.summary(),
        "slot_wait_us": slot_wait.summary(),
        "load_us": load.summary(),
        "instantiate_us": instantiate.summary(),
        "run_us": run.summary(),
        "created_to_completed_ms": server_ms.summary(),
    }))
}

/// A small PRNG (splitmix64): sampling needs no cryptography and no crate.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Rng(nanos ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Indices to read records of: `k` random ones out of `0..n` plus the last
/// `tail` (the last accepted are the likeliest last completed), sorted and
/// distinct.
pub fn sample_indices(n: usize, k: usize, tail: usize, rng: &mut Rng) -> Vec<usize> {
    if k + tail >= n {
        return (0..n).collect();
    }
    let mut picked = std::collections::BTreeSet::new();
    picked.extend(n - tail..n);
    while picked.len() < k + tail {
        picked.insert(rng.below(n as u64) as usize);
    }
    picked.into_iter().collect()
}

/// Clock ticks per second of `/proc/<pid>/stat`: USER_HZ, 100 on every
/// Linux ABI (the kernel's CONFIG_HZ does not change it; `getconf CLK_TCK`).
const USER_HZ: f64 = 100.0;

/// CPU ticks (user + system, every thread) a process has used so far, from
/// fields 14 and 15 of `/proc/<pid>/stat`.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last `)`, at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time this process has used so far, in seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_ticks("self").map(|t| t as f64 / USER_HZ)
}

/// The processes whose CPU time a scenario reports (`--watch-pid
/// gateway=123`), plus the generator itself as `client`.
#[derive(Debug, Clone, Default)]
pub struct CpuWatch {
    pids: Vec<(String, u32)>,
}

/// CPU ticks of every watched process at one moment.
#[derive(Debug, Clone)]
pub struct CpuMark(Vec<(String, Option<u64>)>);

impl CpuWatch {
    pub fn new(pids: Vec<(String, u32)>) -> Self {
        CpuWatch { pids }
    }

    pub fn mark(&self) -> CpuMark {
        let mut v: Vec<(String, Option<u64>)> = self
            .pids
            .iter()
            .map(|(name, pid)| (name.clone(), cpu_ticks(&pid.to_string())))
            .collect();
        v.push(("client".into(), cpu_ticks("self")));
        CpuMark(v)
    }

    /// Seconds per process between two marks, their sum without the client
    /// (`server_total`), and microseconds per invocation.
    pub fn between(&self, a: &CpuMark, b: &CpuMark, phase: &str, invocations: u64) -> Value {
        let mut seconds = serde_json::Map::new();
        let mut per_inv = serde_json::Map::new();
        let mut server = 0.0;
        for ((name, before), (_, after)) in a.0.iter().zip(&b.0) {
            let secs = match (before, after) {
                (Some(x), Some(y)) => Some(y.saturating_sub(*x) as f64 / USER_HZ),
                _ => None,
            };
            if name != "client" {
                server += secs.unwrap_or(0.0);
            }
            seconds.insert(name.clone(), json!(secs.map(r3)));
            per_inv.insert(name.clone(), json!(secs.map(|s| us_per(s, invocations))));
        }
        if !self.pids.is_empty() {
            seconds.insert("server_total".into(), json!(r3(server)));
            per_inv.insert("server_total".into(), json!(us_per(server, invocations)));
        }
        json!({
            "phase": phase,
            "invocations": invocations,
            "seconds": seconds,
            "us_per_invocation": per_inv,
            "method": "utime+stime of /proc/<pid>/stat at the start and the end of the phase, \
                       ticks / 100 (USER_HZ)",
        })
    }
}

fn us_per(seconds: f64, invocations: u64) -> Option<f64> {
    (invocations > 0).then(|| (seconds * 1e6 / invocations as f64 * 10.0).round() / 10.0)
}

/// Wall-clock milliseconds since the epoch (records use the same clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Rounds to 3 decimals for the JSON summary.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_summarise_microseconds() {
        let mut h = Hist::new().unwrap();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s["count"], 1000);
        assert_eq!(s["p50"], 500);
        assert_eq!(s["max"], 1000);
        let mut other = Hist::new().unwrap();
        other.record(5_000_000);
        h.add(&other).unwrap();
        assert!(h.max() >= 4_990_000);
        assert_eq!(Hist::new().unwrap().summary(), Value::Null);
    }

    #[test]
    fn samples_include_the_tail_and_are_distinct() {
        let mut rng = Rng(7);
        let s = sample_indices(10_000, 100, 20, &mut rng);
        assert_eq!(s.len(), 120);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!((9_980..10_000).all(|i| s.contains(&i)));
        assert_eq!(sample_indices(50, 100, 20, &mut rng).len(), 50);
    }

    #[test]
    fn records_become_facts_and_phases() {
        let rec = json!({
            "id": "a", "tenant": "t", "status": "succeeded", "attempt": 1,
            "created_at_ms": 1000, "completed_at_ms": 1004,
            "timings": {"queue_wait_us": 3000, "load_us": 0, "instantiate_us": 20,
                        "run_us": 15, "cold": false, "epoch_ticks": 0},
            "follow_ups": ["b", "c"]
        });
        let f = Facts::from_record(&rec);
        assert!(f.is_final());
        assert_eq!(f.follow_ups, vec!["b", "c"]);
        let p = phases(&[f, Facts::missing()]).unwrap();
        assert_eq!(p["statuses"]["missing"], 1);
        // HDR: the highest value equivalent to 3000 at 3 significant digits.
        let q = p["queue_wait_us"]["p50"].as_u64().unwrap();
        assert!((3000..=3003).contains(&q), "{q}");
        assert_eq!(p["created_to_completed_ms"]["max"], 4);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(own_cpu_seconds().is_some());
        let watch = CpuWatch::new(vec![
            ("me".into(), std::process::id()),
            ("gone".into(), u32::MAX),
        ]);
        let a = watch.mark();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let b = watch.mark();
        let v = watch.between(&a, &b, "test", 1000);
        assert!(v["seconds"]["me"].as_f64().is_some(), "{v}");
        assert!(v["seconds"]["gone"].is_null(), "{v}");
        assert!(v["us_per_invocation"]["client"].as_f64().is_some(), "{v}");
    }
}
