//! The ponger binary over loopback: configuration errors, shutdown, metrics
//! exposition, headers and probes.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{ConfigErrorCase, Service, assert_config_errors, http_client, run_to_exit, scrape};

fn ponger(args: &[&str]) -> Service {
    Service::ponger(args, &[])
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_flag_and_form() {
    let form = "<percent>%<duration>,... with percents summing to 100";
    let cases: &[ConfigErrorCase] = &[
        (
            &["--profile", "fast"],
            &[],
            "--profile",
            "initial, errors, slow, best",
        ),
        (
            &[],
            &[("PONGER_PROFILE", "fast")],
            "--profile",
            "initial, errors, slow, best",
        ),
        (&["--latency", "90%500ms,20%200ms"], &[], "--latency", form),
        (&["--latency", "90%-500ms,10%200ms"], &[], "--latency", form),
        (&["--latency", "90%500,10%200ms"], &[], "--latency", form),
        (&["--latency", "ninety%500ms"], &[], "--latency", form),
        (&["--latency", ""], &[], "--latency", form),
        (
            &["--success-percent", "101"],
            &[],
            "--success-percent",
            "a number from 0 to 100",
        ),
        (
            &["--success-percent", "-1"],
            &[],
            "--success-percent",
            "a number from 0 to 100",
        ),
        (
            &[],
            &[("PONGER_SUCCESS_PERCENT", "lots")],
            "--success-percent",
            "a number from 0 to 100",
        ),
        (
            &["--drain-delay", "-1s"],
            &[],
            "--drain-delay",
            "such as 5s",
        ),
        (&["--drain-delay", "5"], &[], "--drain-delay", "such as 5s"),
        (
            &["--listen", "localhost"],
            &[],
            "--listen",
            "such as 0.0.0.0:8080",
        ),
        (&["--version", "a b"], &[], "--version", "letters, digits"),
        (&["--colour", "red"], &[], "--colour", "unexpected argument"),
        // Durations without a bound once kept the process past two SIGTERMs.
        (&["--latency", "100%99999999999h"], &[], "--latency", form),
        (&["--latency", "100%61s"], &[], "--latency", form),
        (&["--latency", "nan%1s,100%1s"], &[], "--latency", form),
        (
            &["--drain-delay", "99999999999h"],
            &[],
            "--drain-delay",
            "from 0s to 1m",
        ),
        (
            &["--drain-delay", "61s"],
            &[],
            "--drain-delay",
            "from 0s to 1m",
        ),
        (
            &["--success-percent", "50%%"],
            &[],
            "--success-percent",
            "optionally followed by one %",
        ),
        (
            &["--success-percent", "NaN"],
            &[],
            "--success-percent",
            "a number from 0 to 100",
        ),
        (
            &["--success-percent", "inf"],
            &[],
            "--success-percent",
            "a number from 0 to 100",
        ),
        (
            &["--listen", "127.0.0.1:99999"],
            &[],
            "--listen",
            "such as 0.0.0.0:8080",
        ),
    ];
    assert_config_errors("ponger", cases);
}

/// A value with a newline in it is quoted escaped, so the one line still
/// names the flag and the form after the value.
#[test]
fn control_characters_in_values_are_escaped_in_the_one_error_line() {
    let form = "<percent>%<duration>,... with percents summing to 100";
    let cases: &[ConfigErrorCase] = &[
        (&["--latency", "50%1s,50%1\ns"], &[], "--latency", form),
        (
            &[],
            &[("PONGER_LATENCY", "50%1s,\n50%1s")],
            "--latency",
            form,
        ),
        (
            &["--profile", "slow\nforged"],
            &[],
            "--profile",
            "initial, errors",
        ),
        (
            &["--version", "v1\r\n"],
            &[],
            "--version",
            "letters, digits",
        ),
        (
            &["--drain-delay", "5s\u{1b}[31m"],
            &[],
            "--drain-delay",
            "from 0s to 1m",
        ),
        (
            &["--col\nour", "red"],
            &[],
            "--col\\nour",
            "unexpected argument",
        ),
    ];
    assert_config_errors("ponger", cases);
    let (_, line) = run_to_exit("ponger", &["--profile", "slow\nforged"], &[]);
    assert!(line.contains("slow\\nforged"), "{line}");
    let (_, line) = run_to_exit("ponger", &["--drain-delay", "5s\u{1b}[31m"], &[]);
    assert!(line.contains("5s\\u{1b}[31m"), "{line}");
}

/// A busy address, or one that is not this machine's, ends the ponger as a
/// bad flag does: status 2, one line naming --listen and the address.
#[test]
fn an_unusable_listen_address_exits_2_naming_the_flag_and_the_address() {
    testkit::assert_unusable_listen_addresses_rejected("ponger");
}

#[test]
fn help_documents_every_flag_and_its_environment_variable() {
    let (status, help) = run_to_exit("ponger", &["--help"], &[]);
    assert!(status.success(), "{help}");
    for flag in [
        "--listen",
        "--profile",
        "--latency",
        "--success-percent",
        "--version",
        "--drain-delay",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    for variable in [
        "PONGER_LISTEN",
        "PONGER_PROFILE",
        "PONGER_LATENCY",
        "PONGER_SUCCESS_PERCENT",
        "PONGER_VERSION",
        "PONGER_DRAIN_DELAY",
    ] {
        assert!(help.contains(variable), "--help lacks {variable}:\n{help}");
    }
}

#[test]
fn sigterm_turns_unready_drains_and_finishes_every_in_flight_ping() {
    let mut server = ponger(&[
        "--latency",
        "100%2s",
        "--success-percent",
        "100",
        "--drain-delay",
        "1s",
    ]);
    let ping_url = server.url("/ping");
    let started = Instant::now();
    let pings: Vec<_> = (0..10)
        .map(|_| {
            let url = ping_url.clone();
            std::thread::spawn(move || {
                let response = http_client().get(url).send().expect("ping answered");
                (
                    response.status().as_u16(),
                    response.text().unwrap_or_default(),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();

    // Readiness fails first, while pings are still accepted during the drain delay.
    let readyz = server.url("/readyz");
    testkit::wait_for("/readyz to answer 503", Duration::from_millis(500), || {
        http_client()
            .get(&readyz)
            .send()
            .ok()
            .filter(|response| response.status().as_u16() == 503)
    });
    let late_ping = {
        let url = ping_url.clone();
        std::thread::spawn(move || http_client().get(url).send().map(|r| r.status().as_u16()))
    };

    for ping in pings {
        assert_eq!(
            ping.join().expect("ping thread"),
            (200, "pong\n".to_owned())
        );
    }
    assert_eq!(
        late_ping
            .join()
            .expect("thread")
            .expect("ping during drain answered"),
        200
    );
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "exited before the 2 s pings finished"
    );
    assert!(
        http_client().get(&ping_url).send().is_err(),
        "still accepting connections after exit"
    );
}

#[test]
fn a_second_signal_skips_the_drain_delay() {
    let mut server = ponger(&["--drain-delay", "60s"]);
    server.terminate();
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    let started = Instant::now();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        server
            .logs()
            .iter()
            .any(|line| line.contains("drain delay skipped"))
    );
}

fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[test]
fn openmetrics_scrapes_carry_exemplars_and_classic_scrapes_never_do() {
    // Every ping succeeds, so that the count of 200s below is exact.
    let server = ponger(&[
        "--profile",
        "best",
        "--latency",
        "100%0ms",
        "--success-percent",
        "100",
        "--version",
        "v-test",
    ]);
    let mut trace_ids = BTreeSet::new();
    for _ in 0..5 {
        let response = http_client().get(server.url("/ping")).send().expect("ping");
        assert_eq!(response.headers()["x-ponger-version"], "v-test");
        trace_ids.insert(
            response.headers()["x-trace-id"]
                .to_str()
                .expect("ascii")
                .to_owned(),
        );
    }

    let openmetrics = scrape(&server.url("/metrics"), true);
    assert!(
        openmetrics
            .content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        openmetrics.content_type
    );
    assert!(
        openmetrics.text.ends_with("# EOF\n"),
        "OpenMetrics must end with # EOF"
    );
    for name in [
        "http_request_duration_seconds_bucket",
        "http_requests_total",
    ] {
        let exemplars: Vec<_> = openmetrics
            .find(name, &[("handler", "/ping")])
            .filter_map(|sample| sample.exemplar.clone())
            .collect();
        assert!(
            !exemplars.is_empty(),
            "{name} has no exemplar:\n{}",
            openmetrics.text
        );
        for exemplar in exemplars {
            assert!(
                is_hex(&exemplar["trace_id"], 32) && is_hex(&exemplar["span_id"], 16),
                "{exemplar:?}"
            );
            assert!(
                trace_ids.contains(&exemplar["trace_id"]),
                "exemplar of an unknown trace: {exemplar:?}"
            );
        }
    }
    assert_eq!(
        openmetrics.sum(
            "ponger_build_info",
            &[("version", "v-test"), ("profile", "best")]
        ),
        1.0
    );
    assert!(
        openmetrics
            .find("ponger_build_info", &[])
            .all(|s| s.labels.contains_key("revision"))
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
    ] {
        assert_eq!(openmetrics.find(name, &[]).count(), 1, "{name} missing");
    }

    let classic = scrape(&server.url("/metrics"), false);
    assert_eq!(
        classic.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        classic
            .samples
            .iter()
            .all(|sample| sample.exemplar.is_none())
    );
    assert!(!classic.text.contains("trace_id") && !classic.text.contains("# EOF"));
    assert_eq!(
        classic.sum(
            "http_requests_total",
            &[("handler", "/ping"), ("code", "200")]
        ),
        5.0
    );

    // The real classic-format parser agrees it is well-formed.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is on PATH (Debian's prometheus package; scripts/test.sh installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(classic.text.as_bytes())
        .expect("write to promtool");
    let output = promtool.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn ping_outcome_series_exist_at_zero_before_the_first_ping() {
    // So that rate() sees a canary's first failures: a series appearing at 1
    // would hide them.
    let server = ponger(&[]);
    let metrics = scrape(&server.url("/metrics"), true);
    for code in ["200", "500"] {
        let labels = [("handler", "/ping"), ("method", "GET"), ("code", code)];
        assert_eq!(
            metrics.find("http_requests_total", &labels).count(),
            1,
            "{code}"
        );
        assert_eq!(metrics.sum("http_requests_total", &labels), 0.0);
        assert_eq!(
            metrics.sum("http_request_duration_seconds_count", &labels),
            0.0
        );
        assert_eq!(
            metrics
                .find("http_request_duration_seconds_count", &labels)
                .count(),
            1,
            "{code}"
        );
    }
}

#[test]
fn unsampled_requests_carry_no_exemplar_and_name_no_trace() {
    let server = Service::start(
        "ponger",
        &["--listen", "127.0.0.1:0", "--latency", "100%0ms"],
        &[("OTEL_TRACES_SAMPLER", "always_off")],
    );
    for _ in 0..5 {
        let response = http_client().get(server.url("/ping")).send().expect("ping");
        // The trace is recorded nowhere, so the answer names none.
        for header in ["traceresponse", "x-trace-id"] {
            assert!(
                response.headers().get(header).is_none(),
                "{header}: {:?}",
                response.headers()
            );
        }
    }
    let openmetrics = scrape(&server.url("/metrics"), true);
    assert_eq!(
        openmetrics.sum("http_requests_total", &[("handler", "/ping")]),
        5.0
    );
    assert!(
        openmetrics
            .samples
            .iter()
            .all(|sample| sample.exemplar.is_none()),
        "{}",
        openmetrics.text
    );
}

#[test]
fn an_unsampled_ping_keeps_the_last_sampled_exemplar() {
    // With ratio sampling most pings are unsampled; each must not erase the
    // exemplar the last sampled one left, or the counter would rarely show one.
    let server = ponger(&["--latency", "100%0ms", "--success-percent", "100"]);
    let ping = |trace_id: &str, flags: &str| {
        http_client()
            .get(server.url("/ping"))
            .header(
                "traceparent",
                format!("00-{trace_id}-00f067aa0ba902b7-{flags}"),
            )
            .send()
            .expect("ping");
    };
    let sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    ping(sampled, "01");
    ping("5ce929d0e0e47364bf92f3577b34da6a", "00");
    let metrics = scrape(&server.url("/metrics"), true);
    let labels = [("handler", "/ping"), ("code", "200")];
    assert_eq!(metrics.sum("http_requests_total", &labels), 2.0);
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
    ] {
        let exemplars: Vec<&str> = metrics
            .find(name, &labels)
            .filter_map(|sample| sample.exemplar.as_ref()?.get("trace_id"))
            .map(String::as_str)
            .collect();
        assert_eq!(exemplars, [sampled], "{name}:\n{}", metrics.text);
    }
}

#[test]
fn incoming_trace_context_is_joined_and_reported_back() {
    let server = ponger(&["--latency", "100%0ms"]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = http_client()
        .get(server.url("/ping"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .expect("ping");
    assert_eq!(response.headers()["x-trace-id"], trace_id);
    let trace_response = response.headers()["traceresponse"].to_str().expect("ascii");
    assert!(
        trace_response.starts_with(&format!("00-{trace_id}-")) && trace_response.ends_with("-01")
    );
    assert!(
        !trace_response.contains("00f067aa0ba902b7"),
        "the server span is a new child span"
    );
}

#[test]
fn faults_never_touch_metrics_or_probes() {
    let server = ponger(&["--latency", "100%400ms", "--success-percent", "0"]);
    let started = Instant::now();
    let ping = http_client().get(server.url("/ping")).send().expect("ping");
    assert_eq!(ping.status().as_u16(), 500);
    assert!(started.elapsed() >= Duration::from_millis(400));
    for path in ["/healthz", "/readyz", "/metrics"] {
        let started = Instant::now();
        let response = http_client().get(server.url(path)).send().expect("probe");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{path} was delayed"
        );
    }
}

#[test]
fn handler_label_is_the_route_template_and_unknown_paths_add_no_series() {
    let server = ponger(&["--latency", "100%0ms", "--success-percent", "100"]);
    let client = http_client();
    assert_eq!(
        client
            .get(server.url("/ping?from=test"))
            .send()
            .expect("ping")
            .status()
            .as_u16(),
        200
    );
    for path in ["/nope", "/ping/extra", "/admin/../etc"] {
        assert_eq!(
            client
                .get(server.url(path))
                .send()
                .expect("request")
                .status()
                .as_u16(),
            404
        );
    }
    client.get(server.url("/healthz")).send().expect("healthz");
    let metrics = scrape(&server.url("/metrics"), true);
    let handlers: BTreeSet<_> = metrics
        .find("http_requests_total", &[])
        .map(|sample| sample.labels["handler"].clone())
        .collect();
    assert!(
        handlers.contains("/ping") && handlers.contains("/healthz"),
        "{handlers:?}"
    );
    assert!(
        handlers.is_subset(
            &["/ping", "/metrics", "/healthz", "/readyz"]
                .map(String::from)
                .into()
        )
    );
    assert_eq!(
        metrics.sum("http_requests_in_flight", &[("handler", "/ping")]),
        0.0
    );
}

#[test]
fn request_scoped_log_lines_carry_the_trace_id() {
    let server = Service::start(
        "ponger",
        &[
            "--listen",
            "127.0.0.1:0",
            "--latency",
            "100%0ms",
            "--success-percent",
            "0",
        ],
        &[("RUST_LOG", "info,ponger=debug")],
    );
    let response = http_client().get(server.url("/ping")).send().expect("ping");
    let trace_id = response.headers()["x-trace-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let line = testkit::wait_for(
        "the injected failure log line",
        Duration::from_secs(5),
        || {
            server
                .logs()
                .into_iter()
                .find(|line| line.contains("injected failure"))
        },
    );
    let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(log["trace_id"], trace_id.as_str(), "{line}");
    assert_eq!(log["fields"]["message"], "injected failure", "{line}");
}
