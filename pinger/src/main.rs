use std::process::ExitCode;

use instrumentation::cli::{exit_with_config_error, parse_or_exit};
use instrumentation::shutdown::ShutdownSignals;
use pinger::app::Pinger;
use pinger::config::Config;

fn main() -> ExitCode {
    let config = parse_or_exit::<Config>();
    let telemetry = match instrumentation::telemetry::init("pinger", env!("CARGO_PKG_VERSION")) {
        Ok(telemetry) => telemetry,
        Err(error) => exit_with_config_error(&format!("error: {error}")),
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .and_then(|runtime| runtime.block_on(run(config)));
    // Spans are flushed after the runtime is gone: the exporter's client is blocking.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> std::io::Result<()> {
    let signals = ShutdownSignals::listen()?;
    let (pinger, registry) = Pinger::new(&config).map_err(std::io::Error::other)?;
    let listener = instrumentation::server::bind(config.listen).await?;
    let metrics_server = tokio::spawn(
        axum::serve(
            listener,
            instrumentation::exposition::operational_routes(registry),
        )
        .into_future(),
    );
    let stop = {
        let signals = signals.clone();
        async move { signals.requested().await }
    };
    pinger.run(stop).await;
    // /metrics stays up until the last ping is recorded, then goes.
    metrics_server.abort();
    tracing::info!("exiting");
    Ok(())
}
