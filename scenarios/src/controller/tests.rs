//! The controller played on a virtual clock: no process, no Prometheus, no
//! sleeping. The executor here answers every action at once.

use super::*;
use rollout_model::Condition;

const SECOND: Duration = Duration::from_secs(1);

fn metric(name: &str, interval: Option<u64>, both_conditions: bool) -> MetricSpec {
    MetricSpec {
        name: name.to_owned(),
        interval: interval.map(Duration::from_secs),
        initial_delay: None,
        count: None,
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        success: Some(Condition::parse("result[0] >= 0.8").expect("condition")),
        failure: both_conditions.then(|| Condition::parse("result[0] < 0.5").expect("condition")),
        query: "up".to_owned(),
        address: String::new(),
        timeout: 10 * SECOND,
        dry_run: false,
    }
}

fn analysis(label: &str, metrics: Vec<MetricSpec>) -> AnalysisSpec {
    AnalysisSpec {
        label: label.to_owned(),
        templates: vec![label.to_owned()],
        metrics,
    }
}

fn rollout(steps: Vec<Step>) -> RolloutSpec {
    RolloutSpec {
        steps,
        replicas: 5,
        starting_step: None,
        background: None,
        comparisons: Vec::new(),
    }
}

fn outcome(phase: Phase) -> Outcome {
    Outcome {
        value: "[0.5]".to_owned(),
        first_value: Some(0.5),
        phase,
        message: format!("{phase:?}"),
    }
}

/// Every action with the virtual time it was returned at.
struct Played {
    actions: Vec<(Duration, Action)>,
    verdict: Verdict,
    controller: RolloutController,
}

impl Played {
    fn scalings(&self) -> Vec<Scaling> {
        self.actions
            .iter()
            .filter_map(|(_, action)| match action {
                Action::Scale(scaling) => Some(*scaling),
                _ => None,
            })
            .collect()
    }

    /// When each measurement was asked for, and of which run.
    fn measurements(&self) -> Vec<(Duration, usize)> {
        self.actions
            .iter()
            .filter_map(|(at, action)| match action {
                Action::Measure { run, .. } => Some((*at, *run)),
                _ => None,
            })
            .collect()
    }

    fn has(&self, wanted: &Action) -> bool {
        self.actions.iter().any(|(_, action)| action == wanted)
    }

    fn position(&self, wanted: &Action) -> usize {
        self.actions
            .iter()
            .position(|(_, action)| action == wanted)
            .unwrap_or_else(|| panic!("{wanted:?} not in {:?}", self.actions))
    }
}

/// Plays `spec` at `scale`; `measure` gives the phase of the n-th (0-based)
/// measurement of a run.
fn play(spec: RolloutSpec, scale: f64, measure: impl Fn(Role, usize) -> Phase) -> Played {
    let start = Instant::now();
    let mut controller = RolloutController::new(spec, scale, start);
    let mut now = start;
    let mut actions = Vec::new();
    for _ in 0..10_000 {
        let action = controller.poll(now);
        actions.push((now - start, action.clone()));
        match action {
            Action::Scale(_) => controller.handle(Event::ReplicasReady, now),
            Action::Measure { run, metric } => {
                let tracked = &controller.runs()[run];
                let taken = tracked.run.metrics[metric].measurements.len();
                let phase = measure(tracked.role, taken);
                controller.handle(Event::Measured(outcome(phase)), now);
            }
            Action::WaitUntil(at) => {
                assert!(at > now, "waits for the past: {actions:?}");
                now = at;
            }
            Action::AwaitEvent => panic!("awaits an event nobody asked for: {actions:?}"),
            Action::Finish(verdict) => {
                return Played {
                    actions,
                    verdict,
                    controller,
                };
            }
            _ => {}
        }
    }
    panic!("never finished: {actions:?}");
}

fn scaling(weight: u32, canary: u32, stable: u32, cause: WeightCause) -> Scaling {
    Scaling {
        weight,
        canary,
        stable,
        cause,
    }
}

fn always(phase: Phase) -> impl Fn(Role, usize) -> Phase {
    move |_, _| phase
}

#[test]
fn set_weight_puts_ceil_of_the_weight_on_the_canary() {
    let played = play(
        rollout(vec![
            Step::SetWeight(20),
            Step::SetWeight(50),
            Step::SetWeight(1),
        ]),
        1.0,
        always(Phase::Successful),
    );
    assert_eq!(
        played.scalings(),
        vec![
            scaling(20, 1, 4, WeightCause::SetWeight),
            // ceil(5 x 0.5) = 3, ceil(5 x 0.01) = 1: never a weight without a canary.
            scaling(50, 3, 2, WeightCause::SetWeight),
            scaling(1, 1, 4, WeightCause::SetWeight),
            scaling(100, 5, 0, WeightCause::Promote),
        ]
    );
    assert_eq!(played.actions[0].1, Action::EnterStep { index: 0 });
    // A step ends only once its replicas are ready: no time passed.
    assert!(played.actions.iter().all(|(at, _)| at.is_zero()));
    assert_eq!(played.controller.highest_weight(), 100);
}

