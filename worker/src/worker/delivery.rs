//! One delivery from dispatch to completion: hold it, run it (traced),
//! complete it or give it back.

use super::*;

impl Worker {
    /// Hands a delivery that will not be started back to the group.
    pub(super) async fn give_back(&self, d: &Delivery) {
        if let Err(error) = self.queue.release(d).await {
            warn!(%error, entry = %d.entry_id, "release failed; the entry will be reclaimed after its lease");
        }
        self.slots.let_go(d);
    }

    /// Runs one delivery to its completion, in the invocation's span (a
    /// child of the step that enqueued it).
    ///
    /// `share` is the delivery's place in its stream (see [`Share`]), given
    /// back as soon as the guest has run; the worker's concurrency slot is
    /// held until the completion is written.
    pub(super) async fn handle(&self, d: Delivery, share: Share) {
        let env = &d.envelope;
        let span = tracing::info_span!(
            target: trace::TARGET,
            "invocation",
            otel.name = %format_args!("invoke {}", env.function),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
            eddy.tenant = %env.tenant,
            eddy.function = %env.function,
            eddy.version = env.version.unwrap_or(0),
            eddy.invocation_id = %env.id,
            eddy.run_id = %env.run_id,
            eddy.parent_id = env.parent_id.as_deref().unwrap_or(""),
            eddy.depth = env.depth,
            eddy.attempt = env.attempt,
            eddy.delivery = d.deliveries,
            eddy.worker = %self.consumer,
            eddy.queue_wait_ms = tracing::field::Empty,
            eddy.cold_start = tracing::field::Empty,
            eddy.cold_start_ms = tracing::field::Empty,
            eddy.outcome = tracing::field::Empty,
        );
        trace::set_parent(&span, env.traceparent.as_deref());
        let traceparent = trace::traceparent(&span);
        if traceparent.is_some() {
            let dequeued = std::time::SystemTime::now();
            let waited = eddy_protocol::now_ms().saturating_sub(env.enqueued_at_ms);
            span.record("eddy.queue_wait_ms", waited);
            crate::telemetry::queue_wait(&span, env.enqueued_at_ms, dequeued);
        }
        self.handle_traced(&d, traceparent, share)
            .instrument(span)
            .await;
        self.slots.let_go(&d);
    }

    pub(super) async fn handle_traced(
        &self,
        d: &Delivery,
        traceparent: Option<String>,
        share: Share,
    ) {
        let completion = if d.deliveries > self.config.max_deliveries {
            Some(process::failed(
                process::final_error(
                    eddy_protocol::ErrorClass::Crashed,
                    format!(
                        "delivered {} times without completing: the worker running it crashed or stalled each time",
                        d.deliveries - 1
                    ),
                ),
                true,
                &self.consumer,
            ))
        } else {
            self.execute(d, traceparent.as_deref()).await
        };
        drop(share);
        // None: a transient failure before running. The entry stays pending
        // and comes back through reclaim after its lease.
        let Some(mut c) = completion else { return };
        let _completing = self.slots.completion_slot().await;
        // Callbacks continue this attempt's trace (or the caller's, when
        // this process does not export).
        c.traceparent = traceparent.or_else(|| d.envelope.traceparent.clone());
        let span = tracing::Span::current();
        span.record("eddy.outcome", c.disposition.as_str());
        match &c.outcome.error {
            Some(e) if !matches!(c.disposition, eddy_queue::Disposition::Succeeded { .. }) => {
                span.record("otel.status_code", "ERROR")
                    .record("otel.status_message", e.message.as_str());
            }
            _ => {
                span.record("otel.status_code", "OK");
            }
        }
        self.complete(d, &c)
            .instrument(tracing::info_span!(target: trace::TARGET, "complete"))
            .await;
        if let eddy_queue::Disposition::Succeeded { follow_ups, .. } = &c.disposition
            && !follow_ups.is_empty()
        {
            let targets: HashSet<String> = follow_ups
                .iter()
                .map(|f| keys::stream(&f.envelope.tenant, &f.envelope.function))
                .collect();
            self.touch(targets).await;
        }
    }

