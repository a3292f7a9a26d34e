//! Per-request instrumentation cost and `/metrics` encoding cost.
//!
//! `record/*` does, for one request, what the server middleware
//! (`instrumentation::server`) does besides running the handler and its span:
//! build the labels from the matched route and the status, mark the request in
//! flight, build the exemplar from the span context, observe the latency
//! histogram (with exemplar), increment the counter (with exemplar) and leave
//! the in-flight gauge. Label lookup in the metric families is included.
//! `record/unsampled_while_another_core_records` and `record_contention/*`
//! show what recording into the same series from several threads costs.
//!
//! `serve/*` sends one request through an instrumented axum router, in
//! process (no socket): the whole server layer, and axum's per-request work
//! around it (it clones a route's service for every request). `untraced` is a
//! probe's route, `sampled` a ping's with its span (exported nowhere);
//! `untraced_while_another_core_serves` adds a second thread serving through
//! the same router, which shows what every core writing the same memory costs.
//! `bare` and `bare_while_another_core_serves` are the same without the
//! instrumentation: axum's own share of both.
//!
//! `encode/*` encodes the ponger's default page: the same registry (server
//! metrics, build info, process collector) holding the series a running ponger
//! has after serving pings (200 and 500, with exemplars), scrapes and probes.
//!
//! Allocations per request are counted with a counting global allocator and
//! printed before the timings.
//!
//! Run: `cargo bench -p pingpong-bench --bench instrumentation`
//! (`-- --test` runs each benchmark once, as a smoke test).
//!
//! Instructions per request, with callgrind: with `SERVE_REQUESTS=<n>` set the
//! benchmark only sends n untraced and n sampled requests through the router
//! and exits; the difference between two runs (say n = 1,000 and 11,000)
//! divided by the difference in n is the cost of one of each.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use instrumentation::Instrumentation;
use instrumentation::exposition::{Format, encode};
use instrumentation::metrics::{
    HttpServerMetrics, ProcessCollector, ServerLabels, TraceExemplar, register_build_info,
};
use instrumentation::server::{Tracing, instrument_routes, instrumented_get};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::Sampler;
use prometheus_client::registry::Registry;

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn span_context(sampled: bool) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId::INVALID),
        SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId::INVALID),
        flags,
        true,
        TraceState::default(),
    )
}

/// The metric work of the server middleware for one request.
fn record_request(
    metrics: &HttpServerMetrics,
    route: &'static str,
    status: u16,
    span_context: &SpanContext,
) {
    let in_flight = metrics.start(route);
    let labels = ServerLabels {
        handler: Cow::Borrowed(route),
        method: Cow::Borrowed("GET"),
        code: instrumentation::metrics::status_label(status),
    };
    let exemplar = TraceExemplar::for_span(span_context);
    metrics.record(&labels, Duration::from_micros(180), exemplar);
    drop(in_flight);
}

/// The ponger's registry, as `ponger::app::router` builds it, with the series
/// a running ponger has.
fn ponger_registry() -> Registry {
    let mut registry = Registry::default();
    let metrics = HttpServerMetrics::register(&mut registry);
    register_build_info(
        &mut registry,
        "ponger",
        vec![
            ("version".into(), "initial".into()),
            ("profile".into(), "initial".into()),
            ("revision".into(), "0123456789abcdef".into()),
        ],
    );
    ProcessCollector::register(&mut registry);
    let sampled = span_context(true);
    let unsampled = span_context(false);
    for (route, status, context) in [
        ("/ping", 200, &sampled),
        ("/ping", 500, &sampled),
        ("/metrics", 200, &unsampled),
        ("/readyz", 200, &unsampled),
        ("/healthz", 200, &unsampled),
    ] {
        record_request(&metrics, route, status, context);
    }
    registry
}

/// `iters` records on each of `threads` threads released together; the wall
/// time until the last one finishes.
fn record_on_threads(
    metrics: &HttpServerMetrics,
    threads: u64,
    iters: u64,
    span_context: &SpanContext,
) -> Duration {
    let start = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    for _ in 0..iters {
                        record_request(metrics, black_box("/ping"), black_box(200), span_context);
                    }
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for worker in workers {
            let _ = worker.join();
        }
        began.elapsed()
    })
}

