//! The scenarios that wait on each answer: `run` (one fanout run, polled to
//! its end), `latency` (sync invocations) and `cold` (first invocations).

use super::*;

/// 1 + B + B² + … + B^D.
pub fn run_size(branch: u32, depth: u32) -> u64 {
    let mut total = 0u64;
    let mut level = 1u64;
    for _ in 0..=depth {
        total = total.saturating_add(level);
        level = level.saturating_mul(u64::from(branch));
    }
    total
}

/// `run`: one root invocation of `fanout`; the run record is polled until
/// it is no longer `running`.
pub async fn run(gw: &Gateway, s: &Settings) -> Result<Value> {
    let expected = run_size(s.branch, s.depth);
    let body = s.payload.body(0);
    let req = gw
        .request(Method::POST, &format!("/invoke/{}", segment(&s.function)))?
        .header(CONTENT_TYPE, "application/json")
        .header("prefer", "respond-async")
        .body(body);
    let cpu0 = s.cpu.mark();
    let started = Instant::now();
    let started_ms = now_ms();
    let answer = gw.send(req).await?.bytes().await?;
    let accept_us = started.elapsed().as_micros() as u64;
    let answer: Value = serde_json::from_slice(&answer).context("the 202 answer is not JSON")?;
    let field = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(root), Some(run_id)) = (field("id"), field("run_id")) else {
        bail!("the invoke answer has no id/run_id: {answer}");
    };
    let progress = bar(expected, "run", s.quiet);
    let path = format!("/runs/{}", segment(&run_id));
    let deadline = started + s.timeout;
    let mut polls = 0u64;
    let (record, ended) = loop {
        let rec = gw.get_json(&path).await?;
        polls += 1;
        let ended = Instant::now();
        if let Some(r) = &rec {
            let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
            progress.set_length(n("total").max(expected));
            progress.set_position(n("total").saturating_sub(n("outstanding")));
            if r.get("status").and_then(Value::as_str) != Some("running") {
                break (rec, Some(ended));
            }
        }
        if ended >= deadline {
            break (rec, None);
        }
        tokio::time::sleep(s.poll).await;
    };
    let cpu1 = s.cpu.mark();
    progress.finish_and_clear();
    let record = record.unwrap_or(Value::Null);
    let n = |k: &str| record.get(k).and_then(Value::as_u64);
    let total = n("total").unwrap_or(0);
    let cpu = s
        .cpu
        .between(&cpu0, &cpu1, "root request → run seen ended", total);
    let client_s = ended.map(|t| t.duration_since(started).as_secs_f64());
    let server_s = match (n("created_at_ms"), n("completed_at_ms")) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e3),
        _ => None,
    };
    let mut problems = Vec::new();
    let status = record
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    if ended.is_none() {
        problems.push(format!(
            "the run was still `{status}` after {} s",
            s.timeout.as_secs()
        ));
    } else if status != "succeeded" {
        problems.push(format!("the run ended `{status}`"));
    }
    if total != expected {
        problems.push(format!(
            "the run has {total} invocations, expected {expected}"
        ));
    }
    // Timings: breadth-first from the root through `follow_ups`.
    let facts = sample_tree(gw, s, root.clone()).await;
    record_problems(&facts, &mut problems);
    let per_sec = client_s.filter(|x| *x > 0.0).map(|x| total as f64 / x);
    Ok(json!({
        "branch": s.branch,
        "depth": s.depth,
        "expected_invocations": expected,
        "root": root,
        "run_id": run_id,
        "accept_us": accept_us,
        "run": record,
        "polls": polls,
        "started_at_ms": started_ms,
        "client_s": client_s.map(r3),
        "server_s": server_s.map(r3),
        "per_sec": per_sec.map(r3),
        "records": phases(&facts)?,
        "cpu": cpu,
        "headline": {
            "invocations": total,
            "wall_s": client_s.map(r3),
            "throughput_per_sec": per_sec.map(r3),
            "latency_us": Value::Null,
            "latency_kind": "none (one run)",
        },
        "problems": problems,
    }))
}

/// Up to `s.sample` records of a run, level by level from the root.
async fn sample_tree(gw: &Gateway, s: &Settings, root: String) -> Vec<Facts> {
    let deadline = Instant::now() + Duration::from_secs(30).min(s.timeout);
    let mut frontier = vec![root];
    let mut all = Vec::new();
    let mut rng = Rng::seeded();
    while !frontier.is_empty() && all.len() < s.sample {
        let room = s.sample - all.len();
        if frontier.len() > room {
            // A random part of the last level read.
            for i in 0..room {
                let j = i + rng.below((frontier.len() - i) as u64) as usize;
                frontier.swap(i, j);
            }
            frontier.truncate(room);
        }
        let level = records(
            gw,
            std::mem::take(&mut frontier),
            s.concurrency.clamp(4, 32),
            deadline,
            true,
        )
        .await;
        for f in &level {
            frontier.extend(f.follow_ups.iter().cloned());
        }
        all.extend(level);
    }
    all
}

