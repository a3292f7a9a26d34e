//! The rehearsal's rollout controller, sans-IO: it takes time and events
//! (replicas ready, a measurement taken) and returns actions (scale canary and
//! stable, measure, abort, promote), and ends with a [`Verdict`]. The executor
//! (`rehearsal.rs`) starts the processes and queries Prometheus; the reporter
//! (`reporter.rs`) builds the report from the same actions and events.
//!
//! It follows Argo Rollouts' canary without a traffic router
//! (rollout/canary.go, utils/replicaset/canary.go, rollout/analysis.go):
//!
//! - `setWeight w`: canary = ceil(replicas x w / 100) replicas, stable the
//!   rest; the step ends once they are in place (and the measurements then due
//!   are taken).
//! - `pause` with a duration waits that long (scaled); without one it waits
//!   for `kubectl argo rollouts promote`, which the rehearsal gives at once.
//! - the background analysis starts at `startingStep` and runs beside the
//!   steps; an inline `analysis` step waits until its run completes.
//! - a run that completes Failed or Error aborts the rollout (the canary goes,
//!   the stable replicas come back); Inconclusive pauses it; when every step
//!   is done the runs still going are terminated (Successful) and the canary
//!   is promoted.
//! - comparison runs (`--compare`) measure the same traffic but never stop the
//!   rollout: once the Rollout's own analysis has decided, the steps go on
//!   only until every comparison has decided too, so that the report shows
//!   how far each would have let the canary go.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::analysis::{Measurement, Phase, Run};
use crate::plan::{AnalysisSpec, MetricSpec, Step};
pub use crate::report::WeightCause;

/// What a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The Rollout's background analysis: its verdict stops the rollout.
    Background,
    /// The analysis of an inline `analysis` step (0-based step index).
    Step(usize),
    /// A comparison (`--compare`): measured on the same traffic, never acted on.
    Comparison,
}

impl Role {
    /// Whether a Failed, Error or Inconclusive run of this role stops the rollout.
    pub fn stops_rollout(self) -> bool {
        !matches!(self, Role::Comparison)
    }
}

/// A point of the rollout: time since it started, 0-based step, canary weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moment {
    pub since_start: Duration,
    pub step: usize,
    pub weight: u32,
}

/// How the rollout ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every step passed; `at` is when the steps ended.
    Promoted { at: Moment },
    /// An analysis run completed Failed or Error.
    Aborted { at: Moment, reason: String },
    /// An analysis run completed Inconclusive: Argo Rollouts waits for a person.
    Paused { at: Moment, reason: String },
}

impl Verdict {
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Promoted { .. } => VerdictKind::Promoted,
            Verdict::Aborted { .. } => VerdictKind::Aborted,
            Verdict::Paused { .. } => VerdictKind::Paused,
        }
    }

    pub fn at(&self) -> Moment {
        match self {
            Verdict::Promoted { at } | Verdict::Aborted { at, .. } | Verdict::Paused { at, .. } => {
                *at
            }
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Verdict::Promoted { .. } => "every analysis measurement passed or was tolerated",
            Verdict::Aborted { reason, .. } | Verdict::Paused { reason, .. } => reason,
        }
    }
}

/// The verdict's name, as the report and `--expect` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum VerdictKind {
    Promoted,
    Aborted,
    Paused,
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Replicas behind the Service for a canary weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scaling {
    pub weight: u32,
    pub canary: u32,
    pub stable: u32,
    pub cause: WeightCause,
}

/// What the executor should do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Step `index` (0-based) begins.
    EnterStep { index: usize },
    /// Analysis run `run` starts.
    StartAnalysis { run: usize },
    /// Put these replicas behind the Service, then report [`Event::ReplicasReady`].
    Scale(Scaling),
    /// Query metric `metric` of run `run`, then report [`Event::Measured`].
    Measure { run: usize, metric: usize },
    /// Run `run` completed Failed, Error or Inconclusive.
    AnalysisDecided { run: usize },
    /// The Rollout's analysis decided; the steps go on for the comparison only.
    StepsGoOnForComparison,
    /// The runs still going were terminated (they complete Successful).
    StopAnalyses,
    /// The verdict; an abort or a promotion scales next.
    Decide(Verdict),
    /// Nothing to do before this instant (an event may come earlier).
    WaitUntil(Instant),
    /// Waiting for the event the last action asked for.
    AwaitEvent,
    /// The rollout is over.
    Finish(Verdict),
}

