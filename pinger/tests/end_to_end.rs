//! Pinger and ponger together, as the demo runs them: traces through a real
//! OTLP receiver, metrics scraped by a real Prometheus with exemplar storage.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use testkit::otlp::{SPAN_KIND_CLIENT, SPAN_KIND_SERVER};
use testkit::{OtlpReceiver, Prometheus, Service, scrape, wait_for};

fn exemplar_trace_ids(prometheus: &Prometheus, query: &str) -> BTreeSet<String> {
    prometheus
        .query_exemplars(query, Duration::from_secs(120))
        .iter()
        .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
        .filter_map(|exemplar| exemplar["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn traces_join_across_services_and_every_exemplar_leads_to_an_exported_trace() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let mut ponger = Service::ponger(
        &[
            "--latency",
            "50%10ms,50%100ms",
            "--success-percent",
            "80",
            "--drain-delay",
            "0s",
        ],
        &otel,
    );
    let mut pinger = Service::pinger(&ponger.url("/ping"), "20", &[], &otel);
    let prometheus = Prometheus::start(&format!(
        "  - job_name: ponger\n    static_configs:\n      - targets: ['{}']\n\
         \x20 - job_name: pinger\n    static_configs:\n      - targets: ['{}']\n",
        ponger.address(),
        pinger.address()
    ));

    // Both targets up, scraped as OpenMetrics without error.
    wait_for("both targets scraped", Duration::from_secs(20), || {
        let targets = prometheus.active_targets();
        (targets.len() == 2 && targets.iter().all(|target| target["health"] == "up")).then_some(())
    });
    for target in prometheus.active_targets() {
        assert_eq!(target["lastError"], "", "{target}");
    }
    for job in ["ponger", "pinger"] {
        assert_eq!(
            prometheus.query_value(&format!("up{{job=\"{job}\"}}")),
            Some(1.0),
            "{job}"
        );
    }

    let server_query = r#"http_request_duration_seconds_bucket{job="ponger",handler="/ping"}"#;
    let client_query = r#"http_client_request_duration_seconds_bucket{job="pinger",target="ping"}"#;
    let (server_exemplars, client_exemplars) =
        wait_for("exemplars in Prometheus", Duration::from_secs(20), || {
            let server = exemplar_trace_ids(&prometheus, server_query);
            let client = exemplar_trace_ids(&prometheus, client_query);
            (server.len() >= 3 && client.len() >= 3).then_some((server, client))
        });
    let counter_exemplars = exemplar_trace_ids(&prometheus, r#"http_requests_total{job="ponger"}"#);
    assert!(
        !counter_exemplars.is_empty(),
        "counter increments carry exemplars too"
    );
    // Ratios over the same data Prometheus holds work as the dashboards use them.
    let success_ratio = wait_for("a success ratio", Duration::from_secs(10), || {
        prometheus.query_value(
            r#"sum(rate(http_client_requests_total{code="200"}[5s])) / sum(rate(http_client_requests_total[5s]))"#,
        )
    });
    assert!((0.4..=1.0).contains(&success_ratio), "{success_ratio}");

    let page_exemplars: BTreeSet<String> = [
        scrape(&ponger.url("/metrics"), true),
        scrape(&pinger.url("/metrics"), true),
    ]
    .iter()
    .flat_map(|page| {
        page.samples
            .iter()
            .filter_map(|s| s.exemplar.as_ref().map(|e| e["trace_id"].clone()))
            .collect::<Vec<_>>()
    })
    .collect();

    // Stop both: shutdown flushes the spans still buffered.
    pinger.terminate();
    assert!(pinger.wait_exit(Duration::from_secs(15)).success());
    ponger.terminate();
    assert!(ponger.wait_exit(Duration::from_secs(15)).success());

    let spans = wait_for("spans from both services", Duration::from_secs(10), || {
        let spans = receiver.spans();
        let services: BTreeSet<_> = spans.iter().map(|span| span.service_name.clone()).collect();
        (services.contains("pinger") && services.contains("ponger")).then_some(spans)
    });
    let by_id: BTreeMap<&str, _> = spans
        .iter()
        .map(|span| (span.span_id.as_str(), span))
        .collect();
    let exported_traces: BTreeSet<&str> = spans.iter().map(|span| span.trace_id.as_str()).collect();

    let server_spans: Vec<_> = spans
        .iter()
        .filter(|span| span.service_name == "ponger" && span.kind == SPAN_KIND_SERVER)
        .collect();
    assert!(
        server_spans.len() >= 10,
        "{} ponger server spans",
        server_spans.len()
    );
    for server_span in &server_spans {
        assert_eq!(server_span.name, "GET /ping");
        // The ponger's configuration, once per batch rather than on every span.
        assert_eq!(server_span.resource["ponger.profile"], "initial");
        assert_eq!(
            server_span.resource["ponger.latency_mix"],
            "50%10ms,50%100ms"
        );
        assert_eq!(server_span.resource["ponger.success_probability"], "0.8");
        let parent = by_id
            .get(server_span.parent_span_id.as_str())
            .unwrap_or_else(|| {
                panic!("ponger span {} has no exported parent", server_span.span_id)
            });
        assert_eq!(parent.service_name, "pinger");
        assert_eq!(parent.kind, SPAN_KIND_CLIENT);
        assert!(parent.parent_span_id.is_empty(), "each ping is a root span");
        assert_eq!(parent.trace_id, server_span.trace_id);
    }

    // The child spans explain each ping on their own.
    fn child<'a>(
        spans: &'a [testkit::ReceivedSpan],
        parent: &str,
        name: &str,
    ) -> &'a testkit::ReceivedSpan {
        spans
            .iter()
            .find(|span| span.parent_span_id == parent && span.name == name)
            .unwrap_or_else(|| panic!("no {name:?} span under {parent}"))
    }
    for server_span in &server_spans {
        let delay = child(&spans, &server_span.span_id, "injected delay");
        assert!(
            delay.attributes.contains_key("latency.draw"),
            "{:?}",
            delay.attributes
        );
        let delay_ms: f64 = delay.attributes["delay_ms"]
            .parse()
            .expect("delay_ms is a number");
        assert!(delay_ms == 10.0 || delay_ms == 100.0, "{delay_ms}");
        let decision = child(&spans, &server_span.span_id, "status decision");
        let code = &decision.attributes["status.code"];
        assert_eq!(code, &server_span.attributes["http.response.status_code"]);
        assert!(decision.attributes.contains_key("status.draw"));
    }

    for trace_id in server_exemplars
        .iter()
        .chain(&client_exemplars)
        .chain(&counter_exemplars)
        .chain(&page_exemplars)
    {
        assert!(
            exported_traces.contains(trace_id.as_str()),
            "exemplar trace {trace_id} was never exported"
        );
    }
}

