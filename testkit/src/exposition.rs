//! Reads `/metrics` pages for assertions: enough of the text formats to find
//! samples, their labels and exemplars. Well-formedness itself is judged by
//! the real parsers (Prometheus scraping, `promtool check metrics`).

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

/// A scraped page.
#[derive(Clone, Debug)]
pub struct Exposition {
    pub content_type: String,
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Exposition {
    pub fn parse(content_type: String, text: String) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                parse_sample(line).unwrap_or_else(|| panic!("unreadable sample line: {line}"))
            })
            .collect();
        Self {
            content_type,
            text,
            samples,
        }
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

/// GETs a `/metrics` page, asking for OpenMetrics or not.
pub fn scrape(url: &str, openmetrics: bool) -> Exposition {
    let mut request = crate::http_client().get(url);
    if openmetrics {
        request = request.header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        );
    }
    let response = request
        .send()
        .unwrap_or_else(|error| panic!("scrape {url}: {error}"));
    assert!(
        response.status().is_success(),
        "scrape {url}: {}",
        response.status()
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Exposition::parse(content_type, response.text().expect("metrics body"))
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, exemplar) = match line.split_once(" # ") {
        Some((series, exemplar)) => (series, Some(exemplar)),
        None => (line, None),
    };
    let (name, labels, rest) = match series.find('{') {
        Some(open) => {
            let close = series.rfind('}')?;
            (
                &series[..open],
                parse_labels(&series[open + 1..close])?,
                &series[close + 1..],
            )
        }
        None => {
            let (name, rest) = series.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let exemplar = match exemplar {
        Some(exemplar) => {
            let open = exemplar.find('{')?;
            let close = exemplar.find('}')?;
            Some(parse_labels(&exemplar[open + 1..close])?)
        }
        None => None,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
        exemplar,
    })
}

fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let end = after.find('"')?;
        labels.insert(key.trim().to_owned(), after[..end].to_owned());
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_and_exemplars() {
        let sample = parse_sample(
            r#"http_requests_total{handler="/ping",code="200"} 3 # {trace_id="ab",span_id="cd"} 1.0 1795671849.03"#,
        )
        .expect("parses");
        assert_eq!(sample.name, "http_requests_total");
        assert_eq!(sample.labels["handler"], "/ping");
        assert_eq!(sample.value, 3.0);
        assert_eq!(sample.exemplar.expect("exemplar")["trace_id"], "ab");
        let plain = parse_sample("process_threads 3.0").expect("parses");
        assert_eq!(plain.value, 3.0);
        assert!(plain.exemplar.is_none());
    }
}