/// What the executor saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The replicas of the last [`Action::Scale`] are ready behind the Service.
    ReplicasReady,
    /// The measurement of the last [`Action::Measure`].
    Measured(Outcome),
}

/// A measurement as the analysis evaluated it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub value: String,
    pub first_value: Option<f64>,
    pub phase: Phase,
    pub message: String,
}

/// One analysis run and, once it stopped (or would have stopped) the
/// rollout, how and when.
#[derive(Clone, Debug)]
pub struct TrackedRun {
    pub run: Run,
    pub role: Role,
    pub decided: Option<(Phase, String, Moment)>,
}

/// What the rollout is doing between actions.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Before the step's first action.
    Enter,
    /// The step has nothing more to do.
    Over,
    /// Waiting for the replicas of a setWeight.
    Scaling,
    /// The replicas are in place: the measurements due now are taken.
    Settling,
    Pausing {
        until: Instant,
    },
    /// An inline analysis step waits for its run.
    Analysing {
        run: usize,
    },
    /// Waiting for the replicas of an abort or a promotion.
    Concluding,
    Finished,
}

/// A canary Rollout's steps and analysis, played over time.
#[derive(Clone, Debug)]
pub struct RolloutController {
    steps: Vec<Step>,
    replicas: u32,
    starting_step: Option<usize>,
    background: Vec<(AnalysisSpec, Role)>,
    scale: f64,
    start: Instant,
    runs: Vec<TrackedRun>,
    step: usize,
    state: State,
    weight: u32,
    highest_weight: u32,
    pending_scale: Option<Scaling>,
    measuring: Option<(usize, usize)>,
    measured_in_pass: BTreeSet<(usize, usize)>,
    comparison_noted: bool,
    verdict: Option<Verdict>,
    queue: VecDeque<Action>,
}

/// The Rollout as the controller plays it.
#[derive(Clone, Debug)]
pub struct RolloutSpec {
    pub steps: Vec<Step>,
    pub replicas: u32,
    /// The background analysis starts at this 0-based step.
    pub starting_step: Option<usize>,
    pub background: Option<AnalysisSpec>,
    /// Comparison analyses, started with the background one.
    pub comparisons: Vec<AnalysisSpec>,
}

impl RolloutController {
    /// The rollout starts at `start` with every replica stable; timings of
    /// the manifests are divided by `scale`.
    pub fn new(spec: RolloutSpec, scale: f64, start: Instant) -> Self {
        let background = spec
            .background
            .into_iter()
            .map(|analysis| (analysis, Role::Background))
            .chain(spec.comparisons.into_iter().map(|c| (c, Role::Comparison)))
            .collect();
        Self {
            steps: spec.steps,
            replicas: spec.replicas,
            starting_step: spec.starting_step,
            background,
            scale,
            start,
            runs: Vec::new(),
            step: 0,
            state: State::Enter,
            weight: 0,
            highest_weight: 0,
            pending_scale: None,
            measuring: None,
            measured_in_pass: BTreeSet::new(),
            comparison_noted: false,
            verdict: None,
            queue: VecDeque::new(),
        }
    }

    pub fn runs(&self) -> &[TrackedRun] {
        &self.runs
    }

