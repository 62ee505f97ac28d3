//! Spans whose times are known only afterwards: the queue wait of an
//! invocation (it started when the invocation was enqueued, before this
//! process saw it) and a cold start (known to be one only once it is over).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Records a finished span `name` from `start` to `end` under `parent`,
/// through the global tracer provider (the binary installs it with the
/// exporter; without one this is a no-op).
pub(crate) fn past_span(
    parent: &tracing::Span,
    name: &'static str,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
) {
    let tracer = opentelemetry::global::tracer("eddy");
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_start_time(start.min(end))
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent.context());
    span.end_with_timestamp(end);
}

/// The `queue wait` span: from `enqueued_at_ms` (the enqueuer's clock) to
/// `dequeued`.
pub(crate) fn queue_wait(parent: &tracing::Span, enqueued_at_ms: u64, dequeued: SystemTime) {
    let start = (UNIX_EPOCH + Duration::from_millis(enqueued_at_ms)).min(dequeued);
    let waited = dequeued.duration_since(start).unwrap_or_default();
    past_span(
        parent,
        "queue wait",
        start,
        dequeued,
        vec![KeyValue::new(
            "eddy.queue_wait_ms",
            waited.as_secs_f64() * 1e3,
        )],
    );
}

/// The client span of one outbound request, under the current span (the
/// invocation's execution), with the span id its `traceparent` carried, so
/// that the server's spans hang under it.
pub(crate) fn outbound_span(o: &eddy_runtime::OutboundReport) {
    let tracer = opentelemetry::global::tracer("eddy");
    let call = &o.call;
    let end = o.started + Duration::from_micros(call.duration_us);
    let mut attributes = vec![
        KeyValue::new("http.request.method", call.method.clone()),
        KeyValue::new("url.origin", call.origin.clone()),
        KeyValue::new("eddy.bytes_out", call.bytes_out as i64),
        KeyValue::new("eddy.bytes_in", call.bytes_in as i64),
    ];
    if let Some(status) = call.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(error) = &call.error {
        attributes.push(KeyValue::new("error.type", "outbound"));
        attributes.push(KeyValue::new("eddy.outbound.error", error.clone()));
    }
    let mut builder = tracer
        .span_builder("outbound")
        .with_kind(SpanKind::Client)
        .with_start_time(o.started)
        .with_attributes(attributes);
    builder.span_id = o
        .span_id
        .as_deref()
        .and_then(|id| opentelemetry::trace::SpanId::from_hex(id).ok());
    let mut span = builder.start_with_context(&tracer, &tracing::Span::current().context());
    span.end_with_timestamp(end);
}
