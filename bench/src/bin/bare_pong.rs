//! The baseline of the throughput benchmark: a bare axum server answering
//! `GET /ping` with the ponger's body, on the same runtime configuration
//! (tokio multi-thread, one worker per core) and with no instrumentation.
//!
//! Usage: `bare-pong <listen address> [delay in ms]`: with a delay, each ping
//! sleeps that long first (the baseline of the memory benchmark).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let address = args
        .next()
        .and_then(|address| address.parse::<SocketAddr>().ok());
    let delay = args
        .next()
        .map(|delay| delay.parse::<u64>().map(Duration::from_millis));
    let (Some(address), None | Some(Ok(_))) = (address, &delay) else {
        eprintln!("usage: bare-pong <listen address such as 127.0.0.1:8090> [delay in ms]");
        return ExitCode::from(2);
    };
    let delay = delay.and_then(Result::ok).unwrap_or_default();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(address).await?;
                let app = if delay.is_zero() {
                    Router::new().route("/ping", get(|| async { "pong\n" }))
                } else {
                    Router::new().route(
                        "/ping",
                        get(move || async move {
                            tokio::time::sleep(delay).await;
                            "pong\n"
                        }),
                    )
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
