//! The `/metrics` endpoint.
//!
//! Prometheus asks for OpenMetrics first; only that format can carry
//! exemplars. Anything else (curl, older scrapers) gets the classic 0.0.4 text
//! format, which must never contain exemplars: a classic-format parser rejects
//! the whole scrape when it meets one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition formats `/metrics` can answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// Picks the format from an `Accept` header: OpenMetrics when the client
    /// lists `application/openmetrics-text` without refusing it (`q=0`).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let accepts_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media_type = parts.next().unwrap_or_default();
                media_type.eq_ignore_ascii_case("application/openmetrics-text")
                    && !parts.any(|parameter| {
                        parameter
                            .strip_prefix("q=")
                            .and_then(|q| q.parse::<f64>().ok())
                            .is_some_and(|q| q <= 0.0)
                    })
            })
        });
        if accepts_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Classic => CLASSIC_CONTENT_TYPE,
        }
    }
}

/// Encodes the whole registry in the given format.
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut body = String::with_capacity(16 * 1024);
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut body, registry)?,
        Format::Classic => {
            prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?
        }
    }
    Ok(body)
}

/// The axum handler for `GET /metrics`; its state is the registry.
pub async fn metrics_handler(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    match encode(&registry, format) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response(),
    }
}

/// The routes every service exposes besides its own: `/metrics` (this
/// registry) and `/healthz` (alive as long as the process serves HTTP).
pub fn operational_routes(registry: Registry) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_handler))
        .with_state(Arc::new(registry))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_accept_header_gets_openmetrics() {
        let prometheus_2_42 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Format::negotiate(Some(prometheus_2_42)),
            Format::OpenMetrics
        );
    }

    #[test]
    fn plain_clients_get_the_classic_format() {
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Classic);
    }

    #[test]
    fn refused_openmetrics_is_not_served() {
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Classic
        );
    }
}
