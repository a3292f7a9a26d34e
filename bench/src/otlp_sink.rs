//! An OTLP/HTTP protobuf trace receiver for the benchmarks: it counts the
//! spans of every `ExportTraceServiceRequest` and, when asked, decodes them
//! whole and keeps what the delay-fidelity benchmark needs of each (trace, name,
//! kind, duration, the injected delay). Unlike `testkit::OtlpReceiver` it keeps
//! span timings and accepts batches of any size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

/// What the benchmarks need of one span.
#[derive(Clone, Debug)]
pub struct SpanSummary {
    pub trace_id: Vec<u8>,
    pub name: String,
    /// The OTLP span kind: 2 server, 3 client.
    pub kind: i32,
    pub duration: Duration,
    /// The `delay_ms` attribute of the ponger's `injected delay` span.
    pub delay_ms: Option<f64>,
}

#[derive(Default)]
struct Received {
    spans: AtomicU64,
    requests: AtomicU64,
    keep: bool,
    kept: Mutex<Vec<SpanSummary>>,
}

/// The receiver; it stops when dropped.
pub struct OtlpSink {
    server: testkit::BackgroundServer,
    received: Arc<Received>,
}

impl OtlpSink {
    /// Starts on a loopback port; `keep` keeps a [`SpanSummary`] per span.
    pub fn start(keep: bool) -> Self {
        let received = Arc::new(Received {
            keep,
            ..Received::default()
        });
        let router = Router::new()
            .route("/v1/traces", post(receive))
            .layer(DefaultBodyLimit::disable())
            .with_state(received.clone());
        Self {
            server: testkit::BackgroundServer::start(router),
            received,
        }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.address())
    }

    pub fn span_count(&self) -> u64 {
        self.received.spans.load(Ordering::Relaxed)
    }

    pub fn request_count(&self) -> u64 {
        self.received.requests.load(Ordering::Relaxed)
    }

    /// The kept summaries, emptying the store.
    pub fn take(&self) -> Vec<SpanSummary> {
        std::mem::take(&mut *self.received.kept.lock().expect("sink lock"))
    }
}

/// An `ExportTraceServiceRequest` read only as deep as its spans, each left
/// as its encoded bytes: what counting them needs. The sink shares the
/// cores of the server it measures, so it does no more than that unless
/// asked to keep summaries; decoding every attribute as a collector does
/// took 1.3 us of CPU per sampled ping, a tenth of the sampled ponger's own.
#[derive(Clone, PartialEq, prost::Message)]
struct SpansOnly {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpansOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpansOnly {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpansOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpansOnly {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
}

/// The number of spans in an encoded `ExportTraceServiceRequest`.
fn count_spans(body: Bytes) -> Result<u64, prost::DecodeError> {
    let request = SpansOnly::decode(body)?;
    Ok(request
        .resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .map(|scope| scope.spans.len() as u64)
        .sum())
}

async fn receive(State(received): State<Arc<Received>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let counted = if received.keep {
        summaries(body).map(|kept| {
            let count = kept.len() as u64;
            received.kept.lock().expect("sink lock").extend(kept);
            count
        })
    } else {
        count_spans(body)
    };
    let Ok(count) = counted else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    received.spans.fetch_add(count, Ordering::Relaxed);
    received.requests.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// A [`SpanSummary`] of every span in an encoded `ExportTraceServiceRequest`,
/// decoded whole.
fn summaries(body: Bytes) -> Result<Vec<SpanSummary>, prost::DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    Ok(request
        .resource_spans
        .into_iter()
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .map(|span| {
            let delay_ms = span
                .attributes
                .iter()
                .find(|attribute| attribute.key == "delay_ms")
                .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
                .and_then(|value| match value {
                    any_value::Value::DoubleValue(value) => Some(*value),
                    any_value::Value::IntValue(value) => Some(*value as f64),
                    _ => None,
                });
            SpanSummary {
                trace_id: span.trace_id,
                name: span.name,
                kind: span.kind,
                duration: Duration::from_nanos(
                    span.end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano),
                ),
                delay_ms,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn spans(names: &[&str]) -> Vec<Span> {
        names
            .iter()
            .map(|name| Span {
                name: (*name).to_owned(),
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                ..Span::default()
            })
            .collect()
    }

    #[test]
    fn counting_finds_every_span_of_every_resource_and_scope() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![
                        ScopeSpans {
                            spans: spans(&["GET /ping", "status decision"]),
                            ..ScopeSpans::default()
                        },
                        ScopeSpans {
                            spans: spans(&["injected delay"]),
                            ..ScopeSpans::default()
                        },
                    ],
                    ..ResourceSpans::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: spans(&["GET /ping"]),
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                },
            ],
        };
        let body = Bytes::from(request.encode_to_vec());
        assert_eq!(count_spans(body.clone()), Ok(4));
        let names: Vec<String> = summaries(body)
            .expect("decodes")
            .into_iter()
            .map(|summary| summary.name)
            .collect();
        assert_eq!(
            names,
            [
                "GET /ping",
                "status decision",
                "injected delay",
                "GET /ping"
            ]
        );
        assert_eq!(count_spans(Bytes::new()), Ok(0));
    }

    #[test]
    fn counting_refuses_what_is_not_protobuf() {
        let garbage = Bytes::from_static(b"\x0a\xff\xff\xff\xff\x0f{}");
        assert!(count_spans(garbage.clone()).is_err());
        assert!(summaries(garbage).is_err());
    }
}
