//! Command-line flags (each also an environment variable).

use std::net::SocketAddr;
use std::time::Duration;

use std::ops::RangeInclusive;

use clap::Parser;
use instrumentation::cli::{duration_within, parse_label_token, parse_listen_address};
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

    /// URL(s) to ping: http://, with a host; several (comma-separated or
    /// repeated) are used round robin. Credentials in them are never printed.
    #[arg(long = "target", env = "PINGER_TARGET", default_value = "http://127.0.0.1:8080/ping",
          value_name = "URL", value_delimiter = ',', value_parser = parse_target)]
    pub targets: Vec<Url>,

    /// The pinged service's name: the `target` label of the client metrics.
    #[arg(long, env = "PINGER_TARGET_NAME", default_value = "ping", value_name = "NAME",
          value_parser = parse_label_token)]
    pub target_name: String,

    /// Pings per second, evenly spaced: from 0.01 to 100000.
    #[arg(long, env = "PINGER_RATE", allow_hyphen_values = true, default_value = "10", value_name = "PER_SECOND",
          value_parser = parse_rate)]
    pub rate: f64,

    /// Give up on a ping after this long (counted with code="timeout"): from
    /// 10ms to 1m. Shutdown waits this long for the pings in flight.
    #[arg(long, env = "PINGER_TIMEOUT", allow_hyphen_values = true, default_value = "5s", value_name = "DURATION",
          value_parser = duration_within(TIMEOUT_RANGE))]
    pub timeout: Duration,

    /// At most this many pings awaiting a response (1 to 1000000); a ping that
    /// would exceed it is skipped and counted
    /// (pinger_pings_skipped_total{reason="max_in_flight"}).
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

/// From one ping every 100 s (slower, and the usual 1 to 5 minute rate
/// windows of the dashboards and the analysis see no ping at all) to 100,000
/// a second (10 µs apart, beyond what one schedule thread sends on time; the
/// benchmarks measure 5,000). The bounds also keep the schedule's arithmetic
/// (`1 / rate` as a `Duration`, ping numbers as `f64`) far from overflow.
pub const RATE_RANGE: RangeInclusive<f64> = 0.01..=100_000.0;

const RATE_FORM: &str =
    "expected a number of pings per second from 0.01 to 100000, such as 10 or 0.5";

/// A ping is given at least 10 ms (below, a healthy target on the same
/// machine already times out) and at most a minute: shutdown waits this long
/// for the pings in flight, and must fit the pod's grace period.
pub const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(60);

fn parse_rate(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| RATE_RANGE.contains(rate))
        .ok_or_else(|| RATE_FORM.to_owned())
}

fn parse_switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false (or yes/no, on/off, 1/0)".to_owned()),
    }
}

/// The accepted form of a target, quoted in every error about one.
pub const TARGET_FORM: &str =
    "an http:// URL with a host, such as http://ponger:8080/ping (several separated by commas)";

