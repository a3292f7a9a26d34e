//! `pingpong-bench [--quick] [throughput|schedule|fidelity|memory|startup ...]`:
//! runs the named measurements (all by default) against the release binaries
//! beside it and prints the Markdown table of `docs/benchmarks.md`.
//! Exit status 1 when a figure misses its bar.

use std::process::ExitCode;

use pingpong_bench::figures::{Figure, table};
use pingpong_bench::measure::{self, Settings};
use pingpong_bench::process::binary_dir;

type Measurement = fn(&std::path::Path, Settings) -> Vec<Figure>;

const MEASUREMENTS: [(&str, Measurement); 5] = [
    ("throughput", measure::throughput),
    ("schedule", measure::schedule),
    ("fidelity", measure::fidelity),
    ("memory", measure::memory),
    ("startup", measure::startup),
];

fn main() -> ExitCode {
    let mut settings = Settings::FULL;
    let mut chosen = Vec::new();
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "--quick" => settings = Settings::QUICK,
            name if MEASUREMENTS.iter().any(|(known, _)| *known == name) => {
                chosen.push(name.to_owned())
            }
            other => {
                eprintln!(
                    "error: unknown argument '{other}'; expected --quick and any of: {}",
                    MEASUREMENTS.map(|(name, _)| name).join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    let dir = binary_dir();
    let mut figures = Vec::new();
    for (name, measurement) in MEASUREMENTS {
        if chosen.is_empty() || chosen.iter().any(|chosen| chosen == name) {
            eprintln!("== {name}");
            let these = measurement(&dir, settings);
            eprint!("{}", table(&these));
            figures.extend(these);
        }
    }
    figures.sort_by_key(|figure| figure.item);
    print!("{}", table(&figures));
    if figures.iter().any(|figure| figure.pass == Some(false)) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
