//! `/metrics` pages scraped for assertions; the launcher reads them (both
//! text formats, exemplars included).

pub use launcher::exposition::{Exposition, Sample};

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
        .unwrap_or_else(|error| panic!("scrape {url}: {error}"))
}
