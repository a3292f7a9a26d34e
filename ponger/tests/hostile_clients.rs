//! The ponger against hostile and broken clients, over loopback: made-up
//! methods, half-sent requests, many slow connections, clients that give up.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rand::Rng;
use testkit::{OtlpReceiver, Service, http_client, scrape, wait_for};

/// The ponger's header read timeout (`instrumentation::serve::HEADER_READ_TIMEOUT`).
const HEADER_READ_TIMEOUT: Duration = instrumentation::serve::HEADER_READ_TIMEOUT;

/// One keep-alive HTTP/1.1 connection, written by hand so that any method
/// (or half a request) can be sent.
struct RawConnection {
    reader: BufReader<TcpStream>,
}

impl RawConnection {
    fn open(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Sends `method path` and reads the whole response: its status.
    fn request(&mut self, method: &str, path: &str) -> u16 {
        // One write: a request in pieces waits on delayed acknowledgements.
        let request = format!("{method} {path} HTTP/1.1\r\nHost: ponger\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("write request");
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; content_length];
        self.reader.read_exact(&mut body).expect("body");
        status
    }
}

/// Opens a connection and sends the start of a request, never its end.
fn half_sent_request(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: ponger\r\nX-Slow: ")
        .expect("write half a request");
    stream.set_nonblocking(true).expect("nonblocking");
    stream
}

/// Whether the server has closed `stream` (end of file or reset).
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        // A response (a 408, say) is followed by the close.
        Ok(_) => false,
        Err(error) if error.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open sockets of a process (its connections and its listener).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// How many random methods the test sends; `HOSTILE_METHODS=60000` gives
/// the figure quoted in README's security notes.
fn method_count() -> usize {
    std::env::var("HOSTILE_METHODS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(3_000)
}

#[test]
fn random_methods_keep_the_series_count_bounded() {
    let server = Service::ponger(&["--latency", "100%0ms", "--success-percent", "100"], &[]);
    let before = scrape(&server.url("/metrics"), true).samples.len();
    let count = method_count();
    let mut rng = rand::rng();
    let mut connection = RawConnection::open(server.address());
    let started = Instant::now();
    for index in 0..count {
        // Made-up methods, plus the known ones in lowercase (not the same
        // methods: HTTP methods are case-sensitive).
        let method = match index % 10 {
            0 => "get".to_owned(),
            1 => "GET".to_owned(),
            _ => format!("X{}{index}", rng.random_range(0..1_000_000u32)),
        };
        let path = if index % 3 == 0 { "/metrics" } else { "/ping" };
        let status = connection.request(&method, path);
        assert!(
            status == 200 || status == 405,
            "{method} {path} answered {status}"
        );
    }
    let sending = started.elapsed();

    let page = scrape(&server.url("/metrics"), true);
    let methods: BTreeSet<&str> = page
        .samples
        .iter()
        .filter_map(|sample| sample.labels.get("method"))
        .map(String::as_str)
        .collect();
    assert_eq!(methods, BTreeSet::from(["GET", "_OTHER"]), "{}", page.text);
    let other = page.sum(
        "http_requests_total",
        &[("method", "_OTHER"), ("code", "405")],
    );
    let expected_other = (0..count).filter(|index| index % 10 != 1).count();
    assert_eq!(other, expected_other as f64);
    // Known methods with their codes on two routes, times the histogram's
    // buckets: a few hundred samples whatever the clients send.
    let after = page.samples.len();
    assert!(
        after <= before + 200,
        "{count} random methods took the page from {before} to {after} samples"
    );
    eprintln!(
        "figure: {count} random methods in {sending:.1?}: {after} samples on /metrics (before: {before}), {} bytes, ponger RSS {} KiB",
        page.text.len(),
        resident_kib(server.pid())
    );
}

#[test]
fn half_sent_requests_and_idle_connections_are_closed_at_the_header_read_timeout() {
    let server = Service::ponger(&["--latency", "100%0ms", "--success-percent", "100"], &[]);
    let started = Instant::now();
    let mut slow = half_sent_request(server.address());
    // A keep-alive connection, idle after one ping: the timeout runs again
    // from the end of each response.
    let mut idle = RawConnection::open(server.address());
    assert_eq!(idle.request("GET", "/ping"), 200);
    let idle_since = Instant::now();
    let mut idle = idle.reader.into_inner();
    idle.set_nonblocking(true).expect("nonblocking");

    let slow_closed_after = wait_for(
        "the half-sent request's connection to be closed",
        HEADER_READ_TIMEOUT + Duration::from_secs(5),
        || is_closed(&mut slow).then(|| started.elapsed()),
    );
    let idle_closed_after = wait_for(
        "the idle connection to be closed",
        Duration::from_secs(5),
        || is_closed(&mut idle).then(|| idle_since.elapsed()),
    );
    for closed_after in [slow_closed_after, idle_closed_after] {
        assert!(
            closed_after >= HEADER_READ_TIMEOUT - Duration::from_millis(500),
            "closed after {closed_after:?}, before the header read timeout"
        );
    }
    eprintln!(
        "figure: a half-sent request was disconnected after {slow_closed_after:.2?}, an idle keep-alive connection after {idle_closed_after:.2?}"
    );
    // The server serves on.
    let response = http_client().get(server.url("/healthz")).send();
    assert!(response.is_ok_and(|response| response.status().is_success()));
}

#[test]
fn half_sent_requests_and_idle_connections_do_not_hold_the_shutdown() {
    let mut server = Service::ponger(&["--drain-delay", "1s", "--latency", "100%0ms"], &[]);
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| half_sent_request(server.address()))
        .collect();
    // Connected, never a byte sent.
    let mut silent = TcpStream::connect(server.address()).expect("connect");
    silent.set_nonblocking(true).expect("nonblocking");
    // A keep-alive connection, idle after one ping.
    let mut idle = RawConnection::open(server.address());
    idle.request("GET", "/ping");

    let signalled = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(30));
    let shutdown = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    // The drain delay (1 s) and the exit: well before the header read
    // timeout (10 s) would have closed them.
    assert!(
        shutdown < Duration::from_secs(4),
        "exit took {shutdown:?} with half-sent requests open"
    );
    assert!(slow.iter_mut().all(is_closed), "a slow connection is open");
    assert!(is_closed(&mut silent));
    eprintln!(
        "figure: SIGTERM to exit with 50 half-sent requests, a silent and an idle connection open, drain delay 1 s: {shutdown:.2?}"
    );
}

