//! Logging and tracing setup.
//!
//! Logs are JSON lines on stderr; lines logged inside a request carry its
//! `trace_id`. Spans go to OpenTelemetry, configured by the standard `OTEL_*`
//! environment variables. Without an OTLP endpoint, spans are still created and
//! sampled (so exemplars and `traceresponse` headers work) but nothing is exported.

use std::env;
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{Link, SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Config, IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, SdkTracerProvider,
    ShouldSample,
};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, Targets, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Why tracing could not be set up. Each message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "{variable}: {value:?} is not supported; expected http/protobuf (OTLP over HTTP, usually port 4318)"
    )]
    UnsupportedProtocol {
        variable: &'static str,
        value: String,
    },
    #[error("OTEL_EXPORTER_OTLP_*: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("RUST_LOG: {0} (expected a filter such as info or ponger=debug,info)")]
    LogFilter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global logger was already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Flushes and stops span export when shut down.
#[derive(Debug)]
#[must_use = "call shutdown() before exit, or buffered spans are lost"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether an OTLP endpoint is configured.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// Exports every buffered span (bounded by the exporter's timeout) and stops.
    /// Call it outside the async runtime: the exporter uses a blocking client.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(10)) {
            tracing::warn!(%error, "flushing spans at shutdown failed");
        }
    }
}

/// Sets up logging and tracing for a service.
///
/// Call it before starting the tokio runtime: the OTLP exporter owns a
/// blocking HTTP client, which must not be created or dropped on a runtime thread.
pub fn init(
    default_service_name: &str,
    service_version: &str,
) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
    ]));

    let mut resource = Resource::builder();
    let resource_attributes = env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    // The environment wins over our defaults, as the OpenTelemetry spec asks.
    if env::var_os("OTEL_SERVICE_NAME").is_none() && !resource_attributes.contains("service.name=")
    {
        resource = resource.with_service_name(default_service_name.to_owned());
    }
    if !resource_attributes.contains("service.version=") {
        resource =
            resource.with_attribute(KeyValue::new("service.version", service_version.to_owned()));
    }

    // The sampler the OTEL_TRACES_SAMPLER* variables ask for, consulted before
    // a request's span exists (see `decide`), and honouring that decision when
    // the span is then created.
    let sampler = Config::default().sampler;
    let _ = SAMPLER.set(sampler.clone());
    let mut provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_sampler(HonourDecision(sampler));
    let exporting = otlp_endpoint_configured();
    if exporting {
        check_protocol()?;
        // The batch processor keeps at most OTEL_BSP_MAX_QUEUE_SIZE (2048) spans and
        // drops the rest, so an unreachable collector costs bounded memory.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(default_service_name.to_owned());

    let log_filter = match env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::builder().parse(filter)?,
        _ => EnvFilter::new("info"),
    };
    let logs = tracing_subscriber::fmt::layer()
        .event_format(
            tracing_subscriber::fmt::format()
                .json()
                .with_current_span(false)
                .with_span_list(true),
        )
        .fmt_fields(TraceIdOnly)
        .with_writer(std::io::stderr)
        // Of the spans, the log layer sees only those that carry a trace ID:
        // the others would add nothing to a log line (see `TraceIdOnly`), yet
        // it would track each of them through its whole life.
        .with_filter(log_filter.and(filter_fn(|metadata| {
            !metadata.is_span() || metadata.fields().field(TRACE_ID_FIELD).is_some()
        })));
    // Spans are kept whatever RUST_LOG says (turning logs down must not
    // break exemplars), but not the HTTP libraries' own.
    let span_filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF);
    // Source location, thread, target and busy/idle time would be attributes
    // on every span, built and exported for each ping, that neither the
    // dashboards nor the walkthroughs use; nothing reads the OpenTelemetry
    // context as "current" (spans are parented through `tracing`), so entering
    // a span need not activate it.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(span_filter);
    Registry::default().with(logs).with(spans).try_init()?;

    Ok(Telemetry {
        provider,
        exporting,
    })
}

/// The name of the span field that carries a request's trace ID into its log lines.
pub(crate) const TRACE_ID_FIELD: &str = "trace_id";

/// The log layer's formatter for span fields (the `spans` list of a log
/// line): it keeps each span's [`TRACE_ID_FIELD`] and nothing else.
///
/// The log layer formats the fields of every span when it is created and
/// recorded, in case a log line is written inside it; in a ping, none is.
/// Formatting all of them as JSON (the stock `JsonFields`) cost more than the
/// rest of a sampled request's spans together (callgrind: about 32,000
/// instructions of 142,000 per ping). A log line needs only the trace ID from
/// its spans; the trace itself holds the rest.
struct TraceIdOnly;

impl<'writer> FormatFields<'writer> for TraceIdOnly {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        write_trace_id(writer, TraceIdVisitor::find(fields))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        match TraceIdVisitor::find(fields) {
            Some(trace_id) => {
                current.fields.clear();
                write_trace_id(current.as_writer(), Some(trace_id))
            }
            None => Ok(()),
        }
    }
}

