//! The instrumentation handle: each router and client traces with the handle
//! it was given, whatever other handles the process holds; the process's
//! set-up happens once.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use instrumentation::Instrumentation;
use instrumentation::exposition::{Format, encode};
use instrumentation::metrics::HttpServerMetrics;
use instrumentation::server::{
    TRACE_RESPONSE_HEADER, Tracing, instrument_routes, instrumented_get,
};
use instrumentation::telemetry::{TelemetryError, init};
use opentelemetry_sdk::trace::Sampler;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

/// A `/ping` route traced with `instrumentation`, and its registry.
fn traced_ping(instrumentation: &Instrumentation) -> (Router, Registry) {
    let mut registry = Registry::default();
    let metrics = HttpServerMetrics::register(&mut registry);
    let router = Router::new().route("/ping", get(|| async { "pong\n" }));
    (
        instrument_routes(router, instrumentation, &metrics, Tracing::Traced),
        registry,
    )
}

async fn ping(router: &Router) -> axum::response::Response {
    let request = Request::get("/ping").body(Body::empty()).expect("request");
    match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[tokio::test]
async fn each_router_samples_with_the_handle_it_was_given() {
    let always = Instrumentation::unexported(Sampler::AlwaysOn);
    let never = Instrumentation::unexported(Sampler::AlwaysOff);
    let (sampled, sampled_registry) = traced_ping(&always);
    let (unsampled, unsampled_registry) = traced_ping(&never);
    for _ in 0..3 {
        let answer = ping(&sampled).await;
        assert_eq!(answer.status(), 200);
        assert!(answer.headers().contains_key(TRACE_RESPONSE_HEADER));
        let answer = ping(&unsampled).await;
        assert_eq!(answer.status(), 200);
        assert!(!answer.headers().contains_key(TRACE_RESPONSE_HEADER));
    }
    // Each registry counts its own router's requests, exemplars only where sampled.
    let sampled_page = encode(&sampled_registry, Format::OpenMetrics).expect("encodes");
    let unsampled_page = encode(&unsampled_registry, Format::OpenMetrics).expect("encodes");
    let count_line = |page: &str| {
        page.lines()
            .find(|line| {
                line.starts_with(
                    r#"http_requests_total{handler="/ping",method="GET",code="200"} 3"#,
                )
            })
            .map(str::to_owned)
    };
    assert!(
        count_line(&sampled_page).is_some_and(|line| line.contains("# {trace_id=")),
        "{sampled_page}"
    );
    assert_eq!(
        count_line(&unsampled_page).as_deref(),
        Some(r#"http_requests_total{handler="/ping",method="GET",code="200"} 3"#),
        "{unsampled_page}"
    );
}

/// A ping carrying a sampled `traceparent`, through `router`: the trace its
/// answer names, if any.
async fn ping_from_a_sampled_caller(router: &Router) -> Option<String> {
    let request = Request::get("/ping")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(Body::empty())
        .expect("request");
    let answer = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    assert_eq!(answer.status(), 200);
    answer
        .headers()
        .get(TRACE_RESPONSE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_sampled_caller_is_followed_unless_the_sampler_never_samples() {
    // always_off reads no trace context at all; the others join the caller's trace.
    let never = Instrumentation::unexported(Sampler::AlwaysOff);
    assert_eq!(
        ping_from_a_sampled_caller(&traced_ping(&never).0).await,
        None
    );
    for sampler in [
        Sampler::AlwaysOn,
        Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
    ] {
        let instrumentation = Instrumentation::unexported(sampler.clone());
        let trace = ping_from_a_sampled_caller(&traced_ping(&instrumentation).0).await;
        assert!(
            trace.as_deref().is_some_and(|trace| trace
                .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
                && trace.ends_with("-01")),
            "{sampler:?}: {trace:?}"
        );
    }
}

#[test]
fn a_second_set_up_in_one_process_is_an_error() {
    let first = init("handle-test", "0", Vec::new()).expect("the first set-up succeeds");
    let second = init("handle-test", "0", Vec::new());
    assert!(
        matches!(second, Err(TelemetryError::AlreadySetUp)),
        "{second:?}"
    );
    let message = TelemetryError::AlreadySetUp.to_string();
    assert!(message.contains("already set up"), "{message}");
    first.shutdown();
}

/// `method /ping` through `router`: its status and `Allow` header.
async fn call(router: &Router, method: &str) -> (u16, Option<String>) {
    let request = Request::builder()
        .method(method)
        .uri("/ping")
        .body(Body::empty())
        .expect("request");
    let answer = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let allow = answer
        .headers()
        .get("allow")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (answer.status().as_u16(), allow)
}

/// The `http_requests_total` lines of a page, exemplars cut off.
fn request_counts(registry: &Registry) -> Vec<String> {
    let page = encode(registry, Format::OpenMetrics).expect("encodes");
    page.lines()
        .filter(|line| line.starts_with("http_requests_total{"))
        .map(|line| line.split(" # ").next().unwrap_or(line).to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_route_instrumented_before_boxing_answers_and_counts_as_a_layered_one() {
    let instrumentation = Instrumentation::unexported(Sampler::AlwaysOn);
    let (layered, layered_registry) = traced_ping(&instrumentation);
    let mut registry = Registry::default();
    let metrics = HttpServerMetrics::register(&mut registry);
    let wrapped = Router::new().route(
        "/ping",
        instrumented_get(
            || async { "pong\n" },
            &instrumentation,
            &metrics,
            Tracing::Traced,
        ),
    );
    for method in ["GET", "HEAD", "POST", "DELETE", "BREW", "GET"] {
        let expected = call(&layered, method).await;
        assert_eq!(call(&wrapped, method).await, expected, "{method}");
    }
    assert_eq!(call(&wrapped, "POST").await, (405, Some("GET,HEAD".into())));
    assert_eq!(call(&layered, "POST").await, (405, Some("GET,HEAD".into())));
    let counts = request_counts(&registry);
    assert_eq!(counts, request_counts(&layered_registry));
    for line in [
        r#"http_requests_total{handler="/ping",method="GET",code="200"} 2"#,
        r#"http_requests_total{handler="/ping",method="HEAD",code="200"} 1"#,
        r#"http_requests_total{handler="/ping",method="DELETE",code="405"} 1"#,
        r#"http_requests_total{handler="/ping",method="POST",code="405"} 2"#,
        r#"http_requests_total{handler="/ping",method="_OTHER",code="405"} 1"#,
    ] {
        assert!(
            counts.iter().any(|count| count == line),
            "{line} in {counts:?}"
        );
    }
    // Sampled requests name their trace, the 405s included.
    let request = Request::post("/ping").body(Body::empty()).expect("request");
    let answer = match wrapped.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    assert!(answer.headers().contains_key(TRACE_RESPONSE_HEADER));
}
