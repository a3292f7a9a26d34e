//! Test support for the workspace's integration tests: everything here is
//! real and runs on loopback.
//!
//! - [`Service`]: one of the workspace's binaries, started as a child process
//!   by the `launcher` crate (which the benchmarks and the rehearsal use too).
//! - [`Prometheus`]: Debian's `prometheus`, started by the launcher with
//!   exemplar storage on.
//! - [`OtlpReceiver`]: an OTLP trace receiver (HTTP/protobuf or gRPC, plain or TLS).
//! - [`TestPki`]: a CA and certificates made for one test.
//! - [`exposition`]: `/metrics` pages scraped and read, for assertions.
//!
//! The API is blocking (tests are plain `#[test]` functions) and panics on
//! failure, which fails the test; the OTLP receiver runs its own runtime on a
//! background thread.

pub mod background;
pub mod exposition;
pub mod fake_target;
pub mod otlp;
pub mod prometheus;
pub mod service;
pub mod tls;

pub use background::BackgroundServer;
pub use exposition::{Exposition, Sample, scrape};
pub use fake_target::{Behaviour, FakeTarget};
pub use otlp::{OtlpReceiver, OtlpTransport, ReceivedSpan, ReceiverTls};
pub use prometheus::Prometheus;
pub use service::{
    ConfigErrorCase, Service, assert_config_error, assert_config_errors,
    assert_unusable_listen_addresses_rejected, binary, run_to_exit,
};
pub use tls::TestPki;

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what`
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking HTTP client for tests: no proxy, no connection reuse surprises.
pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client without TLS builds")
}
