//! The `OTEL_BSP_*` and `OTEL_TRACES_SAMPLER*` variables, checked before the
//! SDK sees them.
//!
//! The SDK takes these numbers as they come: `OTEL_BSP_MAX_QUEUE_SIZE=1000000000`
//! makes it allocate the whole queue at once (a 368 GB allocation, an abort),
//! `OTEL_BSP_SCHEDULE_DELAY=0` makes its export thread spin a core, and an
//! unknown sampler name or a ratio of 2 quietly samples everything. The
//! OpenTelemetry specification says a value that cannot be parsed or is
//! outside its valid range is ignored with a warning, as if unset; so here a
//! bad value never stops the service: it is replaced by the default, and
//! [`OtelSettings::warnings`] says so in one line each. The one exception is
//! a batch larger than the queue, which the specification forbids: it is
//! clamped to the queue size.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use opentelemetry_sdk::trace::{BatchConfig, BatchConfigBuilder, Sampler};

/// A variable whose value was not used, and what was used instead.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    pub variable: &'static str,
    pub given: String,
    pub used: String,
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} ignored ({}); using {}",
            self.variable, self.given, self.reason, self.used
        )
    }
}

/// A batch span processor variable: its range, its default and the unit the
/// specification gives it.
#[derive(Clone, Copy, Debug)]
pub struct BatchVariable {
    pub name: &'static str,
    pub range: (u64, u64),
    pub default: u64,
    pub milliseconds: bool,
}

impl BatchVariable {
    fn range(&self) -> RangeInclusive<u64> {
        self.range.0..=self.range.1
    }
}

/// Export every 10 ms at the most often: 0 spins the export thread, and
/// anything below a few milliseconds is close to it. At most once a minute,
/// or spans arrive too late to be useful.
pub const SCHEDULE_DELAY: BatchVariable = BatchVariable {
    name: "OTEL_BSP_SCHEDULE_DELAY",
    range: (10, 60_000),
    default: 5_000,
    milliseconds: true,
};

/// The queue is allocated whole when the processor starts (about 370 bytes a
/// slot): 65,536 slots are about 23 MiB, a sixth of the pods' 128 MiB limit,
/// and 32 times the default, room for a long collector outage.
pub const MAX_QUEUE_SIZE: BatchVariable = BatchVariable {
    name: "OTEL_BSP_MAX_QUEUE_SIZE",
    range: (1, 65_536),
    default: 2_048,
    milliseconds: false,
};

/// At most the queue size (the specification's rule), checked after both are read.
pub const MAX_EXPORT_BATCH_SIZE: BatchVariable = BatchVariable {
    name: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    range: (1, 65_536),
    default: 512,
    milliseconds: false,
};

/// Checked for the operator's sake only: this build's batch processor runs on
/// a thread of its own and bounds each export by the exporter's own timeout
/// (`OTEL_EXPORTER_OTLP_TIMEOUT`), so the SDK does not use it.
pub const EXPORT_TIMEOUT: BatchVariable = BatchVariable {
    name: "OTEL_BSP_EXPORT_TIMEOUT",
    range: (1, 120_000),
    default: 30_000,
    milliseconds: true,
};

/// Checked for the operator's sake only: the thread-based processor exports
/// one batch at a time.
pub const MAX_CONCURRENT_EXPORTS: BatchVariable = BatchVariable {
    name: "OTEL_BSP_MAX_CONCURRENT_EXPORTS",
    range: (1, 64),
    default: 1,
    milliseconds: false,
};

pub const BATCH_VARIABLES: [BatchVariable; 5] = [
    SCHEDULE_DELAY,
    MAX_QUEUE_SIZE,
    MAX_EXPORT_BATCH_SIZE,
    EXPORT_TIMEOUT,
    MAX_CONCURRENT_EXPORTS,
];

