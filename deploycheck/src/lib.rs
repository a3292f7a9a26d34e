//! Support for the deployment-asset tests in `tests/`: the repository's files
//! (YAML and JSON), rendered kustomize overlays, a real Prometheus that loads
//! the repository's rules, a reader for the PromQL the assets use, and
//! NetworkPolicy semantics to check the policies against the demo's flows.

pub mod netpol;
pub mod promql;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The repository root (the workspace directory).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploycheck is a workspace member")
        .to_path_buf()
}

/// A repository file's text.
pub fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every YAML document in `text`, as JSON values (empty documents skipped).
pub fn yaml_documents(text: &str) -> Vec<Value> {
    rollout_model::yaml_documents(text).unwrap_or_else(|error| panic!("YAML: {error}"))
}

/// A repository YAML file holding one document.
pub fn yaml_file(relative: &str) -> Value {
    let mut documents = yaml_documents(&read(relative));
    assert_eq!(documents.len(), 1, "{relative}: expected one YAML document");
    documents.remove(0)
}

/// A repository JSON file.
pub fn json_file(relative: &str) -> Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// `kubectl kustomize <dir>` (relative to the repository): the rendered
/// objects. Panics when kubectl is missing: the test must not pass silently.
pub fn kustomize(relative: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(relative))
        .output()
        .unwrap_or_else(|error| {
            panic!("kubectl kustomize {relative}: {error} (kubectl must be on PATH)")
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {relative}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    yaml_documents(&String::from_utf8(output.stdout).expect("UTF-8 manifests"))
}

/// Objects of `kind` among `objects`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|object| object["kind"] == kind)
        .collect()
}

/// The one object of `kind` named `name`.
pub fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = of_kind(objects, kind)
        .into_iter()
        .filter(|object| object["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} named {name}");
    found[0]
}

/// Metric names documented for the Argo Rollouts controller (port 8090), from
/// its docs/features/controller-metrics.md (v1.9), with the suffixes the
/// histograms and counters expose.
pub const CONTROLLER_METRICS: &[&str] = &[
    "rollout_info",
    "rollout_info_replicas_available",
    "rollout_info_replicas_unavailable",
    "rollout_info_replicas_desired",
    "rollout_info_replicas_updated",
    "rollout_phase",
    "rollout_reconcile",
    "rollout_reconcile_error",
    "rollout_events_total",
    "experiment_info",
    "experiment_phase",
    "experiment_reconcile",
    "experiment_reconcile_error",
    "analysis_run_info",
    "analysis_run_metric_phase",
    "analysis_run_metric_type",
    "analysis_run_phase",
    "analysis_run_reconcile",
    "analysis_run_reconcile_error",
    "controller_clientset_k8s_request_total",
    "workqueue_adds_total",
    "workqueue_depth",
    "workqueue_queue_duration_seconds",
    "workqueue_work_duration_seconds",
    "workqueue_unfinished_work_seconds",
];

/// Label names of the controller's metrics (namespace and name of the object,
/// plus the per-metric ones listed in its metric definitions).
pub const CONTROLLER_LABELS: &[&str] = &[
    "namespace",
    "name",
    "strategy",
    "traffic_router",
    "phase",
    "metric",
    "type",
    "dry_run",
    "reason",
    "kind",
    "verb",
    "status_code",
];

/// Labels Prometheus itself attaches to every scraped series.
pub const SCRAPE_LABELS: &[&str] = &["job", "instance"];

