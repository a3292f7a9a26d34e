use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use scenarios::manifests::workspace_root;
use scenarios::plan::parse_duration;
use scenarios::procs;
use scenarios::rehearsal::{self, Failure, INTERRUPTED, Options};
use scenarios::report::Report;

/// Workshop scenarios for ping/pong progressive delivery.
#[derive(Debug, Parser)]
#[command(name = "scenarios")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rehearse the canary Rollout of k8s/ on this machine: stable ponger
    /// replicas behind a loopback Service, the pinger, a real Prometheus; then
    /// the Rollout's steps and background analysis with Argo Rollouts'
    /// semantics, an abort or a promotion, and a report. A rehearsal of the
    /// analysis and the weights, not a replacement for Argo Rollouts.
    Rehearse {
        /// The version to roll out: initial, errors, slow or best.
        version: String,

        /// Divide every pause, analysis interval and delay, the scrape interval
        /// and the queries' rate windows by this factor (the pinger's rate is
        /// multiplied by it, so a window holds as many pings). 1 is the
        /// manifests' real timing; 10 plays the story in about a minute.
        #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
        time_scale: f64,

        /// A second AnalysisTemplate (file or kustomization) judged side by
        /// side on the same traffic, e.g. scenarios/analysis/blended-analysis.yaml.
        /// The steps then go on after our verdict until the comparison decides.
        #[arg(long, value_name = "TEMPLATE_FILE")]
        compare: Option<PathBuf>,

        /// The kustomization holding the canary Rollout [default: <workspace>/k8s/overlays/canary].
        #[arg(long, value_name = "DIR")]
        manifests: Option<PathBuf>,

        /// Where the reports go: JSON, Markdown, the timeline chart (SVG) and
        /// the HTML page [default: <workspace>/target/rehearsal].
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,

        /// Also copy the timeline chart (SVG) to this file, e.g. the image
        /// the README shows: docs/rehearsal-errors-compare.svg.
        #[arg(long, value_name = "FILE")]
        chart: Option<PathBuf>,

        /// The Prometheus executable [default: `prometheus` on PATH].
        #[arg(long, value_name = "PATH")]
        prometheus: Option<PathBuf>,

        /// Where the ponger and pinger binaries are [default: beside this executable].
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,

        /// Stable traffic before the rollout starts, at the manifests' timing.
        #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
        warmup: Duration,

        /// Exit with status 3 unless the verdict is this one (for CI).
        #[arg(long, value_name = "VERDICT", value_parser = ["Promoted", "Aborted", "Paused"])]
        expect: Option<String>,

        /// Do not run `cargo build` for ponger and pinger when started by `cargo run`.
        #[arg(long)]
        no_build: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Rehearse {
        version,
        time_scale,
        compare,
        manifests,
        report_dir,
        chart,
        prometheus,
        bin_dir,
        warmup,
        expect,
        no_build,
    } = cli.command;
    if !no_build && bin_dir.is_none() {
        if let Err(error) = build_binaries() {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    }
    let options = Options {
        version,
        manifests: manifests.unwrap_or_else(|| workspace_root().join("k8s/overlays/canary")),
        time_scale,
        compare,
        prometheus,
        bin_dir,
        warmup,
    };
    let report_dir = report_dir.unwrap_or_else(|| workspace_root().join("target/rehearsal"));
    let result = match run(options) {
        Ok(result) => result,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match result {
        Ok(report) => conclude(&report, &report_dir, chart.as_deref(), expect.as_deref()),
        Err(Failure::Input(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Interrupted) => {
            eprintln!("interrupted: every process stopped, no report written");
            ExitCode::from(130)
        }
    }
}

/// Runs the rehearsal on a runtime of its own; a signal stops it.
fn run(options: Options) -> std::io::Result<Result<Report, Failure>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        tokio::spawn(watch_signals());
        rehearsal::rehearse(options).await
    });
    // Whatever happened, nothing the rehearsal started outlives it.
    procs::kill_all();
    drop(runtime);
    Ok(result)
}

async fn watch_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {},
        _ = terminate.recv() => {},
        _ = hangup.recv() => {},
    }
    eprintln!("interrupted: stopping every process the rehearsal started");
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Prints and writes the report; the exit status says whether the verdict
/// is the expected one.
fn conclude(report: &Report, dir: &Path, chart: Option<&Path>, expect: Option<&str>) -> ExitCode {
    println!();
    print!("{}", report.table());
    if let Err(error) = write_report(report, dir, chart) {
        eprintln!("error: {error}");
        return ExitCode::from(1);
    }
    let verdict = report.verdict.to_string();
    match expect {
        Some(expected) if expected != verdict => {
            eprintln!("error: expected the verdict {expected}, got {verdict}");
            ExitCode::from(3)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn write_report(report: &Report, dir: &Path, chart: Option<&Path>) -> Result<(), String> {
    let written = report.write(dir)?;
    println!(
        "report: {}, {}, chart {}, page {}",
        written.json.display(),
        written.markdown.display(),
        written.chart.display(),
        written.html.display()
    );
    if let Some(copy) = chart {
        std::fs::copy(&written.chart, copy)
            .map_err(|error| format!("cannot copy the chart to {}: {error}", copy.display()))?;
        println!("chart copied to {}", copy.display());
    }
    Ok(())
}

/// Started by `cargo run`, builds ponger and pinger with the same profile into
/// the same target directory, so that the rehearsal runs the current code.
fn build_binaries() -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let exe = std::env::current_exe().map_err(|error| error.to_string())?;
    let Some(profile_dir) = exe.parent() else {
        return Ok(());
    };
    let profile = profile_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(target_dir) = profile_dir.parent() else {
        return Ok(());
    };
    let mut command = std::process::Command::new(cargo);
    command
        .arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", "ponger", "-p", "pinger", "--bins"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        _ => return Ok(()),
    }
    eprintln!("building ponger and pinger ({profile}) ...");
    let status = command
        .status()
        .map_err(|error| format!("cannot run cargo build: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build of ponger and pinger failed ({status})"
        ))
    }
}
