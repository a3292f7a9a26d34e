//! The rehearsal's report: a terminal table, JSON and Markdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::analysis::{Measurement, Phase};
use crate::controller::{Role, TrackedRun, Verdict, VerdictKind};
use crate::lb::{PingSecond, Totals};
use crate::plan::{MetricSpec, Plan, Step};

#[derive(Clone, Debug, Serialize)]
pub struct MetricOutcome {
    pub name: String,
    pub phase: Phase,
    pub dry_run: bool,
    pub settings: MetricSettings,
    pub measurements: Vec<Measurement>,
}

/// The AnalysisTemplate's settings of one metric, as the manifests give them
/// (not scaled).
#[derive(Clone, Debug, Serialize)]
pub struct MetricSettings {
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    /// The numbers the conditions compare the result with.
    pub thresholds: Vec<f64>,
    pub initial_delay_seconds: Option<f64>,
    pub interval_seconds: Option<f64>,
    pub count: Option<i64>,
    pub failure_limit: i64,
    pub inconclusive_limit: i64,
    pub consecutive_error_limit: i64,
    pub query: String,
}

impl MetricSettings {
    fn from_spec(spec: &MetricSpec) -> Self {
        let mut thresholds: Vec<f64> = Vec::new();
        for condition in spec.success.iter().chain(spec.failure.iter()) {
            for value in condition.thresholds() {
                if !thresholds.contains(&value) {
                    thresholds.push(value);
                }
            }
        }
        Self {
            success_condition: spec.success.as_ref().map(|c| c.source().to_owned()),
            failure_condition: spec.failure.as_ref().map(|c| c.source().to_owned()),
            thresholds,
            initial_delay_seconds: spec.initial_delay.map(|d| d.as_secs_f64()),
            interval_seconds: spec.interval.map(|d| d.as_secs_f64()),
            count: spec.count,
            failure_limit: spec.failure_limit,
            inconclusive_limit: spec.inconclusive_limit,
            consecutive_error_limit: spec.consecutive_error_limit,
            query: spec.query.trim().to_owned(),
        }
    }
}

/// Why the canary weight changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum WeightCause {
    SetWeight,
    Abort,
    Promote,
}

/// The canary weight once the replicas for it were in place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightChange {
    /// Seconds since the rollout started.
    pub at_seconds: f64,
    /// 1-based step index.
    pub step: usize,
    pub weight: u32,
    pub cause: WeightCause,
}

/// Pings that ended in the second starting `from_seconds` after the rollout
/// started (negative: stable traffic before it), as the Service counted them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PingsInSecond {
    pub from_seconds: f64,
    #[serde(flatten)]
    pub counts: PingSecond,
}

/// What the rehearsal recorded over time, for the chart. The per-second
/// pings cover whole seconds only, up to the moment the totals were read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    pub weight_changes: Vec<WeightChange>,
    pub pings_per_second: Vec<PingsInSecond>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AnalysisOutcome {
    /// `ours` (the Rollout's) or `compare`.
    pub role: String,
    pub templates: Vec<String>,
    pub phase: Phase,
    pub message: String,
    /// Whether this analysis would have stopped the rollout.
    pub stops_rollout: bool,
    pub decided_after_seconds: Option<f64>,
    /// 1-based step index when it decided.
    pub decided_at_step: Option<usize>,
    /// The canary weight when it decided (None: it never objected).
    pub weight_at_verdict: Option<u32>,
    pub canary_pings_at_verdict: Option<u64>,
    pub canary_failed_pings_at_verdict: Option<u64>,
    pub metrics: Vec<MetricOutcome>,
}