#[test]
fn an_unreachable_collector_costs_no_crash() {
    let closed = format!("http://127.0.0.1:{}", testkit::prometheus::free_port());
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", closed.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut ponger = Service::ponger(&["--latency", "100%0ms", "--drain-delay", "0s"], &otel);
    let mut pinger = Service::pinger(&ponger.url("/ping"), "50", &[], &otel);
    std::thread::sleep(Duration::from_secs(2));
    let served =
        scrape(&ponger.url("/metrics"), true).sum("http_requests_total", &[("handler", "/ping")]);
    assert!(
        served >= 60.0,
        "pings keep flowing while export fails: {served}"
    );
    pinger.terminate();
    ponger.terminate();
    assert!(pinger.wait_exit(Duration::from_secs(20)).success());
    assert!(ponger.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn an_unknown_protocol_is_refused_with_one_line() {
    let (status, output) = testkit::run_to_exit(
        "ponger",
        &["--listen", "127.0.0.1:0"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc+tls"),
        ],
    );
    assert_eq!(status.code(), Some(2), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    assert!(
        output.contains("OTEL_EXPORTER_OTLP_PROTOCOL")
            && output.contains("http/protobuf")
            && output.contains("grpc"),
        "{output}"
    );
}

#[test]
fn an_unsampled_request_creates_no_span_and_a_sampled_one_all_of_its_spans() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
    ];
    let mut ponger = Service::ponger(
        &[
            "--latency",
            "100%5ms",
            "--success-percent",
            "0",
            "--drain-delay",
            "0s",
        ],
        &otel,
    );
    let client = testkit::http_client();
    let ping = |trace_id: &str, flags: &str| {
        let response = client
            .get(ponger.url("/ping"))
            .header(
                "traceparent",
                format!("00-{trace_id}-00f067aa0ba902b7-{flags}"),
            )
            .send()
            .expect("ping");
        response
            .headers()
            .get("traceresponse")
            .map(|value| value.to_str().expect("ascii").to_owned())
    };
    let unsampled = "11111111111111111111111111111111";
    let sampled = "22222222222222222222222222222222";
    // The caller's decision is kept: the unsampled ping is recorded nowhere,
    // so its answer names no trace; the sampled one names the caller's trace.
    assert_eq!(ping(unsampled, "00"), None);
    assert_eq!(ping(unsampled, "00"), None);
    let trace_response = ping(sampled, "01").expect("a sampled ping names its trace");
    assert!(
        trace_response.starts_with(&format!("00-{sampled}-")) && trace_response.ends_with("-01"),
        "{trace_response}"
    );
    ponger.terminate();
    assert!(ponger.wait_exit(Duration::from_secs(15)).success());

    let spans = receiver.spans();
    // No server span, and no orphaned child span starting a trace of its own.
    assert!(
        spans.iter().all(|span| span.trace_id == sampled),
        "spans outside the sampled trace: {:?}",
        spans
            .iter()
            .filter(|span| span.trace_id != sampled)
            .collect::<Vec<_>>()
    );
    let names: BTreeSet<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["GET /ping", "injected delay", "status decision"])
    );
}
