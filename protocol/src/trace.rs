//! W3C trace context carried in envelopes: the span of one step (the HTTP
//! handler, an invocation) becomes the parent of the next (the invocation it
//! enqueued, its follow-ups, its callback), so one trace follows a run.
//!
//! Spans meant for export use the target [`TARGET`]; the binary sends that
//! target to OpenTelemetry only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! and without it the spans are disabled and cost next to nothing. No I/O
//! here: parsing, formatting and attaching contexts.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span and event that is exported.
pub const TARGET: &str = "eddy::trace";

/// Parses a `traceparent` header value (version 00, or a later version read
/// as 00 per the spec). `None` for anything malformed or all-zero: the trace
/// then starts afresh, as the W3C spec asks.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || version.eq_ignore_ascii_case("ff") {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().any(|b| b.is_ascii_uppercase())
        || span_id.bytes().any(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// The `traceparent` value of a span context; `None` if it is not valid.
pub fn format(cx: &SpanContext) -> Option<String> {
    cx.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8()
        )
    })
}

/// Makes `traceparent` (when valid) the remote parent of `span`. Call it
/// before anything reads the span's context. A no-op when tracing is off.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(parse) {
        let _ = span.set_parent(Context::new().with_remote_span_context(sc));
    }
}

/// The `traceparent` of `span`, to carry to the next step: `None` when the
/// span is not exported (tracing off), so that callers keep the one they
/// were given.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    format(span.context().span().span_context())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_w3c_traceparent() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse(tp).expect("valid");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(format(&sc).as_deref(), Some(tp));
        // A later version may carry more fields; read as version 00.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
