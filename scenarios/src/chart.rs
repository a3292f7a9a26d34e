//! The rehearsal's timeline chart. `ChartModel::from_report` picks, from what
//! the rehearsal recorded, the series each panel draws (pure, unit-tested);
//! `svg` draws them with plotters on one shared time axis: the canary weight,
//! one panel per analysis metric (its measurements, thresholds and verdict),
//! and the pings per second users sent through the Service, by outcome and by
//! version.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::Phase;
use crate::prom::format_value;
use crate::report::{Report, WeightCause};

const WIDTH: u32 = 1100;
const TITLE_HEIGHT: u32 = 44;
const PANEL_HEIGHT: u32 = 190;
const FONT: &str = "sans-serif";

/// A moment marked on every panel: the abort, the promotion, a verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub at: f64,
    pub label: String,
    pub kind: MarkKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MarkKind {
    Abort,
    Promote,
    /// The verdict of the analysis with this role (`ours`, `compare`).
    Verdict(String),
}

/// One measurement as drawn: `value` None (an error, no data) sits on the
/// panel's floor as a cross.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurementPoint {
    pub at: f64,
    pub value: Option<f64>,
    pub label: String,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricPanel {
    pub role: String,
    pub metric: String,
    pub phase: Phase,
    pub points: Vec<MeasurementPoint>,
    pub thresholds: Vec<f64>,
}

/// A line of pings per second, one value per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: &'static str,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChartModel {
    pub title: String,
    pub weight_caption: String,
    pub x_range: (f64, f64),
    /// (seconds, weight) from the rollout's start, a step line.
    pub weight: Vec<(f64, f64)>,
    pub marks: Vec<Mark>,
    pub metrics: Vec<MetricPanel>,
    pub pings_by_outcome: Vec<Series>,
    pub pings_by_version: Vec<Series>,
}

const OK: RGBColor = RGBColor(46, 125, 50);
const FAILED: RGBColor = RGBColor(198, 40, 40);
const NO_ANSWER: RGBColor = RGBColor(33, 33, 33);
const STABLE: RGBColor = RGBColor(21, 101, 192);
const CANARY: RGBColor = RGBColor(216, 27, 96);
const WEIGHT: RGBColor = RGBColor(21, 101, 192);

pub fn phase_color(phase: Phase) -> RGBColor {
    match phase {
        Phase::Successful => OK,
        Phase::Failed => FAILED,
        Phase::Inconclusive => RGBColor(239, 108, 0),
        Phase::Error => RGBColor(106, 27, 154),
        Phase::Pending | Phase::Running => RGBColor(117, 117, 117),
    }
}

fn mark_color(kind: &MarkKind) -> RGBColor {
    match kind {
        MarkKind::Abort => FAILED,
        MarkKind::Promote => OK,
        MarkKind::Verdict(role) if role == "ours" => RGBColor(55, 71, 79),
        MarkKind::Verdict(_) => RGBColor(141, 110, 99),
    }
}

impl ChartModel {
    pub fn from_report(report: &Report) -> Self {
        let metrics: Vec<MetricPanel> = report
            .analyses
            .iter()
            .flat_map(|analysis| {
                analysis.metrics.iter().map(|metric| MetricPanel {
                    role: analysis.role.clone(),
                    metric: metric.name.clone(),
                    phase: metric.phase,
                    points: metric
                        .measurements
                        .iter()
                        .map(|measurement| MeasurementPoint {
                            at: measurement.at_seconds,
                            value: measurement.first_value,
                            label: point_label(measurement),
                            phase: measurement.phase,
                        })
                        .collect(),
                    thresholds: metric.settings.thresholds.clone(),
                })
            })
            .collect();
        let (pings_by_outcome, pings_by_version) = ping_series(report);
        let weight = weight_steps(report);
        let marks = marks(report);
        let (start, end) = x_range(&weight, &metrics, &pings_by_version, &marks);
        let x_range = (start, end.max(report.rollout_seconds.ceil()));
        Self {
            title: format!(
                "Rehearsal of {}: {} -> {}, {} (time scale {}x)",
                report.rollout,
                report.stable_version,
                report.canary_version,
                report.verdict,
                report.time_scale
            ),
            weight_caption: if report.analyses.iter().any(|a| a.role == "compare") {
                "Canary weight (with --compare the steps go on after our verdict, until the comparison decides)"
                    .to_owned()
            } else {
                "Canary weight".to_owned()
            },
            x_range,
            weight,
            marks,
            metrics,
            pings_by_outcome,
            pings_by_version,
        }
    }
}

