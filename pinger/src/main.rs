use std::process::ExitCode;
use std::time::Duration;

use instrumentation::cli::parse_or_exit;
use instrumentation::probe::{Subcommand, default_url};
use instrumentation::serve::ConnectionLimits;
use instrumentation::shutdown::ShutdownSignals;
use instrumentation::telemetry::Instrumentation;
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
    instrumentation::telemetry::run_service(
        "pinger",
        env!("CARGO_PKG_VERSION"),
        Vec::new(),
        |instrumentation| run(config, instrumentation),
    )
}

async fn run(config: Config, instrumentation: Instrumentation) -> std::io::Result<()> {
    let signals = ShutdownSignals::listen()?;
    let (pinger, registry) =
        Pinger::new(&config, &instrumentation).map_err(std::io::Error::other)?;
    let listener = instrumentation::server::bind(config.listen)
        .await
        .map_err(|error| instrumentation::cli::listen_error("--listen", config.listen, error))?;
    // The same bounds as the ponger's (header read timeout, connection cap);
    // no shutdown of its own: it is stopped below.
    let metrics_server = tokio::spawn(instrumentation::serve::serve(
        listener,
        instrumentation::exposition::operational_routes(registry),
        ConnectionLimits::default(),
        std::future::pending(),
        Duration::ZERO,
    ));
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
