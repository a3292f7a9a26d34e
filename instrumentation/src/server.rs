//! Server-side request instrumentation as an axum middleware.
//!
//! Apply it with `Router::route_layer`, so that it sees the matched route
//! template and unmatched paths (404s) create no series.

use std::borrow::Cow;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{
    HttpServerMetrics, ServerLabels, TraceExemplar, handler_label, method_label, status_label,
};
use crate::telemetry::RequestTrace;

/// The response header naming the request's trace, in the W3C Trace Context
/// Level 2 `traceresponse` form: `00-<trace id>-<span id>-<flags>`.
pub const TRACE_RESPONSE_HEADER: &str = "traceresponse";
/// The same trace ID alone, for people pasting it into Tempo's search.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Whether requests to a route get a trace. Scrapes and probes arrive every
/// few seconds and would bury the interesting traces, so they are only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracing {
    Traced,
    Untraced,
}

#[derive(Clone)]
struct LayerState {
    metrics: HttpServerMetrics,
    tracing: Tracing,
}

/// Wraps every route of `router` with a middleware that records
/// `http_requests_total`, `http_request_duration_seconds` and
/// `http_requests_in_flight` and, for traced routes, runs the handler inside a
/// server span joined to the caller's trace (W3C `traceparent`).
pub fn instrument_routes<S>(
    router: Router<S>,
    metrics: HttpServerMetrics,
    tracing: Tracing,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(middleware::from_fn_with_state(
        LayerState { metrics, tracing },
        instrument,
    ))
}

async fn instrument(State(state): State<LayerState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let handler: Cow<'static, str> = match request.extensions().get::<MatchedPath>() {
        Some(path) => handler_label(path.as_str()),
        None => Cow::Borrowed("unmatched"),
    };
    let method = method_label(request.method());
    let _in_flight = state.metrics.start(handler.clone());

    let (mut response, span_context) = match state.tracing {
        Tracing::Untraced => (next.run(request).await, None),
        Tracing::Traced => {
            let parent = crate::telemetry::extract_context(request.headers());
            match crate::telemetry::decide(parent, SpanKind::Server, &handler) {
                RequestTrace::Unsampled(span_context) => {
                    (next.run(request).await, Some(span_context))
                }
                RequestTrace::Sampled(parent) => {
                    let span = tracing::info_span!(
                        "server request",
                        otel.name = format!("{method} {handler}"),
                        otel.kind = "server",
                        otel.status_code = tracing::field::Empty,
                        http.request.method = %method,
                        http.route = %handler,
                        http.response.status_code = tracing::field::Empty,
                        trace_id = tracing::field::Empty,
                    );
                    // The parent must be set before the span starts; `context()` starts it.
                    let _ = span.set_parent(parent);
                    let span_context = span.context().span().span_context().clone();
                    if span_context.is_valid() {
                        span.record("trace_id", tracing::field::display(span_context.trace_id()));
                    }
                    let response = next.run(request).instrument(span.clone()).await;
                    let status = response.status().as_u16();
                    span.record("http.response.status_code", status);
                    if status >= 500 {
                        span.record("otel.status_code", "ERROR");
                    }
                    (response, Some(span_context))
                }
            }
        }
    };

    let labels = ServerLabels {
        handler,
        method,
        code: status_label(response.status().as_u16()),
    };
    let exemplar = span_context.as_ref().and_then(TraceExemplar::for_span);
    state.metrics.record(&labels, started.elapsed(), exemplar);

    if let Some(span_context) = span_context.filter(|context| context.is_valid()) {
        let flags = if span_context.is_sampled() {
            "01"
        } else {
            "00"
        };
        let trace_response = format!(
            "00-{}-{}-{flags}",
            span_context.trace_id(),
            span_context.span_id()
        );
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&trace_response) {
            headers.insert(TRACE_RESPONSE_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&span_context.trace_id().to_string()) {
            headers.insert(TRACE_ID_HEADER, value);
        }
    }
    response
}

/// The message of the log line that [`bind`] writes.
const LISTENING: &str = "listening";

/// Binds the listen address and logs the address actually bound (port 0 picks
/// a free one), which is how tests and scripts learn where to connect: see
/// [`listening_address`].
pub async fn bind(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "{LISTENING}");
    Ok(listener)
}

/// The address in a JSON log line written by [`bind`], for programs that
/// start a service on port 0 and read its stderr.
pub fn listening_address(line: &str) -> Option<std::net::SocketAddr> {
    let log: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = log.get("fields")?;
    if fields.get("message")?.as_str()? != LISTENING {
        return None;
    }
    fields.get("address")?.as_str()?.parse().ok()
}
