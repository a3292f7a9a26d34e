use std::process::ExitCode;

use instrumentation::cli::parse_or_exit;
use instrumentation::probe::{Subcommand, default_url};
use instrumentation::shutdown::ShutdownSignals;
use pinger::app::Pinger;
use pinger::config::Config;

fn main() -> ExitCode {
    let mut config = parse_or_exit::<Config>();
    if let Some(Subcommand::Probe(probe)) = config.command.take() {
        return instrumentation::probe::run(
            "pinger",
            &probe,
            default_url(config.listen, "/healthz"),
        );
    }
    instrumentation::telemetry::run_service("pinger", env!("CARGO_PKG_VERSION"), Vec::new(), || {
        run(config)
    })
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
