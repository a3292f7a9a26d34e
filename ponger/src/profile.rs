//! What a ponger version does to each ping: how long it waits (a [`LatencyMix`])
//! and how often it succeeds (a [`SuccessProbability`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use instrumentation::telemetry::KeyValue;

/// The accepted form of a latency mix, quoted in every parse error.
pub const LATENCY_MIX_FORM: &str = "<percent>%<duration>,... with percents summing to 100 and durations from 0ms to 1m, at most 100 entries, such as 90%500ms,10%200ms";

/// The longest delay a latency mix may inject. A ping held longer than a
/// minute is no latency a dashboard shows (clients and the pinger gave up long
/// before), and shutdown waits for every ping in flight: it must fit the pod's
/// grace period.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// The most entries a latency mix may have: the mix is a resource attribute
/// of every span batch, and more entries than this are no longer a profile.
pub const MAX_ENTRIES: usize = 100;

/// One entry of a latency mix: wait `delay` with probability `percent` / 100.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyEntry {
    pub percent: f64,
    pub delay: Duration,
}

impl fmt::Display for LatencyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}%{}",
            self.percent,
            humantime::format_duration(self.delay)
        )
    }
}

/// A probabilistic choice of delay, written `90%500ms,10%200ms`.
///
/// Each entry is chosen with exactly its stated probability, in the order
/// written. (The original Go demo sorted entries as strings and compared each
/// draw with non-cumulative probabilities, so some entries could never be
/// chosen and others fell through to no delay at all.)
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyMix {
    entries: Vec<LatencyEntry>,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LatencyMixError {
    #[error("empty latency mix; expected {LATENCY_MIX_FORM}")]
    Empty,
    #[error("entry {0:?} has no '%'; expected {LATENCY_MIX_FORM}")]
    MissingPercentSign(String),
    #[error(
        "entry {0:?} has a percent that is not a number from 0 to 100; expected {LATENCY_MIX_FORM}"
    )]
    BadPercent(String),
    #[error(
        "entry {0:?} has a duration that is not one from 0ms to 1m with a unit (0ms, 200ms, 2s); expected {LATENCY_MIX_FORM}"
    )]
    BadDuration(String),
    #[error("percents sum to {0}, not 100; expected {LATENCY_MIX_FORM}")]
    BadSum(f64),
    #[error("it contains a control character; expected {LATENCY_MIX_FORM}")]
    ControlCharacter,
    #[error("{0} entries, more than {MAX_ENTRIES}; expected {LATENCY_MIX_FORM}")]
    TooManyEntries(usize),
}

impl LatencyMix {
    pub fn entries(&self) -> &[LatencyEntry] {
        &self.entries
    }

    /// Picks an entry for a uniform draw in `[0, 1)`: entry `i` owns the
    /// interval between the sum of the percents before it and that sum plus its own.
    pub fn choose(&self, draw: f64) -> (usize, &LatencyEntry) {
        let point = draw * 100.0;
        let mut upper = 0.0;
        for (index, entry) in self.entries.iter().enumerate() {
            upper += entry.percent;
            if point < upper {
                return (index, entry);
            }
        }
        // Rounding can leave a sliver just below 100: it belongs to the last
        // entry that can be chosen at all.
        let index = self
            .entries
            .iter()
            .rposition(|entry| entry.percent > 0.0)
            .unwrap_or(self.entries.len() - 1);
        (index, &self.entries[index])
    }
}

impl FromStr for LatencyMix {
    type Err = LatencyMixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LatencyMixError::Empty);
        }
        if text.chars().any(char::is_control) {
            return Err(LatencyMixError::ControlCharacter);
        }
        let count = text.split(',').count();
        if count > MAX_ENTRIES {
            return Err(LatencyMixError::TooManyEntries(count));
        }
        let entries = text
            .split(',')
            .map(|entry| {
                let entry = entry.trim();
                let (percent, delay) = entry
                    .split_once('%')
                    .ok_or_else(|| LatencyMixError::MissingPercentSign(entry.to_owned()))?;
                let percent: f64 = percent
                    .trim()
                    .parse()
                    .ok()
                    .filter(|percent: &f64| (0.0..=100.0).contains(percent))
                    .ok_or_else(|| LatencyMixError::BadPercent(entry.to_owned()))?;
                let delay = humantime::parse_duration(delay.trim())
                    .ok()
                    .filter(|delay| *delay <= MAX_DELAY)
                    .ok_or_else(|| LatencyMixError::BadDuration(entry.to_owned()))?;
                Ok(LatencyEntry { percent, delay })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sum: f64 = entries.iter().map(|entry| entry.percent).sum();
        if (sum - 100.0).abs() > 1e-9 {
            return Err(LatencyMixError::BadSum(sum));
        }
        Ok(Self { entries })
    }
}

