//! Command-line flags (each also an environment variable) and the resolved configuration.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use instrumentation::cli::{duration_within, parse_label_token, parse_listen_address};

use crate::profile::{LatencyMix, Profile, ProfileName, SuccessProbability};

/// The pong server of the progressive-delivery demo: GET /ping answers 200 or
/// 500 after a delay drawn from the profile's latency mix.
#[derive(Debug, Parser)]
#[command(name = "ponger", disable_version_flag = true)]
pub struct Cli {
    /// `ponger probe`: a health check of a running ponger (see instrumentation::probe).
    #[command(subcommand)]
    pub command: Option<instrumentation::probe::Subcommand>,

    /// Address to serve /ping, /metrics, /healthz and /readyz on.
    #[arg(long, env = "PONGER_LISTEN", default_value = "0.0.0.0:8080", value_name = "ADDRESS",
          value_parser = parse_listen_address)]
    pub listen: SocketAddr,

    /// The version to behave as: initial (90%500ms,10%200ms, 95% success),
    /// errors (90%500ms,10%200ms, 65%), slow (50%500ms,5%200ms,45%2s, 95%),
    /// best (90%0ms,10%200ms, 97%).
    #[arg(
        long,
        env = "PONGER_PROFILE",
        default_value = "initial",
        value_name = "PROFILE"
    )]
    pub profile: ProfileName,

    /// Override the profile's latency mix: <percent>%<duration>,... summing to
    /// 100, each duration from 0ms to 1m, at most 100 entries.
    #[arg(
        long,
        env = "PONGER_LATENCY",
        allow_hyphen_values = true,
        value_name = "MIX"
    )]
    pub latency: Option<LatencyMix>,

    /// Override the profile's success percent: 0 to 100, optionally with one %.
    #[arg(
        long,
        env = "PONGER_SUCCESS_PERCENT",
        allow_hyphen_values = true,
        value_name = "PERCENT"
    )]
    pub success_percent: Option<SuccessProbability>,

    /// The version label on metrics, traces and the x-ponger-version header
    /// [default: the profile name].
    #[arg(long = "version", env = "PONGER_VERSION", value_name = "LABEL",
          value_parser = parse_label_token)]
    pub version_label: Option<String>,

    /// After SIGTERM, how long /readyz answers 503 while pings are still served,
    /// so that load balancers stop sending new ones (0s to 1m). A second signal
    /// cuts it short.
    #[arg(long, env = "PONGER_DRAIN_DELAY", allow_hyphen_values = true, default_value = "5s", value_name = "DURATION",
          value_parser = duration_within(DRAIN_DELAY_RANGE))]
    pub drain_delay: Duration,
}

/// Long enough for any load balancer to notice `/readyz`; at most a minute,
/// since shutdown takes this long and must fit the pod's grace period.
pub const DRAIN_DELAY_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(60);

/// Everything the server needs, overrides applied.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub profile: Profile,
    pub version: String,
    pub drain_delay: Duration,
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        let mut profile = cli.profile.profile();
        if let Some(latency) = cli.latency {
            profile.latency = latency;
        }
        if let Some(success) = cli.success_percent {
            profile.success = success;
        }
        Self {
            listen: cli.listen,
            version: cli
                .version_label
                .unwrap_or_else(|| cli.profile.as_str().to_owned()),
            profile,
            drain_delay: cli.drain_delay,
        }
    }
}