/// The value beside a point: result[0], else the raw result (`[NaN]`,
/// `[]`), else "error" (the table says why).
fn point_label(measurement: &crate::analysis::Measurement) -> String {
    match (measurement.first_value, measurement.value.is_empty()) {
        (Some(value), _) => format_value(value),
        (None, false) => measurement.value.clone(),
        (None, true) => "error".to_owned(),
    }
}

fn weight_steps(report: &Report) -> Vec<(f64, f64)> {
    let mut points = vec![(0.0, 0.0)];
    for change in &report.timeline.weight_changes {
        points.push((change.at_seconds, f64::from(change.weight)));
    }
    points
}

fn marks(report: &Report) -> Vec<Mark> {
    let mut marks: Vec<Mark> = report
        .timeline
        .weight_changes
        .iter()
        .filter_map(|change| match change.cause {
            WeightCause::Abort => Some((change, MarkKind::Abort, "abort")),
            WeightCause::Promote => Some((change, MarkKind::Promote, "promoted")),
            WeightCause::SetWeight => None,
        })
        .map(|(change, kind, what)| Mark {
            at: change.at_seconds,
            label: format!("{what}: weight {}%", change.weight),
            kind,
        })
        .collect();
    for analysis in &report.analyses {
        if let Some(at) = analysis.decided_after_seconds {
            marks.push(Mark {
                at,
                label: format!(
                    "verdict {}: {:?} at {}%",
                    analysis.role,
                    analysis.phase,
                    analysis.weight_at_verdict.unwrap_or(0)
                ),
                kind: MarkKind::Verdict(analysis.role.clone()),
            });
        }
    }
    marks
}

/// Users' pings per second by outcome (the Service's connections without a
/// replica count as no answer) and by version.
fn ping_series(report: &Report) -> (Vec<Series>, Vec<Series>) {
    let seconds = &report.timeline.pings_per_second;
    let line = |name, color, count: &dyn Fn(&crate::lb::PingSecond) -> u64| Series {
        name,
        color,
        points: seconds
            .iter()
            .map(|second| (second.from_seconds, count(&second.counts) as f64))
            .collect(),
    };
    let by_outcome = vec![
        line("ok", OK, &|c| c.stable.ok + c.canary.ok),
        line("failed", FAILED, &|c| c.stable.failed + c.canary.failed),
        line("no answer", NO_ANSWER, &|c| {
            c.stable.no_answer + c.canary.no_answer + c.no_endpoint
        }),
    ];
    let by_version = vec![
        line("stable", STABLE, &|c| c.stable.total()),
        line("canary", CANARY, &|c| c.canary.total()),
    ];
    (by_outcome, by_version)
}

fn x_range(
    weight: &[(f64, f64)],
    metrics: &[MetricPanel],
    pings: &[Series],
    marks: &[Mark],
) -> (f64, f64) {
    let times = weight
        .iter()
        .map(|(at, _)| *at)
        .chain(metrics.iter().flat_map(|m| m.points.iter().map(|p| p.at)))
        .chain(
            pings
                .iter()
                .flat_map(|s| s.points.iter().map(|(at, _)| *at)),
        )
        .chain(marks.iter().map(|mark| mark.at));
    let (low, high) = times.fold((0.0_f64, 1.0_f64), |(low, high), at| {
        (low.min(at), high.max(at))
    });
    (low.floor(), (high + 1.0).ceil())
}

