//! The span exporter for checked [`ExportSettings`]: OTLP/HTTP through
//! opentelemetry-http's hyper client over rustls, or OTLP/gRPC through tonic.
//!
//! The batch span processor exports from a thread of its own, outside any
//! tokio runtime, while both clients need one: each export runs on a small
//! runtime that belongs to the exporter (one worker thread), so that it does
//! not depend on the service's runtime, which is gone before the last spans
//! are flushed at shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::report::FailureReport;
use super::{ExportSettings, OtlpConfigError, OtlpProtocol, TlsSettings, TrustedRoots};

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportBuildError {
    #[error(transparent)]
    Config(#[from] OtlpConfigError),
    #[error("OTEL_EXPORTER_OTLP_*: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the span export thread: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The exporter and the runtime its exports run on. Shut the tracer provider
/// down (which flushes through the exporter) before dropping this.
#[derive(Debug)]
pub(crate) struct ExportPipeline {
    pub exporter: ReportingExporter,
    pub runtime: tokio::runtime::Runtime,
}

/// Builds the exporter `settings` describe.
pub(crate) fn build(settings: &ExportSettings) -> Result<ExportPipeline, ExportBuildError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(ExportBuildError::Runtime)?;
    let transport_error = TransportError::default();
    let exporter = match settings.protocol {
        OtlpProtocol::HttpProtobuf => http_exporter(settings, transport_error.clone())?,
        OtlpProtocol::Grpc => {
            // tonic's channel starts its worker task on the current runtime.
            let _entered = runtime.enter();
            grpc_exporter(settings)?
        }
    };
    Ok(ExportPipeline {
        exporter: ReportingExporter {
            inner: Arc::new(exporter),
            runtime: runtime.handle().clone(),
            transport_error,
            report: Arc::new(FailureReport::new(
                settings.endpoint.redacted(),
                settings.protocol,
            )),
        },
        runtime,
    })
}

fn http_exporter(
    settings: &ExportSettings,
    transport_error: TransportError,
) -> Result<opentelemetry_otlp::SpanExporter, ExportBuildError> {
    let tls = rustls_config(settings)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = RecordingClient {
        inner: HyperClient::new(connector, settings.timeout, None),
        transport_error,
    };
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.uri.to_string())
        .with_timeout(settings.timeout)
        .build()?)
}

/// The client's TLS configuration: `ring` for cryptography, the settings'
/// roots and client identity. A plain `http` endpoint gets one with no roots,
/// never used.
fn rustls_config(settings: &ExportSettings) -> Result<rustls::ClientConfig, OtlpConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let identity = match &settings.tls {
        None => None,
        Some(TlsSettings {
            roots: trusted,
            identity,
        }) => {
            let certificates = match trusted {
                TrustedRoots::Platform(certificates) => certificates,
                TrustedRoots::File { certificates, .. } => certificates,
            };
            roots.add_parsable_certificates(certificates.iter().cloned());
            identity.as_ref()
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| OtlpConfigError::Tls {
            variable: settings.endpoint.variable,
            error,
        })?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|error| OtlpConfigError::Tls {
                variable: identity.key_variable,
                error,
            }),
    }
}

#[cfg(feature = "grpc")]
fn grpc_exporter(
    settings: &ExportSettings,
) -> Result<opentelemetry_otlp::SpanExporter, ExportBuildError> {
    use opentelemetry_otlp::WithTonicConfig;
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};

    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.uri.to_string())
        .with_timeout(settings.timeout);
    if let Some(tls) = &settings.tls {
        let mut config = ClientTlsConfig::new();
        config = match &tls.roots {
            TrustedRoots::Platform(_) => config.with_native_roots(),
            TrustedRoots::File { pem, .. } => config.ca_certificate(Certificate::from_pem(pem)),
        };
        if let Some(identity) = &tls.identity {
            config = config.identity(Identity::from_pem(&identity.chain_pem, &identity.key_pem));
        }
        builder = builder.with_tls_config(config);
    }
    Ok(builder.build()?)
}

#[cfg(not(feature = "grpc"))]
fn grpc_exporter(
    _settings: &ExportSettings,
) -> Result<opentelemetry_otlp::SpanExporter, ExportBuildError> {
    unreachable!("OtlpProtocol::Grpc is refused when the grpc feature is off")
}

/// The description of the last failed HTTP request: opentelemetry-otlp
/// reports every transport failure as "network error", and a person needs the
/// cause (refused, certificate, timeout).
#[derive(Clone, Debug, Default)]
struct TransportError(Arc<Mutex<Option<String>>>);

impl TransportError {
    fn set(&self, description: String) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(description);
        }
    }

    fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut last| last.take())
    }
}

/// The hyper client, noting the cause of each failed request.
#[derive(Debug)]
struct RecordingClient {
    inner: HyperClient<HttpsConnector<HttpConnector>>,
    transport_error: TransportError,
}

#[async_trait::async_trait]
impl HttpClient for RecordingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let result = self.inner.send_bytes(request).await;
        if let Err(error) = &result {
            self.transport_error.set(describe(error.as_ref()));
        }
        result
    }
}

/// An error and its sources on one line, each distinct message once.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

/// The OTLP exporter, run on the export runtime, its failures logged at most
/// once per interval (see [`FailureReport`]) rather than at every batch.
#[derive(Debug)]
pub(crate) struct ReportingExporter {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
    transport_error: TransportError,
    report: Arc<FailureReport>,
}

impl SpanExporter for ReportingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        let result = match self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(result) => result,
            Err(error) => Err(OTelSdkError::InternalFailure(format!(
                "the export task ended: {error}"
            ))),
        };
        match &result {
            Ok(()) => self.report.succeeded(),
            Err(error) => {
                let detail = self
                    .transport_error
                    .take()
                    .unwrap_or_else(|| error.to_string());
                self.report.failed(&detail);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once, when the provider is built, before any export shares
        // the exporter.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
