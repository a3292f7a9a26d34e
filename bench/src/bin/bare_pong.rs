//! The baseline of the throughput benchmark: a bare axum server answering
//! `GET /ping` with the ponger's body, on the same runtime configuration
//! (tokio multi-thread, one worker per core) and with no instrumentation.
//!
//! Usage: `bare-pong <listen address> [delay in ms] [version]`: with a delay,
//! each ping sleeps that long first (the baseline of the memory benchmark);
//! with a version, each answer also carries the ponger's `x-ponger-version`
//! header, so that it is the ponger's whole answer, byte for byte.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const VERSION: HeaderName = HeaderName::from_static("x-ponger-version");

/// `pong\n`, with the ponger's version header if given, added as the ponger
/// adds it.
fn pong(version: Option<HeaderValue>) -> Response {
    let mut response = "pong\n".into_response();
    if let Some(version) = version {
        response.headers_mut().insert(VERSION, version);
    }
    response
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let address = args
        .next()
        .and_then(|address| address.parse::<SocketAddr>().ok());
    let delay = args
        .next()
        .map(|delay| delay.parse::<u64>().map(Duration::from_millis));
    let version = args
        .next()
        .map(|version| HeaderValue::from_str(&version).map(|_| version));
    let (Some(address), None | Some(Ok(_)), None | Some(Ok(_))) = (address, &delay, &version)
    else {
        eprintln!(
            "usage: bare-pong <listen address such as 127.0.0.1:8090> [delay in ms] [x-ponger-version value]"
        );
        return ExitCode::from(2);
    };
    let delay = delay.and_then(Result::ok).unwrap_or_default();
    // Made once, from a string leaked at start-up, as the ponger's own version
    // header is made from a `'static` string: a clone copies it without
    // allocating.
    let version: Option<HeaderValue> = version
        .and_then(Result::ok)
        .map(|version| HeaderValue::from_static(version.leak()));
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(address).await?;
                let app = match (delay.is_zero(), version) {
                    // The baseline as it always was: no header of its own.
                    (true, None) => Router::new().route("/ping", get(|| async { "pong\n" })),
                    (true, version) => {
                        Router::new().route("/ping", get(move || async move { pong(version) }))
                    }
                    (false, version) => Router::new().route(
                        "/ping",
                        get(move || async move {
                            tokio::time::sleep(delay).await;
                            pong(version)
                        }),
                    ),
                };
                // Served as the ponger is (`into_make_service` prepares the
                // router once, not per connection), so that the baseline is
                // what a careful axum user writes.
                axum::serve(listener, app.into_make_service()).await
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
