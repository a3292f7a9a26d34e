//! What a person sees when spans cannot be exported: one log line per
//! interval at most, with the endpoint (credentials left out), the kind of
//! cause and the error itself, and one line when export works again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::OtlpProtocol;

/// At most one export failure line per this interval: a collector that is
/// down fails every batch (every few seconds) and would drown the logs.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// The kind of an export failure, for a person deciding what to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The server's certificate was not trusted, or ours was refused.
    Certificate,
    /// Nothing listens at the endpoint.
    Refused,
    /// No answer in time (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The connection broke (closed, reset); with TLS 1.3 also how a server
    /// that refuses the client's certificate may show.
    Connection,
    /// The collector answered with an error status.
    Rejected,
    Other,
}

impl Cause {
    /// Classifies an error's description (its whole source chain). The HTTP
    /// and gRPC clients both end in the same crates (hyper, rustls, std::io),
    /// whose messages these are.
    pub(crate) fn of(description: &str) -> Self {
        let text = description.to_ascii_lowercase();
        if text.contains("certificate") || text.contains("unknownissuer") || text.contains("tls") {
            Self::Certificate
        } else if text.contains("connection refused") {
            Self::Refused
        } else if text.contains("timed out")
            || text.contains("timeout")
            || text.contains("deadline")
            || text.contains("elapsed")
        {
            Self::Timeout
        } else if text.contains("dns") || text.contains("failed to lookup address") {
            Self::Dns
        } else if text.contains("transport error")
            || text.contains("connection error")
            || text.contains("broken pipe")
            || text.contains("connection reset")
        {
            Self::Connection
        } else if text.contains("status code") || text.contains("grpc code") {
            Self::Rejected
        } else {
            Self::Other
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::Connection => "connection",
            Self::Rejected => "rejected",
            Self::Other => "other",
        }
    }
}

/// When to write a line: the decision, without the clock or the logger.
#[derive(Debug, Default)]
pub(crate) struct ReportSchedule {
    last_line: Option<Instant>,
    /// Failures since the last line.
    unreported: u64,
    failing: bool,
}

impl ReportSchedule {
    /// A failed export at `now`: `Some(failures)` (this one included, and
    /// those since the last line) when a line is due.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failing = true;
        self.unreported += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_INTERVAL);
        due.then(|| {
            self.last_line = Some(now);
            std::mem::take(&mut self.unreported)
        })
    }

    /// A successful export: true when it ends a run of failures.
    pub(crate) fn succeeded(&mut self) -> bool {
        self.unreported = 0;
        std::mem::take(&mut self.failing)
    }
}

/// The exporter's failure reporting.
#[derive(Debug)]
pub(crate) struct FailureReport {
    endpoint: String,
    protocol: OtlpProtocol,
    schedule: Mutex<ReportSchedule>,
}

impl FailureReport {
    /// `endpoint`: already redacted.
    pub(crate) fn new(endpoint: String, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint,
            protocol,
            schedule: Mutex::default(),
        }
    }

    pub(crate) fn failed(&self, description: &str) {
        let Some(failures) = self
            .schedule
            .lock()
            .ok()
            .and_then(|mut schedule| schedule.failed(Instant::now()))
        else {
            return;
        };
        tracing::warn!(
            endpoint = self.endpoint.as_str(),
            protocol = self.protocol.as_str(),
            cause = Cause::of(description).as_str(),
            error = description,
            failed_exports = failures,
            "span export failed; those spans are dropped (at most one such line every {} s)",
            REPORT_INTERVAL.as_secs()
        );
    }

    pub(crate) fn succeeded(&self) {
        let recovered = self
            .schedule
            .lock()
            .map(|mut schedule| schedule.succeeded())
            .unwrap_or(false);
        if recovered {
            tracing::info!(
                endpoint = self.endpoint.as_str(),
                protocol = self.protocol.as_str(),
                "span export works again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_failures_in_between() {
        let start = Instant::now();
        let mut schedule = ReportSchedule::default();
        assert_eq!(schedule.failed(start), Some(1));
        for second in 1..30 {
            assert_eq!(
                schedule.failed(start + Duration::from_secs(second)),
                None,
                "{second}"
            );
        }
        assert_eq!(schedule.failed(start + REPORT_INTERVAL), Some(30));
        assert!(schedule.succeeded());
        assert!(!schedule.succeeded(), "recovery is reported once");
        // A new failure soon after the last line waits for the interval.
        assert_eq!(
            schedule.failed(start + REPORT_INTERVAL + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn causes_come_from_the_messages_of_hyper_rustls_and_std() {
        let cases = [
            (
                "client error (Connect): invalid peer certificate: UnknownIssuer",
                Cause::Certificate,
            ),
            (
                "tcp connect error: Connection refused (os error 111)",
                Cause::Refused,
            ),
            ("deadline has elapsed", Cause::Timeout),
            (
                "dns error: failed to lookup address information",
                Cause::Dns,
            ),
            ("HTTP export failed with status code: 503", Cause::Rejected),
            (
                "gRPC code: Unknown: transport error: connection error: stream closed because of a broken pipe",
                Cause::Connection,
            ),
            (
                "gRPC code: Unavailable: the service is overloaded",
                Cause::Rejected,
            ),
            ("something else", Cause::Other),
        ];
        for (text, cause) in cases {
            assert_eq!(Cause::of(text), cause, "{text}");
        }
    }
}
