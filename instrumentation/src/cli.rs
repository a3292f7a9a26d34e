//! Command-line parsing shared by both binaries: bad configuration ends the
//! process with status 2 and exactly one line that names the flag and the
//! accepted form.

use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

/// Parses the command line (and the `*_` environment variables clap reads).
/// `--help` and `--version` print as usual and exit 0.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(parsed) => parsed,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
            _ => exit_with_config_error(&first_line(&error.render().to_string())),
        },
    }
}

/// Prints one line to stderr and exits with status 2, the conventional status
/// for bad usage (and what clap uses).
pub fn exit_with_config_error(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

fn first_line(rendered: &str) -> String {
    rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("error: invalid configuration")
        .trim_end()
        .to_owned()
}

/// A clap value parser for durations such as `5s`, `250ms` or `1m30s`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim()).map_err(|_| {
        "expected a non-negative duration with a unit, such as 5s, 250ms or 1m30s".to_owned()
    })
}

/// A clap value parser for listen addresses such as `0.0.0.0:8080` or `[::1]:8080`.
pub fn parse_listen_address(value: &str) -> Result<std::net::SocketAddr, String> {
    value.trim().parse().map_err(|_| {
        "expected an IP address and port, such as 0.0.0.0:8080 or 127.0.0.1:0".to_owned()
    })
}

/// A clap value parser for names that become metric label values and
/// headers: 1 to 63 letters, digits, `.`, `-` or `_`.
pub fn parse_label_token(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err("expected 1 to 63 letters, digits, '.', '-' or '_', such as ping or v1.2.0".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_no_sign() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn listen_addresses_need_a_port() {
        assert!(parse_listen_address("127.0.0.1:0").is_ok());
        assert!(parse_listen_address("[::1]:8080").is_ok());
        assert!(parse_listen_address("localhost").is_err());
    }

    #[test]
    fn only_the_first_line_of_a_clap_error_is_kept() {
        let rendered = "error: invalid value 'x' for '--rate <PER_SECOND>': expected a number\n\nFor more information, try '--help'.\n";
        assert_eq!(
            first_line(rendered),
            "error: invalid value 'x' for '--rate <PER_SECOND>': expected a number"
        );
    }
}
