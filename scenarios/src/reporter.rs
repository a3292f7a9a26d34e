//! Builds the rehearsal's report from the controller's actions as the
//! executor performs them (with the Service's counts at that moment) and the
//! traffic counted at the end: the report needs no state of its own in the
//! executor.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::controller::{Action, RolloutController, Verdict};
use crate::lb::{PingTimeline, Totals};
use crate::plan::Plan;
use crate::report::{AnalysisOutcome, PingsInSecond, Rehearsal, Report, Timeline, WeightChange};

/// What the Service had counted at one moment.
#[derive(Clone, Debug, Default)]
pub struct ServiceCounts {
    pub canary: Totals,
    pub stable: Totals,
}

/// What the Service and the pinger counted over the whole rehearsal, read at `read_at`.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub service: ServiceCounts,
    pub pings: Option<PingTimeline>,
    pub user_pings_by_code: BTreeMap<String, u64>,
    pub connections_without_endpoint: u64,
    pub read_at: Instant,
}

/// Collects what the report needs while the rollout is played.
#[derive(Clone, Debug)]
pub struct Reporter {
    start: Instant,
    weight_changes: Vec<WeightChange>,
    /// What the canary had served when each run (by index) decided.
    canary_at_decision: BTreeMap<usize, Totals>,
    finished: Option<Instant>,
}

impl Reporter {
    /// `start`: when the rollout started.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            weight_changes: Vec::new(),
            canary_at_decision: BTreeMap::new(),
            finished: None,
        }
    }

    /// `action` was performed at `now` (a scaling: its replicas are ready);
    /// `canary_counts` reads the canary's counts at the Service, when an
    /// analysis decides.
    pub fn performed(
        &mut self,
        action: &Action,
        controller: &RolloutController,
        now: Instant,
        canary_counts: impl FnOnce() -> Totals,
    ) {
        match action {
            Action::Scale(scaling) => self.weight_changes.push(WeightChange {
                at_seconds: round_ms(now.saturating_duration_since(self.start).as_secs_f64()),
                step: controller.step() + 1,
                weight: scaling.weight,
                cause: scaling.cause,
            }),
            Action::AnalysisDecided { run } => {
                self.canary_at_decision.insert(*run, canary_counts());
            }
            Action::Finish(_) => self.finished = Some(now),
            _ => {}
        }
    }

    /// The report of a finished rollout.
    pub fn report(
        self,
        plan: &Plan,
        controller: &RolloutController,
        verdict: Verdict,
        traffic: Traffic,
    ) -> Report {
        let analyses = controller
            .runs()
            .iter()
            .enumerate()
            .map(|(index, run)| AnalysisOutcome::from_run(run, self.canary_at_decision.get(&index)))
            .collect();
        let finished = self.finished.unwrap_or(traffic.read_at);
        let timeline = Timeline {
            pings_per_second: self.pings_per_second(traffic.pings.as_ref(), traffic.read_at),
            weight_changes: self.weight_changes,
        };
        Report::new(
            plan,
            Rehearsal {
                time_scale: controller.time_scale(),
                verdict,
                highest_weight_played: controller.highest_weight(),
                rollout: finished.saturating_duration_since(self.start),
                canary: traffic.service.canary,
                stable: traffic.service.stable,
                user_pings_by_code: traffic.user_pings_by_code,
                connections_without_endpoint: traffic.connections_without_endpoint,
                analyses,
                timeline,
            },
        )
    }

    /// The Service's per-second ping counts (seconds that have ended by
    /// `now`), on the rollout's time axis.
    fn pings_per_second(&self, pings: Option<&PingTimeline>, now: Instant) -> Vec<PingsInSecond> {
        let Some(pings) = pings else {
            return Vec::new();
        };
        let offset = self
            .start
            .saturating_duration_since(pings.origin())
            .as_secs_f64();
        pings
            .complete_seconds(now)
            .iter()
            .enumerate()
            .map(|(index, counts)| PingsInSecond {
                from_seconds: round_ms(index as f64 - offset),
                counts: *counts,
            })
            .collect()
    }
}

/// Seconds rounded to the millisecond, for the report.
fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