impl fmt::Display for LatencyMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, entry) in self.entries.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{entry}")?;
        }
        Ok(())
    }
}

/// The chance that a ping succeeds, given as a percent from 0 to 100.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuccessProbability(f64);

pub const SUCCESS_PERCENT_FORM: &str =
    "a number from 0 to 100, optionally followed by one %, such as 95, 99.5 or 95%";

impl SuccessProbability {
    pub fn from_percent(percent: f64) -> Option<Self> {
        (0.0..=100.0)
            .contains(&percent)
            .then_some(Self(percent / 100.0))
    }

    pub fn probability(self) -> f64 {
        self.0
    }

    pub fn percent(self) -> f64 {
        self.0 * 100.0
    }

    /// Whether a ping succeeds for a uniform draw in `[0, 1)`.
    pub fn succeeds(self, draw: f64) -> bool {
        draw < self.0
    }
}

impl FromStr for SuccessProbability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        text.strip_suffix('%')
            .unwrap_or(text)
            .trim()
            .parse()
            .ok()
            .and_then(Self::from_percent)
            .ok_or_else(|| format!("expected {SUCCESS_PERCENT_FORM}"))
    }
}

/// The versions of the talk, one per container image tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileName {
    Initial,
    Errors,
    Slow,
    Best,
}

impl ProfileName {
    pub const ALL: [ProfileName; 4] = [Self::Initial, Self::Errors, Self::Slow, Self::Best];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Errors => "errors",
            Self::Slow => "slow",
            Self::Best => "best",
        }
    }

    /// The profile's latency mix and success percent, as in the README's table.
    pub fn profile(self) -> Profile {
        let (latency, success_percent) = match self {
            Self::Initial => ("90%500ms,10%200ms", 95.0),
            Self::Errors => ("90%500ms,10%200ms", 65.0),
            Self::Slow => ("50%500ms,5%200ms,45%2s", 95.0),
            Self::Best => ("90%0ms,10%200ms", 97.0),
        };
        Profile {
            name: self,
            latency: latency
                .parse()
                .unwrap_or_else(|error| unreachable!("built-in profile {latency}: {error}")),
            success: SuccessProbability::from_percent(success_percent)
                .unwrap_or_else(|| unreachable!("built-in success percent {success_percent}")),
        }
    }
}

impl FromStr for ProfileName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|name| name.as_str() == text.trim())
            .ok_or_else(|| "expected one of initial, errors, slow, best".to_owned())
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile with any overrides applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: ProfileName,
    pub latency: LatencyMix,
    pub success: SuccessProbability,
}