// ------------------------------------------------------------ latency

/// One sync invocation: (latency µs, id) or the error.
async fn sync_invoke(
    poster: &mut Poster,
    url: &Url,
    headers: &HeaderMap,
    body: Bytes,
    errors: &mut Errors,
) -> Option<(u64, u128)> {
    let t = Instant::now();
    match poster.post(url, headers, body).await {
        Ok((status, headers, body)) => {
            let us = t.elapsed().as_micros() as u64;
            let id = invocation_id(&headers);
            match status {
                reqwest::StatusCode::OK => match id {
                    Some(id) => Some((us, id)),
                    None => {
                        errors.add("no_id", 1, || "200 without X-Eddy-Invocation-Id".into());
                        None
                    }
                },
                reqwest::StatusCode::ACCEPTED => {
                    errors.add("sync_timeout", 1, || {
                        "202: not finished within the gateway's sync timeout".into()
                    });
                    None
                }
                _ => {
                    errors.add_status(1, status, &body);
                    None
                }
            }
        }
        Err(e) => {
            errors.add_post(1, &e);
            None
        }
    }
}

/// `latency`: sync invocations, `concurrency` at a time (1: one after the
/// other), after a warm-up.
pub async fn latency(gw: &Gateway, s: &Settings) -> Result<Value> {
    let url = gw.url(&format!("/invoke/{}", segment(&s.function)))?;
    let headers = gw.headers(&[("content-type", "application/json")]);
    let mut warm_errors = Errors::default();
    // One poster (connection) per worker, warmed in turn.
    let mut posters: Vec<Poster> = (0..s.concurrency.max(1)).map(|_| gw.poster()).collect();
    let n_posters = posters.len();
    for i in 0..s.warmup {
        sync_invoke(
            &mut posters[i as usize % n_posters],
            &url,
            &headers,
            s.payload.body(i),
            &mut warm_errors,
        )
        .await;
    }
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let progress = bar(s.count, "latency", s.quiet);
    let ticker = follow(&progress, &done);
    let cpu0 = s.cpu.mark();
    let started = Instant::now();
    let started_ms = now_ms();
    let mut workers = tokio::task::JoinSet::new();
    for mut poster in posters {
        let (url, headers) = (url.clone(), headers.clone());
        let (next, done, payload, count) = (next.clone(), done.clone(), s.payload.clone(), s.count);
        workers.spawn(async move {
            let mut hist = Hist::new()?;
            let mut errors = Errors::default();
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if let Some((us, id)) =
                    sync_invoke(&mut poster, &url, &headers, payload.body(i), &mut errors).await
                {
                    hist.record(us);
                    ids.push(id);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok((hist, errors, ids))
        });
    }
    let mut hist = Hist::new()?;
    let mut errors = Errors::default();
    let mut ids = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let (h, e, i) = joined.context("a latency worker died")??;
        hist.add(&h)?;
        errors.merge(e);
        ids.extend(i);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu = s
        .cpu
        .between(&cpu0, &s.cpu.mark(), "measured invocations", hist.len());
    ticker.abort();
    progress.finish_and_clear();
    let mut rng = Rng::seeded();
    let picked = sample_indices(ids.len(), s.sample, 0, &mut rng);
    let sample: Vec<String> = picked.iter().map(|k| id_string(ids[*k])).collect();
    let deadline = Instant::now() + Duration::from_secs(30).min(s.timeout);
    let facts = records(gw, sample, 8, deadline, s.quiet).await;
    let mut problems = Vec::new();
    if errors.total > 0 {
        problems.push(format!("{} invocation(s) failed", errors.total));
    }
    record_problems(&facts, &mut problems);
    let ok = hist.len();
    let per_sec = (wall_s > 0.0).then(|| ok as f64 / wall_s);
    Ok(json!({
        "warmup": s.warmup,
        "warmup_errors": warm_errors.total,
        "succeeded": ok,
        "errors": errors.summary(),
        "started_at_ms": started_ms,
        "wall_s": r3(wall_s),
        "per_sec": per_sec.map(r3),
        "latency_us": hist.summary(),
        "records": phases(&facts)?,
        "cpu": cpu,
        "headline": {
            "invocations": ok,
            "wall_s": r3(wall_s),
            "throughput_per_sec": per_sec.map(r3),
            "latency_us": hist.summary(),
            "latency_kind": "sync invoke (client)",
        },
        "problems": problems,
    }))
}

// ------------------------------------------------------------ cold

/// A short tag that keeps fresh names of different runs apart.
fn name_tag() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = now_ms() % 36u64.pow(6);
    let mut tag = Vec::new();
    for _ in 0..6 {
        tag.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    tag.reverse();
    String::from_utf8_lossy(&tag).into_owned()
}

/// `cold`: per trial, a function that has never run (a fresh name for the
/// same module), or with `--fresh-names false` the same function after
/// `--idle-ms`; then one sync invocation.
pub async fn cold(gw: &Gateway, s: &Settings) -> Result<Value> {
    let module = match s.fresh_names {
        true => Some(Bytes::from(std::fs::read(&s.module).with_context(
            || {
                format!(
                    "reading {} (the module deployed per trial; --module)",
                    s.module.display()
                )
            },
        )?)),
        false => None,
    };
    let headers = gw.headers(&[("content-type", "application/json")]);
    let mut poster = gw.poster();
    let tag = name_tag();
    let progress = bar(s.count, "cold", s.quiet);
    let cpu0 = s.cpu.mark();
    let started = Instant::now();
    let started_ms = now_ms();
    let mut hist = Hist::new()?;
    let mut deploy = Hist::new()?;
    let mut errors = Errors::default();
    let mut trials = Vec::new();
    let mut facts = Vec::new();
    let mut deployed = Vec::new();
    for trial in 0..s.count {
        let name = match &module {
            Some(_) => format!("cold-{tag}-{trial}"),
            None => s.function.clone(),
        };
        if let Some(m) = &module {
            let t = Instant::now();
            gw.deploy(&name, m.clone())
                .await
                .with_context(|| format!("deploying {name}"))?;
            deploy.record(t.elapsed().as_micros() as u64);
            deployed.push(name.clone());
        }
        if !s.idle.is_zero() {
            tokio::time::sleep(s.idle).await;
        }
        let url = gw.url(&format!("/invoke/{}", segment(&name)))?;
        let got = sync_invoke(
            &mut poster,
            &url,
            &headers,
            s.payload.body(trial),
            &mut errors,
        )
        .await;
        if let Some((us, id)) = got {
            hist.record(us);
            let deadline = Instant::now() + Duration::from_secs(10);
            let f = final_record(gw, &id_string(id), deadline).await;
            trials.push(json!({
                "trial": trial, "function": name, "latency_us": us,
                "queue_wait_us": f.queue_wait_us, "slot_wait_us": f.slot_wait_us,
                "load_us": f.load_us,
                "instantiate_us": f.instantiate_us, "run_us": f.run_us, "cold": f.cold,
            }));
            facts.push(f);
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let wall_s = started.elapsed().as_secs_f64();
    let cpu = s.cpu.between(
        &cpu0,
        &s.cpu.mark(),
        "every trial: deploy, idle, invoke, read its record",
        hist.len(),
    );
    let mut cleanup_errors = 0;
    if !s.keep {
        for name in &deployed {
            if gw.delete(name).await.is_err() {
                cleanup_errors += 1;
            }
        }
    }
    let mut problems = Vec::new();
    if errors.total > 0 {
        problems.push(format!("{} trial(s) failed", errors.total));
    }
    record_problems(&facts, &mut problems);
    let not_cold = facts.iter().filter(|f| !f.cold).count();
    // A warm trial after --idle-ms is a finding (nothing scaled to zero);
    // a warm never-run function would be a bug.
    if not_cold > 0 && module.is_some() {
        problems.push(format!(
            "{not_cold} trial(s) were not cold (the record says cold=false)"
        ));
    }
    let per_sec = (wall_s > 0.0).then(|| hist.len() as f64 / wall_s);
    Ok(json!({
        "warm_trials": not_cold,
        "mode": if module.is_some() { "fresh names (never-run function per trial)" } else { "same function after --idle-ms" },
        "idle_ms": s.idle.as_millis() as u64,
        "module": module.as_ref().map(|_| s.module.display().to_string()),
        "trials": trials,
        "errors": errors.summary(),
        "started_at_ms": started_ms,
        "wall_s": r3(wall_s),
        "deploy_us": deploy.summary(),
        "latency_us": hist.summary(),
        "records": phases(&facts)?,
        "cpu": cpu,
        "cleanup": { "deleted": deployed.len() - cleanup_errors, "failed": cleanup_errors, "kept": s.keep },
        "headline": {
            "invocations": hist.len(),
            "wall_s": r3(wall_s),
            "throughput_per_sec": per_sec.map(r3),
            "latency_us": hist.summary(),
            "latency_kind": "sync invoke of a cold function (client)",
        },
        "problems": problems,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_sizes() {
        assert_eq!(run_size(4, 6), 5461);
        assert_eq!(run_size(4, 5), 1365);
        assert_eq!(run_size(0, 3), 1);
        assert_eq!(run_size(2, 0), 1);
    }

    #[test]
    fn name_tags_are_valid_name_parts() {
        let t = name_tag();
        assert_eq!(t.len(), 6);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
}
