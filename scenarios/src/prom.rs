//! A real Prometheus for the rehearsal. Its configuration is the Kubernetes
//! one from the manifests (prometheus/prometheus-k8s.yml, via the ConfigMap
//! generator) with two changes: pod discovery reads a file that the rehearsal
//! keeps up to date with the replicas, each carrying the `__meta_kubernetes_*`
//! labels Kubernetes discovery would give that pod, so that the configuration's
//! own relabeling produces `job`, `namespace`, `pod`, `version` and
//! `rollouts_pod_template_hash`; and every interval and timeout is divided by
//! the time scale. Jobs that do not discover pods (the Argo Rollouts
//! controller) are left out: there is no controller here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promql_parser::parser::{Expr, Offset};
use serde_json::{Map, Value, json};

use crate::analysis::scaled;
use crate::plan::{go_duration, parse_duration};
use crate::procs::Proc;
use launcher::prometheus::sample_value;
use rollout_model::Input;

/// A pod as Kubernetes discovery would present it.
#[derive(Clone, Debug)]
pub struct PodTarget {
    pub namespace: String,
    pub pod: String,
    pub address: std::net::SocketAddr,
    /// The pod template (labels, annotations, container ports).
    pub template: Value,
    pub extra_labels: BTreeMap<String, String>,
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl PodTarget {
    fn discovery_labels(&self) -> Value {
        let mut labels = BTreeMap::new();
        labels.insert(
            "__meta_kubernetes_namespace".to_owned(),
            self.namespace.clone(),
        );
        labels.insert("__meta_kubernetes_pod_name".to_owned(), self.pod.clone());
        labels.insert(
            "__meta_kubernetes_pod_phase".to_owned(),
            "Running".to_owned(),
        );
        labels.insert("__meta_kubernetes_pod_ready".to_owned(), "true".to_owned());
        labels.insert(
            "__meta_kubernetes_pod_ip".to_owned(),
            self.address.ip().to_string(),
        );
        let container = &self.template["spec"]["containers"][0];
        labels.insert(
            "__meta_kubernetes_pod_container_name".to_owned(),
            container["name"].as_str().unwrap_or_default().to_owned(),
        );
        if let Some(port) = container["ports"].get(0) {
            labels.insert(
                "__meta_kubernetes_pod_container_port_name".to_owned(),
                port["name"].as_str().unwrap_or_default().to_owned(),
            );
            labels.insert(
                "__meta_kubernetes_pod_container_port_number".to_owned(),
                self.address.port().to_string(),
            );
            labels.insert(
                "__meta_kubernetes_pod_container_port_protocol".to_owned(),
                port["protocol"].as_str().unwrap_or("TCP").to_owned(),
            );
        }
        self.metadata_labels(&mut labels);
        json!({"targets": [self.address.to_string()], "labels": labels})
    }

    /// The pod's labels and annotations, as Kubernetes service discovery names them.
    fn metadata_labels(&self, labels: &mut BTreeMap<String, String>) {
        let mut pod_labels: BTreeMap<String, String> = self.template["metadata"]["labels"]
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .map(|(key, value)| {
                        (key.clone(), value.as_str().unwrap_or_default().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        pod_labels.extend(self.extra_labels.clone());
        for (key, value) in pod_labels {
            labels.insert(
                format!("__meta_kubernetes_pod_label_{}", sanitize(&key)),
                value,
            );
            labels.insert(
                format!("__meta_kubernetes_pod_labelpresent_{}", sanitize(&key)),
                "true".to_owned(),
            );
        }
        if let Some(annotations) = self.template["metadata"]["annotations"].as_object() {
            for (key, value) in annotations {
                labels.insert(
                    format!("__meta_kubernetes_pod_annotation_{}", sanitize(key)),
                    value.as_str().unwrap_or_default().to_owned(),
                );
                labels.insert(
                    format!("__meta_kubernetes_pod_annotationpresent_{}", sanitize(key)),
                    "true".to_owned(),
                );
            }
        }
    }
}

/// Writes the discovery file atomically (Prometheus watches it).
pub fn write_targets(path: &Path, targets: &[PodTarget]) -> Result<(), String> {
    let groups: Vec<Value> = targets.iter().map(PodTarget::discovery_labels).collect();
    let temporary = path.with_extension("tmp");
    std::fs::write(
        &temporary,
        serde_json::to_vec_pretty(&groups).unwrap_or_default(),
    )
    .and_then(|()| std::fs::rename(&temporary, path))
    .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn scale_field(
    map: &mut serde_json::Map<String, Value>,
    key: &str,
    scale: f64,
) -> Result<(), String> {
    if let Some(Value::String(text)) = map.get(key) {
        let duration = parse_duration(text)?;
        let scaled = scaled(duration, scale).max(Duration::from_millis(100));
        map.insert(key.to_owned(), Value::String(go_duration(round_ms(scaled))));
    }
    Ok(())
}

fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// Scales the global intervals (Prometheus' defaults where absent); returns
/// the scrape interval.
fn scale_global(root: &mut Map<String, Value>, scale: f64) -> Result<Duration, String> {
    let global = root
        .entry("global")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("global is not a mapping")?;
    global
        .entry("scrape_interval")
        .or_insert_with(|| json!("1m"));
    global
        .entry("scrape_timeout")
        .or_insert_with(|| json!("10s"));
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        scale_field(global, key, scale)?;
    }
    parse_duration(global["scrape_interval"].as_str().unwrap_or("1m"))
}

/// The rehearsal's configuration from the Kubernetes one.
pub fn rehearsal_config(
    kubernetes: &Value,
    targets_file: &Path,
    scale: f64,
) -> Result<(Value, Vec<String>), String> {
    let mut config = kubernetes.clone();
    let Some(root) = config.as_object_mut() else {
        return Err("the Prometheus configuration is not a mapping".to_owned());
    };
    root.remove("rule_files");
    root.remove("alerting");
    root.remove("remote_write");
    let interval = scale_global(root, scale)?;
    let mut left_out = Vec::new();
    let mut jobs = Vec::new();
    for job in root
        .get("scrape_configs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let discovers_pods = job["kubernetes_sd_configs"]
            .as_array()
            .is_some_and(|configs| configs.iter().any(|config| config["role"] == "pod"));
        let name = job["job_name"].as_str().unwrap_or_default().to_owned();
        if !discovers_pods {
            left_out.push(name);
            continue;
        }
        let mut job = job.as_object().cloned().unwrap_or_default();
        job.remove("kubernetes_sd_configs");
        job.insert(
            "file_sd_configs".to_owned(),
            json!([{"files": [targets_file.display().to_string()], "refresh_interval": go_duration(round_ms(interval.max(Duration::from_secs(1))))}]),
        );
        scale_field(&mut job, "scrape_interval", scale)?;
        scale_field(&mut job, "scrape_timeout", scale)?;
        jobs.push(Value::Object(job));
    }
    if jobs.is_empty() {
        return Err(
            "the Prometheus configuration has no job with Kubernetes pod discovery".to_owned(),
        );
    }
    root.insert("scrape_configs".to_owned(), Value::Array(jobs));
    Ok((config, left_out))
}

pub struct Prometheus {
    pub proc: Proc,
    pub base: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus with `config` (its TSDB in `dir`) and waits until it
    /// is ready.
    pub async fn start(executable: &Path, dir: &Path, config: &Value) -> Result<Self, String> {
        let config = serde_json::to_string_pretty(config).unwrap_or_default();
        let (launch, address) = launcher::prometheus::launch(executable, dir, &config)
            .map_err(|error| error.to_string())?;
        let mut proc = Proc::start(launch)?;
        proc.wait_http_ok(
            address,
            launcher::prometheus::READY_PATH,
            launcher::prometheus::READY_TIMEOUT,
        )
        .await?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            proc,
            base: format!("http://{address}"),
            client,
        })
    }

    /// An instant query, converted as Argo Rollouts' Prometheus provider does.
    pub async fn query(&self, query: &str, timeout: Duration) -> Result<(Input, String), String> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| format!("Prometheus query failed: {error}"))?;
        let body: Value = response
            .json()
            .await
            .map_err(|error| format!("Prometheus answered no JSON: {error}"))?;
        let data = launcher::prometheus::api_data(body)
            .map_err(|error| format!("Prometheus query error: {error}"))?;
        match data["resultType"].as_str() {
            Some("vector") => {
                let values: Vec<f64> = data["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|sample| sample_value(&sample["value"][1]))
                    .collect();
                let text = format!(
                    "[{}]",
                    values
                        .iter()
                        .map(|value| format_value(*value))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                Ok((Input::Vector(values), text))
            }
            Some("scalar") => {
                let value = sample_value(&data["result"][1]);
                Ok((Input::Scalar(value), format_value(value)))
            }
            other => Err(format!(
                "Prometheus metric type not supported: {}",
                other.unwrap_or("none")
            )),
        }
    }

    /// How many targets of `job` are up.
    pub async fn up(&self, job: &str) -> usize {
        match self
            .query(&format!("sum(up{{job=\"{job}\"}})"), Duration::from_secs(2))
            .await
        {
            Ok((Input::Vector(values), _)) => values.first().copied().unwrap_or(0.0) as usize,
            _ => 0,
        }
    }
}

pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        }
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Divides every range, subquery step and offset of a PromQL query by
/// `scale` (at least 1 ms each). The query is parsed and printed again by
/// promql-parser: the same query, in Prometheus' own spelling (matchers
/// sorted, spaces normalised).
pub fn scale_promql(query: &str, scale: f64) -> Result<String, String> {
    if (scale - 1.0).abs() < f64::EPSILON {
        return Ok(query.to_owned());
    }
    let mut expr = promql_parser::parser::parse(query)
        .map_err(|error| format!("the query does not parse: {error}"))?;
    let shorten =
        |duration: Duration| round_ms(scaled(duration, scale).max(Duration::from_millis(1)));
    scale_expr(&mut expr, &shorten);
    Ok(expr.to_string())
}

fn scale_expr(expr: &mut Expr, shorten: &dyn Fn(Duration) -> Duration) {
    let offset = |offset: &mut Option<Offset>| {
        *offset = offset.take().map(|offset| match offset {
            Offset::Pos(duration) => Offset::Pos(shorten(duration)),
            Offset::Neg(duration) => Offset::Neg(shorten(duration)),
        });
    };
    match expr {
        Expr::Aggregate(aggregate) => {
            scale_expr(&mut aggregate.expr, shorten);
            if let Some(param) = aggregate.param.as_mut() {
                scale_expr(param, shorten);
            }
        }
        Expr::Unary(unary) => scale_expr(&mut unary.expr, shorten),
        Expr::Binary(binary) => {
            scale_expr(&mut binary.lhs, shorten);
            scale_expr(&mut binary.rhs, shorten);
        }
        Expr::Paren(paren) => scale_expr(&mut paren.expr, shorten),
        Expr::Subquery(subquery) => {
            subquery.range = shorten(subquery.range);
            subquery.step = subquery.step.map(shorten);
            offset(&mut subquery.offset);
            scale_expr(&mut subquery.expr, shorten);
        }
        Expr::VectorSelector(selector) => offset(&mut selector.offset),
        Expr::MatrixSelector(selector) => {
            selector.range = shorten(selector.range);
            offset(&mut selector.vs.offset);
        }
        Expr::Call(call) => {
            for arg in call.args.args.iter_mut() {
                scale_expr(arg, shorten);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_ranges_but_not_strings() {
        let query =
            r#"sum(rate(x{code=~"[45]..", a="[1m]"}[1m])) / sum(rate(y[5m:30s] offset 2m))"#;
        assert_eq!(
            scale_promql(query, 10.0).unwrap(),
            r#"sum(rate(x{a="[1m]",code=~"[45].."}[6s])) / sum(rate(y[30s:3s] offset 12s))"#
        );
        assert_eq!(scale_promql(query, 1.0).unwrap(), query);
        assert_eq!(
            scale_promql("rate(x[1m30s])", 4.0).unwrap(),
            "rate(x[22s500ms])"
        );
        assert_eq!(
            scale_promql("max_over_time(rate(x[1m] offset -30s)[5m:] @ end())", 10.0).unwrap(),
            "max_over_time(rate(x[6s] offset -3s)[30s:] @ end())"
        );
        assert!(scale_promql("rate(x[1m]", 10.0).is_err());
    }

    #[test]
    fn config_keeps_relabeling_and_scales() {
        let kubernetes: Value = serde_norway::from_str(
            "global: {scrape_interval: 10s, scrape_timeout: 5s}\nrule_files: [x]\nscrape_configs:\n- job_name: pods\n  honor_labels: true\n  kubernetes_sd_configs: [{role: pod}]\n  relabel_configs: [{source_labels: [a], target_label: b}]\n- job_name: argo\n  static_configs: [{targets: [x:1]}]\n",
        )
        .unwrap();
        let (config, left_out) =
            rehearsal_config(&kubernetes, Path::new("/t/targets.json"), 10.0).unwrap();
        assert_eq!(config["global"]["scrape_interval"], "1s");
        assert_eq!(config["global"]["scrape_timeout"], "500ms");
        assert!(config.get("rule_files").is_none());
        assert_eq!(left_out, vec!["argo".to_owned()]);
        let job = &config["scrape_configs"][0];
        assert_eq!(job["relabel_configs"][0]["target_label"], "b");
        assert_eq!(job["file_sd_configs"][0]["files"][0], "/t/targets.json");
        assert!(job.get("kubernetes_sd_configs").is_none());
    }
}
