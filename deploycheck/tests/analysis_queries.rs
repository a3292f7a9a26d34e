//! The canary analysis, executed: a real Prometheus runs the Kubernetes
//! scrape job of prometheus/prometheus-k8s.yml, with its real relabelling, on
//! targets that carry the `__meta_kubernetes_*` labels pod discovery would
//! give the real ponger processes standing in for pods. The AnalysisTemplate
//! rendered by kustomize is resolved with a pod-template hash and its queries
//! and conditions are evaluated as Argo Rollouts would.

use std::collections::BTreeMap;
use std::time::Duration;

use deploycheck::{kustomize, object, yaml_file};
use rollout_model::model::{AnalysisTemplate, from_value};
use rollout_model::{Args, Condition, Input, Phase, measure};
use serde_json::{Value, json};
use testkit::{Prometheus, Service, wait_for};

const NAMESPACE: &str = "pingpong";

/// A pod as Kubernetes pod discovery describes it (role: pod, one target per
/// container port).
fn discovered_pod(
    address: &str,
    name: &str,
    app: &str,
    version: &str,
    hash: Option<&str>,
    port_name: &str,
) -> Value {
    let mut labels = json!({
        "__meta_kubernetes_namespace": NAMESPACE,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
        "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name": "true",
        "__meta_kubernetes_pod_label_app_kubernetes_io_version": version,
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_container_name": app,
        "__meta_kubernetes_pod_container_port_name": port_name,
        "__meta_kubernetes_pod_container_port_protocol": "TCP",
    });
    if let Some(hash) = hash {
        labels["__meta_kubernetes_pod_label_rollouts_pod_template_hash"] = hash.into();
        labels["__meta_kubernetes_pod_labelpresent_rollouts_pod_template_hash"] = "true".into();
    }
    json!({"targets": [address], "labels": labels})
}

/// The Kubernetes scrape job, its discovery replaced by `groups`.
fn k8s_config(groups: Vec<Value>) -> String {
    let k8s = yaml_file("prometheus/prometheus-k8s.yml");
    let mut job = k8s["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .find(|job| job.get("kubernetes_sd_configs").is_some())
        .expect("a job with Kubernetes pod discovery")
        .clone();
    let job_object = job.as_object_mut().expect("job");
    job_object.remove("kubernetes_sd_configs");
    job_object.insert("static_configs".into(), Value::Array(groups));
    serde_json::to_string(&json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [job],
    }))
    .expect("JSON is YAML")
}

struct Metric {
    name: String,
    query: String,
    success: String,
    failure: String,
}

/// The analysis metrics of the deployed (canary overlay) template, with the
/// arguments a Rollout would pass for pods of `hash`.
fn analysis_metrics(hash: &str) -> Vec<Metric> {
    let objects = kustomize("k8s/overlays/canary");
    let template: AnalysisTemplate =
        from_value(object(&objects, "AnalysisTemplate", "ponger-health")).expect("template");
    let args = Args::from([
        ("canary-hash".to_owned(), Some(hash.to_owned())),
        ("namespace".to_owned(), Some(NAMESPACE.to_owned())),
    ]);
    template
        .spec
        .metrics
        .iter()
        .map(|metric| {
            let resolved = metric.resolved(&args).expect("resolvable metric");
            Metric {
                query: resolved.provider.prometheus.expect("prometheus").query,
                success: resolved.success_condition.expect("successCondition"),
                failure: resolved.failure_condition.expect("failureCondition"),
                name: resolved.name,
            }
        })
        .collect()
}

fn ponger(profile: &str) -> Service {
    Service::ponger(&["--profile", profile, "--drain-delay", "0s"], &[])
}

#[test]
fn each_metric_passes_or_fails_every_number_and_nothing_else() {
    for metric in analysis_metrics("any") {
        for step in 0..=400 {
            let value = f64::from(step) / 100.0;
            let phase = measure(&metric.success, &metric.failure, &[value]);
            assert!(
                phase == Phase::Successful || phase == Phase::Failed,
                "{}: {value} is {phase:?}; the conditions must split the numbers",
                metric.name
            );
            // Exactly one condition holds: thresholds agree.
            let holds = |source: &str| {
                Condition::parse(source)
                    .and_then(|condition| {
                        condition
                            .evaluate(&Input::Vector(vec![value]))
                            .map_err(rollout_model::ConditionError)
                    })
                    .expect("evaluates")
            };
            let both = holds(&metric.success) && holds(&metric.failure);
            assert!(!both, "{}: {value} both passes and fails", metric.name);
        }
        let at = |value: f64| measure(&metric.success, &metric.failure, &[value]);
        match metric.name.as_str() {
            "success-ratio" => {
                assert_eq!(at(0.80), Phase::Successful);
                assert_eq!(at(0.7999), Phase::Failed);
            }
            "latency-p90" => {
                assert_eq!(at(0.999), Phase::Successful);
                assert_eq!(at(1.0), Phase::Failed);
            }
            other => panic!("unexpected analysis metric {other}"),
        }
        for no_data in [&[][..], &[f64::NAN][..]] {
            assert_eq!(
                measure(&metric.success, &metric.failure, no_data),
                Phase::Inconclusive,
                "{}: {no_data:?}",
                metric.name
            );
        }
    }
}