impl AnalysisOutcome {
    /// The outcome of a run; `canary_at_decision`: what the canary had
    /// served when the run decided.
    pub fn from_run(tracked: &TrackedRun, canary_at_decision: Option<&Totals>) -> Self {
        let run = &tracked.run;
        let metrics = run
            .metrics
            .iter()
            .map(|metric| MetricOutcome {
                name: metric.spec.name.clone(),
                phase: metric.phase,
                dry_run: metric.spec.dry_run,
                settings: MetricSettings::from_spec(&metric.spec),
                measurements: metric.measurements.clone(),
            })
            .collect();
        let decided = tracked.decided.as_ref();
        let at = decided.map(|(_, _, at)| at);
        Self {
            role: match tracked.role {
                Role::Background => "ours".to_owned(),
                Role::Comparison => "compare".to_owned(),
                Role::Step(index) => format!("step {}", index + 1),
            },
            templates: run.spec.templates.clone(),
            phase: decided.map_or(run.phase, |decided| decided.0),
            message: decided.map_or(run.message.clone(), |decided| decided.1.clone()),
            stops_rollout: decided.is_some(),
            decided_after_seconds: at.map(|at| at.since_start.as_secs_f64()),
            decided_at_step: at.map(|at| at.step + 1),
            weight_at_verdict: at.map(|at| at.weight),
            canary_pings_at_verdict: canary_at_decision.map(|canary| canary.pings),
            canary_failed_pings_at_verdict: canary_at_decision.map(|canary| canary.failed),
            metrics,
        }
    }
}

/// What a rehearsal recorded, for [`Report::new`].
#[derive(Clone, Debug)]
pub struct Rehearsal {
    pub time_scale: f64,
    pub verdict: Verdict,
    /// The highest weight the rehearsal reached (100 once promoted).
    pub highest_weight_played: u32,
    /// From the rollout's start to the end of the abort or promotion.
    pub rollout: Duration,
    /// What the Service counted for the canary and the stable replicas.
    pub canary: Totals,
    pub stable: Totals,
    /// What the pinger (the users) saw, by code.
    pub user_pings_by_code: BTreeMap<String, u64>,
    pub connections_without_endpoint: u64,
    pub analyses: Vec<AnalysisOutcome>,
    pub timeline: Timeline,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub rollout: String,
    pub manifests: String,
    pub stable_version: String,
    pub canary_version: String,
    pub stable_hash: String,
    pub canary_hash: String,
    pub time_scale: f64,
    /// The manifests' settings that drove the rehearsal.
    pub replicas: u32,
    pub steps: Vec<String>,
    /// Pings per second at the manifests' timing (the pinger ran at this x time scale).
    pub pinger_rate: f64,
    /// Promoted, Aborted or Paused (an Inconclusive analysis).
    pub verdict: VerdictKind,
    pub reason: String,
    /// From the rollout's start to the verdict, as measured here.
    pub time_to_verdict_seconds: f64,
    /// The same at the manifests' timing (x time scale).
    pub time_to_verdict_at_manifest_timing_seconds: f64,
    /// 1-based step index of the verdict, and that step.
    pub verdict_step: usize,
    pub verdict_step_description: String,
    /// The highest canary weight users were exposed to before the verdict
    /// (100 once promoted).
    pub highest_canary_weight: u32,
    /// The highest weight the rehearsal reached at all (higher than the
    /// above only with --compare, which lets the steps go on).
    pub highest_weight_played: u32,
    pub rollout_seconds: f64,
    /// Pings the canary replicas answered (or failed to) over the whole rehearsal.
    pub canary: Totals,
    pub stable: Totals,
    /// Failed pings (non-2xx or no answer) served by the canary.
    pub failed_pings_because_of_canary: u64,
    /// Of those, the ones beyond the stable version's own failure rate.
    pub excess_failed_pings_because_of_canary: f64,
    /// What the pinger (the users) saw, by code.
    pub user_pings_by_code: BTreeMap<String, u64>,
    /// connect_error + timeout + error seen by the pinger: replacement costs none.
    pub user_pings_without_answer: u64,
    pub connections_without_endpoint: u64,
    pub analyses: Vec<AnalysisOutcome>,
    pub timeline: Timeline,
}

