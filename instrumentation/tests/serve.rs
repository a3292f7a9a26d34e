//! `instrumentation::serve` in-process, with limits small enough to reach:
//! the connection cap, the header read timeout and the shutdown deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use instrumentation::serve::{ConnectionLimits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const LIMITS: ConnectionLimits = ConnectionLimits {
    header_read_timeout: Duration::from_secs(2),
    max_connections: 3,
};

fn router() -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow\n"
            }),
        )
        .route(
            "/longer-than-the-timeout",
            get(|| async {
                tokio::time::sleep(LIMITS.header_read_timeout + Duration::from_millis(500)).await;
                "long\n"
            }),
        )
        .route(
            "/endless",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never\n"
            }),
        )
}

/// Starts `serve` on a loopback port; the sender asks it to shut down.
async fn start(
    in_flight_grace: Duration,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        router(),
        LIMITS,
        async {
            let _ = stopped.await;
        },
        in_flight_grace,
    ));
    (address, stop, server)
}

/// Sends `GET path` with `Connection: close` and reads the whole answer.
async fn get_path(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
}

async fn half_sent(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(b"GET /fast HTTP/1.1\r\nHost: ")
        .await
        .expect("write");
    stream
}

/// Reads until the server closes `stream` (or 5 s pass): when that was.
async fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    let mut buffer = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while stream.read(&mut buffer).await.is_ok_and(|read| read > 0) {}
    })
    .await;
    since.elapsed()
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (address, _stop, _server) = start(Duration::from_secs(1)).await;
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..LIMITS.max_connections {
        held.push(half_sent(address).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The kernel completes the handshake, but nothing reads the request
    // until the header read timeout frees a place.
    let answer = get_path(address, "/fast").await;
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= LIMITS.header_read_timeout - Duration::from_millis(50),
        "answered after {waited:?}, while {} connections were held",
        LIMITS.max_connections
    );
    for stream in held {
        let closed = closed_after(stream, started).await;
        assert!(closed < Duration::from_secs(4), "held for {closed:?}");
    }
}

#[tokio::test]
async fn shutdown_closes_silent_and_half_sent_connections_at_once_and_finishes_requests_in_flight()
{
    let (address, stop, server) = start(Duration::from_secs(5)).await;
    let silent = TcpStream::connect(address).await.expect("connect");
    let slow = half_sent(address).await;
    let in_flight = tokio::spawn(get_path(address, "/slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let stopping = Instant::now();
    stop.send(()).expect("server running");
    // At once: long before the header read timeout (2 s) would close them.
    for stream in [silent, slow] {
        let closed = closed_after(stream, stopping).await;
        assert!(closed < Duration::from_secs(1), "closed after {closed:?}");
    }
    let answer = in_flight.await.expect("request task");
    assert!(answer.ends_with("slow\n"), "{answer}");
    server.await.expect("server task").expect("serve");
    // The request in flight ended it, not the grace (5 s).
    assert!(stopping.elapsed() < Duration::from_millis(1500));
    // The listener is closed.
    assert!(TcpStream::connect(address).await.is_err());
}

#[tokio::test]
async fn shutdown_ends_at_the_in_flight_grace_whatever_is_still_running() {
    let grace = Duration::from_millis(300);
    let (address, stop, server) = start(grace).await;
    let endless = tokio::spawn(get_path(address, "/endless"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    stop.send(()).expect("server running");
    server.await.expect("server task").expect("serve");
    let took = stopping.elapsed();
    assert!(
        took >= grace && took < grace + Duration::from_secs(1),
        "shutdown took {took:?} with a grace of {grace:?}"
    );
    // The endless request's connection was closed without an answer.
    let answer = tokio::time::timeout(Duration::from_secs(2), endless)
        .await
        .expect("connection closed")
        .expect("request task");
    assert!(answer.is_empty(), "{answer}");
}

/// Sends `GET path` on a kept-alive connection and reads one whole answer
/// (the routes' bodies end with a newline).
async fn get_kept_alive(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(b"\n") || !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await.expect("read");
        assert!(
            read > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_a_header_read_timeout_after_its_last_answer() {
    let (address, _stop, _server) = start(Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(address).await.expect("connect");
    // Busy for longer than the timeout, then idle.
    let busy_until = Instant::now() + LIMITS.header_read_timeout + Duration::from_secs(1);
    let mut last_answer = Instant::now();
    while Instant::now() < busy_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = get_kept_alive(&mut stream, "/fast").await;
        last_answer = Instant::now();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let closed = closed_after(stream, last_answer).await;
    assert!(
        closed >= LIMITS.header_read_timeout - Duration::from_millis(50)
            && closed < LIMITS.header_read_timeout + Duration::from_secs(1),
        "closed {closed:?} after its last answer"
    );
}

#[tokio::test]
async fn a_request_handled_for_longer_than_the_header_read_timeout_is_answered() {
    let (address, _stop, _server) = start(Duration::from_secs(1)).await;
    // A handler of 300 ms, over and over on one connection, for longer than
    // the timeout; then one that takes longer than the timeout by itself.
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let started = Instant::now();
    while started.elapsed() < LIMITS.header_read_timeout + Duration::from_millis(500) {
        let answer = get_kept_alive(&mut stream, "/slow").await;
        assert!(answer.ends_with("slow\n"), "{answer}");
    }
    let answer = get_kept_alive(&mut stream, "/longer-than-the-timeout").await;
    assert!(answer.ends_with("long\n"), "{answer}");
}
