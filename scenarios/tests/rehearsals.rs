//! The talk's story, rehearsed time-scaled against the real binaries and a
//! real Prometheus, with the Rollout and AnalysisTemplate shipped in k8s/.

mod common;
mod headless;

use std::time::Duration;

use common::{assert_nothing_left, canary_overlay, rehearsal, report, run, workspace};
use serde_json::Value;

const SCALE: &str = "10";
const LIMIT: Duration = Duration::from_secs(150);

fn rehearse(version: &str, extra: &[&str]) -> (Value, String) {
    let (report, stdout, _dir) = rehearse_in_dir(version, extra);
    (report, stdout)
}

/// The rehearsal, its report, its output, and the directory it wrote its files to.
fn rehearse_in_dir(version: &str, extra: &[&str]) -> (Value, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = vec![version, "--time-scale", SCALE];
    args.extend_from_slice(extra);
    let finished = run(rehearsal(&args, dir.path()), LIMIT);
    assert_eq!(
        finished.code,
        Some(0),
        "{}\n{}",
        finished.stdout,
        finished.stderr
    );
    assert_nothing_left(&finished.stdout);
    let report = report(dir.path(), version);
    // Replacing replicas costs no ping: users never saw a ping without an answer.
    assert_eq!(report["user_pings_without_answer"], 0, "{report:#}");
    assert_eq!(report["connections_without_endpoint"], 0, "{report:#}");
    assert!(
        report["canary"]["pings"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    (report, finished.stdout, dir)
}

fn ours(report: &Value) -> &Value {
    report["analyses"]
        .as_array()
        .and_then(|analyses| analyses.iter().find(|analysis| analysis["role"] == "ours"))
        .expect("our analysis in the report")
}

#[test]
fn rehearse_errors_is_aborted_at_the_20_percent_step() {
    let (report, stdout) = rehearse("errors", &["--expect", "Aborted"]);
    assert_eq!(report["verdict"], "Aborted", "{stdout}");
    assert_eq!(report["highest_canary_weight"], 20, "{stdout}");
    assert_eq!(ours(&report)["weight_at_verdict"], 20);
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("success-ratio"),
        "{report:#}"
    );
    // At 20% the canary answered a small share of the pings.
    let canary = report["canary"]["pings"].as_f64().unwrap_or(0.0);
    let stable = report["stable"]["pings"].as_f64().unwrap_or(0.0);
    assert!(canary < stable / 4.0, "{report:#}");
}

#[test]
fn rehearse_slow_is_aborted_before_the_60_percent_step() {
    let (report, stdout) = rehearse("slow", &["--expect", "Aborted"]);
    assert_eq!(report["verdict"], "Aborted", "{stdout}");
    assert!(
        report["highest_canary_weight"].as_u64().unwrap_or(100) < 60,
        "{report:#}"
    );
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("latency-p90"),
        "{report:#}"
    );
}

