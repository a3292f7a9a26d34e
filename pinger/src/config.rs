//! Command-line flags (each also an environment variable).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use instrumentation::cli::{parse_duration, parse_label_token, parse_listen_address};
use reqwest::Url;

/// The ping client of the progressive-delivery demo: sends a steady rate of
/// pings to the target service and records what its users experience.
#[derive(Clone, Debug, Parser)]
#[command(name = "pinger", version)]
pub struct Config {
    /// `pinger probe`: a health check of a running pinger (see instrumentation::probe).
    #[command(subcommand)]
    pub command: Option<instrumentation::probe::Subcommand>,

    /// Address to serve /metrics and /healthz on.
    #[arg(long, env = "PINGER_LISTEN", default_value = "0.0.0.0:8081", value_name = "ADDRESS",
          value_parser = parse_listen_address)]
    pub listen: SocketAddr,

    /// URL(s) to ping; several (comma-separated or repeated) are used round robin.
    #[arg(long = "target", env = "PINGER_TARGET", default_value = "http://127.0.0.1:8080/ping",
          value_name = "URL", value_delimiter = ',', value_parser = parse_target)]
    pub targets: Vec<Url>,

    /// The pinged service's name: the `target` label of the client metrics.
    #[arg(long, env = "PINGER_TARGET_NAME", default_value = "ping", value_name = "NAME",
          value_parser = parse_label_token)]
    pub target_name: String,

    /// Pings per second, evenly spaced.
    #[arg(long, env = "PINGER_RATE", allow_hyphen_values = true, default_value = "10", value_name = "PER_SECOND",
          value_parser = parse_rate)]
    pub rate: f64,

    /// Give up on a ping after this long (counted with code="timeout").
    #[arg(long, env = "PINGER_TIMEOUT", allow_hyphen_values = true, default_value = "5s", value_name = "DURATION",
          value_parser = parse_duration)]
    pub timeout: Duration,

    /// At most this many pings awaiting a response; a ping that would exceed it
    /// is skipped and counted (pinger_pings_skipped_total{reason="max_in_flight"}).
    #[arg(long, env = "PINGER_MAX_IN_FLIGHT", allow_hyphen_values = true, default_value = "1000", value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,

    /// Reuse connections. Off by default: a fresh connection per ping lets a
    /// Kubernetes Service spread pings over pods in proportion, as canary
    /// weights assume; kept-alive connections pin traffic to a few pods.
    #[arg(long, env = "PINGER_KEEP_ALIVE", value_name = "BOOL", num_args = 0..=1,
          default_value_t = false, default_missing_value = "true", value_parser = parse_switch)]
    pub keep_alive: bool,
}

const RATE_FORM: &str =
    "expected a number of pings per second above 0 and at most 100000, such as 10 or 0.5";

fn parse_rate(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0 && *rate <= 100_000.0)
        .ok_or_else(|| RATE_FORM.to_owned())
}

fn parse_switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false (or yes/no, on/off, 1/0)".to_owned()),
    }
}

fn parse_target(value: &str) -> Result<Url, String> {
    const FORM: &str = "expected an http:// URL such as http://ponger:8080/ping";
    let url = Url::parse(value.trim()).map_err(|_| FORM.to_owned())?;
    if url.scheme() != "http" || url.host_str().is_none() {
        return Err(FORM.to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10"), Ok(10.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "fast", "100001"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_must_be_http_urls() {
        assert!(parse_target("http://ponger:8080/ping").is_ok());
        assert!(parse_target("https://ponger/ping").is_err());
        assert!(parse_target("ponger:8080").is_err());
    }

    #[test]
    fn several_targets_and_boolish_keep_alive() {
        let config = Config::try_parse_from([
            "pinger",
            "--target",
            "http://a:1/ping,http://b:2/ping",
            "--keep-alive",
        ])
        .expect("valid flags");
        assert_eq!(config.targets.len(), 2);
        assert!(config.keep_alive);
        let config = Config::try_parse_from(["pinger", "--keep-alive", "false"]).expect("valid");
        assert!(!config.keep_alive);
    }
}