    pub fn metric(&self, run: usize, metric: usize) -> &MetricSpec {
        &self.runs[run].run.metrics[metric].spec
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn time_scale(&self) -> f64 {
        self.scale
    }

    pub fn step(&self) -> usize {
        self.step
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The highest canary weight the rehearsal reached (100 once promoted).
    pub fn highest_weight(&self) -> u32 {
        self.highest_weight
    }

    /// Time since the rollout started.
    pub fn since_start(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    /// Replica counts for a weight, as Argo Rollouts without a traffic
    /// router: canary = ceil(replicas x weight / 100), stable = the rest.
    pub fn scaling(&self, weight: u32, cause: WeightCause) -> Scaling {
        let canary = (self.replicas * weight).div_ceil(100).min(self.replicas);
        Scaling {
            weight,
            canary,
            stable: self.replicas - canary,
            cause,
        }
    }

    /// Feeds what the executor saw.
    pub fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::ReplicasReady => self.replicas_ready(),
            Event::Measured(outcome) => self.measured(outcome, now),
        }
    }

    fn replicas_ready(&mut self) {
        let Some(scaling) = self.pending_scale.take() else {
            return;
        };
        self.weight = scaling.weight;
        self.highest_weight = self.highest_weight.max(scaling.weight);
        match self.state {
            State::Scaling => {
                self.state = State::Settling;
                self.measured_in_pass.clear();
            }
            State::Concluding => self.finish(),
            _ => {}
        }
    }

    fn measured(&mut self, outcome: Outcome, now: Instant) {
        let Some((index, metric)) = self.measuring.take() else {
            return;
        };
        let measurement = Measurement {
            at_seconds: self.since_start(now).as_secs_f64(),
            step: self.step + 1,
            weight: self.weight,
            value: outcome.value,
            first_value: outcome.first_value,
            phase: outcome.phase,
            message: outcome.message,
        };
        let at = self.moment(now);
        let tracked = &mut self.runs[index];
        tracked.run.record(metric, measurement, now);
        let phase = tracked.run.phase;
        if phase.completed() && phase != Phase::Successful && tracked.decided.is_none() {
            tracked.decided = Some((phase, tracked.run.message.clone(), at));
            self.queue.push_back(Action::AnalysisDecided { run: index });
        }
    }

    fn moment(&self, now: Instant) -> Moment {
        Moment {
            since_start: self.since_start(now),
            step: self.step,
            weight: self.weight,
        }
    }

    /// The next thing to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Action {
        if let Some(action) = self.queue.pop_front() {
            return action;
        }
        if self.measuring.is_some() || self.pending_scale.is_some() {
            return Action::AwaitEvent;
        }
        match self.state {
            State::Enter => self.enter_step(now),
            State::Over => self.step_done(now),
            State::Scaling | State::Concluding => Action::AwaitEvent,
            State::Settling => self.settle(now),
            State::Pausing { until } => self.pause(now, until),
            State::Analysing { run } => self.analyse(now, run),
            State::Finished => match &self.verdict {
                Some(verdict) => Action::Finish(verdict.clone()),
                None => Action::AwaitEvent,
            },
        }
    }

    fn enter_step(&mut self, now: Instant) -> Action {
        if self.step >= self.steps.len() {
            return self.conclude(now);
        }
        if self.starting_step == Some(self.step) && self.runs.is_empty() {
            for (spec, role) in self.background.clone() {
                self.start_run(spec, role, now);
            }
        }
        let index = self.step;
        self.queue.push_back(Action::EnterStep { index });
        match self.steps[index].clone() {
            Step::SetWeight(weight) => {
                let scaling = self.scaling(weight, WeightCause::SetWeight);
                self.pending_scale = Some(scaling);
                self.state = State::Scaling;
                self.queue.push_back(Action::Scale(scaling));
            }
            Step::Pause(Some(duration)) => {
                let until = now + crate::analysis::scaled(duration, self.scale);
                self.state = State::Pausing { until };
            }
            // The rehearsal gives the promotion a person would give at once.
            Step::Pause(None) => self.state = State::Over,
            Step::Analysis(spec) => {
                let run = self.start_run(*spec, Role::Step(index), now);
                self.state = State::Analysing { run };
            }
        }
        self.poll(now)
    }

    fn start_run(&mut self, spec: AnalysisSpec, role: Role, now: Instant) -> usize {
        self.runs.push(TrackedRun {
            run: Run::start(spec, now),
            role,
            decided: None,
        });
        let run = self.runs.len() - 1;
        self.queue.push_back(Action::StartAnalysis { run });
        run
    }

