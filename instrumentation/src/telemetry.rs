//! Logging and tracing setup.
//!
//! Logs are JSON lines on stderr; lines logged inside a request carry its
//! `trace_id`. Spans go to OpenTelemetry, configured by the standard `OTEL_*`
//! environment variables. Without an OTLP endpoint, spans are still created and
//! sampled (so exemplars and `traceresponse` headers work) but nothing is exported.

use std::borrow::Cow;
use std::cell::Cell;
use std::env;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::Context;
/// An attribute of a [`Instrumentation::child_span`].
pub use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider as _,
};
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SamplingResult,
    SdkTracer, SdkTracerProvider, ShouldSample,
};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::otlp::{self, ExportSettings};

/// Why tracing could not be set up. Each message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Export(#[from] crate::otlp::ExportBuildError),
    #[error("RUST_LOG: {0} (expected a filter such as info or ponger=debug,info)")]
    LogFilter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global logger was already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error(
        "telemetry was already set up in this process: set it up once, in main, and pass its Instrumentation down"
    )]
    AlreadySetUp,
}

/// Flushes and stops span export when shut down.
#[derive(Debug)]
#[must_use = "call shutdown() before exit, or buffered spans are lost"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    instrumentation: Instrumentation,
    /// Where spans go, if anywhere, and the runtime their exports run on.
    export: Option<(ExportSettings, tokio::runtime::Runtime)>,
}

impl Telemetry {
    /// The handle the server layer and the client trace requests with: a
    /// cheap clone (one shared allocation).
    pub fn instrumentation(&self) -> &Instrumentation {
        &self.instrumentation
    }

    /// Whether an OTLP endpoint is configured.
    pub fn is_exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Exports every buffered span, for at most [`SPAN_FLUSH_BUDGET`], and stops.
    /// Call it outside any async runtime: it stops the exporter's own.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(SPAN_FLUSH_BUDGET) {
            tracing::warn!(%error, "flushing spans at shutdown failed");
        }
        if let Some((_, runtime)) = self.export {
            // Idle connections to the collector are all that may be left.
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// How long a service may spend exporting its last spans once it has stopped
/// serving. A collector that accepts connections and never answers would
/// otherwise hold the exit for the exporter's whole timeout (10 s by default),
/// past the pinger's shutdown budget (see `pinger::app::shutdown_bound`). A
/// reachable collector takes milliseconds.
pub const SPAN_FLUSH_BUDGET: Duration = Duration::from_secs(3);

/// Sets up logging and tracing for a service, once per process: the logger
/// is the process's (`tracing` has one), and a second set-up is
/// [`TelemetryError::AlreadySetUp`] rather than a second tracer that some
/// requests would use and others not. Pass [`Telemetry::instrumentation`]
/// down to the server layer and the client.
///
/// Call it before starting the tokio runtime: the OTLP exporter owns a
/// runtime of its own, which must not be dropped on a runtime thread.
///
/// `process_attributes` describe the whole process (its configuration) and
/// go on the resource, sent once per batch of spans, rather than on every span.
pub fn init(
    default_service_name: &'static str,
    service_version: &str,
    process_attributes: Vec<KeyValue>,
) -> Result<Telemetry, TelemetryError> {
    // Checked before anything is built; never reset, even if this set-up
    // fails half-way (the binaries then exit).
    static SET_UP: AtomicBool = AtomicBool::new(false);
    if SET_UP.swap(true, Ordering::SeqCst) {
        return Err(TelemetryError::AlreadySetUp);
    }

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
    for attribute in process_attributes {
        if !resource_attributes.contains(&format!("{}=", attribute.key)) {
            resource = resource.with_attribute(attribute);
        }
    }

    // The sampler the OTEL_TRACES_SAMPLER* variables ask for, consulted before
    // a request's span exists (see `decide`), and honouring that decision when
    // the span is then created.
    let otel_settings = crate::otel_env::OtelSettings::from_env();
    let sampler = otel_settings.sampler.sampler();
    let mut provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_sampler(HonourDecision(Box::new(sampler.clone())));
    let settings =
        ExportSettings::from_env(&otlp::process_env).map_err(otlp::ExportBuildError::from)?;
    let mut export = None;
    if let Some(settings) = settings {
        let pipeline = otlp::build(&settings)?;
        // The batch processor keeps at most OTEL_BSP_MAX_QUEUE_SIZE (2048) spans and
        // drops the rest, so an unreachable collector costs bounded memory.
        provider = provider.with_span_processor(
            BatchSpanProcessor::builder(pipeline.exporter)
                .with_batch_config(otel_settings.batch_config())
                .build(),
        );
        export = Some((settings, pipeline.runtime));
    }
    let provider = provider.build();
    // Every span carries a copy of its tracer's scope: a `'static` name is
    // copied without allocating (an owned one cost each sampled ping two
    // allocations and their frees).
    let instrumentation =
        Instrumentation::with_tracer(provider.tracer(default_service_name), sampler);

    let log_filter = match env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::builder().parse(filter)?,
        _ => EnvFilter::new("info"),
    };
    // Requests' spans are OpenTelemetry spans, not `tracing` ones (see
    // `start_request_span`): `tracing` carries the log lines alone, and a line written
    // inside a traced request takes its trace ID from the OpenTelemetry context.
    let logs = tracing_subscriber::fmt::layer()
        .event_format(WithTraceId(
            tracing_subscriber::fmt::format()
                .json()
                .with_current_span(false)
                .with_span_list(false),
        ))
        .with_writer(std::io::stderr)
        // The exporter reports its failures itself, with their cause and at
        // most once per interval (`otlp::report`); the SDK's own line says
        // "network error" at every batch.
        .with_filter(log_filter.and(filter_fn(|metadata| {
            metadata.name() != "BatchSpanProcessor.ExportError"
        })));
    Registry::default().with(logs).try_init()?;
    for warning in &otel_settings.warnings {
        tracing::warn!(
            variable = warning.variable,
            value = %warning.given,
            used = %warning.used,
            "{warning}"
        );
    }

    if let Some((settings, _)) = &export {
        tracing::info!(
            endpoint = settings.endpoint.redacted(),
            protocol = settings.protocol.as_str(),
            tls = settings.tls.is_some(),
            "exporting spans over OTLP"
        );
        for variable in &settings.unused {
            tracing::warn!(
                variable,
                "set but not used: TLS settings apply to https:// endpoints, OTEL_EXPORTER_OTLP_INSECURE to grpc ones without a scheme"
            );
        }
    }
    Ok(Telemetry {
        provider,
        instrumentation,
        export,
    })
}

