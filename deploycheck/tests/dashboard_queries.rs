//! Every dashboard query, and every rule, run against a real Prometheus that
//! uses the compose configuration (prometheus/prometheus.yml, targets pointed
//! at the real ponger and pinger, intervals shortened) and the repository's
//! rule files.

use std::collections::BTreeMap;
use std::time::Duration;

use deploycheck::{
    CONTROLLER_METRICS, dashboard_queries, promql, rule_files_glob, substitute_dashboard_variables,
    yaml_file,
};
use serde_json::Value;
use testkit::{Prometheus, Service, wait_for};

const SCRAPE: Duration = Duration::from_secs(1);

/// prometheus/prometheus.yml with its ponger and pinger jobs aimed at the
/// running binaries, other jobs dropped, the rules loaded by absolute path.
fn compose_config(ponger: &Service, pinger: &Service) -> String {
    let mut config = yaml_file("prometheus/prometheus.yml");
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["scrape_timeout"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    config["rule_files"] = serde_json::json!([rule_files_glob()]);
    let addresses = BTreeMap::from([
        ("ponger", ponger.address().to_string()),
        ("pinger", pinger.address().to_string()),
    ]);
    let jobs: Vec<Value> = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .filter_map(|job| {
            let name = job["job_name"].as_str()?;
            let address = addresses.get(name)?;
            let mut job = job.clone();
            for group in job["static_configs"]
                .as_array_mut()
                .expect("static_configs")
            {
                group["targets"] = serde_json::json!([address]);
            }
            Some(job)
        })
        .collect();
    assert_eq!(jobs.len(), 2, "prometheus.yml has ponger and pinger jobs");
    config["scrape_configs"] = Value::Array(jobs);
    serde_json::to_string(&config).expect("JSON is YAML")
}

fn is_controller_query(expr: &str) -> bool {
    let usage = promql::usage(expr);
    !usage.metrics.is_empty()
        && usage
            .metrics
            .iter()
            .all(|m| CONTROLLER_METRICS.contains(&m.as_str()))
}

#[test]
fn every_panel_query_and_rule_works_against_real_prometheus_and_binaries() {
    let ponger = Service::ponger(&["--profile", "initial", "--drain-delay", "0s"], &[]);
    let pinger = Service::pinger(&ponger.url("/ping"), "40", &[], &[]);
    let prometheus = Prometheus::start_with_config(&compose_config(&ponger, &pinger));

    wait_for("ponger and pinger scraped", Duration::from_secs(20), || {
        let targets = prometheus.active_targets();
        (targets.len() == 2 && targets.iter().all(|t| t["health"] == "up")).then_some(())
    });
    // Enough traffic for every application panel: failures, several scrapes
    // inside the rate window, and the SLO recording rules evaluated (their
    // group interval is 10s).
    wait_for(
        "failed pings and recorded SLO ratios",
        Duration::from_secs(40),
        || {
            let failures = prometheus.query(r#"http_requests_total{handler="/ping",code="500"}"#);
            let recorded = prometheus.query("target:http_client_requests_slow:ratio_rate5m");
            (!failures.is_empty() && !recorded.is_empty()).then_some(())
        },
    );
    std::thread::sleep(SCRAPE * 5);

    let mut failures = Vec::new();
    let queries = dashboard_queries("grafana/dashboards/pingpong.json");
    assert!(
        queries.len() >= 15,
        "the dashboard has {} queries",
        queries.len()
    );
    let mut application = 0;
    for (title, expr, exemplar) in &queries {
        let query = substitute_dashboard_variables(expr, SCRAPE);
        let controller = is_controller_query(&query);
        match prometheus.try_query(&query) {
            Err(error) => failures.push(format!("panel {title:?}: {query}\n  -> {error}")),
            Ok(result) if result.is_empty() && !controller => {
                failures.push(format!("panel {title:?}: no series for {query}"))
            }
            Ok(result) => {
                if !controller {
                    application += 1;
                    // Values must be numbers a panel can draw.
                    for sample in &result {
                        let value = sample["value"][1].as_str().unwrap_or_default();
                        if value.parse::<f64>().is_err() {
                            failures.push(format!("panel {title:?}: value {value:?}"));
                        }
                    }
                }
            }
        }
        if *exemplar && !controller {
            match prometheus.try_query_exemplars(&query, Duration::from_secs(120)) {
                Err(error) => failures.push(format!("panel {title:?} exemplars: {error}")),
                Ok(groups) => {
                    let with_trace = groups.iter().any(|group| {
                        group["exemplars"].as_array().is_some_and(|list| {
                            list.iter().any(|e| {
                                e["labels"]["trace_id"]
                                    .as_str()
                                    .is_some_and(|id| id.len() == 32)
                            })
                        })
                    });
                    if !with_trace {
                        failures.push(format!(
                            "panel {title:?}: no exemplar with a trace_id for {query}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty() && application >= 12,
        "{} application queries answered; failures:\n{}",
        application,
        failures.join("\n")
    );

    // Every rule evaluates without error; every recording rule yields data.
    wait_for("every rule evaluated once", Duration::from_secs(20), || {
        prometheus
            .rules()
            .iter()
            .all(|rule| {
                rule["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .then_some(())
    });
    let rules = prometheus.rules();
    assert!(rules.len() >= 20, "{} rules loaded", rules.len());
    for rule in &rules {
        if rule["health"] != "ok" {
            failures.push(format!(
                "rule {}: {} {}",
                rule["name"], rule["health"], rule["lastError"]
            ));
        }
        if rule["type"] == "recording" {
            let name = rule["name"].as_str().expect("rule name");
            if prometheus.query(name).is_empty() {
                failures.push(format!("recording rule {name} produced no series"));
            }
        }
    }
    // The healthy stable version raises no SLO alert.
    for rule in rules.iter().filter(|rule| rule["type"] == "alerting") {
        if rule["name"]
            .as_str()
            .is_some_and(|name| name.starts_with("Ping"))
            && rule["state"] != "inactive"
        {
            failures.push(format!(
                "alert {} is {} with a healthy ponger",
                rule["name"], rule["state"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
