//! Logging and tracing for every role: logs on stderr (`--log`/`EDDY_LOG`,
//! `--log-format`/`EDDY_LOG_FORMAT`: see [`LogArgs`]), and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans exported over
//! OTLP/HTTP (protobuf). The standard `OTEL_*` variables are honoured:
//! endpoint, headers, timeout and compression by the exporter,
//! `OTEL_BSP_*` by the batch processor, `OTEL_TRACES_SAMPLER(_ARG)` by the
//! provider, `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` by the
//! resource (the service name defaults to `eddy-<role>`), and
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes exported spans when dropped (at the end of `main`).
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(error) = p.shutdown()
        {
            eprintln!("warning: flushing traces: {error}");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn exporting() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none");
    !disabled
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OTLP pipeline, when configured.
fn provider(role: &str) -> Result<Option<SdkTracerProvider>, String> {
    if !exporting() {
        return Ok(None);
    }
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(var)
            && p.trim() != "http/protobuf"
        {
            return Err(format!(
                "{var}={p}: this build exports OTLP over http/protobuf only"
            ));
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let mut resource = Resource::builder();
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(format!("eddy-{role}"));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Some(provider))
}

/// Where logs go and how they look; every command takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Which logs go to stderr: a level (`error`, `warn`, `info`, `debug`,
    /// `trace`) or per-target directives (`info,eddy_worker=debug`).
    #[arg(long = "log", env = "EDDY_LOG", default_value = "warn", global = true,
          value_parser = parse_log_filter)]
    log: String,
    /// `text`, or `json` for one JSON object per line (for log collectors).
    #[arg(long = "log-format", env = "EDDY_LOG_FORMAT", default_value = "text", global = true,
          value_parser = ["text", "json"])]
    log_format: String,
}

fn parse_log_filter(spec: &str) -> Result<String, String> {
    EnvFilter::try_new(spec)
        .map(|_| spec.to_string())
        .map_err(|e| e.to_string())
}

/// Installs the subscriber for `role` (worker, gateway, controller, up, or
/// a client command: those never export).
pub fn init(role: &str, export: bool, logs: &LogArgs) -> Telemetry {
    let spec = &logs.log;
    // Exported spans and guest logs stay out of stderr unless asked for.
    let spec = if spec.contains(eddy_protocol::trace::TARGET) {
        spec.clone()
    } else {
        format!("{spec},{}=off", eddy_protocol::trace::TARGET)
    };
    // Checked by the parser; the trace target appended above is valid.
    let filter = || EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("warn"));
    let json = logs.log_format == "json";
    let text_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let (provider, problem) = match export.then(|| provider(role)) {
        Some(Ok(p)) => (p, None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("eddy"))
            .with_location(false)
            .with_threads(false)
            .with_filter(Targets::new().with_target(eddy_protocol::trace::TARGET, Level::INFO))
    });
    tracing_subscriber::registry()
        .with(text_layer)
        .with(json_layer)
        .with(otel)
        .init();
    if let Some(problem) = problem {
        tracing::warn!("tracing export is off: {problem}");
    }
    Telemetry { provider }
}