impl Profile {
    /// The profile as OpenTelemetry resource attributes: every span of the
    /// process shares them, so they are sent once per batch, beside
    /// `service.version`, rather than on each ping's spans.
    pub fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("ponger.profile", self.name.as_str()),
            KeyValue::new("ponger.latency_mix", self.latency.to_string()),
            KeyValue::new("ponger.success_probability", self.success.probability()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn mix(text: &str) -> LatencyMix {
        text.parse().expect("valid mix")
    }

    #[test]
    fn parses_every_builtin_profile() {
        for name in ProfileName::ALL {
            let profile = name.profile();
            let sum: f64 = profile.latency.entries().iter().map(|e| e.percent).sum();
            assert_eq!(sum, 100.0, "{name}");
        }
        assert_eq!(
            ProfileName::Slow.profile().latency.entries(),
            &[
                LatencyEntry {
                    percent: 50.0,
                    delay: Duration::from_millis(500)
                },
                LatencyEntry {
                    percent: 5.0,
                    delay: Duration::from_millis(200)
                },
                LatencyEntry {
                    percent: 45.0,
                    delay: Duration::from_secs(2)
                },
            ]
        );
    }

    #[test]
    fn parses_spaces_fractions_and_zero_delay() {
        let parsed = mix(" 12.5%0ms , 87.5%1s ");
        assert_eq!(parsed.entries()[0].percent, 12.5);
        assert_eq!(parsed.entries()[0].delay, Duration::ZERO);
        assert_eq!(parsed.entries()[1].delay, Duration::from_secs(1));
        assert_eq!(mix(&parsed.to_string()), parsed);
    }

    #[test]
    fn rejects_each_invalid_form() {
        let cases = [
            ("", LatencyMixError::Empty),
            (
                "90500ms,10%200ms",
                LatencyMixError::MissingPercentSign("90500ms".into()),
            ),
            (
                "ninety%500ms,10%200ms",
                LatencyMixError::BadPercent("ninety%500ms".into()),
            ),
            (
                "-10%500ms,110%200ms",
                LatencyMixError::BadPercent("-10%500ms".into()),
            ),
            (
                "90%-500ms,10%200ms",
                LatencyMixError::BadDuration("90%-500ms".into()),
            ),
            (
                "90%500,10%200ms",
                LatencyMixError::BadDuration("90%500".into()),
            ),
            (
                "90%soon,10%200ms",
                LatencyMixError::BadDuration("90%soon".into()),
            ),
            ("90%500ms,20%200ms", LatencyMixError::BadSum(110.0)),
            (
                "100%99999999999h",
                LatencyMixError::BadDuration("100%99999999999h".into()),
            ),
            ("100%61s", LatencyMixError::BadDuration("100%61s".into())),
            ("50%1s,50%1\ns", LatencyMixError::ControlCharacter),
            ("nan%1s", LatencyMixError::BadPercent("nan%1s".into())),
            ("inf%1s", LatencyMixError::BadPercent("inf%1s".into())),
            ("50%500ms", LatencyMixError::BadSum(50.0)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<LatencyMix>(), Err(expected), "{text:?}");
        }
        assert_eq!(
            "1%1s,".repeat(101).parse::<LatencyMix>(),
            Err(LatencyMixError::TooManyEntries(102))
        );
        let message = "90%500ms,20%200ms"
            .parse::<LatencyMix>()
            .unwrap_err()
            .to_string();
        assert!(message.contains(LATENCY_MIX_FORM), "{message}");
    }

    #[test]
    fn choose_follows_the_written_order_and_cumulative_bounds() {
        let slow = ProfileName::Slow.profile().latency;
        let delay = |draw: f64| slow.choose(draw).1.delay;
        assert_eq!(delay(0.0), Duration::from_millis(500));
        assert_eq!(delay(0.4999), Duration::from_millis(500));
        assert_eq!(delay(0.50), Duration::from_millis(200));
        assert_eq!(delay(0.5499), Duration::from_millis(200));
        assert_eq!(delay(0.55), Duration::from_secs(2));
        assert_eq!(delay(0.999_999_999), Duration::from_secs(2));
        // A zero-percent entry is never chosen, even at the very top.
        let with_zero = mix("100%1s,0%5s");
        assert_eq!(
            with_zero.choose(0.999_999_999_999).1.delay,
            Duration::from_secs(1)
        );
    }

    /// Binomial bound: each observed share lies within 5 standard deviations
    /// of its percent. With a fixed seed the test is deterministic; the bound
    /// says how far a correct sampler could stray, so a wrong one cannot pass.
    fn within_bound(observed: u64, samples: u64, probability: f64) -> bool {
        let expected = samples as f64 * probability;
        let sigma = (samples as f64 * probability * (1.0 - probability)).sqrt();
        (observed as f64 - expected).abs() <= 5.0 * sigma.max(1.0)
    }

    #[test]
    fn sampled_frequencies_match_every_profile_mix() {
        let samples = 200_000u64;
        let mut rng = StdRng::seed_from_u64(20211007);
        for name in ProfileName::ALL {
            let latency = name.profile().latency;
            let mut counts = vec![0u64; latency.entries().len()];
            for _ in 0..samples {
                counts[latency.choose(rng.random::<f64>()).0] += 1;
            }
            for (entry, observed) in latency.entries().iter().zip(&counts) {
                assert!(
                    within_bound(*observed, samples, entry.percent / 100.0),
                    "{name}: {entry} chosen {observed} times in {samples}"
                );
            }
        }
    }

    #[test]
    fn sampled_success_matches_every_profile_percent() {
        let samples = 200_000u64;
        let mut rng = StdRng::seed_from_u64(7);
        for name in ProfileName::ALL {
            let success = name.profile().success;
            let successes = (0..samples)
                .filter(|_| success.succeeds(rng.random::<f64>()))
                .count() as u64;
            assert!(
                within_bound(successes, samples, success.probability()),
                "{name}: {successes} successes in {samples}"
            );
        }
    }

    #[test]
    fn success_percent_bounds() {
        assert_eq!(
            "95".parse::<SuccessProbability>().map(|p| p.percent()),
            Ok(95.0)
        );
        assert_eq!(
            "0".parse::<SuccessProbability>().map(|p| p.probability()),
            Ok(0.0)
        );
        assert!(
            "100"
                .parse::<SuccessProbability>()
                .is_ok_and(|p| p.succeeds(0.999_999))
        );
        assert!(
            "0".parse::<SuccessProbability>()
                .is_ok_and(|p| !p.succeeds(0.0))
        );
        assert_eq!(
            "95%".parse::<SuccessProbability>().map(|p| p.percent()),
            Ok(95.0)
        );
        for bad in ["-1", "100.5", "lots", "", "50%%", "%", "NaN", "inf", "5 0"] {
            assert!(bad.parse::<SuccessProbability>().is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_names() {
        assert_eq!("slow".parse(), Ok(ProfileName::Slow));
        let error = "fast".parse::<ProfileName>().unwrap_err();
        assert!(error.contains("initial, errors, slow, best"), "{error}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Valid mixes: up to 8 entries whose percents, in hundredths, sum to
    /// exactly 100, each delay from 0 to one minute to the nanosecond.
    fn valid_mix() -> impl Strategy<Value = Vec<(u32, u64)>> {
        prop::collection::vec((1u32..10_000, 0u64..=60_000_000_000), 1..8).prop_map(|entries| {
            let total: u32 = entries.iter().map(|(weight, _)| weight).sum();
            let mut left = 10_000u32;
            let count = entries.len();
            entries
                .into_iter()
                .enumerate()
                .map(|(index, (weight, nanos))| {
                    let share = if index + 1 == count {
                        left
                    } else {
                        (weight * 10_000 / total).min(left)
                    };
                    left -= share;
                    (share, nanos)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn no_text_panics_the_parsers(text in ".{0,64}") {
            let _ = text.parse::<LatencyMix>();
            let _ = text.parse::<SuccessProbability>();
            let _ = text.parse::<ProfileName>();
        }

        #[test]
        fn no_mix_shaped_text_panics_and_accepted_mixes_round_trip(
            text in "([0-9.eE+-]{0,6}%[0-9a-z. ]{0,8},?){0,6}"
        ) {
            if let Ok(mix) = text.parse::<LatencyMix>() {
                prop_assert_eq!(mix.to_string().parse::<LatencyMix>(), Ok(mix.clone()));
                prop_assert!(mix.entries().iter().all(|entry| entry.delay <= MAX_DELAY));
            }
        }

        #[test]
        fn display_of_a_valid_mix_parses_back_to_it(entries in valid_mix()) {
            let text = entries
                .iter()
                .map(|(hundredths, nanos)| {
                    format!(
                        "{}%{}",
                        f64::from(*hundredths) / 100.0,
                        humantime::format_duration(Duration::from_nanos(*nanos))
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            let mix: LatencyMix = text.parse().map_err(|error| {
                TestCaseError::fail(format!("{text}: {error}"))
            })?;
            prop_assert_eq!(mix.entries().len(), entries.len());
            prop_assert_eq!(mix.to_string().parse::<LatencyMix>(), Ok(mix.clone()));
            // Every draw picks an entry that can be picked.
            for draw in [0.0, 0.5, 0.999_999_999] {
                prop_assert!(mix.choose(draw).1.percent > 0.0 || entries.len() == 1);
            }
        }

        #[test]
        fn success_percents_in_range_are_accepted_with_or_without_one_sign(
            percent in 0.0f64..=100.0
        ) {
            let plain = percent.to_string().parse::<SuccessProbability>();
            let signed = format!("{percent}%").parse::<SuccessProbability>();
            prop_assert!(plain.is_ok());
            prop_assert_eq!(plain, signed);
            let doubled = format!("{percent}%%");
            prop_assert!(doubled.parse::<SuccessProbability>().is_err());
        }
    }
}
