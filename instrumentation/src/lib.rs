//! HTTP instrumentation shared by the ponger and the pinger.
//!
//! - [`metrics`]: the metric contract (server and client request counters, latency
//!   histograms carrying trace exemplars, in-flight gauges, build info, process metrics).
//! - [`exposition`]: the `/metrics` endpoint, negotiating OpenMetrics (with exemplars)
//!   or the classic Prometheus text format (without).
//! - [`server`]: an axum layer that counts, times and traces each request.
//! - [`client`]: a reqwest wrapper that counts, times and traces each outgoing request
//!   and propagates W3C trace context.
//! - [`telemetry`]: logging to stderr and OpenTelemetry tracing configured by `OTEL_*`.
//! - [`otlp`]: the span exporter's `OTEL_EXPORTER_OTLP_*` settings (HTTP or gRPC, TLS).
//! - [`shutdown`]: SIGTERM/SIGINT handling with a second signal meaning "hurry".
//! - [`cli`]: one-line configuration errors shared by both binaries.

pub mod cli;
pub mod client;
pub mod exposition;
pub mod metrics;
pub mod otlp;
pub mod server;
pub mod shutdown;
pub mod telemetry;

/// The source revision baked in at build time (`BUILD_REVISION`, which the
/// Dockerfile passes from `docker buildx bake`'s `REVISION`), or `unknown`.
pub const REVISION: &str = match option_env!("BUILD_REVISION") {
    Some(revision) if !revision.is_empty() => revision,
    _ => "unknown",
};