impl Report {
    pub fn new(plan: &Plan, rehearsal: Rehearsal) -> Self {
        let Rehearsal {
            time_scale,
            verdict,
            canary,
            stable,
            user_pings_by_code,
            ..
        } = rehearsal;
        let at = verdict.at();
        let stable_failure_ratio = if stable.pings > 0 {
            stable.failed as f64 / stable.pings as f64
        } else {
            0.0
        };
        let excess = (canary.failed as f64 - canary.pings as f64 * stable_failure_ratio).max(0.0);
        let user_pings_without_answer = ["connect_error", "timeout", "error"]
            .iter()
            .map(|code| user_pings_by_code.get(*code).copied().unwrap_or(0))
            .sum();
        let to_verdict = at.since_start.as_secs_f64();
        Self {
            rollout: format!("{}/{}", plan.namespace, plan.rollout_name),
            manifests: plan.source.clone(),
            stable_version: plan.stable_version.clone(),
            canary_version: plan.canary_version.clone(),
            stable_hash: plan.stable_hash.clone(),
            canary_hash: plan.canary_hash.clone(),
            time_scale,
            replicas: plan.replicas,
            steps: plan.steps.iter().map(Step::describe).collect(),
            pinger_rate: plan.pinger.rate,
            verdict: verdict.kind(),
            reason: verdict.reason().to_owned(),
            time_to_verdict_seconds: round(to_verdict),
            time_to_verdict_at_manifest_timing_seconds: round(to_verdict * time_scale),
            verdict_step: at.step + 1,
            verdict_step_description: plan
                .steps
                .get(at.step)
                .map(Step::describe)
                .unwrap_or_default(),
            highest_canary_weight: match verdict {
                Verdict::Promoted { .. } => rehearsal.highest_weight_played,
                _ => at.weight,
            },
            highest_weight_played: rehearsal.highest_weight_played,
            rollout_seconds: round(rehearsal.rollout.as_secs_f64()),
            failed_pings_because_of_canary: canary.failed,
            excess_failed_pings_because_of_canary: round(excess),
            canary,
            stable,
            user_pings_by_code,
            user_pings_without_answer,
            connections_without_endpoint: rehearsal.connections_without_endpoint,
            analyses: rehearsal.analyses,
            timeline: rehearsal.timeline,
        }
    }