/// A target URL: `http://`, a host, an optional port other than 0; no
/// spaces or control characters anywhere (URL parsers drop tabs and
/// newlines silently, so `http://pon\nger` would ping `ponger`). The text is
/// checked before it is parsed because parsing forgives too much:
/// `http:///ping` parses as `http://ping/`.
pub fn parse_target(value: &str) -> Result<Url, String> {
    let text = value.trim();
    let fail = |problem: &str| Err(format!("{problem}; expected {TARGET_FORM}"));
    if text.is_empty() {
        return fail("it is empty");
    }
    if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return fail("it contains a space or a control character");
    }
    let Some(rest) = text
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &text[7..])
    else {
        return fail("the scheme is not http://");
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return fail("it has no host");
    }
    let Ok(url) = Url::parse(text) else {
        return fail("it is not a valid URL");
    };
    if url.scheme() != "http" || url.host_str().is_none_or(str::is_empty) {
        return fail("it has no host");
    }
    if url.port() == Some(0) {
        return fail("port 0 cannot be connected to");
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
        assert_eq!(parse_rate("0.01"), Ok(0.01));
        assert_eq!(parse_rate("1e5"), Ok(100_000.0));
        for bad in [
            "0", "-1", "NaN", "inf", "-inf", "fast", "100001", "1e-300", "1e-19", "0.0099", "1e309",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_must_be_http_urls_with_a_host() {
        for good in [
            "http://ponger:8080/ping",
            "HTTP://ponger/ping",
            " http://127.0.0.1:8080/ping ",
            "http://[::1]:8080/ping",
            "http://user:s3cret@ponger/ping?x=1",
        ] {
            assert!(parse_target(good).is_ok(), "{good}");
        }
        let cases = [
            ("https://ponger/ping", "scheme"),
            ("ftp://ponger/ping", "scheme"),
            ("ponger:8080", "scheme"),
            ("http:/ponger/ping", "scheme"),
            ("http:///ping", "no host"),
            ("http://", "no host"),
            ("http://:8080/ping", "no host"),
            ("http://user:pw@/ping", "no host"),
            ("http://pon\nger/ping", "control character"),
            ("http://ponger/pi ng", "control character"),
            ("http://ponger/\u{7f}", "control character"),
            ("http://ponger:0/ping", "port 0"),
            ("http://ponger:99999/ping", "not a valid URL"),
            ("http://[::1/ping", "not a valid URL"),
            ("", "empty"),
        ];
        for (bad, problem) in cases {
            let error = parse_target(bad).expect_err(bad);
            assert!(error.contains(problem), "{bad:?}: {error}");
            assert!(error.contains(TARGET_FORM), "{bad:?}: {error}");
        }
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

#[cfg(test)]
mod properties {
    use super::*;
    use instrumentation::redact::redact_url;
    use proptest::prelude::*;

    /// Valid targets, with and without credentials, ports and queries.
    fn valid_target() -> impl Strategy<Value = String> {
        (
            prop::option::of(("[a-z0-9]{1,8}", prop::option::of("[A-Za-z0-9]{1,12}"))),
            prop_oneof![
                "[a-z][a-z0-9-]{0,12}",
                "127\\.0\\.0\\.[1-9][0-9]?",
                Just("[::1]".to_owned())
            ],
            prop::option::of(1u16..),
            "(/[a-z0-9._~-]{0,8}){0,3}",
            prop::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
        )
            .prop_map(|(credentials, host, port, path, query)| {
                let mut url = "http://".to_owned();
                if let Some((user, password)) = credentials {
                    url.push_str(&user);
                    if let Some(password) = password {
                        url.push(':');
                        url.push_str(&password);
                    }
                    url.push('@');
                }
                url.push_str(&host);
                if let Some(port) = port {
                    url.push_str(&format!(":{port}"));
                }
                url.push_str(&path);
                if let Some(query) = query {
                    url.push('?');
                    url.push_str(&query);
                }
                url
            })
    }

    proptest! {
        #[test]
        fn no_text_panics_the_target_parser(text in ".{0,80}") {
            let _ = parse_target(&text);
        }

        #[test]
        fn accepted_url_shaped_text_round_trips_and_has_a_host(
            text in "[hH][tT][tT][pP]:[/\\\\]{0,3}[a-z0-9@:.\\[\\]/?#%\\t\\n -]{0,24}"
        ) {
            if let Ok(url) = parse_target(&text) {
                prop_assert!(url.host_str().is_some_and(|host| !host.is_empty()));
                prop_assert_eq!(parse_target(url.as_str()), Ok(url.clone()));
                prop_assert!(!text.trim().chars().any(char::is_control));
            }
        }

        #[test]
        fn valid_targets_parse_round_trip_and_redact(text in valid_target()) {
            let url = parse_target(&text)
                .map_err(|error| TestCaseError::fail(format!("{text}: {error}")))?;
            prop_assert_eq!(parse_target(url.as_str()), Ok(url.clone()));
            let redacted = redact_url(&url).to_string();
            if let Some(password) = url.password() {
                prop_assert!(redacted.contains("REDACTED:REDACTED@"), "{}", redacted);
                prop_assert!(!redacted.contains(&format!(":{password}@")), "{}", redacted);
            }
            // The redacted URL is still a valid target.
            prop_assert!(parse_target(&redacted).is_ok());
        }

        #[test]
        fn no_value_of_any_flag_panics(
            flag in prop::sample::select(vec![
                "--listen", "--target", "--target-name", "--rate", "--timeout",
                "--max-in-flight", "--keep-alive",
            ]),
            value in ".{0,40}",
        ) {
            let _ = Config::try_parse_from(["pinger", flag, &value]);
        }

        #[test]
        fn a_valid_configuration_written_as_flags_parses_back_to_itself(
            rate in 0.01f64..=100_000.0,
            timeout_ms in 10u64..=60_000,
            max_in_flight in 1u32..=1_000_000,
            keep_alive: bool,
            targets in prop::collection::vec(valid_target(), 1..4),
        ) {
            let timeout = Duration::from_millis(timeout_ms);
            let first = Config::try_parse_from([
                "pinger".to_owned(),
                format!("--rate={rate}"),
                format!("--timeout={}", humantime::format_duration(timeout)),
                format!("--max-in-flight={max_in_flight}"),
                format!("--keep-alive={keep_alive}"),
                format!("--target={}", targets.join(",")),
            ])
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert_eq!(first.rate, rate);
            prop_assert_eq!(first.timeout, timeout);
            let written: Vec<&str> = first.targets.iter().map(Url::as_str).collect();
            let again = Config::try_parse_from([
                "pinger".to_owned(),
                format!("--rate={}", first.rate),
                format!("--timeout={}", humantime::format_duration(first.timeout)),
                format!("--max-in-flight={}", first.max_in_flight),
                format!("--keep-alive={}", first.keep_alive),
                format!("--target={}", written.join(",")),
                format!("--listen={}", first.listen),
                format!("--target-name={}", first.target_name),
            ])
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert_eq!(format!("{again:?}"), format!("{first:?}"));
        }
    }
}
