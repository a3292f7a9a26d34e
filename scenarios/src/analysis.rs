//! An AnalysisRun with Argo Rollouts' semantics (read in argoproj/argo-rollouts:
//! analysis/analysis.go, utils/evaluate/evaluate.go, the prometheus provider):
//!
//! - a measurement's phase from its conditions: both empty: Successful; only a
//!   success condition: anything not successful is Failed; only a failure
//!   condition: anything not failed is Successful; both: Failed if the failure
//!   condition holds, Successful if only the success condition holds,
//!   Inconclusive if neither does. An evaluation error, a query error or an
//!   unsupported result type is an Error measurement.
//! - a Prometheus vector reaches the conditions as a list of floats (NaN kept),
//!   a scalar as a float.
//! - a metric's first measurement waits `initialDelay` from the run's start;
//!   the next one is due `interval` after the previous one finished, or 10 s
//!   after an Error. Without an interval a metric is measured once (`count` 1).
//! - a metric is Failed when failed > failureLimit, Inconclusive when
//!   inconclusive > inconclusiveLimit, Error when consecutive errors >
//!   consecutiveErrorLimit (default 4); in that order of precedence, the last
//!   one that applies wins, as in Argo. It is Successful once `count`
//!   measurements (errors not counted) are taken, or when the run is
//!   terminated while it is still running.
//! - once a metric (not dry-run) completes Failed, Error or Inconclusive, the
//!   run is terminating: no new measurement; the run's phase is the worst
//!   (Failed > Error > Inconclusive > Successful) of its metrics.

use std::time::{Duration, Instant};

use crate::plan::{AnalysisSpec, ERROR_RETRY_INTERVAL, MetricSpec};
pub use rollout_model::{Phase, evaluate_result};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    /// Seconds since the rollout started.
    pub at_seconds: f64,
    pub step: usize,
    pub weight: u32,
    pub value: String,
    /// `result[0]` (or the scalar) as a number, the point a chart draws;
    /// None for an error, an empty result, NaN or infinity.
    pub first_value: Option<f64>,
    pub phase: Phase,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct MetricState {
    pub spec: MetricSpec,
    pub measurements: Vec<Measurement>,
    pub successful: i64,
    pub failed: i64,
    pub inconclusive: i64,
    pub errors: i64,
    pub consecutive_errors: i64,
    pub count: i64,
    pub phase: Phase,
    pub message: String,
    last_finished: Option<Instant>,
    last_was_error: bool,
}

#[derive(Clone, Debug)]
pub struct Run {
    pub spec: AnalysisSpec,
    pub started: Instant,
    pub metrics: Vec<MetricState>,
    pub phase: Phase,
    pub message: String,
    terminated: bool,
}

impl Run {
    pub fn start(spec: AnalysisSpec, now: Instant) -> Self {
        let metrics = spec
            .metrics
            .iter()
            .cloned()
            .map(|spec| MetricState {
                spec,
                measurements: Vec::new(),
                successful: 0,
                failed: 0,
                inconclusive: 0,
                errors: 0,
                consecutive_errors: 0,
                count: 0,
                phase: Phase::Pending,
                message: String::new(),
                last_finished: None,
                last_was_error: false,
            })
            .collect();
        Self {
            spec,
            started: now,
            metrics,
            phase: Phase::Running,
            message: String::new(),
            terminated: false,
        }
    }

    fn terminating(&self) -> bool {
        self.terminated
            || self.metrics.iter().any(|metric| {
                !metric.spec.dry_run
                    && matches!(
                        metric.phase,
                        Phase::Failed | Phase::Error | Phase::Inconclusive
                    )
            })
    }

    /// When the metric at `index` is next due (scaled by `scale`), if ever.
    pub fn due_at(&self, index: usize, scale: f64) -> Option<Instant> {
        let metric = &self.metrics[index];
        if self.terminating() || metric.phase.completed() {
            return None;
        }
        match metric.last_finished {
            None => {
                Some(self.started + scaled(metric.spec.initial_delay.unwrap_or_default(), scale))
            }
            Some(finished) => {
                if metric
                    .spec
                    .effective_count()
                    .is_some_and(|count| metric.count >= count)
                {
                    return None;
                }
                let interval = if metric.last_was_error {
                    ERROR_RETRY_INTERVAL
                } else {
                    metric.spec.interval?
                };
                Some(finished + scaled(interval, scale))
            }
        }
    }

    /// The earliest due measurement of any metric.
    pub fn next_due(&self, scale: f64) -> Option<Instant> {
        (0..self.metrics.len())
            .filter_map(|index| self.due_at(index, scale))
            .min()
    }

    /// Records a finished measurement and reassesses the run.
    pub fn record(&mut self, index: usize, measurement: Measurement, finished: Instant) {
        let metric = &mut self.metrics[index];
        match measurement.phase {
            Phase::Successful => metric.successful += 1,
            Phase::Failed => metric.failed += 1,
            Phase::Inconclusive => metric.inconclusive += 1,
            _ => {}
        }
        if measurement.phase == Phase::Error {
            metric.errors += 1;
            metric.consecutive_errors += 1;
        } else {
            metric.count += 1;
            metric.consecutive_errors = 0;
        }
        metric.last_was_error = measurement.phase == Phase::Error;
        metric.last_finished = Some(finished);
        metric.message = measurement.message.clone();
        metric.measurements.push(measurement);
        self.assess();
    }

    /// The rollout no longer needs the run (it finished its steps): metrics
    /// still running complete Successful.
    pub fn terminate(&mut self) {
        self.terminated = true;
        self.assess();
    }

