//! The readable form of a bench summary (the JSON form is the summary
//! itself).

use std::fmt::Write as _;

use serde_json::Value;

fn us(v: u64) -> String {
    match v {
        0..1_000 => format!("{v} µs"),
        1_000..1_000_000 => format!("{:.2} ms", v as f64 / 1e3),
        _ => format!("{:.2} s", v as f64 / 1e6),
    }
}

fn ms(v: u64) -> String {
    us(v.saturating_mul(1000))
}

fn num(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 && f >= 100.0 => format!("{f:.0}"),
            Some(f) if f.fract() != 0.0 => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".into(),
    }
}

fn row(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {label:<22} {value}");
}

/// `p50 … p90 … p99 … p99.9 … max …` of a histogram summary.
fn hist_row(out: &mut String, label: &str, h: Option<&Value>, unit: fn(u64) -> String) {
    let Some(h) = h.filter(|h| h.is_object()) else {
        return;
    };
    let q = |k: &str| h.get(k).and_then(Value::as_u64).map_or("-".into(), unit);
    row(
        out,
        label,
        format!(
            "p50 {:>9}  p90 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  (n={})",
            q("p50"),
            q("p90"),
            q("p99"),
            q("p999"),
            q("max"),
            num(h.get("count"))
        ),
    );
}

/// The summary as lines and percentile rows.
pub fn text(v: &Value) -> String {
    let mut out = String::new();
    let get = |path: &[&str]| {
        let mut cur = v;
        for k in path {
            cur = cur.get(*k)?;
        }
        Some(cur)
    };
    let scenario = get(&["scenario"]).and_then(Value::as_str).unwrap_or("?");
    let _ = writeln!(
        out,
        "eddy bench {scenario}: `{}`, count {}, {} in flight, {}",
        num(get(&["function"])),
        num(get(&["count"])),
        num(get(&["concurrency"])),
        num(get(&["transport"])),
    );
    match scenario {
        "throughput" | "bulk" => {
            row(
                &mut out,
                "mode",
                format!(
                    "{} (batch size {}), payload {} bytes",
                    num(get(&["mode"])),
                    num(get(&["batch_size"])),
                    num(get(&["payload_bytes"]))
                ),
            );
            row(
                &mut out,
                "accepted",
                format!(
                    "{} (refused {})",
                    num(get(&["accepted"])),
                    num(get(&["errors", "total"]))
                ),
            );
            row(
                &mut out,
                "accept",
                format!(
                    "{} s, {}/s",
                    num(get(&["accept", "seconds"])),
                    num(get(&["accept", "per_sec"]))
                ),
            );
            hist_row(
                &mut out,
                "request latency",
                get(&["accept", "request_latency_us"]),
                us,
            );
            row(
                &mut out,
                "end to end",
                format!(
                    "{} s, {}/s (backlog seen empty at {} s)",
                    num(get(&["completion", "end_to_end_s"])),
                    num(get(&["completion", "per_sec"])),
                    num(get(&["completion", "drain_observed_s"]))
                ),
            );
            row(
                &mut out,
                "tenant pending after",
                num(get(&["tenant_pending_after"])),
            );
        }
        "run" => {
            row(
                &mut out,
                "run",
                format!(
                    "{} invocations (expected {}), {}",
                    num(get(&["run", "total"])),
                    num(get(&["expected_invocations"])),
                    num(get(&["run", "status"]))
                ),
            );
            row(
                &mut out,
                "client time",
                format!(
                    "{} s, {} invocations/s ({} polls)",
                    num(get(&["client_s"])),
                    num(get(&["per_sec"])),
                    num(get(&["polls"]))
                ),
            );
            row(
                &mut out,
                "server time",
                format!("{} s (run created → completed)", num(get(&["server_s"]))),
            );
        }
        "latency" => {
            row(
                &mut out,
                "succeeded",
                format!(
                    "{} in {} s, {}/s (warm-up {})",
                    num(get(&["succeeded"])),
                    num(get(&["wall_s"])),
                    num(get(&["per_sec"])),
                    num(get(&["warmup"]))
                ),
            );
            hist_row(&mut out, "latency", get(&["latency_us"]), us);
        }
        "cold" => {
            row(
                &mut out,
                "mode",
                format!(
                    "{}, idle {} ms",
                    num(get(&["mode"])),
                    num(get(&["idle_ms"]))
                ),
            );
            hist_row(&mut out, "deploy", get(&["deploy_us"]), us);
            hist_row(&mut out, "latency", get(&["latency_us"]), us);
        }
        _ => {}
    }
    if let Some(r) = get(&["records"]) {
        let statuses = r
            .get("statuses")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  records read: {} ({statuses}); cold {}, retried {}",
            num(r.get("sampled")),
            num(r.get("cold")),
            num(r.get("retried"))
        );
        hist_row(&mut out, "  queue wait", r.get("queue_wait_us"), us);
        hist_row(&mut out, "  execution slot wait", r.get("slot_wait_us"), us);
        hist_row(&mut out, "  load (cold start)", r.get("load_us"), us);
        hist_row(&mut out, "  instantiate", r.get("instantiate_us"), us);
        hist_row(&mut out, "  run", r.get("run_us"), us);
        hist_row(
            &mut out,
            "  created → completed",
            r.get("created_to_completed_ms"),
            ms,
        );
    }
    if let Some(e) = get(&["errors"]).filter(|e| e.get("total").and_then(Value::as_u64) > Some(0)) {
        row(
            &mut out,
            "errors",
            e.get("by_code").map(Value::to_string).unwrap_or_default(),
        );
        for s in e
            .get("samples")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            row(&mut out, "", s.as_str().unwrap_or_default());
        }
    }
    if let Some(per) = get(&["cpu", "us_per_invocation"]).and_then(Value::as_object) {
        let parts: Vec<String> = per
            .iter()
            .map(|(k, v)| format!("{k} {}", num(Some(v))))
            .collect();
        row(&mut out, "CPU µs / invocation", parts.join(", "));
    }
    row(
        &mut out,
        "client CPU",
        format!(
            "{} s ({} threads)",
            num(get(&["client_cpu_s"])),
            num(get(&["client_threads"]))
        ),
    );
    let problems: Vec<&Value> = get(&["problems"])
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if problems.is_empty() {
        row(&mut out, "problems", "none");
    } else {
        for p in problems {
            row(&mut out, "PROBLEM", p.as_str().unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units_scale() {
        assert_eq!(us(850), "850 µs");
        assert_eq!(us(1_500), "1.50 ms");
        assert_eq!(us(2_500_000), "2.50 s");
    }

    #[test]
    fn a_latency_summary_reads_well() {
        let v = json!({
            "scenario": "latency", "function": "wordcount", "count": 10,
            "concurrency": 1, "transport": "http1.1", "succeeded": 10,
            "wall_s": 0.05, "per_sec": 200.0, "warmup": 2,
            "latency_us": {"count": 10, "p50": 400, "p90": 500, "p99": 900, "p999": 900, "max": 900},
            "records": {"sampled": 10, "statuses": {"succeeded": 10}, "cold": 0, "retried": 0,
                        "run_us": {"count": 10, "p50": 12, "p90": 13, "p99": 20, "p999": 20, "max": 20}},
            "problems": [],
        });
        let t = text(&v);
        assert!(t.contains("p50    400 µs"), "{t}");
        assert!(t.contains("records read: 10 (succeeded 10)"), "{t}");
        assert!(t.contains("problems               none"), "{t}");
    }
}
