//! The rehearsal's live progress: a console line for each of the
//! controller's actions, once the executor performed it.

use crate::controller::{Action, Role, RolloutController, Verdict, WeightCause};
use crate::plan::Step;

/// The lines that tell what `action` did (none for most waits).
pub fn lines(action: &Action, controller: &RolloutController) -> Vec<String> {
    match action {
        Action::StartAnalysis { run } => vec![start(controller, *run)],
        Action::EnterStep { index } => step(controller.steps(), *index),
        Action::Scale(scaling) if scaling.cause == WeightCause::SetWeight => vec![format!(
            "  weight {}%: {} canary + {} stable replicas behind the Service",
            scaling.weight, scaling.canary, scaling.stable
        )],
        Action::Measure { run, metric } => measurement(controller, *run, *metric)
            .into_iter()
            .collect(),
        Action::AnalysisDecided { run } => decision(controller, *run).into_iter().collect(),
        Action::StepsGoOnForComparison => vec![
            "the Rollout's analysis decided; the steps go on (canary kept) only until the comparison decides too"
                .to_owned(),
        ],
        Action::Decide(decided) => vec![verdict(decided)],
        _ => Vec::new(),
    }
}

fn start(controller: &RolloutController, run: usize) -> String {
    let tracked = &controller.runs()[run];
    let why = match tracked.role {
        Role::Background => "background analysis".to_owned(),
        Role::Comparison => "comparison, same traffic".to_owned(),
        Role::Step(index) => format!("analysis step {}", index + 1),
    };
    format!(
        "AnalysisRun {} starts ({why})",
        tracked.run.spec.templates.join("+")
    )
}

fn step(steps: &[Step], index: usize) -> Vec<String> {
    let mut lines = vec![format!(
        "step {}/{}: {}",
        index + 1,
        steps.len(),
        steps[index].describe()
    )];
    if steps[index] == Step::Pause(None) {
        lines.push(
            "a pause without duration waits for `kubectl argo rollouts promote`: the rehearsal promotes it at once"
                .to_owned(),
        );
    }
    lines
}

fn measurement(controller: &RolloutController, run: usize, metric: usize) -> Option<String> {
    let tracked = &controller.runs()[run];
    let state = &tracked.run.metrics[metric];
    let measurement = state.measurements.last()?;
    let label = if tracked.role == Role::Comparison {
        "[compare] "
    } else {
        ""
    };
    Some(format!(
        "  {label}{} #{} at weight {}%: {} -> {:?} ({}){}",
        state.spec.name,
        state.measurements.len(),
        measurement.weight,
        if measurement.value.is_empty() {
            "no value"
        } else {
            measurement.value.as_str()
        },
        measurement.phase,
        measurement.message,
        if state.phase.completed() {
            format!("; metric {:?}", state.phase)
        } else {
            String::new()
        }
    ))
}

fn decision(controller: &RolloutController, run: usize) -> Option<String> {
    let tracked = &controller.runs()[run];
    let (phase, message, at) = tracked.decided.as_ref()?;
    Some(format!(
        "AnalysisRun {} {phase:?}: {message} (at weight {}%, {:.1}s into the rollout){}",
        tracked.run.spec.templates.join("+"),
        at.weight,
        at.since_start.as_secs_f64(),
        if tracked.role == Role::Comparison {
            " [comparison]"
        } else {
            ""
        }
    ))
}

fn verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Aborted { reason, .. } => {
            format!("ABORT: {reason}; canary replicas go, stable ones come back")
        }
        Verdict::Paused { reason, .. } => format!(
            "PAUSED: {reason}; Argo Rollouts would wait for `kubectl argo rollouts promote` or `abort`"
        ),
        Verdict::Promoted { .. } => {
            "all steps passed: PROMOTE, the new version becomes stable".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::analysis::Phase;
    use crate::controller::{Event, Outcome, RolloutSpec};
    use crate::plan::{AnalysisSpec, MetricSpec};

    fn failing_background() -> RolloutSpec {
        let metric = MetricSpec {
            name: "success-ratio".to_owned(),
            interval: Some(Duration::from_secs(20)),
            initial_delay: None,
            count: None,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            success: None,
            failure: None,
            query: "up".to_owned(),
            address: String::new(),
            timeout: Duration::from_secs(10),
            dry_run: false,
        };
        RolloutSpec {
            steps: vec![Step::SetWeight(20), Step::Pause(None)],
            replicas: 5,
            starting_step: Some(0),
            background: Some(AnalysisSpec {
                label: "ours".to_owned(),
                templates: vec!["ponger-health".to_owned()],
                metrics: vec![metric],
            }),
            comparisons: Vec::new(),
        }
    }

    #[test]
    fn an_abort_is_told_as_it_happens() {
        let start = Instant::now();
        let mut controller = RolloutController::new(failing_background(), 1.0, start);
        let mut told = Vec::new();
        for _ in 0..20 {
            let action = controller.poll(start);
            match &action {
                Action::Scale(_) => controller.handle(Event::ReplicasReady, start),
                Action::Measure { .. } => {
                    let outcome = Outcome {
                        value: "[0.58]".to_owned(),
                        first_value: Some(0.58),
                        phase: Phase::Failed,
                        message: "too many errors".to_owned(),
                    };
                    controller.handle(Event::Measured(outcome), start);
                }
                _ => {}
            }
            told.extend(lines(&action, &controller));
            if matches!(action, Action::Finish(_)) {
                break;
            }
        }
        assert_eq!(
            told,
            [
                "AnalysisRun ponger-health starts (background analysis)",
                "step 1/2: setWeight 20",
                "  weight 20%: 1 canary + 4 stable replicas behind the Service",
                "  success-ratio #1 at weight 20%: [0.58] -> Failed (too many errors); metric Failed",
                "AnalysisRun ponger-health Failed: metric success-ratio assessed Failed: failed (1) > failureLimit (0) (at weight 20%, 0.0s into the rollout)",
                "ABORT: metric success-ratio assessed Failed: failed (1) > failureLimit (0); canary replicas go, stable ones come back",
            ]
        );
    }
}
