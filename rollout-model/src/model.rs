//! The Argo Rollouts objects the rehearsal and the deployment checks read,
//! with the field names of Argo's CRDs (`argoproj.io/v1alpha1`). Only what is
//! read is modelled; a pod template stays JSON (it is hashed and patched as a
//! whole). Durations stay text here: Argo's are Go duration strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::{Args, resolve_value};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A Kubernetes integer-or-string field (Argo's `intstr.IntOrString`): an
/// argument reference makes a number a string until it is resolved.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl IntOrString {
    pub fn as_int(&self) -> Result<i64, String> {
        match self {
            IntOrString::Int(value) => Ok(*value),
            IntOrString::String(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not an integer")),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub metadata: ObjectMeta,
    pub spec: RolloutSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    pub replicas: Option<u32>,
    /// The pod template, as written.
    #[serde(default)]
    pub template: Value,
    #[serde(default)]
    pub strategy: Strategy,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    pub canary: Option<CanaryStrategy>,
    pub blue_green: Option<BlueGreenStrategy>,
}

impl Strategy {
    /// Every analysis the strategy runs, with where it is declared.
    pub fn analyses(&self) -> Vec<(&'static str, &RolloutAnalysis)> {
        let mut found = Vec::new();
        if let Some(analysis) = self.canary.as_ref().and_then(|c| c.analysis.as_ref()) {
            found.push(("canary.analysis", &analysis.analysis));
        }
        if let Some(blue_green) = &self.blue_green {
            if let Some(analysis) = &blue_green.pre_promotion_analysis {
                found.push(("blueGreen.prePromotionAnalysis", analysis));
            }
            if let Some(analysis) = &blue_green.post_promotion_analysis {
                found.push(("blueGreen.postPromotionAnalysis", analysis));
            }
        }
        found
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    /// Background analysis, running from `startingStep` to the end.
    pub analysis: Option<BackgroundAnalysis>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    #[serde(default)]
    pub active_service: String,
    pub preview_service: Option<String>,
    pub auto_promotion_enabled: Option<bool>,
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    pub post_promotion_analysis: Option<RolloutAnalysis>,
}

/// One canary step: exactly one of the known kinds, or something else (kept
/// by name so that a reader can refuse it clearly).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    pub set_weight: Option<IntOrString>,
    pub pause: Option<Pause>,
    pub analysis: Option<RolloutAnalysis>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// Seconds, or a Go duration; absent: until promoted.
    pub duration: Option<IntOrString>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    #[serde(default)]
    pub templates: Vec<TemplateRef>,
    #[serde(default)]
    pub args: Vec<AnalysisArg>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundAnalysis {
    #[serde(flatten)]
    pub analysis: RolloutAnalysis,
    pub starting_step: Option<usize>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    pub template_name: Option<String>,
    pub cluster_template_name: Option<String>,
}

impl TemplateRef {
    /// The referenced object's kind and name.
    pub fn target(&self) -> Option<(&'static str, &str)> {
        match (&self.template_name, &self.cluster_template_name) {
            (Some(name), _) => Some(("AnalysisTemplate", name)),
            (None, Some(name)) => Some(("ClusterAnalysisTemplate", name)),
            (None, None) => None,
        }
    }
}

/// An argument: a Rollout passes it, an AnalysisTemplate declares it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisArg {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<ArgValueFrom>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArgValueFrom {
    /// `Latest` (the canary's) or `Stable`.
    pub pod_template_hash_value: Option<String>,
    pub field_ref: Option<FieldRef>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

/// An AnalysisTemplate or ClusterAnalysisTemplate.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplate {
    pub metadata: ObjectMeta,
    pub spec: AnalysisTemplateSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    #[serde(default)]
    pub args: Vec<AnalysisArg>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub dry_run: Vec<DryRun>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub metric_name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    pub interval: Option<String>,
    pub initial_delay: Option<String>,
    pub count: Option<IntOrString>,
    pub failure_limit: Option<IntOrString>,
    pub inconclusive_limit: Option<IntOrString>,
    pub consecutive_error_limit: Option<IntOrString>,
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    #[serde(default)]
    pub provider: Provider,
}

impl Metric {
    /// The metric with every `{{args.NAME}}` resolved, as Argo resolves it
    /// before measuring.
    pub fn resolved(&self, args: &Args) -> Result<Metric, String> {
        let value = serde_json::to_value(self).map_err(|error| error.to_string())?;
        let value = resolve_value(&value, args).map_err(|error| error.to_string())?;
        serde_json::from_value(value).map_err(|error| error.to_string())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub prometheus: Option<PrometheusProvider>,
    /// Other providers, by name.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusProvider {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub query: String,
    /// Seconds.
    pub timeout: Option<u64>,
}

/// The parts of a pod template that are read (the template itself stays JSON).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    pub termination_grace_period_seconds: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    pub readiness_probe: Option<Probe>,
}

impl Container {
    /// A literal environment variable's value (`valueFrom` is not read).
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|entry| entry.name == name)
            .and_then(|entry| entry.value.as_deref())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub period_seconds: Option<u64>,
}

/// A Deployment: its pod template, as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeploymentSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    #[serde(default)]
    pub template: Value,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// Reads a typed object from a JSON value, naming the object on error.
pub fn from_value<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
    T::deserialize(value).map_err(|error| {
        format!(
            "{} {}: {error}",
            value["kind"].as_str().unwrap_or("object"),
            value["metadata"]["name"].as_str().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_and_its_analysis() {
        let rollout: Rollout = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ponger"},
            "spec": {"replicas": 4, "template": {"spec": {}}, "strategy": {"canary": {
                "steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"pause": {}}, {"experiment": {}}],
                "analysis": {"startingStep": 1, "templates": [{"templateName": "t"}],
                    "args": [{"name": "h", "valueFrom": {"podTemplateHashValue": "Latest"}}]}
            }}}
        }))
        .unwrap();
        let canary = rollout.spec.strategy.canary.unwrap();
        assert_eq!(canary.steps[0].set_weight, Some(IntOrString::Int(20)));
        assert_eq!(
            canary.steps[1].pause.as_ref().unwrap().duration,
            Some(IntOrString::String("1m".into()))
        );
        assert_eq!(canary.steps[2].pause.as_ref().unwrap().duration, None);
        assert!(canary.steps[3].other.contains_key("experiment"));
        let analysis = canary.analysis.unwrap();
        assert_eq!(analysis.starting_step, Some(1));
        assert_eq!(
            analysis.analysis.templates[0].target(),
            Some(("AnalysisTemplate", "t"))
        );
        assert_eq!(
            analysis.analysis.args[0]
                .value_from
                .as_ref()
                .unwrap()
                .pod_template_hash_value
                .as_deref(),
            Some("Latest")
        );
    }

    #[test]
    fn a_metric_resolves_its_arguments() {
        let metric: Metric = serde_json::from_value(serde_json::json!({
            "name": "m", "interval": "{{args.every}}", "count": "{{args.n}}", "failureLimit": 1,
            "successCondition": "result[0] >= 0.8",
            "provider": {"prometheus": {"address": "http://p", "query": "up{h=\"{{args.h}}\"}"}}
        }))
        .unwrap();
        let mut args = Args::new();
        args.insert("every".into(), Some("30s".into()));
        args.insert("n".into(), Some("3".into()));
        args.insert("h".into(), Some("abc".into()));
        let resolved = metric.resolved(&args).unwrap();
        assert_eq!(resolved.interval.as_deref(), Some("30s"));
        assert_eq!(resolved.count.unwrap().as_int(), Ok(3));
        assert_eq!(resolved.failure_limit.unwrap().as_int(), Ok(1));
        assert_eq!(resolved.provider.prometheus.unwrap().query, "up{h=\"abc\"}");
        args.insert("h".into(), None);
        assert!(metric.resolved(&args).unwrap_err().contains("no value"));
    }
}
