//! What the rehearsal plays, read from the manifests: the canary Rollout
//! (replicas, pod template, steps, background analysis and its arguments),
//! its AnalysisTemplates, the pinger Deployment and the Prometheus
//! configuration. Nothing here is a default of the rehearsal's own: every
//! number comes from the manifests, or from Argo Rollouts' documented defaults.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::manifests::{self, Rendered, split_image};
use rollout_model::Args;
use rollout_model::condition::Condition;
use rollout_model::model::{
    AnalysisArg, AnalysisTemplate, CanaryStep, CanaryStrategy, ConfigMap, Deployment, IntOrString,
    Metric, PodTemplate, Rollout, TemplateRef, from_value,
};

pub type Error = String;

/// The ponger versions: the profiles, which are also the image tags built by
/// docker-bake.hcl (a test checks both lists agree).
pub const VERSIONS: [&str; 4] = ["initial", "errors", "slow", "best"];

/// Argo Rollouts' defaults (analysis/analysis.go, utils/defaults).
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i64 = 4;
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    SetWeight(u32),
    /// `None`: a pause that waits for a person (`kubectl argo rollouts promote`).
    Pause(Option<Duration>),
    /// An inline analysis: the step ends when its run completes.
    Analysis(Box<AnalysisSpec>),
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::SetWeight(weight) => format!("setWeight {weight}"),
            Step::Pause(Some(duration)) => format!("pause {}", go_duration(*duration)),
            Step::Pause(None) => "pause (until promoted)".to_owned(),
            Step::Analysis(spec) => format!("analysis {}", spec.templates.join("+")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    pub interval: Option<Duration>,
    pub initial_delay: Option<Duration>,
    pub count: Option<i64>,
    pub failure_limit: i64,
    pub inconclusive_limit: i64,
    pub consecutive_error_limit: i64,
    pub success: Option<Condition>,
    pub failure: Option<Condition>,
    pub query: String,
    pub address: String,
    pub timeout: Duration,
    pub dry_run: bool,
}

impl MetricSpec {
    /// Argo's EffectiveCount: without an interval a metric is measured once.
    pub fn effective_count(&self) -> Option<i64> {
        match (self.count, self.interval) {
            (Some(count), _) if count > 0 => Some(count),
            (_, None) => Some(1),
            _ => None,
        }
    }
}

/// One AnalysisRun's specification: the metrics of its templates, arguments resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisSpec {
    pub label: String,
    pub templates: Vec<String>,
    pub metrics: Vec<MetricSpec>,
}

#[derive(Clone, Debug)]
pub struct PingerSettings {
    pub rate: f64,
    pub target_name: String,
    pub timeout: Option<String>,
    pub template: Value,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub source: String,
    pub namespace: String,
    pub rollout_name: String,
    pub replicas: u32,
    pub template: Value,
    pub image_name: String,
    pub stable_version: String,
    pub canary_version: String,
    pub stable_hash: String,
    pub canary_hash: String,
    pub steps: Vec<Step>,
    pub starting_step: Option<usize>,
    pub analysis: Option<AnalysisSpec>,
    pub rollout_args: Vec<AnalysisArg>,
    pub drain_delay: Option<String>,
    pub grace_period: Duration,
    pub readiness_period: Duration,
    pub pinger: PingerSettings,
    pub prometheus_config: Value,
    rendered: Rendered,
}

impl Plan {
    pub fn load(manifests: &Path, version: &str) -> Result<Self, Error> {
        if !VERSIONS.contains(&version) {
            return Err(format!(
                "unknown version {version:?}: expected one of {} (the ponger image tags built by docker-bake.hcl)",
                VERSIONS.join(", ")
            ));
        }
        let rendered = manifests::render(manifests)?;
        Self::from_rendered(rendered, manifests.display().to_string(), version)
    }