#[test]
fn a_pause_with_a_duration_waits_it_scaled() {
    let played = play(
        rollout(vec![
            Step::SetWeight(20),
            Step::Pause(Some(60 * SECOND)),
            Step::SetWeight(40),
        ]),
        10.0,
        always(Phase::Successful),
    );
    let second_weight = played.position(&Action::Scale(scaling(40, 2, 3, WeightCause::SetWeight)));
    // 60 s at time scale 10: the next step starts 6 s in.
    assert_eq!(played.actions[second_weight].0, 6 * SECOND);
    let Verdict::Promoted { at } = played.verdict else {
        panic!("{:?}", played.verdict);
    };
    assert_eq!((at.since_start, at.step, at.weight), (6 * SECOND, 2, 40));
}

#[test]
fn a_pause_without_a_duration_is_promoted_at_once() {
    let played = play(
        rollout(vec![
            Step::SetWeight(20),
            Step::Pause(None),
            Step::SetWeight(60),
        ]),
        1.0,
        always(Phase::Successful),
    );
    let pause = played.position(&Action::EnterStep { index: 1 });
    assert_eq!(
        played.actions[pause + 1],
        (Duration::ZERO, Action::EnterStep { index: 2 })
    );
    assert_eq!(played.verdict.kind(), VerdictKind::Promoted);
}

fn canary_steps() -> Vec<Step> {
    vec![
        Step::SetWeight(20),
        Step::Pause(Some(60 * SECOND)),
        Step::SetWeight(40),
        Step::Pause(Some(60 * SECOND)),
        Step::SetWeight(60),
        Step::Pause(Some(60 * SECOND)),
    ]
}

fn with_background(metric: MetricSpec) -> RolloutSpec {
    RolloutSpec {
        starting_step: Some(0),
        background: Some(analysis("ours", vec![metric])),
        ..rollout(canary_steps())
    }
}

#[test]
fn background_analysis_measures_every_interval_across_steps() {
    let played = play(
        with_background(metric("success", Some(20), false)),
        10.0,
        always(Phase::Successful),
    );
    // Measured once the 20% replicas are in place, then every 2 s (20 s / 10),
    // in the pauses and after each setWeight, until the last pause ends at 18 s.
    let times: Vec<f64> = played
        .measurements()
        .iter()
        .map(|(at, _)| at.as_secs_f64())
        .collect();
    assert_eq!(
        times,
        vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    );
    assert_eq!(played.verdict.kind(), VerdictKind::Promoted);
    // The steps are over: the run still going was terminated, Successful.
    assert!(played.has(&Action::StopAnalyses));
    assert_eq!(played.controller.runs()[0].run.phase, Phase::Successful);
}

#[test]
fn background_analysis_starts_at_its_starting_step() {
    let spec = RolloutSpec {
        starting_step: Some(2),
        ..with_background(metric("success", Some(20), false))
    };
    let played = play(spec, 10.0, always(Phase::Successful));
    let start = played.position(&Action::StartAnalysis { run: 0 });
    assert!(start > played.position(&Action::EnterStep { index: 1 }));
    assert!(start < played.position(&Action::EnterStep { index: 2 }));
    assert_eq!(played.measurements()[0].0, 6 * SECOND);
}

#[test]
fn a_failed_measurement_aborts_at_the_step_it_happened() {
    // Fails on its second measurement, 2 s into the first pause.
    let played = play(
        with_background(metric("success", Some(20), false)),
        10.0,
        |_, taken| {
            if taken == 0 {
                Phase::Successful
            } else {
                Phase::Failed
            }
        },
    );
    let Verdict::Aborted { at, reason } = &played.verdict else {
        panic!("{:?}", played.verdict);
    };
    assert_eq!((at.since_start, at.step, at.weight), (2 * SECOND, 1, 20));
    assert!(reason.contains("failed (1) > failureLimit (0)"), "{reason}");
    // The canary goes, the stable replicas come back; nothing after.
    assert_eq!(
        played.scalings(),
        vec![
            scaling(20, 1, 4, WeightCause::SetWeight),
            scaling(0, 0, 5, WeightCause::Abort),
        ]
    );
    assert_eq!(played.controller.highest_weight(), 20);
    let decided = played.position(&Action::AnalysisDecided { run: 0 });
    assert!(decided < played.position(&Action::Decide(played.verdict.clone())));
    assert!(!played.has(&Action::EnterStep { index: 2 }));
}