/// `{"trace_id":"..."}`, or `{}` without one.
fn write_trace_id(mut writer: Writer<'_>, trace_id: Option<String>) -> std::fmt::Result {
    match trace_id {
        Some(trace_id) => match serde_json::to_string(&trace_id) {
            Ok(quoted) => write!(writer, "{{\"{TRACE_ID_FIELD}\":{quoted}}}"),
            Err(_) => Err(std::fmt::Error),
        },
        None => writer.write_str("{}"),
    }
}

struct TraceIdVisitor(Option<String>);

impl TraceIdVisitor {
    fn find(fields: impl RecordFields) -> Option<String> {
        let mut visitor = Self(None);
        fields.record(&mut visitor);
        visitor.0
    }
}

impl tracing::field::Visit for TraceIdVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == TRACE_ID_FIELD {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == TRACE_ID_FIELD {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

fn otlp_endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// This build carries the HTTP/protobuf exporter only; the library would
/// otherwise ignore a request for gRPC and send HTTP to a gRPC port, failing
/// every export quietly.
fn check_protocol() -> Result<(), TelemetryError> {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(value) = env::var(variable) {
            if !value.trim().is_empty() && value.trim() != "http/protobuf" {
                return Err(TelemetryError::UnsupportedProtocol { variable, value });
            }
        }
    }
    Ok(())
}

static SAMPLER: std::sync::OnceLock<Box<dyn ShouldSample>> = std::sync::OnceLock::new();

/// Marks a parent context under which `decide` already chose to sample.
#[derive(Clone, Copy, Debug)]
struct AlreadySampled;

/// The tracer provider's sampler: the configured one, except that a span whose
/// parent context carries [`AlreadySampled`] is sampled, as decided. (For a
/// root span the SDK draws a trace ID of its own; asking a ratio sampler again
/// about that one would sample only ratio² of the requests.)
#[derive(Clone, Debug)]
struct HonourDecision(Box<dyn ShouldSample>);

impl ShouldSample for HonourDecision {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        match parent_context {
            Some(parent) if parent.get::<AlreadySampled>().is_some() => SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent.span().span_context().trace_state().clone(),
            },
            _ => self
                .0
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links),
        }
    }
}

/// Whether a request gets spans, decided before any span exists.
#[derive(Debug)]
pub enum RequestTrace {
    /// Create the request's span with this parent context (the caller's, marked
    /// as decided).
    Sampled(Context),
    /// No span at all: an unsampled span is never exported, yet building it
    /// costs as much as half of a fast request. This is the request's trace
    /// context all the same, for a client to propagate (flags `00`), so that
    /// the services it calls do not sample the request either.
    Unsampled(SpanContext),
}

/// Asks the configured sampler whether a request whose caller sent `parent`
/// (an empty context for a new trace) is to be traced.
pub fn decide(parent: Context, kind: SpanKind, name: &str) -> RequestTrace {
    let ids = RandomIdGenerator::default();
    let caller = parent.span().span_context().clone();
    let trace_id = if caller.is_valid() {
        caller.trace_id()
    } else {
        ids.new_trace_id()
    };
    let sampler = SAMPLER.get_or_init(|| Config::default().sampler);
    let result = sampler.should_sample(Some(&parent), trace_id, name, &kind, &[], &[]);
    if result.decision == SamplingDecision::RecordAndSample {
        RequestTrace::Sampled(parent.with_value(AlreadySampled))
    } else {
        let trace_state = if caller.is_valid() {
            caller.trace_state().clone()
        } else {
            TraceState::default()
        };
        RequestTrace::Unsampled(SpanContext::new(
            trace_id,
            ids.new_span_id(),
            TraceFlags::default(),
            false,
            trace_state,
        ))
    }
}

/// Whether the code running now is inside a traced request, so that it may
/// open child spans. Outside one, a child span would start a trace of its own.
pub fn in_traced_request() -> bool {
    // `Span::current()` would take and release a reference to the span, which
    // runs through every layer; asking the dispatcher does not.
    tracing::dispatcher::get_default(|dispatch| dispatch.current_span().id().is_some())
}

/// The trace context a request carries in its `traceparent` header.
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    // The propagator set up by `init` reads `traceparent` (and `tracestate`
    // only beside it): without one there is nothing to extract, and most
    // requests (probes, people with curl, load generators) bring none.
    const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Writes `traceparent` for `context` into outgoing request headers.
pub fn inject_context(context: &Context, headers: &mut http::HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, &mut HeaderInjector(headers))
    });
}

/// The life of a service binary after its flags are parsed: set up logging
/// and tracing (a bad `OTEL_*` or `RUST_LOG` ends it with status 2 and one
/// line), run `serve` on a multi-threaded runtime, flush spans once the
/// runtime is gone (the exporter's client is blocking), and turn the outcome
/// into the exit status.
pub fn run_service<F>(
    service_name: &str,
    service_version: &str,
    serve: impl FnOnce() -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    let telemetry = match init(service_name, service_version) {
        Ok(telemetry) => telemetry,
        Err(error) => crate::cli::exit_with_config_error(&format!("error: {error}")),
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .and_then(|runtime| runtime.block_on(serve()));
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
