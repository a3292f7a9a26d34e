//! A real OTLP trace receiver, as a collector is: OTLP/HTTP (`POST
//! /v1/traces` with an `application/x-protobuf` `ExportTraceServiceRequest`)
//! or OTLP/gRPC (the generated `TraceService` server), each in plain text or
//! over TLS (optionally requiring a client certificate). It keeps every span
//! for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::background::Stopped;
use crate::tls::TestPki;

/// One span as received, ids in lowercase hex.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service_name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The OTLP span kind: 2 server, 3 client.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// The attributes of the resource (the process) that sent the span.
    pub resource: BTreeMap<String, String>,
}

pub const SPAN_KIND_SERVER: i32 = 2;
pub const SPAN_KIND_CLIENT: i32 = 3;

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// How the receiver is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpTransport {
    /// OTLP/HTTP with protobuf bodies (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`).
    Http,
    /// OTLP/gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`).
    Grpc,
}

/// TLS for the receiver: the server certificate of `pki`, and whether
/// clients must present a certificate signed by its CA.
#[derive(Clone, Copy)]
pub struct ReceiverTls<'a> {
    pub pki: &'a TestPki,
    pub require_client_certificate: bool,
}

/// The receiver; it stops when dropped.
pub struct OtlpReceiver {
    server: crate::BackgroundServer,
    spans: Spans,
    transport: OtlpTransport,
    tls: bool,
    handshake_errors: Arc<Mutex<Vec<String>>>,
}

impl OtlpReceiver {
    /// A plain OTLP/HTTP receiver.
    pub fn start() -> Self {
        Self::serve(OtlpTransport::Http, None)
    }

    pub fn serve(transport: OtlpTransport, tls: Option<ReceiverTls<'_>>) -> Self {
        let spans: Spans = Arc::default();
        let handshake_errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let server = match transport {
            OtlpTransport::Http => {
                let router = Router::new()
                    .route("/v1/traces", post(receive))
                    .with_state(spans.clone());
                match tls {
                    None => crate::BackgroundServer::start(router),
                    Some(tls) => {
                        let acceptor = TlsAcceptor::from(
                            tls.pki.server_config(tls.require_client_certificate),
                        );
                        let errors = handshake_errors.clone();
                        crate::BackgroundServer::start_with(move |listener, stop| async move {
                            let listener = TlsListener {
                                listener,
                                acceptor,
                                errors,
                            };
                            let _ = axum::serve(listener, router)
                                .with_graceful_shutdown(stop)
                                .await;
                        })
                    }
                }
            }
            OtlpTransport::Grpc => {
                let service = TraceServiceServer::new(GrpcReceiver {
                    spans: spans.clone(),
                });
                let tls = tls.map(|tls| {
                    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
                    let config = ServerTlsConfig::new().identity(Identity::from_pem(
                        &tls.pki.server_certificate_pem,
                        &tls.pki.server_key_pem,
                    ));
                    if tls.require_client_certificate {
                        config.client_ca_root(Certificate::from_pem(&tls.pki.ca_pem))
                    } else {
                        config
                    }
                });
                crate::BackgroundServer::start_with(move |listener, stop| {
                    serve_grpc(listener, stop, service, tls)
                })
            }
        };
        Self {
            server,
            spans,
            transport,
            tls: tls.is_some(),
            handshake_errors,
        }
    }

    /// The base URL to put in `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.server.address())
    }

    /// The value for `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn protocol(&self) -> &'static str {
        match self.transport {
            OtlpTransport::Http => "http/protobuf",
            OtlpTransport::Grpc => "grpc",
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("span lock").clone()
    }

    /// Why TLS handshakes with the OTLP/HTTP receiver failed, in order.
    pub fn handshake_errors(&self) -> Vec<String> {
        self.handshake_errors.lock().expect("error lock").clone()
    }
}

async fn serve_grpc(
    listener: TcpListener,
    stop: Stopped,
    service: TraceServiceServer<GrpcReceiver>,
    tls: Option<tonic::transport::ServerTlsConfig>,
) {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).expect("receiver TLS configuration");
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let _ = builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop)
        .await;
}

/// The OTLP/gRPC `TraceService`.
struct GrpcReceiver {
    spans: Spans,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        record(&self.spans, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Accepts TLS connections for axum, one handshake at a time (enough for a
/// test), noting each failed handshake rather than stopping.
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    errors: Arc<Mutex<Vec<String>>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let error =
                match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => return (tls, address),
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => "handshake timed out".to_owned(),
                };
            self.errors.lock().expect("error lock").push(error);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

async fn receive(State(spans): State<Spans>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    record(&spans, request);
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn record(spans: &Spans, request: ExportTraceServiceRequest) {
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource: BTreeMap<String, String> = resource_spans
            .resource
            .as_ref()
            .map(|resource| attribute_map(&resource.attributes))
            .unwrap_or_default();
        let service_name = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: attribute_map(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    spans.lock().expect("span lock").extend(received);
}

fn attribute_map(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|attribute| (attribute.key.clone(), attribute_value(attribute)))
        .collect()
}

fn attribute_value(attribute: &KeyValue) -> String {
    match attribute
        .value
        .as_ref()
        .and_then(|AnyValue { value }| value.as_ref())
    {
        Some(any_value::Value::StringValue(value)) => value.clone(),
        Some(any_value::Value::BoolValue(value)) => value.to_string(),
        Some(any_value::Value::IntValue(value)) => value.to_string(),
        Some(any_value::Value::DoubleValue(value)) => value.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