#[test]
fn errors_beyond_the_limit_abort_too() {
    let played = play(
        with_background(metric("success", Some(20), false)),
        10.0,
        always(Phase::Error),
    );
    let Verdict::Aborted { reason, .. } = &played.verdict else {
        panic!("{:?}", played.verdict);
    };
    assert!(
        reason.contains("consecutiveErrors (5) > consecutiveErrorLimit (4)"),
        "{reason}"
    );
    // An error is retried after 10 s (1 s scaled), not after the interval.
    let times: Vec<Duration> = played.measurements().iter().map(|(at, _)| *at).collect();
    assert_eq!(times, (0..5).map(|n| n * SECOND).collect::<Vec<_>>());
}

#[test]
fn an_inconclusive_result_pauses_the_rollout() {
    let played = play(
        with_background(metric("success", Some(20), true)),
        10.0,
        always(Phase::Inconclusive),
    );
    let Verdict::Paused { at, reason } = &played.verdict else {
        panic!("{:?}", played.verdict);
    };
    assert_eq!((at.step, at.weight), (0, 20));
    assert!(reason.contains("inconclusive (1) > inconclusiveLimit (0)"));
    // Paused: neither aborted nor promoted, the canary stays where it was.
    assert_eq!(
        played.scalings(),
        vec![scaling(20, 1, 4, WeightCause::SetWeight)]
    );
    assert_eq!(played.controller.weight(), 20);
}

#[test]
fn an_inline_analysis_step_waits_for_its_run() {
    let mut inline = metric("smoke", None, false);
    inline.initial_delay = Some(30 * SECOND);
    let steps = vec![
        Step::SetWeight(20),
        Step::Analysis(Box::new(analysis("smoke", vec![inline]))),
        Step::SetWeight(100),
    ];
    let played = play(rollout(steps.clone()), 10.0, always(Phase::Successful));
    // Measured once after its initial delay (3 s scaled), then the next step.
    assert_eq!(played.measurements(), vec![(3 * SECOND, 0)]);
    let next = played.position(&Action::EnterStep { index: 2 });
    assert_eq!(played.actions[next].0, 3 * SECOND);
    assert_eq!(played.controller.runs()[0].role, Role::Step(1));
    assert_eq!(played.verdict.kind(), VerdictKind::Promoted);

    let played = play(rollout(steps), 10.0, always(Phase::Failed));
    let Verdict::Aborted { at, .. } = &played.verdict else {
        panic!("{:?}", played.verdict);
    };
    assert_eq!((at.step, at.weight), (1, 20));
    assert_eq!(
        played.scalings().last(),
        Some(&scaling(0, 0, 5, WeightCause::Abort))
    );
}

/// Ours and a comparison, both measured every 20 s.
fn with_comparison() -> RolloutSpec {
    RolloutSpec {
        comparisons: vec![analysis(
            "blended",
            vec![metric("blended", Some(20), false)],
        )],
        ..with_background(metric("success", Some(20), false))
    }
}

#[test]
fn a_comparison_never_stops_the_rollout_but_the_steps_go_on_until_it_decides() {
    let spec = with_comparison();
    // Ours fails on its second measurement; the comparison on its fifth.
    let played = play(spec, 10.0, |role, taken| match role {
        Role::Background if taken >= 1 => Phase::Failed,
        Role::Comparison if taken >= 4 => Phase::Failed,
        _ => Phase::Successful,
    });
    let Verdict::Aborted { at, .. } = &played.verdict else {
        panic!("{:?}", played.verdict);
    };
    // Our verdict stands, at our decision...
    assert_eq!((at.since_start, at.weight), (2 * SECOND, 20));
    assert!(played.has(&Action::StepsGoOnForComparison));
    // ...and the comparison decided later, at a higher weight.
    let (_, _, compared) = played.controller.runs()[1]
        .decided
        .clone()
        .expect("the comparison decided");
    assert_eq!((compared.since_start, compared.weight), (8 * SECOND, 40));
    assert_eq!(played.controller.highest_weight(), 40);
    assert_eq!(
        played.scalings().last(),
        Some(&scaling(0, 0, 5, WeightCause::Abort))
    );
}

#[test]
fn a_comparison_alone_does_not_abort() {
    let spec = with_comparison();
    let played = play(spec, 10.0, |role, _| match role {
        Role::Comparison => Phase::Failed,
        _ => Phase::Successful,
    });
    assert_eq!(played.verdict.kind(), VerdictKind::Promoted);
    assert!(played.controller.runs()[1].decided.is_some());
}

#[test]
fn the_executor_is_told_to_wait_for_the_event_it_owes() {
    let start = Instant::now();
    let mut controller = RolloutController::new(rollout(vec![Step::SetWeight(20)]), 1.0, start);
    assert_eq!(controller.poll(start), Action::EnterStep { index: 0 });
    assert!(matches!(controller.poll(start), Action::Scale(_)));
    assert_eq!(controller.poll(start), Action::AwaitEvent);
    controller.handle(Event::ReplicasReady, start);
    assert_eq!(controller.weight(), 20);
    assert_eq!(controller.poll(start), Action::StopAnalyses);
}