    /// A metric of a run still going that is due at `now`.
    fn due(&self, now: Instant) -> Option<(usize, usize)> {
        self.runs.iter().enumerate().find_map(|(index, tracked)| {
            if tracked.decided.is_some() || tracked.run.phase.completed() {
                return None;
            }
            (0..tracked.run.metrics.len())
                .find(|&metric| {
                    tracked
                        .run
                        .due_at(metric, self.scale)
                        .is_some_and(|due| due <= now)
                        && !(self.state == State::Settling
                            && self.measured_in_pass.contains(&(index, metric)))
                })
                .map(|metric| (index, metric))
        })
    }

    fn measure(&mut self, run: usize, metric: usize) -> Action {
        self.measuring = Some((run, metric));
        self.measured_in_pass.insert((run, metric));
        Action::Measure { run, metric }
    }

    /// After a setWeight (or an indefinite pause): the measurements due now,
    /// each once, then the next step.
    fn settle(&mut self, now: Instant) -> Action {
        match self.due(now) {
            Some((run, metric)) => self.measure(run, metric),
            None => self.step_done(now),
        }
    }

    fn pause(&mut self, now: Instant, until: Instant) -> Action {
        if let Some((run, metric)) = self.due(now) {
            return self.measure(run, metric);
        }
        if self.all_decided() || now >= until {
            return self.step_done(now);
        }
        Action::WaitUntil(self.next_due().map_or(until, |due| due.min(until)))
    }

    fn analyse(&mut self, now: Instant, run: usize) -> Action {
        if let Some((run, metric)) = self.due(now) {
            return self.measure(run, metric);
        }
        let phase = self.runs[run].run.phase;
        if phase.completed() || self.rollout_decided() {
            return self.step_done(now);
        }
        match self.next_due() {
            Some(due) => Action::WaitUntil(due),
            // Nothing will ever be measured again: the run cannot complete.
            None => {
                self.runs[run].run.terminate();
                self.step_done(now)
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.runs
            .iter()
            .filter(|tracked| tracked.decided.is_none())
            .filter_map(|tracked| tracked.run.next_due(self.scale))
            .min()
    }

    fn rollout_decided(&self) -> bool {
        self.runs
            .iter()
            .any(|tracked| tracked.role.stops_rollout() && tracked.decided.is_some())
    }

    /// The rollout decided and every comparison did too.
    fn all_decided(&self) -> bool {
        self.rollout_decided()
            && self
                .runs
                .iter()
                .filter(|tracked| tracked.role == Role::Comparison)
                .all(|tracked| tracked.decided.is_some())
    }

    fn step_done(&mut self, now: Instant) -> Action {
        if self.all_decided() || self.step + 1 >= self.steps.len() {
            return self.conclude(now);
        }
        self.step += 1;
        self.state = State::Enter;
        if self.rollout_decided() && !self.comparison_noted {
            self.comparison_noted = true;
            return Action::StepsGoOnForComparison;
        }
        self.poll(now)
    }

    /// The steps are over: the verdict, then an abort or a promotion.
    fn conclude(&mut self, now: Instant) -> Action {
        for tracked in &mut self.runs {
            if tracked.decided.is_none() {
                tracked.run.terminate();
            }
        }
        let decided = self
            .runs
            .iter()
            .filter(|tracked| tracked.role.stops_rollout())
            .filter_map(|tracked| tracked.decided.clone())
            .min_by(|a, b| a.2.since_start.cmp(&b.2.since_start));
        let verdict = match decided {
            Some((Phase::Inconclusive, reason, at)) => Verdict::Paused { at, reason },
            Some((_, reason, at)) => Verdict::Aborted { at, reason },
            None => Verdict::Promoted {
                at: self.moment(now),
            },
        };
        let scaling = match verdict {
            Verdict::Promoted { .. } => Some(self.scaling(100, WeightCause::Promote)),
            Verdict::Aborted { .. } => Some(self.scaling(0, WeightCause::Abort)),
            Verdict::Paused { .. } => None,
        };
        self.verdict = Some(verdict.clone());
        self.queue.push_back(Action::Decide(verdict));
        match scaling {
            Some(scaling) => {
                self.pending_scale = Some(scaling);
                self.state = State::Concluding;
                self.queue.push_back(Action::Scale(scaling));
            }
            None => self.finish(),
        }
        Action::StopAnalyses
    }

    fn finish(&mut self) {
        self.state = State::Finished;
    }
}

#[cfg(test)]
mod tests;
