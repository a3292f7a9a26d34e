//! `/metrics` pages read into samples: the classic text format (0.0.4) and
//! OpenMetrics, whose sample lines may carry an exemplar. Comments (`# HELP`,
//! `# TYPE`, `# EOF`) are skipped. Enough to find samples, their labels and
//! exemplars; well-formedness itself is judged by the real consumers
//! (Prometheus scraping, `promtool check metrics`).
//!
//! `prometheus-parse` reads the classic format only: it stops at an
//! exemplar, and it folds `_bucket` lines into histograms, where the checks
//! here look for the sample lines themselves.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// The exemplar's labels, when the line has one.
    pub exemplar: Option<BTreeMap<String, String>>,
}

/// A page that is not the text format: its first unreadable line.
#[derive(Debug, thiserror::Error)]
#[error("unreadable sample line: {line}")]
pub struct ParseError {
    pub line: String,
}

/// A page read.
#[derive(Clone, Debug)]
pub struct Exposition {
    pub content_type: String,
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Exposition {
    pub fn parse(content_type: String, text: String) -> Result<Self, ParseError> {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                parse_sample(line).ok_or_else(|| ParseError {
                    line: line.to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            content_type,
            text,
            samples,
        })
    }

    /// Samples named `name` whose labels include every pair in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
    }

    /// The sum of the values of [`find`](Self::find).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).map(|sample| sample.value).sum()
    }
}

/// `name[{labels}] value [timestamp] [# {labels} value [timestamp]]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        (labels, rest) = parse_labels(after)?;
    }
    // Label values are behind us: a '#' now can only start the exemplar.
    let (series, exemplar) = match rest.split_once('#') {
        Some((series, exemplar)) => (series, Some(exemplar)),
        None => (rest, None),
    };
    let value = series.split_whitespace().next()?.parse().ok()?;
    let exemplar = match exemplar {
        Some(exemplar) => Some(parse_labels(exemplar.trim_start().strip_prefix('{')?)?.0),
        None => None,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
        exemplar,
    })
}

/// The labels after a `{`, and the text after the closing `}`.
fn parse_labels(mut rest: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once('=')?;
        let (value, after) = quoted(after.trim_start().strip_prefix('"')?)?;
        labels.insert(key.trim().to_owned(), value);
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// A label value after its opening quote, unescaped (`\\`, `\"`, `\n`), and
/// the text after its closing quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[index + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                escaped => value.push(escaped),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &str) -> Exposition {
        Exposition::parse(String::new(), text.to_owned()).expect("parses")
    }

    #[test]
    fn reads_openmetrics_samples_and_exemplars() {
        let page = page(concat!(
            "# TYPE http_requests counter\n",
            "http_requests_total{handler=\"/ping\",code=\"200\"} 3 # {trace_id=\"ab\",span_id=\"cd\"} 1.0 1795671849.03\n",
            "http_requests_created{handler=\"/ping\",code=\"200\"} 1795671800.0\n",
            "# EOF\n",
        ));
        let sample = &page.samples[0];
        assert_eq!(sample.name, "http_requests_total");
        assert_eq!(sample.labels["handler"], "/ping");
        assert_eq!(sample.value, 3.0);
        let exemplar = sample.exemplar.as_ref().expect("exemplar");
        assert_eq!(exemplar["trace_id"], "ab");
        assert_eq!(exemplar["span_id"], "cd");
        assert_eq!(page.samples.len(), 2);
        assert_eq!(page.sum("http_requests_total", &[("code", "200")]), 3.0);
    }

    #[test]
    fn reads_the_classic_format() {
        let page = page(concat!(
            "# HELP process_threads Threads.\n",
            "process_threads 3.0\n",
            "latency_bucket{le=\"+Inf\"} 7 1795671849030\n",
            "ratio NaN\n",
            "codes_total{code=\"200\"} 2\n",
            "codes_total{code=\"503\",} 1\n",
        ));
        assert_eq!(page.samples[0].value, 3.0);
        assert!(page.samples[0].exemplar.is_none());
        assert_eq!(page.samples[1].labels["le"], "+Inf");
        assert_eq!(page.samples[1].value, 7.0);
        assert!(page.samples[2].value.is_nan());
        assert_eq!(page.sum("codes_total", &[]), 3.0);
        assert_eq!(page.find("codes_total", &[("code", "503")]).count(), 1);
    }

    #[test]
    fn label_values_may_hold_quotes_braces_commas_and_hashes() {
        let page = page(r#"x{path="/a\"b}, # c",note="line\nnext\\"} 1"#);
        let labels = &page.samples[0].labels;
        assert_eq!(labels["path"], "/a\"b}, # c");
        assert_eq!(labels["note"], "line\nnext\\");
        assert_eq!(page.samples[0].value, 1.0);
    }

    #[test]
    fn an_unreadable_line_is_an_error_that_names_it() {
        for line in ["x{a=\"1\" 2", "x{a=1} 2", "x", "x{a=\"1\"} two"] {
            let error = Exposition::parse(String::new(), format!("ok 1\n{line}\n")).unwrap_err();
            assert_eq!(error.line, line);
        }
    }
}
