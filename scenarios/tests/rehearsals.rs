//! The talk's story, rehearsed time-scaled against the real binaries and a
//! real Prometheus, with the Rollout and AnalysisTemplate shipped in k8s/.

mod common;

use std::time::Duration;

use common::{assert_nothing_left, rehearsal, report, run, workspace};
use serde_json::Value;

const SCALE: &str = "10";
const LIMIT: Duration = Duration::from_secs(150);

fn rehearse(version: &str, extra: &[&str]) -> (Value, String) {
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
    (report, finished.stdout)
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

#[test]
fn rehearse_comparison_shows_the_blended_analysis_lets_errors_further() {
    let template = workspace().join("scenarios/analysis/blended-analysis.yaml");
    let template = template.to_str().expect("UTF-8 path");
    let (report, stdout) = rehearse("errors", &["--compare", template, "--expect", "Aborted"]);
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