pub const SAMPLER_VARIABLE: &str = "OTEL_TRACES_SAMPLER";
pub const SAMPLER_ARG_VARIABLE: &str = "OTEL_TRACES_SAMPLER_ARG";
/// The specification's default sampler.
pub const DEFAULT_SAMPLER: &str = "parentbased_always_on";
/// The sampler names this build implements.
pub const SAMPLER_NAMES: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];
/// Names the specification knows that need components this build lacks.
const UNSUPPORTED_SAMPLER_NAMES: [&str; 3] = ["jaeger_remote", "parentbased_jaeger_remote", "xray"];

/// The sampler the variables select, by name, with its ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerChoice {
    pub name: &'static str,
    /// For the ratio samplers: the probability, in `[0, 1]`.
    pub ratio: Option<f64>,
}

impl SamplerChoice {
    pub fn sampler(self) -> Sampler {
        let ratio = self.ratio.unwrap_or(1.0);
        match self.name {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatioBased(ratio),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
            _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        }
    }
}

/// The checked settings and what was replaced on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct OtelSettings {
    pub schedule_delay: Duration,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    pub sampler: SamplerChoice,
    pub warnings: Vec<Warning>,
}

impl OtelSettings {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any source of variables (`lookup` returns a variable's value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut warnings = Vec::new();
        let mut read =
            |variable: BatchVariable| read_number(variable, lookup(variable.name), &mut warnings);
        let schedule_delay = Duration::from_millis(read(SCHEDULE_DELAY));
        let max_queue_size = read(MAX_QUEUE_SIZE);
        let mut max_export_batch_size = read(MAX_EXPORT_BATCH_SIZE);
        read(EXPORT_TIMEOUT);
        read(MAX_CONCURRENT_EXPORTS);
        if max_export_batch_size > max_queue_size {
            // Only a valid batch size that was asked for deserves a warning
            // (an invalid one has had its own); the default shrinks to a
            // small queue silently.
            let asked =
                lookup(MAX_EXPORT_BATCH_SIZE.name).is_some_and(|value| !value.trim().is_empty());
            let warned = warnings
                .iter()
                .any(|warning| warning.variable == MAX_EXPORT_BATCH_SIZE.name);
            if asked && !warned {
                warnings.push(Warning {
                    variable: MAX_EXPORT_BATCH_SIZE.name,
                    given: max_export_batch_size.to_string(),
                    used: max_queue_size.to_string(),
                    reason: format!(
                        "a batch cannot be larger than {} ({max_queue_size})",
                        MAX_QUEUE_SIZE.name
                    ),
                });
            }
            max_export_batch_size = max_queue_size;
        }
        let sampler = read_sampler(
            lookup(SAMPLER_VARIABLE),
            lookup(SAMPLER_ARG_VARIABLE),
            &mut warnings,
        );
        // Both are at most 65,536 (their ranges), so they fit any usize.
        Self {
            schedule_delay,
            max_queue_size: max_queue_size as usize,
            max_export_batch_size: max_export_batch_size as usize,
            sampler,
            warnings,
        }
    }

    /// The batch span processor's configuration. The SDK's builder reads the
    /// variables itself first; every value it uses is then replaced here.
    pub fn batch_config(&self) -> BatchConfig {
        BatchConfigBuilder::default()
            .with_max_queue_size(self.max_queue_size)
            .with_max_export_batch_size(self.max_export_batch_size)
            .with_scheduled_delay(self.schedule_delay)
            .build()
    }
}

/// A variable's value if set and valid; otherwise its default, with a warning
/// when it was set.
fn read_number(variable: BatchVariable, value: Option<String>, warnings: &mut Vec<Warning>) -> u64 {
    let Some(given) = value.filter(|value| !value.trim().is_empty()) else {
        return variable.default;
    };
    match given.trim().parse::<u64>() {
        Ok(number) if variable.range().contains(&number) => number,
        parsed => {
            let unit = if variable.milliseconds {
                " milliseconds"
            } else {
                ""
            };
            let reason = match parsed {
                Ok(_) => "outside",
                Err(_) => "not a whole number in",
            };
            warnings.push(Warning {
                variable: variable.name,
                given,
                used: format!("{}{unit} (the default)", variable.default),
                reason: format!("{reason} {}..={}{unit}", variable.range.0, variable.range.1),
            });
            variable.default
        }
    }
}

