//! How long the ponger can take to exit after SIGTERM, from its configuration.

use std::time::Duration;

use instrumentation::telemetry::SPAN_FLUSH_BUDGET;

use crate::profile::Profile;

/// Time allowed, beyond a ping's injected delay, to finish handling it and
/// send its response.
pub const RESPONSE_MARGIN: Duration = Duration::from_secs(1);

/// The parts of a shutdown, each bounded: the drain delay (readiness 503,
/// pings still served), then the pings in flight (the longest delay the
/// latency mix can draw, plus [`RESPONSE_MARGIN`]; connections still open
/// after it are closed), then the export of the last spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownBudget {
    pub drain_delay: Duration,
    pub in_flight: Duration,
    pub span_flush: Duration,
}

impl ShutdownBudget {
    pub fn new(drain_delay: Duration, profile: &Profile) -> Self {
        let longest_ping = profile
            .latency
            .entries()
            .iter()
            .filter(|entry| entry.percent > 0.0)
            .map(|entry| entry.delay)
            .max()
            .unwrap_or_default();
        Self {
            drain_delay,
            in_flight: longest_ping.saturating_add(RESPONSE_MARGIN),
            span_flush: SPAN_FLUSH_BUDGET,
        }
    }

    /// The most the process can take from the first SIGTERM to its exit:
    /// what the pod's `terminationGracePeriodSeconds` (or compose's
    /// `stop_grace_period`) must allow.
    pub fn total(&self) -> Duration {
        self.drain_delay
            .saturating_add(self.in_flight)
            .saturating_add(self.span_flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileName;

    #[test]
    fn the_longest_drawable_delay_bounds_the_pings_in_flight() {
        let slow = ShutdownBudget::new(Duration::from_secs(5), &ProfileName::Slow.profile());
        assert_eq!(slow.in_flight, Duration::from_secs(3));
        assert_eq!(slow.total(), Duration::from_secs(5 + 3 + 3));

        // An entry that is never drawn does not count.
        let mut profile = ProfileName::Best.profile();
        profile.latency = "100%100ms,0%1m".parse().expect("valid mix");
        let best = ShutdownBudget::new(Duration::ZERO, &profile);
        assert_eq!(best.in_flight, Duration::from_millis(1100));
    }
}