    pub(super) async fn execute(
        &self,
        d: &Delivery,
        traceparent: Option<&str>,
    ) -> Option<Completion> {
        let env = &d.envelope;
        if env
            .deadline_ms
            .is_some_and(|dl| eddy_protocol::now_ms() > dl)
        {
            return Some(process::failed(
                process::final_error(
                    eddy_protocol::ErrorClass::Timeout,
                    "the invocation's deadline passed before it started".into(),
                ),
                false,
                &self.consumer,
            ));
        }
        let load_started = std::time::SystemTime::now();
        let loaded = async {
            let version = self
                .functions
                .resolve(&self.queue, &env.tenant, &env.function, env.version)
                .await?;
            self.functions
                .get(
                    &self.queue,
                    &self.runtime,
                    &env.tenant,
                    &env.function,
                    version,
                )
                .await
        }
        .await;
        match loaded {
            Ok((loaded, load_time)) => {
                // A cold start: the artifact was loaded and pre-instantiated
                // for this invocation. A span of its own when it was one.
                let cold = load_time.is_some();
                let cold_ms = load_time.map(|t| t.as_secs_f64() * 1e3).unwrap_or(0.0);
                let current = tracing::Span::current();
                current
                    .record("eddy.cold_start", cold)
                    .record("eddy.cold_start_ms", cold_ms);
                if cold && traceparent.is_some() {
                    crate::telemetry::past_span(
                        &current,
                        "cold start",
                        load_started,
                        std::time::SystemTime::now(),
                        vec![
                            opentelemetry::KeyValue::new("eddy.cold_start", true),
                            opentelemetry::KeyValue::new("eddy.cold_start_ms", cold_ms),
                        ],
                    );
                }
                let exec = tracing::info_span!(
                    target: trace::TARGET,
                    "execute",
                    eddy.instantiate_us = tracing::field::Empty,
                    eddy.run_us = tracing::field::Empty,
                    eddy.epoch_ticks = tracing::field::Empty,
                    eddy.emits = tracing::field::Empty,
                );
                let variables = Arc::new(crate::variables::Source {
                    queue: self.queue.clone(),
                    keyring: self.config.secrets.clone(),
                    cache: self.variables.clone(),
                    tenant: env.tenant.clone(),
                    function: env.function.clone(),
                });
                let c = process::run(
                    &self.runtime,
                    &loaded,
                    d,
                    load_time,
                    &self.consumer,
                    traceparent,
                    &self.executor,
                    variables,
                )
                .instrument(exec.clone())
                .await;
                let t = &c.outcome.timings;
                exec.record("eddy.instantiate_us", t.instantiate_us)
                    .record("eddy.run_us", t.run_us)
                    .record("eddy.epoch_ticks", t.epoch_ticks)
                    .record("eddy.emits", c.outcome.follow_ups.len());
                Some(c)
            }
            Err(failure) => match process::load_failure(failure) {
                Ok(error) => Some(process::failed(error, false, &self.consumer)),
                Err(reason) => {
                    warn!(invocation = %env.id, reason, "could not load the function; leaving it for reclaim");
                    None
                }
            },
        }
    }

    /// Completes, retrying while Redis is away. Gives up only after several
    /// leases: by then the entry has been reclaimed and the other completion
    /// wins the XACK.
    pub(super) async fn complete(&self, d: &Delivery, c: &Completion) {
        let mut wait = Duration::from_millis(50);
        let give_up = tokio::time::Instant::now() + self.config.lease * 4;
        self.meters.record(d, c);
        loop {
            let started = Instant::now();
            match self.queue_for(d).complete(d, c).await {
                Ok(done) => {
                    self.meters
                        .complete_roundtrip
                        .record(started.elapsed().as_secs_f64());
                    debug!(invocation = %d.envelope.id, status = %done.status, "completed");
                    return;
                }
                Err(error) if error.is_transient() && tokio::time::Instant::now() < give_up => {
                    warn!(%error, invocation = %d.envelope.id, "completion failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(error) => {
                    warn!(%error, invocation = %d.envelope.id, "completion failed; the entry will be reclaimed");
                    return;
                }
            }
        }
    }
}