fn read_sampler(
    name: Option<String>,
    argument: Option<String>,
    warnings: &mut Vec<Warning>,
) -> SamplerChoice {
    let default = SamplerChoice {
        name: DEFAULT_SAMPLER,
        ratio: None,
    };
    let Some(given) = name.filter(|name| !name.trim().is_empty()) else {
        return default;
    };
    // The specification reads enumerations without regard to case.
    let wanted = given.trim().to_ascii_lowercase();
    let Some(name) = SAMPLER_NAMES.into_iter().find(|name| *name == wanted) else {
        let reason = if UNSUPPORTED_SAMPLER_NAMES.contains(&wanted.as_str()) {
            "a sampler this build does not include".to_owned()
        } else {
            format!("expected one of {}", SAMPLER_NAMES.join(", "))
        };
        warnings.push(Warning {
            variable: SAMPLER_VARIABLE,
            given,
            used: DEFAULT_SAMPLER.to_owned(),
            reason,
        });
        return default;
    };
    if !name.ends_with("traceidratio") {
        return SamplerChoice { name, ratio: None };
    }
    let ratio = match argument.filter(|argument| !argument.trim().is_empty()) {
        None => 1.0,
        Some(given) => match given.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            _ => {
                warnings.push(Warning {
                    variable: SAMPLER_ARG_VARIABLE,
                    given,
                    used: "1.0 (the default)".to_owned(),
                    reason: format!("{name} takes a probability from 0 to 1, such as 0.25"),
                });
                1.0
            }
        },
    };
    SamplerChoice {
        name,
        ratio: Some(ratio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(variables: &[(&str, &str)]) -> OtelSettings {
        let variables: HashMap<String, String> = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        OtelSettings::from_lookup(|name| variables.get(name).cloned())
    }

    #[test]
    fn defaults_without_variables() {
        let settings = settings(&[]);
        assert_eq!(settings.schedule_delay, Duration::from_secs(5));
        assert_eq!(settings.max_queue_size, 2048);
        assert_eq!(settings.max_export_batch_size, 512);
        assert_eq!(settings.sampler.name, "parentbased_always_on");
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn valid_values_are_used_silently() {
        let settings = settings(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
            ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "2"),
            ("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert_eq!(settings.warnings, []);
        assert_eq!(settings.schedule_delay, Duration::from_millis(200));
        assert_eq!(settings.max_queue_size, 65536);
        assert_eq!(settings.max_export_batch_size, 4096);
        assert_eq!(
            settings.sampler,
            SamplerChoice {
                name: "parentbased_traceidratio",
                ratio: Some(0.25)
            }
        );
    }

    #[test]
    fn each_bad_value_falls_back_to_the_default_with_one_warning() {
        let cases = [
            (
                "OTEL_BSP_MAX_QUEUE_SIZE",
                "1000000000",
                "2048 (the default)",
            ),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "2048 (the default)"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "2048 (the default)"),
            (
                "OTEL_BSP_MAX_QUEUE_SIZE",
                "99999999999999999999999",
                "2048 (the default)",
            ),
            (
                "OTEL_BSP_SCHEDULE_DELAY",
                "0",
                "5000 milliseconds (the default)",
            ),
            (
                "OTEL_BSP_SCHEDULE_DELAY",
                "5s",
                "5000 milliseconds (the default)",
            ),
            (
                "OTEL_BSP_SCHEDULE_DELAY",
                "3600000",
                "5000 milliseconds (the default)",
            ),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0", "512 (the default)"),
            (
                "OTEL_BSP_EXPORT_TIMEOUT",
                "0",
                "30000 milliseconds (the default)",
            ),
            ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "1000", "1 (the default)"),
            ("OTEL_TRACES_SAMPLER", "bogus", "parentbased_always_on"),
            ("OTEL_TRACES_SAMPLER", "xray", "parentbased_always_on"),
        ];
        for (variable, value, used) in cases {
            let settings = settings(&[(variable, value)]);
            assert_eq!(settings.warnings.len(), 1, "{variable}={value}");
            let warning = &settings.warnings[0];
            assert_eq!(warning.variable, variable);
            assert_eq!(warning.given, value);
            assert_eq!(warning.used, used, "{variable}={value}");
        }
        assert_eq!(
            settings(&[("OTEL_TRACES_SAMPLER", "bogus")]).sampler.name,
            "parentbased_always_on"
        );
    }

    #[test]
    fn ratios_outside_zero_to_one_are_replaced_by_one() {
        for bad in ["2", "-0.1", "NaN", "inf", "half"] {
            let settings = settings(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", bad),
            ]);
            assert_eq!(settings.sampler.ratio, Some(1.0), "{bad}");
            assert_eq!(settings.warnings.len(), 1, "{bad}");
            assert_eq!(settings.warnings[0].variable, "OTEL_TRACES_SAMPLER_ARG");
        }
        // An argument for a sampler that takes none is not read.
        assert!(
            settings(&[
                ("OTEL_TRACES_SAMPLER", "always_on"),
                ("OTEL_TRACES_SAMPLER_ARG", "2")
            ])
            .warnings
            .is_empty()
        );
    }

    #[test]
    fn a_batch_larger_than_the_queue_is_clamped_to_it() {
        let settings = settings(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
        ]);
        assert_eq!(settings.max_export_batch_size, 100);
        assert_eq!(settings.warnings.len(), 1);
        let unset = self::settings(&[("OTEL_BSP_MAX_QUEUE_SIZE", "100")]);
        assert_eq!(unset.max_export_batch_size, 100);
        assert_eq!(unset.warnings, []);
        assert_eq!(
            settings.warnings[0].to_string(),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"512\" ignored (a batch cannot be larger than OTEL_BSP_MAX_QUEUE_SIZE (100)); using 100"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_values_give_settings_within_range_and_one_warning_each(
            values in prop::collection::vec(prop::option::of(".{0,24}|[0-9]{1,12}|-?[0-9.e]{1,8}"), 7)
        ) {
            let names = [
                SCHEDULE_DELAY.name, MAX_QUEUE_SIZE.name, MAX_EXPORT_BATCH_SIZE.name,
                EXPORT_TIMEOUT.name, MAX_CONCURRENT_EXPORTS.name, SAMPLER_VARIABLE,
                SAMPLER_ARG_VARIABLE,
            ];
            let lookup = |name: &str| {
                names.iter().position(|known| *known == name).and_then(|index| values[index].clone())
            };
            let settings = OtelSettings::from_lookup(lookup);
            prop_assert!(SCHEDULE_DELAY.range().contains(&(settings.schedule_delay.as_millis() as u64)));
            prop_assert!((1..=65_536).contains(&settings.max_queue_size));
            prop_assert!((1..=settings.max_queue_size).contains(&settings.max_export_batch_size));
            prop_assert!(SAMPLER_NAMES.contains(&settings.sampler.name));
            prop_assert!(settings.sampler.ratio.is_none_or(|ratio| (0.0..=1.0).contains(&ratio)));
            let mut warned: Vec<&str> = settings.warnings.iter().map(|warning| warning.variable).collect();
            warned.sort_unstable();
            let before = warned.len();
            warned.dedup();
            prop_assert_eq!(before, warned.len(), "one warning per variable at most");
            for warning in &settings.warnings {
                prop_assert!(!warning.to_string().contains('\n') || warning.given.contains('\n'));
            }
        }
    }
}
