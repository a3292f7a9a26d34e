//! A health probe for images without a shell or an HTTP client (distroless):
//! `ponger probe` / `pinger probe` GET the service's own health endpoint and
//! exit 0 on `200`, 1 otherwise, with one line saying why. Container
//! healthchecks (docker compose) run it inside the container.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use reqwest::Url;

use crate::cli::parse_duration;

/// The subcommands both binaries accept besides serving.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Exit 0 when the service answers 200 on its health endpoint within the
    /// timeout, 1 otherwise (for container healthchecks; the images have no
    /// shell and no curl).
    Probe(ProbeArgs),
}

/// `probe`'s flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL to GET [default: the health endpoint on the port of --listen, via loopback].
    #[arg(long, value_name = "URL", value_parser = parse_probe_url)]
    pub url: Option<Url>,

    /// Give up after this long (connecting and answering together).
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("GET {url} answered {status}, not 200")]
    Status {
        url: Url,
        status: reqwest::StatusCode,
    },
    #[error("GET {url} got no answer within {timeout:?}")]
    TimedOut { url: Url, timeout: Duration },
    #[error("GET {url} failed: {reason}")]
    Failed { url: Url, reason: String },
}

/// The URL a probe of a service listening on `listen` uses by default: the
/// same port over loopback when the service listens on every interface.
pub fn default_url(listen: SocketAddr, path: &str) -> Url {
    let host = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let address = SocketAddr::new(host, listen.port());
    // `path` is the binary's own constant; an IP address, a port and an
    // absolute path always make a valid http URL.
    Url::parse(&format!("http://{address}{path}"))
        .expect("an IP address, a port and a path make an http URL")
}

/// GETs `url` and succeeds only on `200`, all within `timeout`.
pub fn probe(url: &Url, timeout: Duration) -> Result<(), ProbeError> {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A proxy from the environment must not stand between a container
        // and its own loopback.
        .no_proxy()
        .build()
        .map_err(|error| ProbeError::Failed {
            url: url.clone(),
            reason: error.to_string(),
        })?;
    match client.get(url.clone()).send() {
        Ok(response) if response.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(response) => Err(ProbeError::Status {
            url: url.clone(),
            status: response.status(),
        }),
        Err(error) if error.is_timeout() => Err(ProbeError::TimedOut {
            url: url.clone(),
            timeout,
        }),
        Err(error) => Err(ProbeError::Failed {
            url: url.clone(),
            reason: innermost_reason(&error),
        }),
    }
}

/// reqwest's own message is "error sending request"; the cause (connection
/// refused, reset, ...) is what tells a person what went wrong.
fn innermost_reason(error: &dyn std::error::Error) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// Runs `probe` for a binary: one line on stdout when healthy, on stderr
/// when not; exit status 0 or 1.
pub fn run(binary: &str, args: &ProbeArgs, default: Url) -> ExitCode {
    let url = args.url.clone().unwrap_or(default);
    match probe(&url, args.timeout) {
        Ok(()) => {
            println!("{binary} probe: GET {url} answered 200");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{binary} probe: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_probe_url(value: &str) -> Result<Url, String> {
    match Url::parse(value.trim()) {
        Ok(url) if url.scheme() == "http" && url.host().is_some() => Ok(url),
        _ => Err("expected an http URL, such as http://127.0.0.1:8080/readyz".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_reaches_an_unspecified_listener_over_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            default_url(any, "/readyz").as_str(),
            "http://127.0.0.1:8080/readyz"
        );
        let any6: SocketAddr = "[::]:8081".parse().unwrap();
        assert_eq!(
            default_url(any6, "/healthz").as_str(),
            "http://[::1]:8081/healthz"
        );
        let one: SocketAddr = "10.1.2.3:9000".parse().unwrap();
        assert_eq!(
            default_url(one, "/readyz").as_str(),
            "http://10.1.2.3:9000/readyz"
        );
    }

    #[test]
    fn only_http_urls_are_probed() {
        assert!(parse_probe_url("http://127.0.0.1:8080/readyz").is_ok());
        assert!(parse_probe_url("https://example.com/").is_err());
        assert!(parse_probe_url("127.0.0.1:8080").is_err());
    }
}
