//! The HTTP application: routes, the ping handler and readiness.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use instrumentation::metrics::{HttpServerMetrics, ProcessCollector, register_build_info};
use instrumentation::server::{Tracing, instrument_routes, instrumented_get};
use instrumentation::telemetry::{Instrumentation, KeyValue};
use prometheus_client::registry::Registry;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::profile::{Profile, ProfileName};

/// The response header naming the ponger version that answered.
pub const VERSION_HEADER: &str = "x-ponger-version";
// A header name given as a string is parsed on every use.
const VERSION: HeaderName = HeaderName::from_static(VERSION_HEADER);

/// Shared between the ping handler, readiness and shutdown.
#[derive(Debug)]
pub struct Pong {
    profile: Profile,
    version: String,
    /// `version` as the header every answer carries.
    version_header: HeaderValue,
    ready: AtomicBool,
    /// Each latency entry's text (`45%2s`), by index, for its spans: written
    /// once rather than for every ping.
    latency_entry_texts: Vec<String>,
    /// The child spans of a ping are made with it.
    instrumentation: Instrumentation,
}

impl Pong {
    pub fn new(profile: Profile, version: String, instrumentation: &Instrumentation) -> Arc<Self> {
        let latency_entry_texts = profile
            .latency
            .entries()
            .iter()
            .map(ToString::to_string)
            .collect();
        Arc::new(Self {
            version_header: version_header(&version, profile.name),
            profile,
            version,
            ready: AtomicBool::new(true),
            latency_entry_texts,
            instrumentation: instrumentation.clone(),
        })
    }

    /// Makes /readyz answer 503 from now on: the first step of a shutdown.
    pub fn stop_being_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }
}

/// Builds the router with its metrics registry. Injected faults apply to
/// `/ping` only, never to `/metrics`, `/healthz` or `/readyz`.
pub fn router(pong: &Arc<Pong>) -> Router {
    let mut registry = Registry::default();
    let metrics = HttpServerMetrics::register(&mut registry);
    // /ping answers 200 or 500 and nothing else: both series exist from the start.
    metrics.initialize("/ping", "GET", &[200, 500]);
    register_build_info(
        &mut registry,
        "ponger",
        vec![
            ("version".into(), pong.version.to_owned()),
            ("profile".into(), pong.profile.name.as_str().into()),
            ("revision".into(), instrumentation::REVISION.into()),
        ],
    );
    ProcessCollector::register(&mut registry);

    // The handler takes no extractor, so axum hands it nothing of the request;
    // a `State` extractor would take each request apart and put it together
    // again.
    let instrumentation = &pong.instrumentation;
    let pings = Router::new().route(
        "/ping",
        instrumented_get(
            {
                let pong = pong.clone();
                move || ping(pong)
            },
            instrumentation,
            &metrics,
            Tracing::Traced,
        ),
    );
    let probes = Router::new()
        .route("/readyz", get(readyz))
        .with_state(pong.clone())
        .merge(instrumentation::exposition::operational_routes(registry));
    pings.merge(instrument_routes(
        probes,
        instrumentation,
        &metrics,
        Tracing::Untraced,
    ))
}

thread_local! {
    /// Each thread's generator for the pings' draws, seeded once from the
    /// operating system's randomness through `rand::rng()`. The draws inject
    /// faults into a demo and need no cryptographic strength: `rand::rng()`
    /// itself (ChaCha12, reseeded) took about 190 instructions of a zero-delay
    /// ping's two draws, this about 30 (callgrind, docs/benchmarks.md).
    static DRAWS: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Two uniform draws in `[0, 1)`: the latency entry's and the status's.
fn draw_pair() -> (f64, f64) {
    DRAWS.with_borrow_mut(|rng| (rng.random::<f64>(), rng.random::<f64>()))
}

async fn ping(pong: Arc<Pong>) -> Response {
    // Both draws happen up front (the generator is not held across an
    // await) and are recorded on the spans that act on them.
    let (latency_draw, status_draw) = draw_pair();
    let (entry_index, entry) = pong.profile.latency.choose(latency_draw);
    // The profile itself (name, mix, success probability) is on the
    // resource, once per batch of spans: see `Profile::attributes`.
    if !entry.delay.is_zero() {
        let _span = pong.instrumentation.child_span("injected delay", || {
            vec![
                KeyValue::new("delay_ms", entry.delay.as_secs_f64() * 1000.0),
                KeyValue::new("latency.draw", latency_draw),
                KeyValue::new(
                    "latency.entry",
                    pong.latency_entry_texts
                        .get(entry_index)
                        .cloned()
                        .unwrap_or_default(),
                ),
                KeyValue::new("latency.entry_index", entry_index as i64),
            ]
        });
        tokio::time::sleep(entry.delay).await;
    }

    let success = pong.profile.success.succeeds(status_draw);
    let status = if success {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let _span = pong.instrumentation.child_span("status decision", || {
        vec![
            KeyValue::new("status.draw", status_draw),
            KeyValue::new("status.code", i64::from(status.as_u16())),
        ]
    });
    if !success {
        tracing::debug!(draw = status_draw, "injected failure");
    }

    let body = if success {
        "pong\n"
    } else {
        "injected failure\n"
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(VERSION, pong.version_header.clone());
    response
}

/// The version as the header every answer carries. The usual version, the
/// profile's own name, is a `'static` string whose value is copied for free;
/// any other is copied from one shared value, which writes its count (a
/// cache line every core's pings write; a fresh copy for each answer
/// allocates and costs more: 250 instructions of a zero-delay ping's 15,600,
/// callgrind).
fn version_header(version: &str, profile: ProfileName) -> HeaderValue {
    if version == profile.as_str() {
        HeaderValue::from_static(profile.as_str())
    } else {
        // The configuration accepts letters, digits, `.`, `-` and `_` only.
        HeaderValue::from_str(version).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

async fn readyz(State(pong): State<Arc<Pong>>) -> (StatusCode, &'static str) {
    if pong.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}
