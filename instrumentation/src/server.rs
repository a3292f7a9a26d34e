//! Server-side request instrumentation as an axum middleware.
//!
//! Apply it with `Router::route_layer`, so that it sees the matched route
//! template and unmatched paths (404s) create no series.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt};
use tower::service_fn;
use tower::{Layer, Service};

use crate::http_method::{method_label, original_method, span_name};
use crate::metrics::{HttpServerMetrics, InFlightRequest, TraceExemplar};
use crate::telemetry::Instrumentation;

/// The response header naming the request's trace, in the W3C Trace Context
/// Level 2 `traceresponse` form: `00-<trace id>-<span id>-<flags>`. Sent for
/// sampled requests only, whose trace is recorded.
pub const TRACE_RESPONSE_HEADER: &str = "traceresponse";
/// The same trace ID alone, for people pasting it into Tempo's search.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

// Header names given as strings are parsed on every use.
const TRACE_RESPONSE: HeaderName = HeaderName::from_static(TRACE_RESPONSE_HEADER);
const TRACE_ID: HeaderName = HeaderName::from_static(TRACE_ID_HEADER);

/// Whether requests to a route get a trace. Scrapes and probes arrive every
/// few seconds and would bury the interesting traces, so they are only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracing {
    Traced,
    Untraced,
}

/// Wraps every route of `router` with a middleware that records
/// `http_requests_total`, `http_request_duration_seconds` and
/// `http_requests_in_flight` into `metrics` and, for traced routes, runs the
/// handler inside a server span joined to the caller's trace (W3C
/// `traceparent`), made by `instrumentation`.
///
/// What the routes share (the metrics, their caches, the tracer) sits behind
/// one `Arc` per call. axum clones a route's service for every request, so
/// every request writes that count (a cache line that every core's requests
/// write); everything behind it is only read. The `serve/*` benchmarks in
/// `bench/benches/instrumentation.rs` measure what that costs.
pub fn instrument_routes<S>(
    router: Router<S>,
    instrumentation: &Instrumentation,
    metrics: &HttpServerMetrics,
    tracing: Tracing,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(InstrumentLayer::new(instrumentation, metrics, tracing))
}

/// `GET` (and `HEAD`) of one route answered by `handler`, and every other
/// method by `405 Method Not Allowed`, all instrumented as
/// [`instrument_routes`] does; for the route whose throughput matters.
///
/// The middleware wraps the handler before axum boxes it, where
/// `route_layer` wraps the route axum has already boxed: a second boxed
/// service cloned and a second future boxed for every request, about 1,000
/// instructions of a zero-delay ping's 15,600 (callgrind; docs/benchmarks.md).
pub fn instrumented_get<H, T, S>(
    handler: H,
    instrumentation: &Instrumentation,
    metrics: &HttpServerMetrics,
    tracing: Tracing,
) -> MethodRouter<S>
where
    H: Handler<T, ()>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    let layer = InstrumentLayer::new(instrumentation, metrics, tracing);
    // axum's own 405 is a fallback too, so that a method the route does not
    // serve is counted under the route as it is with `instrument_routes`.
    let method_not_allowed = service_fn(|_: Request| {
        std::future::ready(Ok::<_, Infallible>(
            StatusCode::METHOD_NOT_ALLOWED.into_response(),
        ))
    });
    MethodRouter::new()
        .get_service(layer.layer(handler.with_state(())))
        .fallback_service(layer.layer(method_not_allowed))
}

struct RouteInstrumentation {
    metrics: HttpServerMetrics,
    tracer: Instrumentation,
    tracing: Tracing,
}

/// The middleware as a tower layer rather than `axum::middleware::from_fn`,
/// which takes the request apart and puts it together again, clones the
/// inner service and its state and boxes a second future for every request:
/// together more instructions than the instrumentation itself (callgrind).
#[derive(Clone)]
struct InstrumentLayer(Arc<RouteInstrumentation>);

impl InstrumentLayer {
    fn new(
        instrumentation: &Instrumentation,
        metrics: &HttpServerMetrics,
        tracing: Tracing,
    ) -> Self {
        Self(Arc::new(RouteInstrumentation {
            metrics: metrics.clone(),
            tracer: instrumentation.clone(),
            tracing,
        }))
    }
}

