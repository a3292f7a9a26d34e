//! HTTP instrumentation shared by the ponger and the pinger.
//!
//! Set up once, in `main`: [`telemetry::init`] (or [`telemetry::run_service`])
//! installs the logger and builds the service's tracer, and returns the
//! [`Instrumentation`] handle to pass down. The server layer
//! ([`server::instrument_routes`]) and the client
//! ([`client::InstrumentedClient`]) take it, with the metric families
//! ([`metrics::HttpServerMetrics`], [`metrics::HttpClientMetrics`]) registered
//! in the service's registry, explicitly; nothing reads a process-wide tracer,
//! sampler or propagator, and a second set-up is an error.
//!
//! - [`metrics`]: the metric contract (server and client request counters, latency
//!   histograms carrying trace exemplars, in-flight gauges, build info, process metrics).
//! - [`exposition`]: the `/metrics` endpoint, negotiating OpenMetrics (with exemplars)
//!   or the classic Prometheus text format (without).
//! - [`http_method`]: the `method` label and span attributes as OpenTelemetry's HTTP
//!   conventions bound them (`_OTHER`).
//! - [`server`]: an axum layer that counts, times and traces each request.
//! - [`serve`]: serving a router with a header read timeout, a connection cap and a
//!   shutdown deadline.
//! - [`client`]: a reqwest wrapper that counts, times and traces each outgoing request
//!   and propagates W3C trace context.
//! - [`telemetry`]: logging to stderr and OpenTelemetry tracing configured by `OTEL_*`.
//! - [`trace_context`]: a strict check of the W3C `traceparent` and `tracestate`
//!   headers, before the propagator reads them.
//! - [`otlp`]: the span exporter's `OTEL_EXPORTER_OTLP_*` settings (HTTP or gRPC, TLS).
//! - [`shutdown`]: SIGTERM/SIGINT handling with a second signal meaning "hurry".
//! - [`cli`]: one-line configuration errors shared by both binaries.
//! - [`otel_env`]: the `OTEL_BSP_*` and `OTEL_TRACES_SAMPLER*` variables, checked.
//! - [`redact`]: credentials kept out of logs and spans.
//! - [`probe`]: the `probe` subcommand, a health check for images without curl.

pub mod cli;
pub mod client;
pub mod exposition;
pub mod http_method;
pub mod metrics;
pub mod otel_env;
pub mod otlp;
pub mod probe;
pub mod redact;
pub mod serve;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

pub use telemetry::Instrumentation;

/// The source revision baked in at build time (`BUILD_REVISION`, which the
/// Dockerfile passes from `docker buildx bake`'s `REVISION`), or `unknown`.
pub const REVISION: &str = match option_env!("BUILD_REVISION") {
    Some(revision) if !revision.is_empty() => revision,
    _ => "unknown",
};