#[test]
fn analysis_judges_the_canary_pods_alone_and_no_traffic_is_inconclusive() {
    // Three ReplicaSets' pods, one process each, and one pod that only ever
    // got three pings.
    let stable = ponger("initial");
    let canary = ponger("errors");
    let slow = ponger("slow");
    let idle = ponger("best");
    let pinger = Service::pinger(
        &format!(
            "{},{},{}",
            stable.url("/ping"),
            canary.url("/ping"),
            slow.url("/ping")
        ),
        "60",
        &[],
        &[],
    );
    let client = testkit::http_client();
    for _ in 0..3 {
        client
            .get(idle.url("/ping"))
            .send()
            .expect("ping the idle pod");
    }

    let (stable_hash, canary_hash, slow_hash, idle_hash) =
        ("5c8d7b6f9", "7d9f6c5b4", "6b5c4d3e2", "84f7d9c6b");
    let groups = vec![
        discovered_pod(
            &stable.address().to_string(),
            "ponger-5c8d7b6f9-aaaaa",
            "ponger",
            "initial",
            Some(stable_hash),
            "http",
        ),
        // The pod label says one thing, the binary another: series get the
        // pod's version, ponger_build_info keeps the binary's (honor_labels).
        discovered_pod(
            &canary.address().to_string(),
            "ponger-7d9f6c5b4-bbbbb",
            "ponger",
            "errors-pod-label",
            Some(canary_hash),
            "http",
        ),
        discovered_pod(
            &slow.address().to_string(),
            "ponger-6b5c4d3e2-ccccc",
            "ponger",
            "slow",
            Some(slow_hash),
            "http",
        ),
        discovered_pod(
            &idle.address().to_string(),
            "ponger-84f7d9c6b-ddddd",
            "ponger",
            "best",
            Some(idle_hash),
            "http",
        ),
        discovered_pod(
            &pinger.address().to_string(),
            "pinger-6d5f8-eeeee",
            "pinger",
            "1",
            None,
            "metrics",
        ),
        // Not scraped: a port with another name, and a pod not annotated.
        discovered_pod(
            &stable.address().to_string(),
            "ponger-5c8d7b6f9-aaaaa",
            "ponger",
            "initial",
            Some(stable_hash),
            "otlp",
        ),
        {
            let mut pod = discovered_pod(
                &canary.address().to_string(),
                "other-1",
                "other",
                "1",
                None,
                "http",
            );
            pod["labels"]["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] = "false".into();
            pod
        },
    ];
    let prometheus = Prometheus::start_with_config(&k8s_config(groups));

    // Relabelling: exactly the five annotated http/metrics ports, each with
    // the labels the analysis and dashboards rely on.
    let targets = wait_for("five targets up", Duration::from_secs(20), || {
        let targets = prometheus.active_targets();
        (targets.len() == 5 && targets.iter().all(|t| t["health"] == "up")).then_some(targets)
    });
    for target in &targets {
        let labels = &target["labels"];
        for label in ["job", "namespace", "pod", "version"] {
            assert!(
                labels[label].is_string(),
                "target without {label}: {target}"
            );
        }
        assert_eq!(labels["namespace"], NAMESPACE);
        if labels["job"] == "ponger" {
            assert!(labels["rollouts_pod_template_hash"].is_string(), "{target}");
        }
    }
    let build_info = prometheus.query(&format!(
        r#"ponger_build_info{{rollouts_pod_template_hash="{canary_hash}"}}"#
    ));
    assert_eq!(build_info.len(), 1);
    assert_eq!(
        build_info[0]["metric"]["version"], "errors",
        "honor_labels keeps the binary's version"
    );
    let series = prometheus.query(&format!(
        r#"http_requests_total{{rollouts_pod_template_hash="{canary_hash}"}}"#
    ));
    assert!(
        series
            .iter()
            .all(|s| s["metric"]["version"] == "errors-pod-label"),
        "{series:?}"
    );

    // Enough pings per pod for a verdict with a wide statistical margin:
    // at 20 pings/s per pod, 300 pings in the 1m window (see README.md).
    for hash in [stable_hash, canary_hash, slow_hash] {
        wait_for(
            &format!("300 pings to pod {hash}"),
            Duration::from_secs(60),
            || {
                let count = prometheus.query_values(&format!(
                r#"sum(increase(http_requests_total{{rollouts_pod_template_hash="{hash}",handler="/ping"}}[1m]))"#
            ));
                count.first().is_some_and(|&n| n >= 300.0).then_some(())
            },
        );
    }

    let verdicts = |hash: &str| -> BTreeMap<String, (Vec<f64>, Phase)> {
        analysis_metrics(hash)
            .into_iter()
            .map(|metric| {
                let values = prometheus.query_values(&metric.query);
                let phase = measure(&metric.success, &metric.failure, &values);
                (metric.name, (values, phase))
            })
            .collect()
    };

    let stable_verdicts = verdicts(stable_hash);
    let canary_verdicts = verdicts(canary_hash);
    let slow_verdicts = verdicts(slow_hash);
    let idle_verdicts = verdicts(idle_hash);
    let absent_verdicts = verdicts("0000000000");
    let report = format!(
        "stable {stable_verdicts:?}\ncanary {canary_verdicts:?}\nslow {slow_verdicts:?}\nidle {idle_verdicts:?}\nabsent {absent_verdicts:?}"
    );
    assert_eq!(stable_verdicts.len(), 2, "{report}");
    for (name, (values, _)) in stable_verdicts
        .iter()
        .chain(&canary_verdicts)
        .chain(&slow_verdicts)
    {
        assert_eq!(
            values.len(),
            1,
            "{name} returns one value for a pod with traffic\n{report}"
        );
    }
    let phase = |verdicts: &BTreeMap<String, (Vec<f64>, Phase)>, metric: &str| verdicts[metric].1;

    // initial passes both; errors fails the success ratio (judged alone:
    // blended with stable it would be ~0.80); slow fails the latency.
    for (pod, verdicts, metric, expected) in [
        (
            "initial",
            &stable_verdicts,
            "success-ratio",
            Phase::Successful,
        ),
        (
            "initial",
            &stable_verdicts,
            "latency-p90",
            Phase::Successful,
        ),
        ("errors", &canary_verdicts, "success-ratio", Phase::Failed),
        ("errors", &canary_verdicts, "latency-p90", Phase::Successful),
        ("slow", &slow_verdicts, "success-ratio", Phase::Successful),
        ("slow", &slow_verdicts, "latency-p90", Phase::Failed),
    ] {
        assert_eq!(
            phase(verdicts, metric),
            expected,
            "{pod} {metric}\n{report}"
        );
    }
    // The talk's mistake, for contrast: the same success query over every pod
    // (stable, errors and slow blended) passes, hiding the failing canary.
    let blended = analysis_metrics(canary_hash)
        .into_iter()
        .find(|metric| metric.name == "success-ratio")
        .expect("success-ratio");
    let blended_query = blended.query.replace(
        &format!(r#"rollouts_pod_template_hash="{canary_hash}""#),
        r#"rollouts_pod_template_hash=~".+""#,
    );
    let blended_values = prometheus.query_values(&blended_query);
    assert_eq!(
        measure(&blended.success, &blended.failure, &blended_values),
        Phase::Successful,
        "blended {blended_values:?}\n{report}"
    );
    // Three pings, or none at all: neither pass nor failure.
    for verdicts in [&idle_verdicts, &absent_verdicts] {
        for (name, (values, phase)) in verdicts {
            assert!(values.is_empty(), "{name}: {values:?}\n{report}");
            assert_eq!(*phase, Phase::Inconclusive, "{name}\n{report}");
        }
    }
}

#[test]
fn a_canary_slower_than_the_pingers_timeout_fails_the_analysis_rather_than_pausing_it() {
    // Every ping outlasts the pinger's timeout: the pinger gives up on each,
    // and the ponger records each as abandoned (499). Were abandoned pings
    // not recorded, the canary would show no traffic at all: Inconclusive, a
    // pause waiting for a person, rather than an abort.
    let canary = Service::ponger(
        &[
            "--latency",
            "100%2s",
            "--success-percent",
            "100",
            "--drain-delay",
            "0s",
        ],
        &[],
    );
    let pinger = Service::pinger(&canary.url("/ping"), "40", &["--timeout", "300ms"], &[]);
    let canary_hash = "9a8b7c6d5";
    let groups = vec![
        discovered_pod(
            &canary.address().to_string(),
            "ponger-9a8b7c6d5-fffff",
            "ponger",
            "too-slow",
            Some(canary_hash),
            "http",
        ),
        discovered_pod(
            &pinger.address().to_string(),
            "pinger-6d5f8-ggggg",
            "pinger",
            "1",
            None,
            "metrics",
        ),
    ];
    let prometheus = Prometheus::start_with_config(&k8s_config(groups));
    let metrics = analysis_metrics(canary_hash);
    let success_ratio = metrics
        .iter()
        .find(|metric| metric.name == "success-ratio")
        .expect("success-ratio");
    // The query answers once the window holds enough pings for a verdict.
    let values = wait_for(
        "the success ratio of the canary's abandoned pings",
        Duration::from_secs(60),
        || {
            let values = prometheus.query_values(&success_ratio.query);
            (!values.is_empty()).then_some(values)
        },
    );
    let abandoned = prometheus.query_values(&format!(
        r#"sum(http_requests_total{{rollouts_pod_template_hash="{canary_hash}",handler="/ping",code="499"}})"#
    ));
    assert!(
        abandoned.first().is_some_and(|&count| count >= 50.0),
        "abandoned pings counted: {abandoned:?}"
    );
    assert_eq!(values, vec![0.0], "success ratio");
    assert_eq!(
        measure(&success_ratio.success, &success_ratio.failure, &values),
        Phase::Failed,
        "a Failed measurement aborts the rollout (failureLimit 0)"
    );
}
