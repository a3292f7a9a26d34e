//! The rehearsal's HTML report: one self-contained page (the chart's SVG
//! inline, styles inline, no script, no font or anything else fetched): the
//! chart first, then the summary, the verdicts, every measurement and the
//! manifests' settings that produced them.

use crate::report::{AnalysisOutcome, MetricSettings, Report};

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#212121;max-width:1160px}\
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #bdbdbd;padding:4px 8px;\
text-align:left;vertical-align:top}th{background:#f5f5f5}pre{margin:0;white-space:pre-wrap}\
.Successful{color:#2e7d32}.Failed{color:#c62828}.Inconclusive{color:#ef6c00}.Error{color:#6a1b9a}\
figure{margin:0}";

/// Text safe inside an element or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table>\n");
    if !header.is_empty() {
        out.push_str("<tr>");
        for cell in header {
            out.push_str(&format!("<th>{}</th>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{cell}</td>"));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The page; `svg` is the chart (`chart::svg`).
pub fn page(report: &Report, svg: &str) -> String {
    let title = format!(
        "Rollout rehearsal: {} -> {} ({})",
        report.stable_version, report.canary_version, report.verdict
    );
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p>A rehearsal of the analysis and weights of \
         <code>{}</code> on loopback (real ponger replicas, pinger and Prometheus; no Kubernetes, no Argo \
         Rollouts controller).</p>\n",
        escape(&title),
        escape(&title),
        escape(&report.manifests)
    );
    out.push_str("<figure id=\"chart\">\n");
    out.push_str(svg.trim_start_matches(|c: char| c != '<'));
    out.push_str("\n</figure>\n<h2>Summary</h2>\n");
    let summary: Vec<Vec<String>> = report
        .rows()
        .iter()
        .map(|(key, value)| vec![escape(key), escape(value)])
        .collect();
    out.push_str(&table(&[], &summary));
    out.push_str("<h2>Verdicts</h2>\n");
    out.push_str(&verdicts(report));
    out.push_str("<h2>Measurements</h2>\n");
    let measurements: Vec<Vec<String>> = report
        .measurement_rows()
        .iter()
        .map(|row| {
            let mut cells: Vec<String> = row.iter().map(|cell| escape(cell)).collect();
            cells[6] = format!("<span class=\"{0}\">{0}</span>", cells[6]);
            cells
        })
        .collect();
    let header = [
        "analysis",
        "metric",
        "s into rollout",
        "step",
        "weight",
        "value",
        "phase",
    ];
    out.push_str(&table(&header, &measurements));
    out.push_str(&settings(report));
    out.push_str("</body>\n</html>\n");
    out
}

fn verdicts(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .analyses
        .iter()
        .map(|analysis| {
            vec![
                escape(&analysis.role),
                escape(&analysis.templates.join(" + ")),
                format!("<span class=\"{0:?}\">{0:?}</span>", analysis.phase),
                analysis
                    .weight_at_verdict
                    .map_or_else(|| "never objected".to_owned(), |w| format!("{w}%")),
                analysis
                    .decided_after_seconds
                    .map_or_else(String::new, |s| format!("{s:.1}")),
                analysis
                    .canary_pings_at_verdict
                    .map_or_else(String::new, |p| p.to_string()),
                escape(&analysis.message),
            ]
        })
        .collect();
    let header = [
        "analysis",
        "templates",
        "phase",
        "weight at verdict",
        "s into rollout",
        "canary pings by then",
        "why",
    ];
    table(&header, &rows)
}

fn settings(report: &Report) -> String {
    let mut out = String::from("<h2>Settings from the manifests</h2>\n");
    let rollout = vec![
        vec!["manifests".to_owned(), escape(&report.manifests)],
        vec!["replicas".to_owned(), report.replicas.to_string()],
        vec!["steps".to_owned(), escape(&report.steps.join(", "))],
        vec![
            "pinger rate".to_owned(),
            format!(
                "{} pings/s (played at {}x)",
                report.pinger_rate, report.time_scale
            ),
        ],
        vec![
            "time scale".to_owned(),
            format!(
                "{}x (pauses, delays, intervals and query ranges divided by it)",
                report.time_scale
            ),
        ],
    ];
    out.push_str(&table(&[], &rollout));
    for analysis in &report.analyses {
        out.push_str(&metric_settings(analysis));
    }
    out
}

fn metric_settings(analysis: &AnalysisOutcome) -> String {
    let seconds = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |s| format!("{s} s"));
    let condition = |value: &Option<String>| {
        value
            .as_deref()
            .map_or_else(|| "-".to_owned(), |c| format!("<code>{}</code>", escape(c)))
    };
    let rows: Vec<Vec<String>> = analysis
        .metrics
        .iter()
        .map(|metric| {
            let MetricSettings {
                success_condition,
                failure_condition,
                initial_delay_seconds,
                interval_seconds,
                count,
                failure_limit,
                inconclusive_limit,
                consecutive_error_limit,
                query,
                ..
            } = &metric.settings;
            vec![
                escape(&metric.name),
                condition(success_condition),
                condition(failure_condition),
                seconds(*initial_delay_seconds),
                seconds(*interval_seconds),
                count.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                format!("{failure_limit} / {inconclusive_limit} / {consecutive_error_limit}"),
                format!("<pre>{}</pre>", escape(query)),
            ]
        })
        .collect();
    let header = [
        "metric",
        "successCondition",
        "failureCondition",
        "initialDelay",
        "interval",
        "count",
        "failure / inconclusive / consecutiveError limits",
        "query",
    ];
    format!(
        "<h3>Analysis {} ({})</h3>\n{}",
        escape(&analysis.role),
        escape(&analysis.templates.join(" + ")),
        table(&header, &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