/// The y range of a metric panel: its values and thresholds, padded.
pub fn metric_y_range(panel: &MetricPanel) -> (f64, f64) {
    let measured = panel.points.iter().filter_map(|point| point.value);
    let mut values: Vec<f64> = measured.chain(panel.thresholds.iter().copied()).collect();
    if panel.points.iter().all(|point| point.value.is_none()) {
        // Nothing measured: the threshold(s) above the zero line.
        values.push(0.0);
    }
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((high - low) * 0.15)
        .max(high.abs().max(low.abs()) * 0.05)
        .max(0.01);
    let floor = if low >= 0.0 {
        (low - pad).max(0.0)
    } else {
        low - pad
    };
    (floor, high + pad)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn failed<E: std::fmt::Display>(error: E) -> String {
    format!("cannot draw the chart: {error}")
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Glyph {
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
    Cross(RGBColor),
}

/// The chart as an SVG document.
pub fn svg(model: &ChartModel) -> Result<String, String> {
    let panels = 3 + model.metrics.len() as u32;
    let height = TITLE_HEIGHT + panels * PANEL_HEIGHT;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let (title, mut rest) = root.split_vertically(TITLE_HEIGHT);
        title
            .titled(&model.title, (FONT, 20).into_font().style(FontStyle::Bold))
            .map_err(failed)?;
        let (area, below) = rest.split_vertically(PANEL_HEIGHT);
        draw_weight(&area, model)?;
        rest = below;
        for panel in &model.metrics {
            let (area, below) = rest.split_vertically(PANEL_HEIGHT);
            draw_metric(&area, model, panel)?;
            rest = below;
        }
        let (area, below) = rest.split_vertically(PANEL_HEIGHT);
        let by_outcome = "Pings per second users saw, by outcome";
        draw_pings(&area, model, by_outcome, &model.pings_by_outcome)?;
        let by_version = "Pings per second users saw, by version";
        draw_pings(&below, model, by_version, &model.pings_by_version)?;
        root.present().map_err(failed)?;
    }
    Ok(out)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A panel: the plot on the left (the shared time axis), its legend on the right.
fn panel<'a, 'b>(
    area: &'a Area<'b>,
    model: &ChartModel,
    (caption, y_desc): (&str, &str),
    y: (f64, f64),
    legend: &[(String, Glyph)],
) -> Result<Chart<'a, 'b>, String> {
    let (plot, legend_area) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    draw_legend(&legend_area, legend)?;
    let mut chart = ChartBuilder::on(&plot)
        .caption(caption, (FONT, 15))
        .margin_left(8)
        .margin_right(12)
        .margin_bottom(4)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(model.x_range.0..model.x_range.1, y.0..y.1)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the rollout started")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format_value(*x))
        .y_label_formatter(&|y| format_value(*y))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .max_light_lines(0)
        .bold_line_style(RGBColor(230, 230, 230))
        .draw()
        .map_err(failed)?;
    draw_marks(&mut chart, model, y)?;
    Ok(chart)
}

const LEGEND_WIDTH: u32 = 190;

fn draw_legend(area: &Area, items: &[(String, Glyph)]) -> Result<(), String> {
    for (index, (label, glyph)) in items.iter().enumerate() {
        let y = 44 + 20 * index as i32;
        let element: DynElement<SVGBackend, (i32, i32)> = match *glyph {
            Glyph::Line(color) => {
                PathElement::new(vec![(0, y), (22, y)], color.stroke_width(3)).into_dyn()
            }
            Glyph::Dashed(color) => PathElement::new(
                vec![(0, y), (8, y), (8, y), (14, y), (22, y)],
                color.stroke_width(1),
            )
            .into_dyn(),
            Glyph::Dot(color) => Circle::new((11, y), 5, color.filled()).into_dyn(),
            Glyph::Cross(color) => Cross::new((11, y), 5, color.stroke_width(2)).into_dyn(),
        };
        area.draw(&element).map_err(failed)?;
        let text = Text::new(label.clone(), (30, y - 7), (FONT, 12).into_font());
        area.draw(&text).map_err(failed)?;
    }
    Ok(())
}

/// A vertical line for each mark, labelled at its own height, on the side
/// of the line with more room.
fn draw_marks(chart: &mut Chart, model: &ChartModel, y: (f64, f64)) -> Result<(), String> {
    let middle = (model.x_range.0 + model.x_range.1) / 2.0;
    for (index, mark) in model.marks.iter().enumerate() {
        let color = mark_color(&mark.kind);
        let line = LineSeries::new(vec![(mark.at, y.0), (mark.at, y.1)], color.stroke_width(2));
        chart.draw_series(line).map_err(failed)?;
        let text_y = y.1 - (y.1 - y.0) * (0.1 + 0.13 * index as f64);
        let (anchor, dx) = if mark.at > middle {
            (HPos::Right, -5)
        } else {
            (HPos::Left, 5)
        };
        let style = (FONT, 12)
            .into_font()
            .color(&color)
            .pos(Pos::new(anchor, VPos::Center));
        let label =
            EmptyElement::at((mark.at, text_y)) + Text::new(mark.label.clone(), (dx, 0), style);
        chart.draw_series(std::iter::once(label)).map_err(failed)?;
    }
    Ok(())
}

fn draw_weight(area: &Area, model: &ChartModel) -> Result<(), String> {
    let y = (0.0, 110.0);
    let legend = [("canary weight".to_owned(), Glyph::Line(WEIGHT))];
    let mut chart = panel(area, model, (&model.weight_caption, "weight %"), y, &legend)?;
    let mut steps = Vec::new();
    for (index, (at, weight)) in model.weight.iter().enumerate() {
        if index > 0 {
            steps.push((*at, model.weight[index - 1].1));
        }
        steps.push((*at, *weight));
    }
    if let Some(last) = steps.last().copied() {
        steps.push((model.x_range.1, last.1));
    }
    let line = LineSeries::new(steps, WEIGHT.stroke_width(3));
    chart.draw_series(line).map_err(failed)?;
    Ok(())
}

const PHASES: [Phase; 4] = [
    Phase::Successful,
    Phase::Inconclusive,
    Phase::Failed,
    Phase::Error,
];

fn draw_metric(area: &Area, model: &ChartModel, metric: &MetricPanel) -> Result<(), String> {
    let y = metric_y_range(metric);
    let caption = format!(
        "analysis {}: {} (metric {:?})",
        metric.role, metric.metric, metric.phase
    );
    let threshold_color = RGBColor(97, 97, 97);
    let mut legend: Vec<(String, Glyph)> = metric
        .thresholds
        .iter()
        .map(|t| {
            (
                format!("threshold {}", format_value(*t)),
                Glyph::Dashed(threshold_color),
            )
        })
        .collect();
    for phase in PHASES {
        let drawn: Vec<bool> = metric
            .points
            .iter()
            .filter(|point| point.phase == phase)
            .map(|point| point.value.is_some())
            .collect();
        if drawn.contains(&true) {
            legend.push((format!("{phase:?}"), Glyph::Dot(phase_color(phase))));
        }
        if drawn.contains(&false) {
            let label = format!("{phase:?}, no value");
            legend.push((label, Glyph::Cross(phase_color(phase))));
        }
    }
    let mut chart = panel(area, model, (&caption, "result[0]"), y, &legend)?;
    for threshold in &metric.thresholds {
        let line = vec![(model.x_range.0, *threshold), (model.x_range.1, *threshold)];
        let dashed = DashedLineSeries::new(line, 8, 5, threshold_color.stroke_width(1));
        chart.draw_series(dashed).map_err(failed)?;
    }
    chart
        .draw_series(metric.points.iter().map(|point| {
            let color = phase_color(point.phase);
            let at = (point.at, point.value.unwrap_or(y.0));
            let label = Text::new(point.label.clone(), (6, -16), (FONT, 11).into_font());
            let marker: DynElement<SVGBackend, (i32, i32)> = match point.value {
                Some(_) => Circle::new((0, 0), 5, color.filled()).into_dyn(),
                None => Cross::new((0, 0), 5, color.stroke_width(2)).into_dyn(),
            };
            EmptyElement::at(at) + marker + label
        }))
        .map_err(failed)?;
    Ok(())
}

fn draw_pings(
    area: &Area,
    model: &ChartModel,
    caption: &str,
    series: &[Series],
) -> Result<(), String> {
    let high = series
        .iter()
        .flat_map(|line| line.points.iter().map(|(_, value)| *value))
        .fold(1.0_f64, f64::max);
    let y = (0.0, high * 1.15);
    let legend: Vec<(String, Glyph)> = series
        .iter()
        .map(|line| (line.name.to_owned(), Glyph::Line(line.color)))
        .collect();
    let mut chart = panel(area, model, (caption, "pings/s"), y, &legend)?;
    for line in series {
        let drawn = LineSeries::new(line.points.clone(), line.color.stroke_width(2));
        chart.draw_series(drawn).map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::analysis::Measurement;
    use crate::lb::{OutcomeCounts, PingSecond, Totals};
    use crate::report::{
        AnalysisOutcome, MetricOutcome, MetricSettings, PingsInSecond, Timeline, WeightChange,
    };

    fn measurement(at: f64, value: Option<f64>, phase: Phase) -> Measurement {
        Measurement {
            at_seconds: at,
            step: 2,
            weight: 20,
            value: value.map_or_else(String::new, |v| format!("[{v}]")),
            first_value: value,
            phase,
            message: "why".to_owned(),
        }
    }

    fn metric(name: &str, thresholds: Vec<f64>, measurements: Vec<Measurement>) -> MetricOutcome {
        MetricOutcome {
            name: name.to_owned(),
            phase: measurements.last().map_or(Phase::Pending, |m| m.phase),
            dry_run: false,
            settings: MetricSettings {
                success_condition: Some("result[0] >= 0.8".to_owned()),
                failure_condition: None,
                thresholds,
                initial_delay_seconds: Some(30.0),
                interval_seconds: Some(20.0),
                count: None,
                failure_limit: 0,
                inconclusive_limit: 0,
                consecutive_error_limit: 4,
                query: "sum(rate(x[1m]))".to_owned(),
            },
            measurements,
        }
    }

    fn analysis(
        role: &str,
        decided: Option<(f64, u32)>,
        metrics: Vec<MetricOutcome>,
    ) -> AnalysisOutcome {
        AnalysisOutcome {
            role: role.to_owned(),
            templates: vec![format!("{role}-template")],
            phase: if decided.is_some() {
                Phase::Failed
            } else {
                Phase::Successful
            },
            message: String::new(),
            stops_rollout: decided.is_some(),
            decided_after_seconds: decided.map(|d| d.0),
            decided_at_step: decided.map(|_| 2),
            weight_at_verdict: decided.map(|d| d.1),
            canary_pings_at_verdict: None,
            canary_failed_pings_at_verdict: None,
            metrics,
        }
    }

    fn second(from: f64, stable_ok: u64, canary_failed: u64, no_endpoint: u64) -> PingsInSecond {
        PingsInSecond {
            from_seconds: from,
            counts: PingSecond {
                stable: OutcomeCounts {
                    ok: stable_ok,
                    failed: 1,
                    no_answer: 0,
                },
                canary: OutcomeCounts {
                    ok: 5,
                    failed: canary_failed,
                    no_answer: 2,
                },
                no_endpoint,
            },
        }
    }

    /// Ours failed at 20%; the comparison at 80%.
    fn analyses() -> Vec<AnalysisOutcome> {
        let ours = analysis(
            "ours",
            Some((3.0, 20)),
            vec![
                metric(
                    "success-ratio",
                    vec![0.8],
                    vec![measurement(3.0, Some(0.67), Phase::Failed)],
                ),
                metric(
                    "latency-p90",
                    vec![1.0],
                    vec![measurement(3.1, None, Phase::Error)],
                ),
            ],
        );
        let compare = analysis(
            "compare",
            Some((17.0, 80)),
            vec![metric(
                "blended-success-ratio",
                vec![0.8],
                vec![
                    measurement(3.0, Some(0.93), Phase::Successful),
                    measurement(17.0, Some(0.79), Phase::Failed),
                ],
            )],
        );
        vec![ours, compare]
    }

    fn report() -> Report {
        let change = |at, weight, cause| WeightChange {
            at_seconds: at,
            step: 1,
            weight,
            cause,
        };
        Report {
            rollout: "pingpong/ponger".into(),
            manifests: "k8s/overlays/canary".into(),
            stable_version: "initial".into(),
            canary_version: "errors".into(),
            stable_hash: "a".into(),
            canary_hash: "b".into(),
            time_scale: 10.0,
            replicas: 5,
            steps: vec!["setWeight 20".into()],
            pinger_rate: 20.0,
            verdict: crate::controller::VerdictKind::Aborted,
            reason: "metric success-ratio assessed Failed".into(),
            time_to_verdict_seconds: 3.0,
            time_to_verdict_at_manifest_timing_seconds: 30.0,
            verdict_step: 2,
            verdict_step_description: "pause 60s".into(),
            highest_canary_weight: 20,
            highest_weight_played: 80,
            rollout_seconds: 18.2,
            canary: Totals::default(),
            stable: Totals::default(),
            failed_pings_because_of_canary: 0,
            excess_failed_pings_because_of_canary: 0.0,
            user_pings_by_code: BTreeMap::new(),
            user_pings_without_answer: 0,
            connections_without_endpoint: 0,
            analyses: analyses(),
            timeline: Timeline {
                weight_changes: vec![
                    change(0.1, 20, WeightCause::SetWeight),
                    change(15.0, 80, WeightCause::SetWeight),
                    change(17.3, 0, WeightCause::Abort),
                ],
                pings_per_second: vec![second(-1.5, 190, 0, 0), second(-0.5, 150, 30, 1)],
            },
        }
    }

    #[test]
    fn every_measurement_is_a_point_of_its_metric_panel() {
        let report = report();
        let model = ChartModel::from_report(&report);
        let metrics: Vec<(&AnalysisOutcome, &MetricOutcome)> = report
            .analyses
            .iter()
            .flat_map(|a| a.metrics.iter().map(move |m| (a, m)))
            .collect();
        assert_eq!(model.metrics.len(), metrics.len());
        for (panel, (analysis, metric)) in model.metrics.iter().zip(metrics) {
            assert_eq!(panel.role, analysis.role);
            assert_eq!(panel.metric, metric.name);
            assert_eq!(panel.thresholds, metric.settings.thresholds);
            let expected: Vec<(f64, Option<f64>, Phase)> = metric
                .measurements
                .iter()
                .map(|m| (m.at_seconds, m.first_value, m.phase))
                .collect();
            let drawn: Vec<(f64, Option<f64>, Phase)> = panel
                .points
                .iter()
                .map(|p| (p.at, p.value, p.phase))
                .collect();
            assert_eq!(drawn, expected);
        }
        // The error has no value: it is labelled as one.
        assert_eq!(model.metrics[1].points[0].label, "error");
        assert_eq!(model.metrics[0].points[0].label, "0.67");
    }

    #[test]
    fn weight_marks_and_pings_come_from_the_timeline() {
        let model = ChartModel::from_report(&report());
        assert_eq!(
            model.weight,
            vec![(0.0, 0.0), (0.1, 20.0), (15.0, 80.0), (17.3, 0.0)]
        );
        let marks: Vec<(f64, &MarkKind)> = model.marks.iter().map(|m| (m.at, &m.kind)).collect();
        assert_eq!(
            marks,
            vec![
                (17.3, &MarkKind::Abort),
                (3.0, &MarkKind::Verdict("ours".into())),
                (17.0, &MarkKind::Verdict("compare".into())),
            ]
        );
        let values = |series: &Series| series.points.clone();
        let outcome = &model.pings_by_outcome;
        assert_eq!(values(&outcome[0]), vec![(-1.5, 195.0), (-0.5, 155.0)]);
        assert_eq!(values(&outcome[1]), vec![(-1.5, 1.0), (-0.5, 31.0)]);
        assert_eq!(values(&outcome[2]), vec![(-1.5, 2.0), (-0.5, 3.0)]);
        let version = &model.pings_by_version;
        assert_eq!(values(&version[0]), vec![(-1.5, 191.0), (-0.5, 151.0)]);
        assert_eq!(values(&version[1]), vec![(-1.5, 7.0), (-0.5, 37.0)]);
        assert_eq!(model.x_range, (-2.0, 19.0));
    }

    #[test]
    fn the_svg_has_every_panel_and_label() {
        let svg = svg(&ChartModel::from_report(&report())).expect("drawn");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for text in [
            "analysis ours: success-ratio (metric Failed)",
            "analysis compare: blended-success-ratio (metric Failed)",
            "threshold 0.8",
            "0.67",
            "abort: weight 0%",
            "verdict ours: Failed at 20%",
            "verdict compare: Failed at 80%",
            "no answer",
            "canary",
            "Error, no value",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn an_unmeasured_metric_shows_its_threshold_above_zero() {
        let panel = MetricPanel {
            role: "ours".into(),
            metric: "m".into(),
            phase: Phase::Pending,
            points: vec![],
            thresholds: vec![1.0],
        };
        let (low, high) = metric_y_range(&panel);
        assert_eq!(low, 0.0);
        assert!(high > 1.0 && high < 1.5, "{high}");
    }
}