/// Labels the Kubernetes scrape configuration (prometheus/prometheus-k8s.yml)
/// adds to every discovered pod's series.
pub fn k8s_target_labels() -> Vec<String> {
    let config = yaml_file("prometheus/prometheus-k8s.yml");
    let mut labels: Vec<String> = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .filter(|scrape| scrape.get("kubernetes_sd_configs").is_some())
        .flat_map(|scrape| {
            scrape["relabel_configs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|rule| rule["target_label"].as_str().map(str::to_owned))
        .filter(|label| !label.starts_with("__"))
        .collect();
    labels.extend(SCRAPE_LABELS.iter().map(|label| label.to_string()));
    labels.sort();
    labels.dedup();
    labels
}

/// The Grafana dashboard's panel queries: (panel title, expr, exemplar on).
pub fn dashboard_queries(relative: &str) -> Vec<(String, String, bool)> {
    let dashboard = json_file(relative);
    let mut queries = Vec::new();
    let mut stack: Vec<Value> = dashboard["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested.iter().cloned());
        }
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((
                    panel["title"].as_str().unwrap_or_default().to_owned(),
                    expr.to_owned(),
                    target["exemplar"].as_bool().unwrap_or(false),
                ));
            }
        }
    }
    queries.sort();
    queries
}

/// Substitutes the dashboard's variables as Grafana would: `$target` with its
/// "All" value, `$__rate_interval` with four scrape intervals.
pub fn substitute_dashboard_variables(expr: &str, scrape_interval: Duration) -> String {
    let dashboard = json_file("grafana/dashboards/pingpong.json");
    let mut out = expr.replace(
        "$__rate_interval",
        &format!("{}s", (scrape_interval * 4).as_secs()),
    );
    for variable in dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = variable["name"].as_str().unwrap_or_default();
        if let Some(all) = variable["allValue"].as_str() {
            out = out
                .replace(&format!("${{{name}}}"), all)
                .replace(&format!("${name}"), all);
        }
    }
    assert!(
        !out.contains('$'),
        "unsubstituted dashboard variable left in {out}"
    );
    out
}

/// The absolute glob of the repository's rule files, for `rule_files:`.
pub fn rule_files_glob() -> String {
    format!("{}/prometheus/rules/*.yml", repo().display())
}

/// What the real binaries expose: for each series name, its label names and
/// the values seen per label.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub series: BTreeMap<String, BTreeMap<String, std::collections::BTreeSet<String>>>,
}

impl Catalog {
    pub fn add(&mut self, exposition: &testkit::Exposition) {
        for sample in &exposition.samples {
            let labels = self.series.entry(sample.name.clone()).or_default();
            for (label, value) in &sample.labels {
                labels
                    .entry(label.clone())
                    .or_default()
                    .insert(value.clone());
            }
        }
    }

    pub fn has_metric(&self, name: &str) -> bool {
        self.series.contains_key(name)
    }

    /// Label names of `metric` in the exposition.
    pub fn labels_of(&self, metric: &str) -> Vec<String> {
        self.series
            .get(metric)
            .map(|labels| labels.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `metric` was exposed with `label` = `value`.
    pub fn has_value(&self, metric: &str, label: &str, value: &str) -> bool {
        self.series
            .get(metric)
            .and_then(|labels| labels.get(label))
            .is_some_and(|values| values.contains(value))
    }
}

/// Runs the real ponger (profile `initial`) and pinger against it until the
/// pinger has recorded both successful and failed pings, then reads both
/// `/metrics` pages (classic text format).
pub fn real_exposition() -> Catalog {
    let ponger = testkit::Service::ponger(
        &[
            "--latency",
            "100%5ms",
            "--success-percent",
            "70",
            "--drain-delay",
            "0s",
        ],
        &[],
    );
    let pinger = testkit::Service::pinger(&ponger.url("/ping"), "50", &[], &[]);
    testkit::wait_for(
        "the pinger to record successful and failed pings",
        Duration::from_secs(20),
        || {
            let page = testkit::scrape(&pinger.url("/metrics"), false);
            let ok = page.sum("http_client_requests_total", &[("code", "200")]);
            let failed = page.sum("http_client_requests_total", &[("code", "500")]);
            (ok >= 10.0 && failed >= 3.0).then_some(())
        },
    );
    let mut catalog = Catalog::default();
    catalog.add(&testkit::scrape(&ponger.url("/metrics"), false));
    catalog.add(&testkit::scrape(&pinger.url("/metrics"), false));
    catalog
}