#[test]
fn rehearse_best_is_promoted() {
    let (report, stdout) = rehearse("best", &["--expect", "Promoted"]);
    assert_eq!(report["verdict"], "Promoted", "{stdout}");
    assert_eq!(report["highest_canary_weight"], 100);
    let metrics = ours(&report)["metrics"].as_array().expect("metrics");
    let measured: usize = metrics
        .iter()
        .map(|metric| metric["measurements"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(
        measured >= 4,
        "the analysis measured the canary: {report:#}"
    );
    for metric in metrics {
        for measurement in metric["measurements"].as_array().expect("measurements") {
            assert_ne!(measurement["phase"], "Failed", "{report:#}");
        }
    }
    // Everything ended on the new version: the last pings were the canary's.
    assert!(stdout.contains("PROMOTE"), "{stdout}");
}

/// The canary overlay with its background analysis replaced by an inline
/// `analysis` step after the 20% step, in a temporary directory.
fn overlay_with_an_inline_analysis_step() -> tempfile::TempDir {
    canary_overlay(
        r#"patches:
  - target: {kind: Rollout, name: ponger}
    patch: |
      - op: remove
        path: /spec/strategy/canary/analysis
      - op: replace
        path: /spec/strategy/canary/steps
        value:
          - setWeight: 20
          - analysis:
              templates: [{templateName: ponger-health}]
              args:
                - {name: canary-hash, valueFrom: {podTemplateHashValue: Latest}}
                - {name: namespace, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
          - setWeight: 60
"#,
    )
}

#[test]
fn rehearse_errors_with_an_inline_analysis_step_is_aborted_at_that_step() {
    let overlay = overlay_with_an_inline_analysis_step();
    let manifests = overlay.path().to_str().expect("UTF-8 path");
    let (report, stdout) = rehearse("errors", &["--manifests", manifests, "--expect", "Aborted"]);
    assert!(
        stdout.contains("AnalysisRun ponger-health starts (analysis step 2)"),
        "{stdout}"
    );
    assert_eq!(report["verdict_step"], 2, "{report:#}");
    assert_eq!(report["verdict_step_description"], "analysis ponger-health");
    assert_eq!(report["highest_canary_weight"], 20, "{report:#}");
    let analyses = report["analyses"].as_array().expect("analyses");
    assert_eq!(analyses.len(), 1, "{report:#}");
    assert_eq!(analyses[0]["role"], "step 2");
    assert_eq!(analyses[0]["phase"], "Failed");
    assert_eq!(analyses[0]["weight_at_verdict"], 20);
    // The step waited for the run: the 60% step never came.
    assert!(!stdout.contains("setWeight 60\n"), "{stdout}");
    assert!(!stdout.contains("weight 60%"), "{stdout}");
}

#[test]
fn rehearse_comparison_shows_the_blended_analysis_lets_errors_further() {
    let template = workspace().join("scenarios/analysis/blended-analysis.yaml");
    let template = template.to_str().expect("UTF-8 path");
    // As README's command that regenerates docs/rehearsal-errors-compare.svg.
    let copy = tempfile::tempdir().expect("temp dir");
    let chart = copy.path().join("rehearsal-errors-compare.svg");
    let chart_arg = chart.to_str().expect("UTF-8 path");
    let (report, stdout, dir) = rehearse_in_dir(
        "errors",
        &[
            "--compare",
            template,
            "--chart",
            chart_arg,
            "--expect",
            "Aborted",
        ],
    );
    let svg = std::fs::read_to_string(&chart).expect("the chart's copy");
    assert!(svg.starts_with("<svg") && svg.contains("verdict ours: Failed at 20%"));
    the_timeline_is_recorded(&report);
    the_html_report_renders_the_chart(&dir.path().join("rehearsal-errors.html"));
    let ours_weight = ours(&report)["weight_at_verdict"]
        .as_u64()
        .expect("ours decided");
    assert_eq!(ours_weight, 20, "{stdout}");
    let blended = report["analyses"]
        .as_array()
        .and_then(|analyses| {
            analyses
                .iter()
                .find(|analysis| analysis["role"] == "compare")
        })
        .expect("the comparison");
    // The blended analysis either objected later or never did (then the
    // canary reached the last step's weight under it).
    let blended_weight = blended["weight_at_verdict"]
        .as_u64()
        .unwrap_or_else(|| report["highest_weight_played"].as_u64().unwrap_or(0));
    assert!(
        blended_weight > ours_weight,
        "blended {blended_weight}% vs ours {ours_weight}%: {stdout}"
    );
    let blended_canary_pings = blended["canary_pings_at_verdict"]
        .as_u64()
        .unwrap_or_else(|| report["canary"]["pings"].as_u64().unwrap_or(0));
    assert!(
        blended_canary_pings
            > 3 * ours(&report)["canary_pings_at_verdict"]
                .as_u64()
                .unwrap_or(0),
        "{report:#}"
    );
}

/// What the chart draws is in the report: the weight steps up to the abort,
/// every whole second of pings, our verdict.
fn the_timeline_is_recorded(report: &Value) {
    let changes = report["timeline"]["weight_changes"]
        .as_array()
        .expect("weight changes");
    let weights: Vec<u64> = changes
        .iter()
        .filter_map(|c| c["weight"].as_u64())
        .collect();
    assert_eq!(weights.first(), Some(&20), "{report:#}");
    assert_eq!(
        changes.last().map(|c| &c["cause"]),
        Some(&Value::from("Abort"))
    );
    let seconds = report["timeline"]["pings_per_second"]
        .as_array()
        .expect("pings");
    let canary: u64 = seconds
        .iter()
        .map(|s| {
            ["ok", "failed", "no_answer"]
                .iter()
                .map(|k| s["canary"][k].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum();
    let total = report["canary"]["pings"].as_u64().unwrap_or(0);
    // Whole seconds only: at most the last second's pings are not in the timeline.
    assert!(
        canary <= total && canary * 10 >= total * 8,
        "{canary} of {total}"
    );
    assert!(ours(report)["decided_after_seconds"].as_f64().is_some());
}

/// The page opens in headless Chromium without a console message, and its
/// first screen is the chart: the weight line, the failed and successful
/// measurements, the canary's pings, in their colours.
fn the_html_report_renders_the_chart(page: &std::path::Path) {
    let html = std::fs::read_to_string(page).expect("the HTML report");
    for fetches in ["<script", "<link", "src=", "url(", "@import", "<iframe"] {
        assert!(
            !html.contains(fetches),
            "the page must be self-contained: {fetches}"
        );
    }
    // The chart, the verdicts, the measurements and the settings behind them.
    for part in [
        "<svg",
        "<h2>Verdicts</h2>",
        "<h2>Measurements</h2>",
        "blended-success-ratio",
        "result[0] &gt;= 0.80",
        "setWeight 20",
    ] {
        assert!(
            html.contains(part),
            "{part} missing from {}",
            page.display()
        );
    }
    let screenshot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rehearsal-errors-compare.png");
    let opened = headless::open(page, (1200, 1500), &screenshot);
    assert!(opened.console.is_empty(), "console: {:?}", opened.console);
    let image = &opened.screenshot;
    assert_eq!((image.width, image.height), (1200, 1500));
    // Below the page's heading, the chart fills the window.
    let chart = 120..image.height;
    let area = (image.width * (chart.end - chart.start)) as usize;
    let drawn = image.count_not_white(chart.clone());
    assert!(
        drawn * 100 > area * 3,
        "{drawn} of {area} pixels drawn: {}",
        screenshot.display()
    );
    for (what, color) in [
        ("the canary weight", (21, 101, 192)),
        ("failed measurements and pings", (198, 40, 40)),
        ("successful measurements and ok pings", (46, 125, 50)),
        ("the canary's pings", (216, 27, 96)),
    ] {
        let pixels = image.count_near(chart.clone(), color);
        assert!(
            pixels > 150,
            "{what}: {pixels} pixels in {}",
            screenshot.display()
        );
    }
}

#[test]
fn console_messages_are_seen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><p>x</p><script>console.error('seen');missing();</script>",
    )
    .expect("page");
    let opened = headless::open(&page, (400, 300), &dir.path().join("broken.png"));
    assert_eq!(opened.console.len(), 2, "{:?}", opened.console);
    assert!(opened.console[0].contains("seen"), "{:?}", opened.console);
    assert_eq!(opened.screenshot.width, 400);
}