fn allocations_per_call(mut call: impl FnMut()) -> f64 {
    const CALLS: u64 = 10_000;
    call(); // the first call creates the series
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..CALLS {
        call();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / CALLS as f64
}

fn report_allocations() {
    let metrics = HttpServerMetrics::register(&mut Registry::default());
    let sampled = span_context(true);
    let unsampled = span_context(false);
    let registry = ponger_registry();
    println!(
        "allocations per call: record/sampled {:.2}, record/unsampled {:.2}, encode/openmetrics {:.2}, encode/classic {:.2}",
        allocations_per_call(|| record_request(&metrics, "/ping", 200, &sampled)),
        allocations_per_call(|| record_request(&metrics, "/ping", 200, &unsampled)),
        allocations_per_call(|| {
            black_box(encode(&registry, Format::OpenMetrics).ok());
        }),
        allocations_per_call(|| {
            black_box(encode(&registry, Format::Classic).ok());
        }),
    );
}

fn benches(c: &mut Criterion) {
    let metrics = HttpServerMetrics::register(&mut Registry::default());
    let sampled = span_context(true);
    let unsampled = span_context(false);
    c.bench_function("record/sampled", |b| {
        b.iter(|| record_request(&metrics, black_box("/ping"), black_box(200), &sampled))
    });
    c.bench_function("record/unsampled", |b| {
        b.iter(|| record_request(&metrics, black_box("/ping"), black_box(200), &unsampled))
    });

    // The ponger's runtime has a worker per core, recording into the same
    // series: the cost of one record while another core records too, which
    // adds the time the cores spend handing the shared counters back and forth.
    let busy = AtomicBool::new(true);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while busy.load(Ordering::Relaxed) {
                record_request(&metrics, black_box("/ping"), black_box(200), &unsampled);
            }
        });
        c.bench_function("record/unsampled_while_another_core_records", |b| {
            b.iter(|| record_request(&metrics, black_box("/ping"), black_box(200), &unsampled))
        });
        busy.store(false, Ordering::Relaxed);
    });

    // Scaling without a bigger machine: 1, 2 and 4 threads record into the
    // same series at once (4 is more threads than this machine's 2 cores, to
    // show that oversubscription degrades gracefully). One iteration is one
    // record on every thread; the time is the wall time from a common start
    // until the last thread is done, so perfect scaling keeps it flat up to
    // the number of cores.
    let mut contention = c.benchmark_group("record_contention");
    for threads in [1_u64, 2, 4] {
        contention.throughput(Throughput::Elements(threads));
        contention.bench_function(BenchmarkId::new("unsampled_threads", threads), |b| {
            b.iter_custom(|iters| record_on_threads(&metrics, threads, iters, &unsampled))
        });
    }
    contention.finish();

    let registry = ponger_registry();
    c.bench_function("encode/openmetrics", |b| {
        b.iter(|| encode(black_box(&registry), Format::OpenMetrics))
    });
    c.bench_function("encode/classic", |b| {
        b.iter(|| encode(black_box(&registry), Format::Classic))
    });
    let mut process_only = Registry::default();
    ProcessCollector::register(&mut process_only);
    c.bench_function("encode/process_collector_only", |b| {
        b.iter(|| encode(black_box(&process_only), Format::OpenMetrics))
    });
}

/// A router as the ponger builds one: a traced `/ping` and an untraced
/// `/readyz`, both instrumented, handlers answering at once.
fn instrumented_router() -> axum::Router {
    use axum::routing::get;
    // The default sampler (parentbased_always_on) samples every new trace.
    let instrumentation =
        Instrumentation::unexported(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let metrics = HttpServerMetrics::register(&mut Registry::default());
    let pings = axum::Router::new().route(
        "/ping",
        instrumented_get(
            || async { "pong\n" },
            &instrumentation,
            &metrics,
            Tracing::Traced,
        ),
    );
    let probes = axum::Router::new().route("/readyz", get(|| async { "ready\n" }));
    pings.merge(instrument_routes(
        probes,
        &instrumentation,
        &metrics,
        Tracing::Untraced,
    ))
}

/// Sends one GET through `router` as hyper would hand it over, and drops the
/// response. The handlers never wait, so one poll finishes the request.
fn serve_once(router: &mut axum::Router, path: &'static str) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use tower::Service;
    let request = axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap_or_default();
    let mut context = Context::from_waker(Waker::noop());
    type Request = axum::http::Request<axum::body::Body>;
    if <axum::Router as Service<Request>>::poll_ready(router, &mut context).is_ready() {
        let response = std::pin::pin!(router.call(request)).poll(&mut context);
        assert!(matches!(response, Poll::Ready(Ok(ref answer)) if answer.status() == 200));
    }
}

fn serve_benches(c: &mut Criterion) {
    let router = instrumented_router();
    let mut own = router.clone();
    c.bench_function("serve/untraced", |b| {
        b.iter(|| serve_once(&mut own, black_box("/readyz")))
    });
    c.bench_function("serve/sampled", |b| {
        b.iter(|| serve_once(&mut own, black_box("/ping")))
    });
    while_another_core_serves(c, "serve/untraced_while_another_core_serves", &router);
    // The same routes with no instrumentation: what axum's own per-request
    // work costs alone and with two cores serving through one router.
    let bare = bare_router();
    let mut own = bare.clone();
    c.bench_function("serve/bare", |b| {
        b.iter(|| serve_once(&mut own, black_box("/readyz")))
    });
    while_another_core_serves(c, "serve/bare_while_another_core_serves", &bare);
}

/// `/readyz` through `router` while a second thread sends `/readyz` through
/// a clone of it: what every core writing the same memory costs.
fn while_another_core_serves(c: &mut Criterion, name: &str, router: &axum::Router) {
    let mut own = router.clone();
    let busy = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let mut other = router.clone();
        let busy = &busy;
        scope.spawn(move || {
            while busy.load(Ordering::Relaxed) {
                serve_once(&mut other, black_box("/readyz"));
            }
        });
        c.bench_function(name, |b| {
            b.iter(|| serve_once(&mut own, black_box("/readyz")))
        });
        busy.store(false, Ordering::Relaxed);
    });
}

/// The routes of [`instrumented_router`] without the instrumentation.
fn bare_router() -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/ping", get(|| async { "pong\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
}

/// `SERVE_REQUESTS`: see the module's documentation.
fn serve_only(requests: u64) {
    let mut router = instrumented_router();
    for _ in 0..requests {
        serve_once(&mut router, black_box("/readyz"));
        serve_once(&mut router, black_box("/ping"));
    }
}

fn main() {
    if let Some(requests) = std::env::var("SERVE_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        serve_only(requests);
        return;
    }
    report_allocations();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut criterion);
    serve_benches(&mut criterion);
    criterion.final_summary();
}