    fn assess(&mut self) {
        let terminating = self.terminating();
        for metric in &mut self.metrics {
            metric.phase = assess_metric(metric, terminating);
        }
        let terminating = self.terminating();
        let mut worst: Option<(Phase, String)> = None;
        let mut all_completed = true;
        for metric in &self.metrics {
            if !metric.phase.completed() {
                all_completed = false;
                continue;
            }
            if metric.spec.dry_run {
                continue;
            }
            if worst
                .as_ref()
                .is_none_or(|(phase, _)| metric.phase.severity() > phase.severity())
            {
                worst = Some((
                    metric.phase,
                    format!(
                        "metric {} assessed {:?}: {}",
                        metric.spec.name,
                        metric.phase,
                        limit_message(metric)
                    ),
                ));
            }
        }
        let (phase, message) = match worst {
            Some((phase, message)) if terminating || all_completed => (phase, message),
            None if terminating || all_completed => {
                (Phase::Successful, "run terminated".to_owned())
            }
            _ => (Phase::Running, String::new()),
        };
        self.phase = phase;
        self.message = message;
    }
}

fn limit_message(metric: &MetricState) -> String {
    match metric.phase {
        Phase::Failed => format!(
            "failed ({}) > failureLimit ({})",
            metric.failed, metric.spec.failure_limit
        ),
        Phase::Inconclusive => format!(
            "inconclusive ({}) > inconclusiveLimit ({})",
            metric.inconclusive, metric.spec.inconclusive_limit
        ),
        Phase::Error => format!(
            "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
            metric.consecutive_errors, metric.spec.consecutive_error_limit
        ),
        _ => metric.message.clone(),
    }
}

fn assess_metric(metric: &MetricState, terminating: bool) -> Phase {
    if metric.phase.completed() {
        return metric.phase;
    }
    if metric.measurements.is_empty() {
        return if terminating {
            Phase::Successful
        } else {
            Phase::Pending
        };
    }
    let mut phase = None;
    if metric.failed > metric.spec.failure_limit {
        phase = Some(Phase::Failed);
    }
    if metric.inconclusive > metric.spec.inconclusive_limit {
        phase = Some(Phase::Inconclusive);
    }
    if metric.consecutive_errors > metric.spec.consecutive_error_limit {
        phase = Some(Phase::Error);
    }
    if let Some(phase) = phase {
        return phase;
    }
    if metric
        .spec
        .effective_count()
        .is_some_and(|count| metric.count >= count)
    {
        return Phase::Successful;
    }
    if terminating {
        Phase::Successful
    } else {
        Phase::Running
    }
}

pub fn scaled(duration: Duration, scale: f64) -> Duration {
    Duration::from_secs_f64(duration.as_secs_f64() / scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_model::Condition;

    fn metric(success: &str, failure: &str) -> MetricSpec {
        MetricSpec {
            name: "m".to_owned(),
            interval: Some(Duration::from_secs(20)),
            initial_delay: Some(Duration::from_secs(30)),
            count: None,
            failure_limit: 0,
            inconclusive_limit: 2,
            consecutive_error_limit: 4,
            success: (!success.is_empty()).then(|| Condition::parse(success).unwrap()),
            failure: (!failure.is_empty()).then(|| Condition::parse(failure).unwrap()),
            query: String::new(),
            address: String::new(),
            timeout: Duration::from_secs(10),
            dry_run: false,
        }
    }

    fn measurement(phase: Phase) -> Measurement {
        Measurement {
            at_seconds: 0.0,
            step: 0,
            weight: 20,
            value: String::new(),
            first_value: None,
            phase,
            message: String::new(),
        }
    }

    #[test]
    fn limits_and_scheduling() {
        let now = Instant::now();
        let spec = AnalysisSpec {
            label: "t".to_owned(),
            templates: vec![],
            metrics: vec![metric("result[0] >= 0.8", "result[0] < 0.8")],
        };
        let mut run = Run::start(spec.clone(), now);
        assert_eq!(run.due_at(0, 10.0), Some(now + Duration::from_secs(3)));
        run.record(0, measurement(Phase::Inconclusive), now);
        run.record(0, measurement(Phase::Inconclusive), now);
        assert_eq!(run.phase, Phase::Running);
        assert_eq!(run.due_at(0, 1.0), Some(now + Duration::from_secs(20)));
        run.record(0, measurement(Phase::Error), now);
        assert_eq!(run.due_at(0, 1.0), Some(now + Duration::from_secs(10)));
        run.record(0, measurement(Phase::Inconclusive), now);
        assert_eq!(run.phase, Phase::Inconclusive);
        assert_eq!(run.next_due(1.0), None);

        let mut run = Run::start(spec.clone(), now);
        run.record(0, measurement(Phase::Successful), now);
        run.record(0, measurement(Phase::Failed), now);
        assert_eq!(run.phase, Phase::Failed);

        let mut run = Run::start(spec.clone(), now);
        for _ in 0..5 {
            run.record(0, measurement(Phase::Error), now);
        }
        assert_eq!(run.phase, Phase::Error);

        let mut run = Run::start(spec, now);
        run.record(0, measurement(Phase::Successful), now);
        run.terminate();
        assert_eq!(run.phase, Phase::Successful);
    }

    #[test]
    fn count_completes_a_metric() {
        let now = Instant::now();
        let mut spec = metric("result[0] >= 0.8", "");
        spec.count = Some(2);
        spec.failure_limit = 1;
        let mut run = Run::start(
            AnalysisSpec {
                label: "t".into(),
                templates: vec![],
                metrics: vec![spec],
            },
            now,
        );
        run.record(0, measurement(Phase::Failed), now);
        assert_eq!(run.phase, Phase::Running);
        run.record(0, measurement(Phase::Successful), now);
        assert_eq!(run.phase, Phase::Successful);
    }
}
