//! `ponger probe` and `pinger probe`, the healthchecks of the distroless
//! images, against the real binaries over loopback: a ready service passes, a
//! draining one fails, nothing listening or an endpoint that never answers
//! fails within the timeout, each failure in one line saying why.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use testkit::{Service, http_client, run_to_exit};

/// Runs `binary args`, returns (exit code, output, how long it took).
fn probe(binary: &str, args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let (status, output) = run_to_exit(binary, args, &[]);
    (status.code(), output, started.elapsed())
}

#[test]
fn a_ready_ponger_passes_its_probe() {
    let server = Service::ponger(&[], &[]);
    let url = server.url("/readyz");
    let (code, output, _) = probe("ponger", &["probe", "--url", &url]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("answered 200"), "{output}");

    // Without --url the probe follows --listen (PONGER_LISTEN in the images).
    let listen = server.address().to_string();
    let (code, output, _) = probe("ponger", &["--listen", &listen, "probe"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains(&format!("{listen}/readyz")), "{output}");
}

#[test]
fn a_draining_ponger_fails_its_probe() {
    let server = Service::ponger(&["--drain-delay", "30s"], &[]);
    let url = server.url("/readyz");
    server.terminate();
    testkit::wait_for("/readyz to answer 503", Duration::from_secs(5), || {
        http_client()
            .get(&url)
            .send()
            .ok()
            .filter(|response| response.status().as_u16() == 503)
    });
    let (code, output, _) = probe("ponger", &["probe", "--url", &url]);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "one line: {output}");
    assert!(output.contains("503"), "{output}");
}

#[test]
fn nothing_listening_fails_at_once() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("address").port()
    };
    let url = format!("http://127.0.0.1:{port}/readyz");
    let (code, output, took) = probe("ponger", &["probe", "--url", &url, "--timeout", "2s"]);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "one line: {output}");
    assert!(output.to_lowercase().contains("refused"), "{output}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn an_endpoint_that_never_answers_fails_within_the_timeout() {
    // Accepts connections (the kernel's backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}/readyz", silent.local_addr().expect("address"));
    let (code, output, took) = probe("ponger", &["probe", "--url", &url, "--timeout", "500ms"]);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("within 500ms"), "{output}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(silent);
}

#[test]
fn a_running_pinger_passes_its_probe_and_a_bad_url_is_a_config_error() {
    let target = Service::ponger(&[], &[]);
    let pinger = Service::pinger(&target.url("/ping"), "5", &[], &[]);
    let listen = pinger.address().to_string();
    let (code, output, _) = probe("pinger", &["--listen", &listen, "probe"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains(&format!("{listen}/healthz")), "{output}");

    let (code, output, _) = probe("pinger", &["probe", "--url", "localhost:8081"]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("--url"), "{output}");
}
