use std::process::ExitCode;

use instrumentation::cli::parse_or_exit;
use instrumentation::probe::{Subcommand, default_url};
use instrumentation::serve::ConnectionLimits;
use instrumentation::shutdown::ShutdownSignals;
use instrumentation::telemetry::Instrumentation;
use ponger::app::{Pong, router};
use ponger::config::{Cli, Config};
use ponger::shutdown::ShutdownBudget;

fn main() -> ExitCode {
    let mut cli = parse_or_exit::<Cli>();
    if let Some(Subcommand::Probe(probe)) = cli.command.take() {
        return instrumentation::probe::run("ponger", &probe, default_url(cli.listen, "/readyz"));
    }
    let config = Config::from(cli);
    let version = config.version.clone();
    let profile = config.profile.attributes();
    instrumentation::telemetry::run_service("ponger", &version, profile, |instrumentation| {
        serve(config, instrumentation)
    })
}

async fn serve(config: Config, instrumentation: Instrumentation) -> std::io::Result<()> {
    let signals = ShutdownSignals::listen()?;
    let listener = instrumentation::server::bind(config.listen)
        .await
        .map_err(|error| instrumentation::cli::listen_error("--listen", config.listen, error))?;
    let budget = ShutdownBudget::new(config.drain_delay, &config.profile);
    tracing::info!(
        profile = config.profile.name.as_str(),
        latency = %config.profile.latency,
        success_percent = config.profile.success.percent(),
        version = %config.version,
        shutdown_within = ?budget.total(),
        "serving pings"
    );
    let pong = Pong::new(config.profile, config.version, &instrumentation);
    let app = router(&pong);
    let drain_delay = config.drain_delay;
    let shutdown = async move {
        signals.requested().await;
        pong.stop_being_ready();
        tracing::info!(?drain_delay, "shutting down: not ready, draining");
        tokio::select! {
            _ = tokio::time::sleep(drain_delay) => {},
            _ = signals.hurried() => tracing::info!("second signal: drain delay skipped"),
        }
    };
    instrumentation::serve::serve(
        listener,
        app,
        ConnectionLimits::default(),
        shutdown,
        budget.in_flight,
    )
    .await?;
    tracing::info!("server stopped; exiting");
    Ok(())
}