/// Opens 1,000 connections that each send half a request, waits until the
/// ponger holds them all (it has `sockets_before` without them), then until
/// it has closed every one: (sockets it held, its resident KiB then, when the
/// last was closed).
fn a_thousand_slow_clients(server: &Service, sockets_before: usize) -> (usize, u64, Duration) {
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..1_000)
        .map(|_| half_sent_request(server.address()))
        .collect();
    let held = wait_for(
        "the ponger to accept 1,000 connections",
        Duration::from_secs(5),
        || {
            let open = open_sockets(server.pid());
            (open >= sockets_before + 1_000).then_some(open)
        },
    );
    let rss_held = resident_kib(server.pid());
    let all_closed_after = wait_for(
        "every slow client to be disconnected",
        HEADER_READ_TIMEOUT + Duration::from_secs(10),
        || {
            slow.retain_mut(|stream| !is_closed(stream));
            slow.is_empty().then(|| started.elapsed())
        },
    );
    (held, rss_held, all_closed_after)
}

#[test]
fn a_thousand_slow_clients_are_disconnected_and_cost_bounded_memory() {
    let server = Service::ponger(&[], &[]);
    let pid = server.pid();
    // The listener and the runtime's own sockets.
    let idle_sockets = open_sockets(pid);
    // Warm up: the first requests allocate what every later one reuses.
    for _ in 0..3 {
        let _ = http_client().get(server.url("/metrics")).send();
    }
    // The warm-up's connections close as the ponger notices their clients left.
    let sockets_before = wait_for(
        "the warm-up's connections to close",
        Duration::from_secs(5),
        || {
            let open = open_sockets(pid);
            (open <= idle_sockets).then_some(open)
        },
    );
    let rss_before = resident_kib(pid);
    let mut rounds = Vec::new();
    // Three rounds: the allocator keeps some of what the first freed and
    // spreads the second over other threads' arenas, but by the third the
    // memory is reused rather than added to.
    for _ in 0..3 {
        let (sockets_held, rss_held, closed_after) =
            a_thousand_slow_clients(&server, sockets_before);
        let sockets_after = wait_for(
            "the ponger's sockets to be closed",
            Duration::from_secs(5),
            || {
                let open = open_sockets(pid);
                (open <= sockets_before).then_some(open)
            },
        );
        let rss_after = resident_kib(pid);
        eprintln!(
            "figure: 1,000 slow clients: sockets {sockets_before} -> {sockets_held} -> {sockets_after}; RSS {rss_before} KiB before, {rss_held} KiB held, {rss_after} KiB after; all disconnected {closed_after:.1?} after the first connected"
        );
        rounds.push(rss_after);
    }
    // What 1,000 held connections cost, bounded: far below the pod's limit.
    let first = rounds[0].saturating_sub(rss_before);
    assert!(first < 64 * 1024, "1,000 slow clients took {first} KiB");
    let third = rounds[2].saturating_sub(rounds[1]);
    assert!(
        third * 2 < first,
        "the third round of slow clients grew the ponger by {third} KiB, the first by {first} KiB"
    );
    let response = http_client().get(server.url("/ping")).send();
    assert!(
        response.is_ok(),
        "the ponger no longer answers: {response:?}"
    );
}

