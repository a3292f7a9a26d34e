//! The scrape limits of prometheus/prometheus.yml (and the same ones in
//! prometheus-k8s.yml) against the real pages: a real Prometheus with the
//! repository's ponger and pinger jobs scrapes the real binaries while they
//! serve pings, failures, timeouts and odd requests, and every limit must
//! leave headroom over what it really ingests.

use std::collections::BTreeMap;
use std::time::Duration;

use deploycheck::yaml_file;
use serde_json::Value;
use testkit::{Prometheus, Service, http_client, wait_for};

const LIMITS: [&str; 4] = [
    "sample_limit",
    "label_limit",
    "label_name_length_limit",
    "label_value_length_limit",
];

fn limits(job: &Value) -> BTreeMap<&'static str, u64> {
    LIMITS
        .iter()
        .map(|key| {
            let value = job[*key].as_u64().unwrap_or_else(|| {
                panic!("scrape job {} has no {key}", job["job_name"]);
            });
            (*key, value)
        })
        .collect()
}

fn job<'a>(config: &'a Value, name: &str) -> &'a Value {
    config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .find(|job| job["job_name"] == name)
        .unwrap_or_else(|| panic!("no scrape job {name}"))
}

#[test]
fn every_scrape_job_of_both_configurations_has_limits() {
    for file in ["prometheus/prometheus.yml", "prometheus/prometheus-k8s.yml"] {
        let config = yaml_file(file);
        for job in config["scrape_configs"].as_array().expect("scrape_configs") {
            limits(job);
        }
    }
    // Kubernetes scrapes ponger and pinger in its `pods` job, with the
    // limits compose's measured jobs have.
    let compose = yaml_file("prometheus/prometheus.yml");
    let k8s = yaml_file("prometheus/prometheus-k8s.yml");
    assert_eq!(
        limits(job(&compose, "ponger")),
        limits(job(&compose, "pinger"))
    );
    assert_eq!(limits(job(&k8s, "pods")), limits(job(&compose, "ponger")));
}

#[test]
fn the_two_kubernetes_pod_jobs_split_the_pods_and_relabel_alike() {
    let k8s = yaml_file("prometheus/prometheus-k8s.yml");
    let ours = job(&k8s, "pods")["relabel_configs"]
        .as_array()
        .expect("relabel_configs");
    let theirs = job(&k8s, "monitoring-pods")["relabel_configs"]
        .as_array()
        .expect("relabel_configs");
    // The first rule splits: the same selection, kept by one, dropped by the other.
    let (split_ours, split_theirs) = (&ours[0], &theirs[0]);
    assert_eq!(split_ours["action"], "keep");
    assert_eq!(split_theirs["action"], "drop");
    for key in ["source_labels", "regex"] {
        assert_eq!(split_ours[key], split_theirs[key], "split rule {key}");
    }
    let names = split_ours["regex"].as_str().expect("regex");
    for service in ["ponger", "pinger"] {
        assert!(
            names.split('|').any(|name| name == service),
            "{service} is not in the measured job"
        );
    }
    assert_eq!(
        ours[1..],
        theirs[1..],
        "the rest of the relabelling differs"
    );
    for field in ["honor_labels", "kubernetes_sd_configs"] {
        assert_eq!(
            job(&k8s, "pods")[field],
            job(&k8s, "monitoring-pods")[field],
            "{field} differs"
        );
    }
}

#[test]
fn scrape_limits_leave_headroom_over_the_real_pages() {
    let ponger = Service::ponger(
        &[
            "--latency",
            "80%5ms,20%400ms",
            "--success-percent",
            "70",
            "--drain-delay",
            "0s",
        ],
        &[],
    );
    // A timeout shorter than the slow pings: 200, 500 and timeout codes.
    let pinger = Service::pinger(&ponger.url("/ping"), "40", &["--timeout", "200ms"], &[]);

    let mut config = yaml_file("prometheus/prometheus.yml");
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["scrape_timeout"] = "1s".into();
    config["rule_files"] = serde_json::json!([]);
    let mut jobs = Vec::new();
    for (name, service) in [("ponger", &ponger), ("pinger", &pinger)] {
        let mut job = job(&config, name).clone();
        job["static_configs"][0]["targets"] = serde_json::json!([service.address().to_string()]);
        jobs.push(job);
    }
    let configured: BTreeMap<String, BTreeMap<&str, u64>> = jobs
        .iter()
        .map(|job| (job["job_name"].as_str().unwrap().to_owned(), limits(job)))
        .collect();
    config["scrape_configs"] = Value::Array(jobs);
    let prometheus =
        Prometheus::start_with_config(&serde_json::to_string(&config).expect("JSON is YAML"));

    // What users and scanners send besides pings: other paths and methods.
    let client = http_client();
    for path in ["/", "/nope", "/metrics", "/healthz", "/readyz", "/ping/"] {
        client.get(ponger.url(path)).send().expect("GET");
    }
    let url = ponger.url("/ping");
    for request in [
        client.post(&url),
        client.put(&url),
        client.delete(&url),
        client.patch(&url),
        client.head(&url),
    ] {
        request.send().expect("request");
    }

    wait_for(
        "pings failed, timed out, and odd requests scraped",
        Duration::from_secs(30),
        || {
            let timeouts = prometheus.query(r#"http_client_requests_total{code="timeout"}"#);
            let failures = prometheus.query(r#"http_requests_total{handler="/ping",code="500"}"#);
            let odd = prometheus.query(r#"http_requests_total{method="DELETE"}"#);
            (!timeouts.is_empty() && !failures.is_empty() && !odd.is_empty()).then_some(())
        },
    );
    for (job, limit) in &configured {
        assert_eq!(
            prometheus.query_value(&format!(r#"up{{job="{job}"}}"#)),
            Some(1.0),
            "{job} is scraped within its limits"
        );
        let samples = prometheus
            .query_value(&format!(r#"scrape_samples_scraped{{job="{job}"}}"#))
            .expect("scrape_samples_scraped");
        assert!(
            samples * 3.0 <= limit["sample_limit"] as f64,
            "{job}: {samples} samples, sample_limit {} leaves less than 3x headroom",
            limit["sample_limit"]
        );
        let series = prometheus
            .try_api(
                "/api/v1/series",
                &[("match[]", format!(r#"{{job="{job}"}}"#))],
            )
            .expect("series");
        let series = series.as_array().expect("series list");
        assert!(!series.is_empty());
        let (mut most_labels, mut longest_name, mut longest_value) = (0, 0, 0);
        for labels in series {
            let labels = labels.as_object().expect("labels");
            most_labels = most_labels.max(labels.len() as u64);
            for (name, value) in labels {
                longest_name = longest_name.max(name.len() as u64);
                longest_value = longest_value.max(value.as_str().unwrap_or_default().len() as u64);
            }
        }
        // Kubernetes adds 3 target labels more than compose (namespace, pod,
        // version) and pod names of up to 63 characters.
        for (what, seen, key, factor) in [
            ("labels", most_labels + 3, "label_limit", 2),
            ("name length", longest_name, "label_name_length_limit", 2),
            (
                "value length",
                longest_value.max(63),
                "label_value_length_limit",
                4,
            ),
        ] {
            assert!(
                seen * factor <= limit[key],
                "{job}: {what} {seen}, {key} {} leaves less than {factor}x headroom",
                limit[key]
            );
        }
    }
}
