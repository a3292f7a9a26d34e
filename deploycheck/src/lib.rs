//! Support for the deployment-asset tests in `tests/`: the repository's files
//! (YAML and JSON), rendered kustomize overlays, a real Prometheus that loads
//! the repository's rules, a reader for the PromQL the assets use, and an
//! evaluator for the Argo Rollouts conditions the AnalysisTemplate uses.

pub mod conditions;
pub mod promql;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            serde::Deserialize::deserialize(document).unwrap_or_else(|error| panic!("YAML: {error}"))
        })
        .filter(|value: &Value| !value.is_null())
        .collect()
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
    objects.iter().filter(|object| object["kind"] == kind).collect()
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
        .flat_map(|scrape| scrape["relabel_configs"].as_array().cloned().unwrap_or_default())
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
    for variable in dashboard["templating"]["list"].as_array().cloned().unwrap_or_default() {
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

/// Resolves `{{args.NAME}}` like Argo Rollouts does; panics on an unknown one.
pub fn resolve_args(template: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed {{") + start;
        let tag = rest[start + 2..end].trim();
        let name = tag
            .strip_prefix("args.")
            .unwrap_or_else(|| panic!("unknown template tag {{{{{tag}}}}}"));
        let value = args
            .get(name)
            .unwrap_or_else(|| panic!("argument {name} was not supplied"));
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Every `{{args.NAME}}` name used in `text`.
pub fn used_args(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").expect("closed {{") + start;
        if let Some(name) = rest[start + 2..end].trim().strip_prefix("args.") {
            names.push(name.to_owned());
        }
        rest = &rest[end + 2..];
    }
    names.sort();
    names.dedup();
    names
}

/// A real Prometheus started with a complete configuration file (global
/// settings, the repository's rule files, scrape configurations), exemplar
/// storage and the remote-write receiver on, as the deployments run it.
pub struct RulesPrometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl RulesPrometheus {
    /// `config` is the whole prometheus.yml. Waits until Prometheus is ready.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = testkit::prometheus::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(testkit::prometheus::executable())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Self {
            child,
            base,
            _dir: dir,
        };
        let client = testkit::http_client();
        testkit::wait_for("Prometheus to be ready", Duration::from_secs(30), || {
            client
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .ok()
                .filter(|response| response.status().is_success())
        });
        prometheus
    }

    /// The `status`/`data`/`error` answer of an API call, whatever its status.
    pub fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        testkit::http_client()
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .unwrap_or_else(|error| panic!("Prometheus API {path}: {error}"))
            .json()
            .expect("Prometheus answers JSON")
    }

    /// An instant query: `Ok(result)` or `Err(error message)`.
    pub fn try_query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let body = self.api("/api/v1/query", &[("query", promql.to_owned())]);
        if body["status"] == "success" {
            Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query that must succeed.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        self.try_query(promql)
            .unwrap_or_else(|error| panic!("query {promql}: {error}"))
    }

    /// The values of an instant query's vector, as Argo Rollouts hands them
    /// to its conditions.
    pub fn query_values(&self, promql: &str) -> Vec<f64> {
        self.query(promql)
            .iter()
            .map(|sample| {
                let text = sample["value"][1].as_str().expect("sample value");
                text.parse().unwrap_or_else(|_| panic!("value {text}"))
            })
            .collect()
    }

    /// `/api/v1/query_exemplars` over the last `window`: the series groups.
    pub fn query_exemplars(&self, promql: &str, window: Duration) -> Result<Vec<Value>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        let body = self.api(
            "/api/v1/query_exemplars",
            &[
                ("query", promql.to_owned()),
                ("start", format!("{:.3}", now - window.as_secs_f64())),
                ("end", format!("{now:.3}")),
            ],
        );
        if body["status"] == "success" {
            Ok(body["data"].as_array().cloned().unwrap_or_default())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// `/api/v1/rules`: every rule, with its health and last error.
    pub fn rules(&self) -> Vec<Value> {
        let body = self.api("/api/v1/rules", &[]);
        body["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// `/api/v1/targets`' active targets.
    pub fn active_targets(&self) -> Vec<Value> {
        self.api("/api/v1/targets", &[])["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for RulesPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The absolute glob of the repository's rule files, for `rule_files:`.
pub fn rule_files_glob() -> String {
    format!("{}/prometheus/rules/*.yml", repo().display())
}
