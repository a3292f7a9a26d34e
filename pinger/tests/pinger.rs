//! The pinger binary over loopback against real and misbehaving targets.

use std::time::Duration;

use testkit::{
    Behaviour, ConfigErrorCase, FakeTarget, Service, assert_config_errors, run_to_exit, scrape,
};

fn pinger(targets: &str, extra: &[&str]) -> Service {
    let mut args = vec!["--listen", "127.0.0.1:0", "--target", targets];
    args.extend_from_slice(extra);
    Service::start("pinger", &args, &[])
}

fn ponger(extra: &[&str]) -> Service {
    Service::ponger(extra, &[])
}

/// A loopback URL where nothing listens.
fn closed_port_url() -> String {
    let port = testkit::prometheus::free_port();
    format!("http://127.0.0.1:{port}/ping")
}

const RATE_FORM: &str = "pings per second from 0.01 to 100000";
const TIMEOUT_FORM: &str = "a duration from 10ms to 1m";

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_flag_and_form() {
    let cases: &[ConfigErrorCase] = &[
        (&["--rate", "0"], &[], "--rate", RATE_FORM),
        (&["--rate", "-5"], &[], "--rate", RATE_FORM),
        (&[], &[("PINGER_RATE", "fast")], "--rate", RATE_FORM),
        // These once panicked (1e-300) or stopped the schedule thread (1e-19).
        (&["--rate", "1e-300"], &[], "--rate", RATE_FORM),
        (&["--rate", "1e-19"], &[], "--rate", RATE_FORM),
        (&["--rate", "0.009"], &[], "--rate", RATE_FORM),
        (&["--rate", "100001"], &[], "--rate", RATE_FORM),
        (&["--rate", "1e309"], &[], "--rate", RATE_FORM),
        (&["--rate", "NaN"], &[], "--rate", RATE_FORM),
        (&["--rate", "inf"], &[], "--rate", RATE_FORM),
        (&["--timeout", "0s"], &[], "--timeout", TIMEOUT_FORM),
        (&["--timeout", "5ms"], &[], "--timeout", TIMEOUT_FORM),
        (&["--timeout", "61s"], &[], "--timeout", TIMEOUT_FORM),
        (
            &["--timeout", "99999999999h"],
            &[],
            "--timeout",
            TIMEOUT_FORM,
        ),
        (&["--target", "http:///ping"], &[], "--target", "no host"),
        (
            &["--target", "http://:8080/ping"],
            &[],
            "--target",
            "no host",
        ),
        (
            &["--target", "http://pon\nger:8080/ping"],
            &[],
            "--target",
            "control character",
        ),
        (
            &["--target", "https://ponger/ping"],
            &[],
            "--target",
            "http:// URL",
        ),
        (
            &["--target", "http://a:1/ping,"],
            &[],
            "--target",
            "http:// URL",
        ),
        (
            &["--target", "http://ponger:0/ping"],
            &[],
            "--target",
            "port 0",
        ),
        (
            &["--max-in-flight", "1000001"],
            &[],
            "--max-in-flight",
            "1..=1000000",
        ),
        (
            &["--max-in-flight", "-1"],
            &[],
            "--max-in-flight",
            "1..=1000000",
        ),
        (
            &["--target", "ftp://ponger/ping"],
            &[],
            "--target",
            "http:// URL",
        ),
        (
            &["--target", "http://a:1/ping,ponger:8080"],
            &[],
            "--target",
            "http:// URL",
        ),
        (&["--timeout", "5"], &[], "--timeout", "such as 5s"),
        (
            &["--max-in-flight", "0"],
            &[],
            "--max-in-flight",
            "1..=1000000",
        ),
        (
            &["--target-name", "my service"],
            &[],
            "--target-name",
            "letters, digits",
        ),
        (&["--keep-alive", "maybe"], &[], "--keep-alive", "true"),
        (
            &["--listen", ":8081"],
            &[],
            "--listen",
            "such as 0.0.0.0:8080",
        ),
    ];
    assert_config_errors("pinger", cases);
    // The value is quoted on the same line, escaped.
    let (_, line) = run_to_exit("pinger", &["--target", "http://pon\nger:8080/ping"], &[]);
    assert!(line.contains("'http://pon\\nger:8080/ping'"), "{line}");
    // A password in a rejected target is not printed either.
    let (status, line) = run_to_exit("pinger", &["--target", "http://user:s3cret@/ping"], &[]);
    assert_eq!(status.code(), Some(2), "{line}");
    assert!(!line.contains("s3cret"), "{line}");
    assert!(line.contains("REDACTED:REDACTED@"), "{line}");
    let (status, help) = run_to_exit("pinger", &["--help"], &[]);
    assert!(status.success());
    for flag in [
        "--listen",
        "--target",
        "--target-name",
        "--rate",
        "--timeout",
        "--max-in-flight",
        "--keep-alive",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// A busy address, or one that is not this machine's, ends the pinger as a
/// bad flag does: status 2, one line naming --listen and the address.
#[test]
fn an_unusable_listen_address_exits_2_naming_the_flag_and_the_address() {
    testkit::assert_unusable_listen_addresses_rejected("pinger");
}

#[test]
fn a_target_that_is_down_is_counted_and_logged_sparingly_never_fatal() {
    let mut client = pinger(&closed_port_url(), &["--rate", "50"]);
    std::thread::sleep(Duration::from_millis(2500));
    let metrics = scrape(&client.url("/metrics"), true);
    let failed = metrics.sum(
        "http_client_requests_total",
        &[("code", "connect_error"), ("target", "ping")],
    );
    assert!(failed >= 80.0, "expected ~125 connect errors, got {failed}");
    assert_eq!(
        metrics.sum(
            "http_client_request_duration_seconds_count",
            &[("code", "connect_error")]
        ),
        failed,
        "failed pings are timed too"
    );
    let logged = client
        .logs()
        .iter()
        .filter(|line| line.contains("ping failed"))
        .count();
    assert!(
        (1..=4).contains(&logged),
        "{logged} failure lines in 2.5 s; expected at most one a second"
    );
    assert!(
        client
            .logs()
            .iter()
            .any(|line| line.contains("Connection refused")),
        "the cause is logged"
    );
    client.terminate();
    assert!(client.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn garbage_and_silent_targets_are_counted_as_error_and_timeout() {
    let garbage = FakeTarget::start(Behaviour::Garbage);
    let silent = FakeTarget::start(Behaviour::Silent);
    let garbage_pinger = pinger(&garbage.url(), &["--rate", "20"]);
    let silent_pinger = pinger(&silent.url(), &["--rate", "20", "--timeout", "300ms"]);
    std::thread::sleep(Duration::from_millis(1500));

    let metrics = scrape(&garbage_pinger.url("/metrics"), true);
    assert!(
        metrics.sum("http_client_requests_total", &[("code", "error")]) >= 10.0,
        "{}",
        metrics.text
    );
    let metrics = scrape(&silent_pinger.url("/metrics"), true);
    let timeouts = metrics.sum("http_client_requests_total", &[("code", "timeout")]);
    assert!(timeouts >= 10.0, "{}", metrics.text);
    // A timed-out ping is timed at its timeout: none under 300 ms.
    let under_300ms = metrics.sum(
        "http_client_request_duration_seconds_bucket",
        &[("code", "timeout"), ("le", "0.25")],
    );
    assert_eq!(under_300ms, 0.0);
}

#[test]
fn max_in_flight_skips_and_counts_instead_of_queueing() {
    let silent = FakeTarget::start(Behaviour::Silent);
    let client = pinger(
        &silent.url(),
        &["--rate", "50", "--timeout", "10s", "--max-in-flight", "3"],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let metrics = scrape(&client.url("/metrics"), true);
    assert_eq!(
        metrics.sum("http_client_requests_in_flight", &[("target", "ping")]),
        3.0
    );
    let skipped = metrics.sum("pinger_pings_skipped_total", &[("reason", "max_in_flight")]);
    assert!(skipped >= 30.0, "expected ~47 skipped pings, got {skipped}");
}

#[test]
fn several_targets_share_pings_round_robin() {
    let first = ponger(&["--latency", "100%0ms", "--success-percent", "100"]);
    let second = ponger(&["--latency", "100%0ms", "--success-percent", "100"]);
    let targets = format!("{},{}", first.url("/ping"), second.url("/ping"));
    let mut client = pinger(&targets, &["--rate", "100"]);
    std::thread::sleep(Duration::from_millis(1500));
    client.terminate();
    assert!(client.wait_exit(Duration::from_secs(10)).success());
    let served = |server: &Service| {
        scrape(&server.url("/metrics"), true).sum("http_requests_total", &[("handler", "/ping")])
    };
    let (a, b) = (served(&first), served(&second));
    assert!(a + b >= 100.0, "{a} + {b}");
    assert!(
        (a - b).abs() <= 1.0,
        "round robin must alternate: {a} vs {b}"
    );
}

#[test]
fn every_ping_opens_a_fresh_connection_unless_keep_alive_is_on() {
    let fresh = FakeTarget::start(Behaviour::KeepAliveHttp);
    let pooled = FakeTarget::start(Behaviour::KeepAliveHttp);
    let mut fresh_pinger = pinger(&fresh.url(), &["--rate", "40"]);
    let mut pooled_pinger = pinger(&pooled.url(), &["--rate", "40", "--keep-alive"]);
    std::thread::sleep(Duration::from_millis(1500));
    // Once the pingers have exited, every connection has carried its requests.
    for client in [&mut fresh_pinger, &mut pooled_pinger] {
        client.terminate();
        assert!(client.wait_exit(Duration::from_secs(10)).success());
    }
    assert!(fresh.requests() >= 40, "{}", fresh.requests());
    assert_eq!(
        fresh.connections(),
        fresh.requests(),
        "one connection per ping"
    );
    assert!(pooled.requests() >= 40, "{}", pooled.requests());
    assert!(
        pooled.connections() <= 2,
        "keep-alive reuses connections: {}",
        pooled.connections()
    );
}

#[test]
fn shutdown_stops_scheduling_and_waits_for_pings_in_flight() {
    let server = ponger(&["--latency", "100%1s", "--success-percent", "100"]);
    let mut client = pinger(&server.url("/ping"), &["--rate", "20"]);
    std::thread::sleep(Duration::from_millis(1200));
    client.terminate();
    let status = client.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let logs = client.logs();
    assert!(
        logs.iter().any(|line| line.contains("all pings answered")),
        "{logs:#?}"
    );
    let metrics = scrape(&server.url("/metrics"), true);
    assert_eq!(
        metrics.sum("http_requests_in_flight", &[("handler", "/ping")]),
        0.0
    );
    let answered = metrics.sum(
        "http_requests_total",
        &[("handler", "/ping"), ("code", "200")],
    );
    assert!(
        answered >= 20.0,
        "pings in flight at SIGTERM were answered: {answered}"
    );
}