    /// The plan of already rendered manifests; `source` names them in errors.
    pub fn from_rendered(rendered: Rendered, source: String, version: &str) -> Result<Self, Error> {
        let (rollout, canary) = canary_rollout(&rendered, &source)?;
        let rollout_name = rollout.metadata.name.clone();
        let namespace = rollout
            .metadata
            .namespace
            .clone()
            .or(rendered.namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        let template = rollout.spec.template.clone();
        let pod: PodTemplate = serde_json::from_value(template.clone())
            .map_err(|error| format!("{source}: Rollout {rollout_name} pod template: {error}"))?;
        let container = pod
            .spec
            .containers
            .first()
            .ok_or_else(|| format!("{source}: Rollout {rollout_name} has no container"))?;
        let (image_name, tag) = split_image(&container.image);
        let stable_version = tag.unwrap_or("latest").to_owned();
        if !VERSIONS.contains(&stable_version.as_str()) {
            return Err(format!(
                "{source}: the Rollout's image {} is not one of the ponger versions {}",
                container.image,
                VERSIONS.join(", ")
            ));
        }
        let image_name = image_name.to_owned();
        let (stable_hash, canary_hash) = hashes(&template, &image_name, version);
        let plan = Self {
            namespace,
            replicas: rollout.spec.replicas.unwrap_or(1),
            image_name,
            stable_version,
            canary_version: version.to_owned(),
            stable_hash,
            canary_hash,
            steps: Vec::new(),
            starting_step: None,
            analysis: None,
            rollout_args: Vec::new(),
            drain_delay: container.env_value("PONGER_DRAIN_DELAY").map(str::to_owned),
            grace_period: Duration::from_secs(
                pod.spec.termination_grace_period_seconds.unwrap_or(30),
            ),
            readiness_period: Duration::from_secs(
                container
                    .readiness_probe
                    .as_ref()
                    .and_then(|probe| probe.period_seconds)
                    .unwrap_or(10),
            ),
            pinger: pinger_settings(&rendered, &source)?,
            prometheus_config: prometheus_config(&rendered, &source)?,
            template,
            rollout_name,
            source,
            rendered,
        };
        plan.with_steps(canary)
    }

    /// The background analysis and the steps of the canary strategy.
    fn with_steps(mut self, canary: CanaryStrategy) -> Result<Self, Error> {
        if let Some(analysis) = canary.analysis {
            self.starting_step = Some(analysis.starting_step.unwrap_or(0));
            self.rollout_args = analysis.analysis.args.clone();
            let templates = self.referenced_templates(&analysis.analysis.templates)?;
            self.analysis = Some(self.analysis_spec("ours", &templates)?);
        }
        self.steps = canary
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| self.step(index, step))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self)
    }

    fn step(&self, index: usize, step: &CanaryStep) -> Result<Step, Error> {
        let Some(analysis) = &step.analysis else {
            return parse_step(index, step).map_err(|error| format!("{}: {error}", self.source));
        };
        let templates = self.referenced_templates(&analysis.templates)?;
        let spec = self
            .analysis_spec_with_args(&format!("step {}", index + 1), &templates, &analysis.args)
            .map_err(|error| format!("{}: step {index}: {error}", self.source))?;
        Ok(Step::Analysis(Box::new(spec)))
    }

    fn referenced_templates(
        &self,
        references: &[TemplateRef],
    ) -> Result<Vec<AnalysisTemplate>, Error> {
        references
            .iter()
            .map(|reference| self.referenced_template(reference))
            .collect()
    }

    fn referenced_template(&self, reference: &TemplateRef) -> Result<AnalysisTemplate, Error> {
        let (kind, name) = reference.target().ok_or_else(|| {
            format!(
                "{}: an analysis template reference without a name",
                self.source
            )
        })?;
        let object = self.rendered.named(kind, name).ok_or_else(|| {
            format!(
                "{}: the Rollout refers to {kind} {name}, which is not in the manifests",
                self.source
            )
        })?;
        from_value(object).map_err(|error| format!("{}: {error}", self.source))
    }

    /// The canary's pod template: the new image tag and version label.
    pub fn canary_template(&self) -> Value {
        versioned_template(&self.template, &self.image_name, &self.canary_version)
    }

    /// An AnalysisSpec from AnalysisTemplates, with the Rollout's arguments
    /// (as Argo Rollouts passes them to the AnalysisRun).
    pub fn analysis_spec(
        &self,
        label: &str,
        templates: &[AnalysisTemplate],
    ) -> Result<AnalysisSpec, Error> {
        self.analysis_spec_with_args(label, templates, &self.rollout_args)
    }

    /// The same with the arguments an inline analysis step passes.
    fn analysis_spec_with_args(
        &self,
        label: &str,
        templates: &[AnalysisTemplate],
        args: &[AnalysisArg],
    ) -> Result<AnalysisSpec, Error> {
        let mut values = Args::new();
        for template in templates {
            for arg in &template.spec.args {
                let value = self.arg_value(arg, &template.metadata.name)?;
                let entry = values.entry(arg.name.clone()).or_insert(None);
                if value.is_some() {
                    *entry = value;
                }
            }
        }
        for arg in args {
            values.insert(arg.name.clone(), self.arg_value(arg, &self.rollout_name)?);
        }
        // The run's dryRun is the union of its templates'.
        let dry_run: Vec<&str> = templates
            .iter()
            .flat_map(|template| &template.spec.dry_run)
            .map(|entry| entry.metric_name.as_str())
            .collect();
        let mut seen = BTreeSet::new();
        let mut metrics = Vec::new();
        for template in templates {
            let name = &template.metadata.name;
            for metric in &template.spec.metrics {
                let spec = metric
                    .resolved(&values)
                    .and_then(|metric| metric_spec(&metric, &dry_run))
                    .map_err(|error| format!("AnalysisTemplate {name}: {error}"))?;
                if !seen.insert(spec.name.clone()) {
                    return Err(format!(
                        "AnalysisTemplate {name}: metric {} is defined twice",
                        spec.name
                    ));
                }
                metrics.push(spec);
            }
        }
        let names: Vec<String> = templates
            .iter()
            .map(|template| template.metadata.name.clone())
            .collect();
        if metrics.is_empty() {
            return Err(format!(
                "AnalysisTemplate(s) {}: no metrics",
                names.join(", ")
            ));
        }
        Ok(AnalysisSpec {
            label: label.to_owned(),
            templates: names,
            metrics,
        })
    }

    fn arg_value(&self, arg: &AnalysisArg, owner: &str) -> Result<Option<String>, Error> {
        let name = &arg.name;
        if let Some(value) = &arg.value {
            return Ok(Some(value.clone()));
        }
        let Some(from) = &arg.value_from else {
            return Ok(None);
        };
        if let Some(which) = &from.pod_template_hash_value {
            return match which.as_str() {
                "Latest" => Ok(Some(self.canary_hash.clone())),
                "Stable" => Ok(Some(self.stable_hash.clone())),
                other => Err(format!(
                    "{owner}: argument {name}: podTemplateHashValue {other:?} is not Latest or Stable"
                )),
            };
        }
        if let Some(field) = &from.field_ref {
            return match field.field_path.as_str() {
                "metadata.namespace" => Ok(Some(self.namespace.clone())),
                "metadata.name" => Ok(Some(self.rollout_name.clone())),
                other => Err(format!(
                    "{owner}: argument {name}: fieldRef {other} is not supported by the rehearsal (metadata.namespace, metadata.name)"
                )),
            };
        }
        Err(format!(
            "{owner}: argument {name}: valueFrom {} is not supported by the rehearsal (podTemplateHashValue, fieldRef)",
            from.other.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// The only Rollout with a canary strategy.
fn canary_rollout(rendered: &Rendered, source: &str) -> Result<(Rollout, CanaryStrategy), Error> {
    let mut canaries = Vec::new();
    for object in rendered.of_kind("Rollout") {
        let rollout: Rollout = from_value(object).map_err(|error| format!("{source}: {error}"))?;
        if let Some(canary) = rollout.spec.strategy.canary.clone() {
            canaries.push((rollout, canary));
        }
    }
    match canaries.len() {
        1 => Ok(canaries.remove(0)),
        0 => Err(format!("{source}: no Rollout with a canary strategy")),
        _ => Err(format!("{source}: more than one canary Rollout")),
    }
}

/// The stable and the canary pod-template hashes.
fn hashes(template: &Value, image_name: &str, version: &str) -> (String, String) {
    let stable_hash = pod_template_hash(template);
    let canary_template = versioned_template(template, image_name, version);
    let mut canary_hash = pod_template_hash(&canary_template);
    if canary_hash == stable_hash {
        // Same template: Argo Rollouts would not start a rollout at all;
        // the rehearsal still plays one, with a distinct ReplicaSet.
        canary_hash = pod_template_hash(&serde_json::json!([canary_template, "rehearsal"]));
    }
    (stable_hash, canary_hash)
}

fn versioned_template(template: &Value, image_name: &str, version: &str) -> Value {
    let mut template = template.clone();
    template["spec"]["containers"][0]["image"] = Value::String(format!("{image_name}:{version}"));
    if template["metadata"]["labels"]["app.kubernetes.io/version"].is_string() {
        template["metadata"]["labels"]["app.kubernetes.io/version"] =
            Value::String(version.to_owned());
    }
    template
}

fn parse_step(index: usize, step: &CanaryStep) -> Result<Step, Error> {
    if let Some(weight) = &step.set_weight {
        let weight = weight
            .as_int()
            .ok()
            .filter(|weight| (0..=100).contains(weight))
            .ok_or_else(|| format!("setWeight {weight:?} is not a percentage"))?;
        return Ok(Step::SetWeight(weight as u32));
    }
    if let Some(pause) = &step.pause {
        return Ok(Step::Pause(match &pause.duration {
            None => None,
            Some(IntOrString::Int(seconds)) => Some(Duration::from_secs((*seconds).max(0) as u64)),
            Some(IntOrString::String(text)) => Some(match text.parse::<u64>() {
                Ok(seconds) => Duration::from_secs(seconds),
                Err(_) => parse_duration(text)?,
            }),
        }));
    }
    Err(format!(
        "canary step {index} ({}) is not supported by the rehearsal (setWeight, pause, analysis and background analysis only)",
        step.other.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

fn pinger_settings(rendered: &Rendered, source: &str) -> Result<PingerSettings, Error> {
    let mut found = None;
    for object in rendered.of_kind("Deployment") {
        let deployment: Deployment =
            from_value(object).map_err(|error| format!("{source}: {error}"))?;
        let pod: PodTemplate =
            serde_json::from_value(deployment.spec.template.clone()).map_err(|error| {
                format!("{source}: Deployment {}: {error}", deployment.metadata.name)
            })?;
        if pod
            .spec
            .containers
            .iter()
            .any(|container| split_image(&container.image).0.ends_with("pinger"))
        {
            found = Some((deployment, pod));
            break;
        }
    }
    let (deployment, pod) = found.ok_or_else(|| format!("{source}: no pinger Deployment"))?;
    let container = pod.spec.containers.first().cloned().unwrap_or_default();
    let rate = match container.env_value("PINGER_RATE") {
        Some(rate) => rate
            .parse::<f64>()
            .map_err(|_| format!("{source}: PINGER_RATE {rate:?} is not a number"))?,
        None => 10.0,
    };
    Ok(PingerSettings {
        rate,
        target_name: container
            .env_value("PINGER_TARGET_NAME")
            .unwrap_or("ping")
            .to_owned(),
        timeout: container.env_value("PINGER_TIMEOUT").map(str::to_owned),
        template: deployment.spec.template,
    })
}

/// The Prometheus configuration among the ConfigMaps: the one whose scrape
/// configs discover pods.
fn prometheus_config(rendered: &Rendered, source: &str) -> Result<Value, Error> {
    for object in rendered.of_kind("ConfigMap") {
        let config_map: ConfigMap =
            from_value(object).map_err(|error| format!("{source}: {error}"))?;
        for (key, text) in &config_map.data {
            if !text.contains("kubernetes_sd_configs") {
                continue;
            }
            let origin = format!("ConfigMap {} key {key}", config_map.metadata.name);
            let documents = manifests::yaml_documents(text, Path::new(&origin))?;
            if let Some(config) = documents.into_iter().next() {
                return Ok(config);
            }
        }
    }
    Err(format!(
        "{source}: no Prometheus configuration with Kubernetes pod discovery among the ConfigMaps"
    ))
}

fn metric_spec(metric: &Metric, dry_run: &[&str]) -> Result<MetricSpec, Error> {
    let name = metric.name.clone();
    let context = |what: &str| format!("metric {name}: {what}");
    let duration = |key: &str, text: &Option<String>| -> Result<Option<Duration>, Error> {
        match text.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => parse_duration(text)
                .map(Some)
                .map_err(|error| context(&format!("{key}: {error}"))),
        }
    };
    let int = |key: &str, value: &Option<IntOrString>| -> Result<Option<i64>, Error> {
        value
            .as_ref()
            .map(|value| {
                value
                    .as_int()
                    .map_err(|error| context(&format!("{key} {error}")))
            })
            .transpose()
    };
    let condition = |key: &str, text: &Option<String>| -> Result<Option<Condition>, Error> {
        match text.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => Condition::parse(text)
                .map(Some)
                .map_err(|error| context(&format!("{key}: {error}"))),
        }
    };
    let prometheus = metric.provider.prometheus.as_ref().ok_or_else(|| {
        let providers: Vec<&str> = metric.provider.other.keys().map(String::as_str).collect();
        context(&format!(
            "provider {} is not supported by the rehearsal (prometheus only)",
            providers.join(", ")
        ))
    })?;
    if prometheus.query.trim().is_empty() {
        return Err(context("the prometheus provider has no query"));
    }
    Ok(MetricSpec {
        interval: duration("interval", &metric.interval)?,
        initial_delay: duration("initialDelay", &metric.initial_delay)?,
        count: int("count", &metric.count)?,
        failure_limit: int("failureLimit", &metric.failure_limit)?.unwrap_or(0),
        inconclusive_limit: int("inconclusiveLimit", &metric.inconclusive_limit)?.unwrap_or(0),
        consecutive_error_limit: int("consecutiveErrorLimit", &metric.consecutive_error_limit)?
            .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
        success: condition("successCondition", &metric.success_condition)?,
        failure: condition("failureCondition", &metric.failure_condition)?,
        address: prometheus.address.clone(),
        query: prometheus.query.clone(),
        timeout: Duration::from_secs(prometheus.timeout.unwrap_or(30)),
        dry_run: dry_run.iter().any(|entry| *entry == name || *entry == ".*"),
        name,
    })
}

/// A duration of the manifests (Argo's `interval`, `initialDelay`, pause,
/// Prometheus' intervals and ranges) or of a flag: `30s`, `1m30s`, `500ms`,
/// `1d`, read by promql-parser's Prometheus duration parser. Argo reads its
/// durations with Go's parser, whose forms the manifests use are a subset of
/// Prometheus' (fractions and `us`/`ns` are not); a bare number is refused,
/// as Go refuses it, and `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let text = text.trim();
    let form = || format!("{text:?} is not a duration such as 30s, 1m30s or 500ms");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.parse::<f64>().is_ok() {
        return Err(form());
    }
    promql_parser::util::parse_duration(text).map_err(|_| form())
}

/// A duration the way Prometheus and Go print it, in milliseconds when not whole seconds.
pub fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// A pod-template hash in the style of Argo Rollouts' (FNV-1a of the
/// template, spelled with consonants and digits).
pub fn pod_template_hash(template: &Value) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut value = u64::from(hash);
    let mut out = String::new();
    while value > 0 || out.len() < 6 {
        out.push(ALPHABET[(value % ALPHABET.len() as u64) as usize] as char);
        value /= ALPHABET.len() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("1d2h"), Ok(Duration::from_secs(93_600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(go_duration(Duration::from_millis(6000)), "6s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn hashes_differ_per_template() {
        let a = pod_template_hash(&serde_json::json!({"image": "ponger:initial"}));
        let b = pod_template_hash(&serde_json::json!({"image": "ponger:errors"}));
        assert_ne!(a, b);
        assert!(a.len() >= 6);
    }

    #[test]
    fn an_inline_analysis_step_runs_its_templates_with_its_own_args() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/overlays/canary");
        let mut rendered = manifests::read(&dir).expect("the canary overlay");
        let rollout = rendered
            .objects
            .iter_mut()
            .find(|object| object["kind"] == "Rollout")
            .expect("a Rollout");
        let steps = rollout["spec"]["strategy"]["canary"]["steps"]
            .as_array_mut()
            .expect("steps");
        steps.insert(
            1,
            serde_json::json!({"analysis": {
                "templates": [{"templateName": "ponger-health"}],
                "args": [
                    {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                    {"name": "namespace", "value": "staging"}
                ]
            }}),
        );
        let plan = Plan::from_rendered(rendered, "canary".to_owned(), "errors").expect("a plan");
        let Step::Analysis(spec) = &plan.steps[1] else {
            panic!("{:?}", plan.steps[1]);
        };
        assert_eq!(spec.templates, ["ponger-health"]);
        assert_eq!(plan.steps[1].describe(), "analysis ponger-health");
        let query = &spec.metrics[0].query;
        // The step's args, not the background analysis's.
        assert!(query.contains(r#"namespace="staging""#), "{query}");
        assert!(query.contains(&plan.canary_hash), "{query}");
        let background = &plan.analysis.as_ref().expect("background").metrics[0].query;
        assert!(!background.contains("staging"), "{background}");
    }
}