/// A log line's event formatter that adds, first in the JSON object, the
/// `trace_id` of the traced request the line is written in, if any.
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'writer> FormatFields<'writer> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The JSON formatter writes one object per line.
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"{TRACE_ID_FIELD}\":\"{trace_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// The name of the log line field that carries a request's trace ID.
const TRACE_ID_FIELD: &str = "trace_id";

/// The trace of the sampled request being handled on this thread now, if any.
fn current_trace_id() -> Option<TraceId> {
    Context::map_current(|context| {
        let span = context.span();
        let span_context = span.span_context();
        span_context.is_sampled().then(|| span_context.trace_id())
    })
}

thread_local! {
    /// Set while this module starts a span it has already decided to sample
    /// (see [`HonourDecision`]). A flag rather than a mark in the parent
    /// context: marking a context allocates its map of values, for every
    /// sampled request.
    static DECIDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `start` (which starts one span) with [`DECIDED`] set.
fn start_decided<T>(start: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DECIDED.with(|decided| decided.set(false));
        }
    }
    DECIDED.with(|decided| decided.set(true));
    let _reset = Reset;
    start()
}

/// The tracer provider's sampler: the configured one, except for the spans
/// this module starts after deciding to sample them (request spans, after
/// [`Instrumentation::decide`]; child spans, of a sampled parent). For a root span the SDK
/// draws a trace ID of its own; asking a ratio sampler again about that one
/// would sample only ratio² of the requests, and its children might disagree.
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
        if DECIDED.with(Cell::get) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent_context
                    .map(|parent| parent.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// Whether a request gets spans, decided before any span exists.
#[derive(Debug)]
pub enum RequestTrace {
    /// Create the request's span with this parent context (the caller's, if
    /// any), through `start_request_span`.
    Sampled(Context),
    /// No span at all: an unsampled span is never exported, yet building it
    /// costs as much as half of a fast request. This is the request's trace
    /// context all the same, for a client to propagate (flags `00`), so that
    /// the services it calls do not sample the request either.
    Unsampled(SpanContext),
}

/// What a service traces its requests with: the tracer of its provider, the
/// sampler that decides before a span exists (see [`RequestTrace`]) and the
/// W3C Trace Context propagator. [`init`] builds the service's one; the
/// server layer ([`crate::server::instrument_routes`]) and the client
/// ([`crate::client::InstrumentedClient`]) take it explicitly, so that no
/// request reads a process-wide tracer and none can be traced by a default
/// one made before the configured one exists.
///
/// Cloning it copies one pointer to a shared allocation; the server layer
/// keeps one clone per router, not per request.
#[derive(Clone, Debug)]
pub struct Instrumentation(Arc<RequestTracing>);

#[derive(Debug)]
struct RequestTracing {
    tracer: SdkTracer,
    /// The sampler the tracer's provider honours (see [`HonourDecision`]).
    sampler: Sampler,
    propagator: TraceContextPropagator,
}

impl Instrumentation {
    /// Spans sampled by `sampler` and exported nowhere, for tests and
    /// benchmarks; services get theirs from [`init`], which exports them.
    pub fn unexported(sampler: Sampler) -> Self {
        let tracer = SdkTracerProvider::builder()
            .with_sampler(HonourDecision(Box::new(sampler.clone())))
            .build()
            .tracer("instrumentation");
        Self::with_tracer(tracer, sampler)
    }

    /// `tracer` must come from a provider whose sampler is
    /// `HonourDecision(sampler)`.
    fn with_tracer(tracer: SdkTracer, sampler: Sampler) -> Self {
        Self(Arc::new(RequestTracing {
            tracer,
            sampler,
            propagator: TraceContextPropagator::new(),
        }))
    }

    /// Asks the sampler whether a request whose caller sent `parent` (an
    /// empty context for a new trace) is to be traced.
    pub fn decide(&self, parent: Context, kind: SpanKind, name: &str) -> RequestTrace {
        let (sampled, trace_id) = self.asks_sampler(&parent, &kind, name);
        if sampled {
            return RequestTrace::Sampled(parent);
        }
        let span = parent.span();
        let caller = span.span_context();
        let trace_state = if caller.is_valid() {
            caller.trace_state().clone()
        } else {
            TraceState::default()
        };
        RequestTrace::Unsampled(SpanContext::new(
            trace_id,
            RandomIdGenerator::default().new_span_id(),
            TraceFlags::default(),
            false,
            trace_state,
        ))
    }

    /// The trace context of a server request whose headers are `headers`
    /// (see [`Self::extract_context`]) if the request is to be traced; `None`
    /// if not, as a server passes no trace context on for an unsampled
    /// request. Unlike [`Self::decide`] it draws no IDs for an unsampled
    /// request, and none at all for the samplers that do not read them
    /// (`always_on`, `always_off`); with `always_off` it reads no header
    /// either, since no caller's context can change its answer (looking
    /// for a `traceparent` that is not there took about 180 instructions of
    /// a zero-delay ping, callgrind).
    pub fn sampled_parent(
        &self,
        headers: &http::HeaderMap,
        kind: SpanKind,
        name: &str,
    ) -> Option<Context> {
        match self.0.sampler {
            Sampler::AlwaysOff => None,
            Sampler::AlwaysOn => Some(self.extract_context(headers)),
            _ => {
                let parent = self.extract_context(headers);
                self.asks_sampler(&parent, &kind, name).0.then_some(parent)
            }
        }
    }

    /// Asks the sampler about a request under `parent`, in the trace it
    /// joins: its caller's, or a new one, returned for an unsampled request's
    /// own context.
    fn asks_sampler(&self, parent: &Context, kind: &SpanKind, name: &str) -> (bool, TraceId) {
        let span = parent.span();
        let caller = span.span_context();
        let trace_id = if caller.is_valid() {
            caller.trace_id()
        } else {
            RandomIdGenerator::default().new_trace_id()
        };
        let result = self
            .0
            .sampler
            .should_sample(Some(parent), trace_id, name, kind, &[], &[]);
        (
            result.decision == SamplingDecision::RecordAndSample,
            trace_id,
        )
    }

    /// Starts a request's span (server or client) under `parent`, the context
    /// [`Self::decide`] returned as sampled, and returns the context that
    /// holds it: the one to propagate, and the one to make current while the
    /// request is handled.
    ///
    /// A request's spans are OpenTelemetry spans rather than `tracing` spans
    /// bridged by `tracing-opentelemetry`, which kept three objects per span (the
    /// `tracing` span, a span builder and the SDK span) and converted every field
    /// at each step: a sampled zero-delay ping took 18.1 us of CPU rather than
    /// 13.9, and a sleeping one 5.6 KiB for its two open spans rather than 1.9
    /// (docs/benchmarks.md).
    pub(crate) fn start_request_span(
        &self,
        parent: &Context,
        kind: SpanKind,
        name: impl Into<Cow<'static, str>>,
        attributes: impl IntoIterator<Item = KeyValue>,
    ) -> Context {
        let tracer = &self.0.tracer;
        // The span keeps this vector, and [`end_request_span`] adds one more
        // attribute: with room for it made here, the vector is not copied
        // into a larger one when the request ends (about 650 instructions of
        // a sampled ping, callgrind).
        let attributes = attributes.into_iter();
        let mut all = Vec::with_capacity(attributes.size_hint().0 + 1);
        all.extend(attributes);
        let span = start_decided(|| {
            tracer
                .span_builder(name)
                .with_kind(kind)
                .with_attributes(all)
                .start_with_context(tracer, parent)
        });
        parent.with_span(span)
    }

    /// Starts a [`ChildSpan`] of the current request's span; `attributes` are
    /// computed only if there is one.
    pub fn child_span(
        &self,
        name: &'static str,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> ChildSpan {
        Context::map_current(|parent| {
            if !parent.span().span_context().is_sampled() {
                return ChildSpan { _span: None };
            }
            let tracer = &self.0.tracer;
            let builder = tracer.span_builder(name).with_attributes(attributes());
            ChildSpan {
                _span: Some(Box::new(start_decided(|| {
                    builder.start_with_context(tracer, parent)
                }))),
            }
        })
    }

    /// The trace context a request carries in its `traceparent` header, if the
    /// header follows the W3C specification to the letter (see
    /// [`crate::trace_context`]); otherwise, or without one, an empty context:
    /// the request starts a new trace. An invalid `tracestate` is dropped.
    pub fn extract_context(&self, headers: &http::HeaderMap) -> Context {
        // Most requests (probes, people with curl, load generators) bring no
        // `traceparent`: they cost no propagator call.
        const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
        const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
        let Some(traceparent) = headers.get(TRACEPARENT) else {
            return Context::new();
        };
        if headers.get_all(TRACEPARENT).iter().nth(1).is_some() {
            // Several: which one would be the parent?
            return Context::new();
        }
        let Some(parent) = crate::trace_context::TraceParent::parse(traceparent.as_bytes()) else {
            return Context::new();
        };
        let checked = CheckedTraceContext {
            traceparent: parent.to_header(),
            tracestate: checked_tracestate(headers.get_all(TRACESTATE)),
        };
        self.0.propagator.extract(&checked)
    }

    /// Writes `traceparent` for `context` into outgoing request headers.
    pub fn inject_context(&self, context: &Context, headers: &mut http::HeaderMap) {
        self.0
            .propagator
            .inject_context(context, &mut HeaderInjector(headers));
    }
}

/// Ends the span in `context` (from [`Instrumentation::start_request_span`]) with the request's
/// outcome: `attribute` (its status code or error type), and an error status if
/// it `failed`.
pub(crate) fn end_request_span(context: &Context, attribute: KeyValue, failed: bool) {
    let span = context.span();
    span.set_attribute(attribute);
    if failed {
        span.set_status(Status::error(""));
    }
    span.end();
}

/// A span inside the traced request being handled now, ended when dropped.
/// Outside a traced request (an unsampled or untraced one) it is nothing: a
/// span there would start a trace of its own.
#[derive(Debug)]
#[must_use = "the span ends when this is dropped"]
pub struct ChildSpan {
    // Boxed: an SDK span is 288 bytes, which every handler future that
    // holds a `ChildSpan` would carry and copy, traced or not; the box costs
    // only a traced request an allocation.
    _span: Option<Box<opentelemetry_sdk::trace::Span>>,
}

/// The request's `tracestate` lines joined with commas (a list header may
/// come in several), or nothing if it is too long or breaks the rules (see
/// [`crate::trace_context::is_valid_tracestate`]).
fn checked_tracestate(lines: http::header::GetAll<'_, http::HeaderValue>) -> String {
    // Measured before anything is copied: a joined length, commas included.
    let length = lines.iter().map(|line| line.len() + 1).sum::<usize>();
    if length > crate::trace_context::MAX_TRACESTATE_LEN + 1 {
        return String::new();
    }
    let mut joined = String::with_capacity(length);
    for line in lines.iter() {
        let Ok(line) = line.to_str() else {
            return String::new();
        };
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(line);
    }
    if crate::trace_context::is_valid_tracestate(&joined) {
        joined
    } else {
        String::new()
    }
}

/// The trace context headers as checked, in the form the propagator reads.
struct CheckedTraceContext {
    traceparent: [u8; 55],
    tracestate: String,
}

impl opentelemetry::propagation::Extractor for CheckedTraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            // Hex digits and dashes only.
            "traceparent" => std::str::from_utf8(&self.traceparent).ok(),
            "tracestate" if !self.tracestate.is_empty() => Some(&self.tracestate),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The life of a service binary after its flags are parsed: set up logging
/// and tracing (a bad `OTEL_*` or `RUST_LOG` ends it with status 2 and one
/// line), run `serve` on a multi-threaded runtime, flush spans once the
/// runtime is gone (the exporter's client is blocking), and turn the outcome
/// into the exit status. `process_attributes`: see [`init`]. `serve` gets
/// the service's [`Instrumentation`], to pass down.
pub fn run_service<F>(
    service_name: &'static str,
    service_version: &str,
    process_attributes: Vec<KeyValue>,
    serve: impl FnOnce(Instrumentation) -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    let telemetry = match init(service_name, service_version, process_attributes) {
        Ok(telemetry) => telemetry,
        Err(error) => crate::cli::exit_with_config_error(&format!("error: {error}")),
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .and_then(|runtime| runtime.block_on(serve(telemetry.instrumentation().clone())));
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A configuration error found while starting (a listen address that
        // cannot be bound) is reported as a bad flag is: its one line, status 2.
        Err(error) => match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<crate::cli::ConfigError>())
        {
            Some(config_error) => crate::cli::exit_with_config_error(&config_error.to_string()),
            None => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn extract(headers: &[(&'static str, &str)]) -> SpanContext {
        let instrumentation = Instrumentation::unexported(Sampler::AlwaysOn);
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(
                *name,
                http::HeaderValue::from_str(value).expect("header value"),
            );
        }
        instrumentation
            .extract_context(&map)
            .span()
            .span_context()
            .clone()
    }

    #[test]
    fn a_valid_traceparent_is_the_parent_with_its_tracestate() {
        let traceparent = format!("00-{TRACE}-{PARENT}-01");
        let parent = extract(&[
            ("traceparent", &traceparent),
            ("tracestate", "rojo=1"),
            ("tracestate", "congo=2"),
        ]);
        assert!(parent.is_valid() && parent.is_remote() && parent.is_sampled());
        assert_eq!(parent.trace_id().to_string(), TRACE);
        assert_eq!(parent.span_id().to_string(), PARENT);
        // Both lines of the list header, in order.
        assert_eq!(parent.trace_state().header(), "rojo=1,congo=2");
    }

    #[test]
    fn an_invalid_tracestate_is_dropped_and_the_parent_kept() {
        let traceparent = format!("00-{TRACE}-{PARENT}-01");
        let huge = format!("k={}", "v".repeat(9000));
        for tracestate in ["Rojo=1", "rojo=1,rojo=2", huge.as_str()] {
            let parent = extract(&[("traceparent", &traceparent), ("tracestate", tracestate)]);
            assert_eq!(parent.trace_id().to_string(), TRACE);
            assert_eq!(parent.trace_state().header(), "", "{tracestate}");
        }
    }

    #[test]
    fn an_invalid_or_repeated_traceparent_starts_a_new_trace() {
        let valid = format!("00-{TRACE}-{PARENT}-01");
        let other = format!("00-{}-{PARENT}-01", "1".repeat(32));
        let upper = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
        for headers in [
            vec![
                ("traceparent", valid.as_str()),
                ("traceparent", other.as_str()),
            ],
            vec![("traceparent", upper.as_str())],
            vec![("tracestate", "rojo=1")],
        ] {
            assert!(!extract(&headers).is_valid(), "{headers:?}");
        }
    }
}