#[test]
fn an_abandoned_ping_is_counted_and_traced_as_499() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let mut server = Service::ponger(
        &[
            "--latency",
            "100%2s",
            "--success-percent",
            "100",
            "--drain-delay",
            "0s",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ],
    );
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let error = impatient
        .get(server.url("/ping"))
        .send()
        .expect_err("the ping outlasts the client's timeout");
    assert!(error.is_timeout(), "{error}");

    let labels = [("handler", "/ping"), ("method", "GET"), ("code", "499")];
    let page = wait_for(
        "the abandoned ping to be counted",
        Duration::from_secs(5),
        || {
            let page = scrape(&server.url("/metrics"), true);
            (page.sum("http_requests_total", &labels) == 1.0).then_some(page)
        },
    );
    assert_eq!(
        page.sum("http_request_duration_seconds_count", &labels),
        1.0
    );
    assert_eq!(
        page.sum("http_requests_in_flight", &[("handler", "/ping")]),
        0.0
    );
    // Counted when the client left, not when the delay would have ended.
    assert_eq!(
        page.sum(
            "http_request_duration_seconds_bucket",
            &[("code", "499"), ("le", "1.0")]
        ),
        1.0,
        "{}",
        page.text
    );

    // A made-up method on the traced route: bounded in the span as well.
    let mut raw = RawConnection::open(server.address());
    assert_eq!(raw.request("BREW", "/ping"), 405);

    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    let spans = receiver.spans();
    let abandoned = spans
        .iter()
        .find(|span| span.name == "GET /ping")
        .unwrap_or_else(|| panic!("no server span: {spans:?}"));
    assert_eq!(
        abandoned.attributes.get("http.response.status_code"),
        Some(&"499".to_owned())
    );
    let other = spans
        .iter()
        .find(|span| span.name == "HTTP /ping")
        .unwrap_or_else(|| panic!("no span for the made-up method: {spans:?}"));
    assert_eq!(
        other.attributes.get("http.request.method"),
        Some(&"_OTHER".to_owned())
    );
    assert_eq!(
        other.attributes.get("http.request.method_original"),
        Some(&"BREW".to_owned())
    );
}

#[test]
fn an_invalid_traceparent_starts_a_new_trace() {
    let server = Service::ponger(&["--latency", "100%0ms"], &[]);
    let trace_of = |traceparent: &str| -> String {
        let response = http_client()
            .get(server.url("/ping"))
            .header("traceparent", traceparent)
            .send()
            .expect("ping");
        response.headers()["x-trace-id"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert_eq!(
        trace_of(&format!("00-{caller}-00f067aa0ba902b7-01")),
        caller
    );
    for invalid in [
        // Upper-case hex, a short trace ID, a signed one, version ff.
        format!("00-{}-00f067aa0ba902b7-01", caller.to_uppercase()),
        format!("00-{}-00f067aa0ba902b7-01", &caller[1..]),
        format!("00-+{}-00f067aa0ba902b7-01", &caller[1..]),
        format!("ff-{caller}-00f067aa0ba902b7-01"),
    ] {
        let trace = trace_of(&invalid);
        assert_ne!(trace, caller, "{invalid} was accepted as a parent");
        assert!(
            trace.len() == 32 && trace.chars().all(|c| c.is_ascii_hexdigit()),
            "{trace}"
        );
    }
}

#[test]
fn pings_of_a_killed_pinger_are_counted_as_499() {
    let server = Service::ponger(&["--latency", "100%5s", "--drain-delay", "0s"], &[]);
    let pinger = Service::pinger(&server.url("/ping"), "20", &[], &[]);
    let in_flight = wait_for("pings in flight", Duration::from_secs(10), || {
        let page = scrape(&server.url("/metrics"), true);
        let count = page.sum("http_requests_in_flight", &[("handler", "/ping")]);
        (count >= 10.0).then_some(count)
    });
    // SIGKILL: its connections close with nothing answered.
    drop(pinger);
    let labels = [("handler", "/ping"), ("code", "499")];
    let abandoned = wait_for("every ping to be counted", Duration::from_secs(5), || {
        let page = scrape(&server.url("/metrics"), true);
        let in_flight = page.sum("http_requests_in_flight", &[("handler", "/ping")]);
        (in_flight == 0.0).then(|| page.sum("http_requests_total", &labels))
    });
    assert!(
        abandoned >= in_flight,
        "{in_flight} pings were in flight, {abandoned} counted as 499"
    );
}