    /// The summary: (what, value) pairs.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                "rollout".to_owned(),
                format!(
                    "{} ({} -> {})",
                    self.rollout, self.stable_version, self.canary_version
                ),
            ),
            ("verdict".to_owned(), self.verdict.to_string()),
            ("why".to_owned(), self.reason.clone()),
            (
                "time to verdict".to_owned(),
                format!(
                    "{:.1} s (= {:.0} s at the manifests' timing; time scale {}x), during step {} ({})",
                    self.time_to_verdict_seconds,
                    self.time_to_verdict_at_manifest_timing_seconds,
                    self.time_scale,
                    self.verdict_step,
                    self.verdict_step_description
                ),
            ),
            (
                "highest canary weight".to_owned(),
                format!("{}%", self.highest_canary_weight),
            ),
            (
                "pings served by the canary".to_owned(),
                format!(
                    "{} ({} ok, {} slower than 1 s)",
                    self.canary.pings, self.canary.ok, self.canary.slower_than_1s
                ),
            ),
            (
                "failed pings users saw because of the canary".to_owned(),
                format!(
                    "{} (of which {:.0} beyond the stable version's own failure rate)",
                    self.failed_pings_because_of_canary, self.excess_failed_pings_because_of_canary
                ),
            ),
            (
                "pings users saw, by code".to_owned(),
                self.user_pings_by_code
                    .iter()
                    .map(|(code, count)| format!("{code}: {count}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "pings without an answer (connect_error, timeout, error)".to_owned(),
                self.user_pings_without_answer.to_string(),
            ),
        ];
        rows.extend(
            self.analyses
                .iter()
                .map(|analysis| self.analysis_row(analysis)),
        );
        rows
    }

    /// What an analysis decided, or that it never objected.
    fn analysis_row(&self, analysis: &AnalysisOutcome) -> (String, String) {
        let what = match analysis.weight_at_verdict {
            Some(weight) => format!(
                "{:?} at weight {weight}% (step {}), {:.1} s in; canary had served {} pings, {} failed",
                analysis.phase,
                analysis.decided_at_step.unwrap_or(0),
                analysis.decided_after_seconds.unwrap_or(0.0),
                analysis.canary_pings_at_verdict.unwrap_or(0),
                analysis.canary_failed_pings_at_verdict.unwrap_or(0)
            ),
            None => format!(
                "{:?}: never objected up to weight {}%, would have let it promote",
                analysis.phase, self.highest_weight_played
            ),
        };
        let templates = analysis.templates.join("+");
        (format!("analysis {} ({templates})", analysis.role), what)
    }

    pub fn table(&self) -> String {
        let rows = self.rows();
        let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
        let mut out = String::new();
        let rule = format!("+{}+{}+\n", "-".repeat(width + 2), "-".repeat(72));
        out.push_str(&rule);
        for (key, value) in rows {
            let mut first = true;
            for chunk in wrap(&value, 70) {
                let label = if first { key.as_str() } else { "" };
                out.push_str(&format!("| {label:<width$} | {chunk:<70} |\n"));
                first = false;
            }
        }
        out.push_str(&rule);
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# Rollout rehearsal: {} -> {}\n\nA rehearsal of the analysis and weights of `{}` on loopback \
             (real ponger replicas, pinger and Prometheus; no Kubernetes, no Argo Rollouts controller).\n\n\
             | | |\n|---|---|\n",
            self.stable_version, self.canary_version, self.manifests
        );
        for (key, value) in self.rows() {
            out.push_str(&format!("| {key} | {} |\n", value.replace('|', "\\|")));
        }
        out.push_str("\n## Measurements\n\n| analysis | metric | s into rollout | step | weight | value | phase |\n|---|---|---|---|---|---|---|\n");
        for row in self.measurement_rows() {
            let cells: Vec<String> = row.iter().map(|cell| cell.replace('|', "\\|")).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    /// Every measurement: analysis, metric, seconds into the rollout, step,
    /// weight, value (or why there is none), phase.
    pub fn measurement_rows(&self) -> Vec<[String; 7]> {
        let mut rows = Vec::new();
        for analysis in &self.analyses {
            for metric in &analysis.metrics {
                for measurement in &metric.measurements {
                    rows.push([
                        analysis.role.clone(),
                        metric.name.clone(),
                        format!("{:.1}", measurement.at_seconds),
                        measurement.step.to_string(),
                        format!("{}%", measurement.weight),
                        if measurement.value.is_empty() {
                            measurement.message.clone()
                        } else {
                            measurement.value.clone()
                        },
                        format!("{:?}", measurement.phase),
                    ]);
                }
            }
        }
        rows
    }

    /// Writes `<stem>.json`, `.md`, `.svg` (the timeline chart) and `.html`
    /// (the page with the chart inline) in `dir`.
    pub fn write(&self, dir: &Path) -> Result<Written, String> {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        let path =
            |extension: &str| dir.join(format!("rehearsal-{}.{extension}", self.canary_version));
        let written = Written {
            json: path("json"),
            markdown: path("md"),
            chart: path("svg"),
            html: path("html"),
        };
        let json = serde_json::to_string_pretty(self)
            .map_err(|error| format!("cannot encode the report: {error}"))?;
        let svg = crate::chart::svg(&crate::chart::ChartModel::from_report(self))?;
        let html = crate::html::page(self, &svg);
        for (path, text) in [
            (&written.json, json.as_str()),
            (&written.markdown, self.markdown().as_str()),
            (&written.chart, svg.as_str()),
            (&written.html, html.as_str()),
        ] {
            std::fs::write(path, text)
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        }
        Ok(written)
    }
}

/// The files a report was written to.
#[derive(Clone, Debug)]
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub chart: PathBuf,
    pub html: PathBuf,
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}