impl<S> Layer<S> for InstrumentLayer {
    type Service = InstrumentService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InstrumentService {
            inner,
            instrumentation: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct InstrumentService<S> {
    inner: S,
    instrumentation: Arc<RouteInstrumentation>,
}

impl<S> Service<Request> for InstrumentService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = InstrumentedResponse<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let instrumentation = &self.instrumentation;
        let handler = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let method = method_label(request.method());
        let in_flight = instrumentation.metrics.enter(handler);
        // An unsampled request leaves no trace anywhere (no span, no exemplar,
        // no trace ID in its log lines), so its answer names none. Naming it
        // anyway cost 5% of the throughput of a zero-delay ping (wrk, side by
        // side), most of it the load generator reading the header.
        let sampled_parent = match instrumentation.tracing {
            Tracing::Untraced => None,
            Tracing::Traced => {
                instrumentation
                    .tracer
                    .sampled_parent(request.headers(), SpanKind::Server, handler)
            }
        };
        let (span, exemplar, trace_response) = match sampled_parent {
            // Recorded nowhere: no exemplar, no trace headers.
            None => (None, None, None),
            Some(parent) => {
                let attributes = [
                    KeyValue::new("http.request.method", method),
                    KeyValue::new("http.route", handler.to_owned()),
                ]
                .into_iter()
                .chain(
                    original_method(request.method())
                        .map(|original| KeyValue::new("http.request.method_original", original)),
                );
                let span = instrumentation.tracer.start_request_span(
                    &parent,
                    SpanKind::Server,
                    span_name(request.method(), handler),
                    attributes,
                );
                let span_context = span.span().span_context().clone();
                (
                    Some(span),
                    TraceExemplar::for_span(&span_context),
                    TraceResponse::new(&span_context),
                )
            }
        };
        // The inner service is ready (poll_ready above), so it is called here
        // rather than cloned into the future.
        InstrumentedResponse {
            inner: self.inner.call(request),
            span,
            finish: Some(Finish {
                started,
                instrumentation: instrumentation.clone(),
                method,
                in_flight,
                exemplar,
                trace_response,
            }),
        }
    }
}

/// The status recorded for a request whose client went away before its
/// response was ready (its timeout passed, it was killed): nginx's "client
/// closed request". Without it such requests would be counted nowhere, and a
/// version slower than its clients' timeout would show no traffic at all.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

pin_project_lite::pin_project! {
    /// The inner service's response future, polled with the request's span
    /// (if it has one) as the current OpenTelemetry context, followed by the
    /// recording. A named future rather than an `async` block: axum boxes it
    /// once, and it needs no second box.
    struct InstrumentedResponse<F> {
        #[pin]
        inner: F,
        span: Option<opentelemetry::Context>,
        finish: Option<Finish>,
    }

    impl<F> PinnedDrop for InstrumentedResponse<F> {
        // Dropped before its response existed: the connection closed under it
        // (hyper drops the handler when the client goes away).
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.finish.take() {
                // Unwinding from a panic in the handler is the server's fault.
                let status = if std::thread::panicking() {
                    500
                } else {
                    CLIENT_CLOSED_REQUEST
                };
                finish.record_status(status, this.span.take());
            }
        }
    }
}

impl<F> Future for InstrumentedResponse<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The handler's child spans and log lines find the request's span here.
        let _current = this.span.as_ref().map(|span| span.clone().attach());
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
        Poll::Ready(Ok(match this.finish.take() {
            Some(finish) => finish.record(response, this.span.take()),
            None => response,
        }))
    }
}

/// What the middleware knows of a request until its response exists.
struct Finish {
    started: Instant,
    instrumentation: Arc<RouteInstrumentation>,
    method: &'static str,
    /// The request's route, marked in flight.
    in_flight: InFlightRequest,
    exemplar: Option<TraceExemplar>,
    /// For a sampled request only.
    trace_response: Option<TraceResponse>,
}

impl Finish {
    fn record(mut self, mut response: Response, span: Option<opentelemetry::Context>) -> Response {
        if let Some(ids) = self.trace_response.take() {
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_bytes(ids.as_bytes()) {
                headers.insert(TRACE_RESPONSE, value);
            }
            if let Ok(value) = HeaderValue::from_str(ids.trace_id()) {
                headers.insert(TRACE_ID, value);
            }
        }
        self.record_status(response.status().as_u16(), span);
        response
    }

    /// Counts and times the request, ends its span and leaves the in-flight gauge.
    fn record_status(self, status: u16, span: Option<opentelemetry::Context>) {
        if let Some(span) = span {
            crate::telemetry::end_request_span(
                &span,
                KeyValue::new("http.response.status_code", i64::from(status)),
                status >= 500 || status == CLIENT_CLOSED_REQUEST,
            );
        }
        self.instrumentation.metrics.finish(
            self.in_flight,
            self.method,
            status,
            self.started.elapsed(),
            self.exemplar,
        );
    }
}

/// A span's IDs in the `traceresponse` form, `00-<trace id>-<span id>-<flags>`,
/// written without the formatting machinery (which cost as much as counting
/// the request).
struct TraceResponse([u8; 55]);

impl TraceResponse {
    fn new(span_context: &SpanContext) -> Option<Self> {
        if !span_context.is_valid() {
            return None;
        }
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex::encode_to_slice(span_context.trace_id().to_bytes(), &mut text[3..35]).ok()?;
        hex::encode_to_slice(span_context.span_id().to_bytes(), &mut text[36..52]).ok()?;
        if span_context.is_sampled() {
            text[54] = b'1';
        }
        Some(Self(text))
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn trace_id(&self) -> &str {
        // Hex digits only.
        std::str::from_utf8(&self.0[3..35]).unwrap_or_default()
    }
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
