//! Command-line parsing shared by both binaries: bad configuration ends the
//! process with status 2 and exactly one line that names the flag, the value
//! (control characters escaped, credentials redacted) and the accepted form.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Parses the command line (and the `*_` environment variables clap reads).
/// `--help` and `--version` print as usual and exit 0.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(parsed) => parsed,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
            _ => exit_with_config_error(&one_line_error(&error)),
        },
    }
}

/// clap's message for `error`, its first line, with every value it quotes
/// made safe to print: a newline in a value would otherwise cut the line
/// before the flag's name, and a password in a URL would be printed.
fn one_line_error(error: &clap::Error) -> String {
    // A value that fails its parser: written here rather than rendered by
    // clap, whose rendering drops escape sequences from the value (so that
    // the line would quote something other than what was given).
    if let (
        ErrorKind::ValueValidation,
        Some(ContextValue::String(flag)),
        Some(ContextValue::String(value)),
        Some(reason),
    ) = (
        error.kind(),
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
        std::error::Error::source(error),
    ) {
        return format!(
            "error: invalid value '{}' for '{flag}': {}",
            printable_value(value),
            first_line(&reason.to_string())
        );
    }
    let mut rendered = error.render().to_string();
    let quoted = error.context().flat_map(|(_, value)| match value {
        ContextValue::String(value) => vec![value.as_str()],
        ContextValue::Strings(values) => values.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    });
    for value in quoted.collect::<Vec<_>>() {
        let safe = printable_value(value);
        if safe != value && !value.is_empty() {
            rendered = rendered.replace(value, &safe);
        }
    }
    first_line(&rendered)
}

/// A configuration value as an error line may quote it: credentials in URLs
/// redacted, control characters escaped as Rust does (`\n`, `\u{7f}`).
pub fn printable_value(value: &str) -> Cow<'_, str> {
    let redacted = crate::redact::redact_userinfo_in(value);
    if !redacted.chars().any(needs_escape) {
        return redacted;
    }
    Cow::Owned(
        redacted
            .chars()
            .map(|c| {
                if needs_escape(c) {
                    c.escape_debug().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// A configuration error found after clap's parsing (a bind failure, say):
/// [`crate::telemetry::run_service`] ends the process with status 2 for it,
/// as for a bad flag, printing its one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// `flag`'s value `value` is unusable: `why`, and what is accepted.
    pub fn invalid(flag: &str, value: &str, why: impl std::fmt::Display, accepted: &str) -> Self {
        Self(format!(
            "error: invalid value '{}' for '{flag}': {why}; expected {accepted}",
            printable_value(value)
        ))
    }

    /// As an `std::io::Error`, the error type the binaries' `serve` returns.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// The error for a listen address that cannot be bound (in use, or not an
/// address of this machine), naming the flag and the address.
pub fn listen_error(flag: &str, address: SocketAddr, error: std::io::Error) -> std::io::Error {
    ConfigError::invalid(
        flag,
        &address.to_string(),
        format_args!("cannot listen there: {error}"),
        "a free address and port of this machine, such as 0.0.0.0:8080 or 127.0.0.1:0",
    )
    .into_io()
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

/// A clap value parser for durations within `range`, e.g.
/// `value_parser = duration_within(Duration::ZERO..=Duration::from_secs(60))`.
pub fn duration_within(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| {
        humantime::parse_duration(value.trim())
            .ok()
            .filter(|duration| range.contains(duration))
            .ok_or_else(|| duration_form(&range))
    }
}

/// "expected a duration from 10ms to 1m, with a unit, such as 5s, 250ms or 1m30s".
pub fn duration_form(range: &RangeInclusive<Duration>) -> String {
    format!(
        "expected a duration from {} to {}, with a unit, such as 5s, 250ms or 1m30s",
        humantime::format_duration(*range.start()),
        humantime::format_duration(*range.end())
    )
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
    fn durations_within_a_range() {
        let parse = duration_within(Duration::from_millis(10)..=Duration::from_secs(60));
        assert_eq!(parse("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        for bad in ["0s", "9ms", "61s", "99999999999h", "5", ""] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains("from 10ms to 1m"), "{error}");
        }
    }

    #[test]
    fn printed_values_escape_control_characters_and_redact_credentials() {
        assert_eq!(printable_value("plain"), "plain");
        assert_eq!(printable_value("a\nb\tc\u{7f}"), "a\\nb\\tc\\u{7f}");
        assert_eq!(
            printable_value("http://u:s3cret@h/\n"),
            "http://REDACTED:REDACTED@h/\\n"
        );
    }

    #[test]
    fn clap_errors_quote_values_on_one_line() {
        #[derive(Debug, Parser)]
        struct Flags {
            #[arg(long, value_parser = duration_within(Duration::ZERO..=Duration::from_secs(1)))]
            wait: Duration,
        }
        let error =
            Flags::try_parse_from(["test", "--wait", "5s\nforged line"]).expect_err("out of range");
        let line = one_line_error(&error);
        assert!(line.contains("--wait"), "{line}");
        assert!(line.contains("5s\\nforged line"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let error = ConfigError::invalid("--target", "http://u:pw@h\r", "no", "a URL");
        assert_eq!(
            error.to_string(),
            "error: invalid value 'http://REDACTED:REDACTED@h\\r' for '--target': no; expected a URL"
        );
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
