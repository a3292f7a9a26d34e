use std::process::ExitCode;

use instrumentation::cli::parse_or_exit;
use instrumentation::probe::{Subcommand, default_url};
use instrumentation::shutdown::ShutdownSignals;
use ponger::app::{Pong, router};
use ponger::config::{Cli, Config};

fn main() -> ExitCode {
    let mut cli = parse_or_exit::<Cli>();
    if let Some(Subcommand::Probe(probe)) = cli.command.take() {
        return instrumentation::probe::run("ponger", &probe, default_url(cli.listen, "/readyz"));
    }
    let config = Config::from(cli);
    let version = config.version.clone();
    let profile = config.profile.attributes();
    instrumentation::telemetry::run_service("ponger", &version, profile, || serve(config))
}

async fn serve(config: Config) -> std::io::Result<()> {
    let signals = ShutdownSignals::listen()?;
    let listener = instrumentation::server::bind(config.listen).await?;
    tracing::info!(
        profile = config.profile.name.as_str(),
        latency = %config.profile.latency,
        success_percent = config.profile.success.percent(),
        version = %config.version,
        "serving pings"
    );
    let pong = Pong::new(config.profile, config.version);
    let app = router(pong);
    let drain_delay = config.drain_delay;
    let shutdown = async move {
        signals.requested().await;
        pong.stop_being_ready();
        tracing::info!(?drain_delay, "shutting down: not ready, draining");
        tokio::select! {
            _ = tokio::time::sleep(drain_delay) => {},
            _ = signals.hurried() => tracing::info!("second signal: drain delay skipped"),
        }
        tracing::info!("closing the listener; in-flight pings finish");
    };
    // `into_make_service` prepares the router once; serving the `Router` itself
    // would rebuild its route table for every connection (about 3.5 KiB held
    // per open connection, and the time to build it).
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("all pings answered; exiting");
    Ok(())
}
