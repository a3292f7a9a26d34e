//! An OTLP/HTTP protobuf trace receiver for the benchmarks: it decodes every
//! `ExportTraceServiceRequest` as a collector does, counts the spans and, when
//! asked, keeps what the delay-fidelity benchmark needs of each (trace, name,
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

async fn receive(State(received): State<Arc<Received>>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut count = 0;
    let mut kept = Vec::new();
    for scope_spans in request
        .resource_spans
        .into_iter()
        .flat_map(|resource| resource.scope_spans)
    {
        for span in scope_spans.spans {
            count += 1;
            if received.keep {
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
                kept.push(SpanSummary {
                    trace_id: span.trace_id,
                    name: span.name,
                    kind: span.kind,
                    duration: Duration::from_nanos(
                        span.end_time_unix_nano
                            .saturating_sub(span.start_time_unix_nano),
                    ),
                    delay_ms,
                });
            }
        }
    }
    received.spans.fetch_add(count, Ordering::Relaxed);
    received.requests.fetch_add(1, Ordering::Relaxed);
    if !kept.is_empty() {
        received.kept.lock().expect("sink lock").extend(kept);
    }
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}
