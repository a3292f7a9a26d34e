//! Client-side request instrumentation around reqwest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};

use crate::http_method::{method_label, span_name};
use crate::metrics::{HttpClientMetrics, Outcome, TraceExemplar};
use crate::telemetry::{Instrumentation, RequestTrace};

/// The method of every request this client sends.
const METHOD: http::Method = http::Method::GET;

/// What became of one request.
#[derive(Debug)]
pub struct ClientResponse {
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// The trace the request belongs to, when it was traced.
    pub trace_id: Option<TraceId>,
    /// Why no (complete) response came, when none did.
    pub error: Option<reqwest::Error>,
}

/// Sends requests to one logical target service, each as the root span of a
/// new trace made by the service's [`Instrumentation`], and records
/// `http_client_*` metrics for it.
///
/// A clone (one per request, for a task of its own) copies one pointer.
#[derive(Clone, Debug)]
pub struct InstrumentedClient(Arc<ClientParts>);

#[derive(Debug)]
struct ClientParts {
    client: reqwest::Client,
    instrumentation: Instrumentation,
    metrics: HttpClientMetrics,
    target: String,
}

impl InstrumentedClient {
    /// `target` is the service's name used as the `target` label; the
    /// client's own timeout bounds each request, body included.
    pub fn new(
        client: reqwest::Client,
        instrumentation: &Instrumentation,
        metrics: HttpClientMetrics,
        target: String,
    ) -> Self {
        Self(Arc::new(ClientParts {
            client,
            instrumentation: instrumentation.clone(),
            metrics,
            target,
        }))
    }

    /// GETs `url` and reads the whole body. Never fails: a missing or broken
    /// response is an [`Outcome`] like any status code, counted and timed.
    pub async fn get(&self, url: &reqwest::Url) -> ClientResponse {
        let ClientParts {
            client,
            instrumentation,
            metrics,
            target,
        } = &*self.0;
        // Each request starts a new trace, unless the sampler drops it: then it
        // gets no span, and its trace context (flags 00) tells the server so.
        let (span, context) =
            match instrumentation.decide(opentelemetry::Context::new(), SpanKind::Client, target) {
                RequestTrace::Unsampled(span_context) => (
                    None,
                    opentelemetry::Context::new().with_remote_span_context(span_context),
                ),
                RequestTrace::Sampled(parent) => {
                    let span = instrumentation.start_request_span(
                        &parent,
                        SpanKind::Client,
                        span_name(&METHOD, target),
                        [
                            KeyValue::new("http.request.method", method_label(&METHOD)),
                            KeyValue::new("url.full", crate::redact::redact_url(url).to_string()),
                            KeyValue::new(
                                "server.address",
                                url.host_str().unwrap_or_default().to_owned(),
                            ),
                        ],
                    );
                    (Some(span.clone()), span)
                }
            };
        let span_context = context.span().span_context().clone();
        let trace_id = span_context.is_valid().then(|| span_context.trace_id());

        let mut request = client.request(METHOD, url.clone());
        let mut headers = http::HeaderMap::new();
        instrumentation.inject_context(&context, &mut headers);
        request = request.headers(headers);

        let _in_flight = metrics.start(target);
        let started = Instant::now();
        let result = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            // The whole body counts: a response cut short is a failure users see.
            response.bytes().await?;
            Ok::<u16, reqwest::Error>(status)
        }
        .await;
        let elapsed = started.elapsed();

        // reqwest's errors quote the URL, credentials and all.
        let result = result.map_err(|error| match crate::redact::redact_url(url) {
            std::borrow::Cow::Borrowed(_) => error,
            std::borrow::Cow::Owned(redacted) => error.with_url(redacted),
        });
        let (outcome, error) = match result {
            Ok(status) => (Outcome::Status(status), None),
            Err(error) if error.is_timeout() => (Outcome::Timeout, Some(error)),
            Err(error) if error.is_connect() => (Outcome::ConnectError, Some(error)),
            Err(error) => (Outcome::Error, Some(error)),
        };
        if let Some(span) = span {
            let attribute = match outcome {
                Outcome::Status(status) => {
                    KeyValue::new("http.response.status_code", i64::from(status))
                }
                other => KeyValue::new("error.type", other.label()),
            };
            crate::telemetry::end_request_span(&span, attribute, !outcome.is_success());
        }

        metrics.record(
            target,
            method_label(&METHOD),
            outcome,
            elapsed,
            TraceExemplar::for_span(&span_context),
        );
        ClientResponse {
            outcome,
            elapsed,
            trace_id,
            error,
        }
    }
}
