//! What the rehearsal plays, read from the manifests: the canary Rollout
//! (replicas, pod template, steps, background analysis and its arguments),
//! its AnalysisTemplates, the pinger Deployment and the Prometheus
//! configuration. Nothing here is a default of the rehearsal's own: every
//! number comes from the manifests, or from Argo Rollouts' documented defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::expr::Condition;
use crate::manifests::{self, Rendered, split_image};

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
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::SetWeight(weight) => format!("setWeight {weight}"),
            Step::Pause(Some(duration)) => format!("pause {}", go_duration(*duration)),
            Step::Pause(None) => "pause (until promoted)".to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
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
#[derive(Clone, Debug)]
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
    pub rollout_args: Vec<Value>,
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
        let source = manifests.display().to_string();
        let rollouts: Vec<&Value> = rendered
            .of_kind("Rollout")
            .filter(|rollout| rollout["spec"]["strategy"]["canary"].is_object())
            .collect();
        let rollout = match rollouts.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(format!("{source}: no Rollout with a canary strategy")),
            _ => return Err(format!("{source}: more than one canary Rollout")),
        };
        let rollout_name = string(&rollout["metadata"]["name"]);
        let namespace = rollout["metadata"]["namespace"]
            .as_str()
            .map(str::to_owned)
            .or(rendered.namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        let replicas = rollout["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
        let template = rollout["spec"]["template"].clone();
        let container = template["spec"]["containers"]
            .get(0)
            .cloned()
            .ok_or_else(|| format!("{source}: Rollout {rollout_name} has no container"))?;
        let image = string(&container["image"]);
        let (image_name, tag) = split_image(&image);
        let stable_version = tag.unwrap_or("latest").to_owned();
        if !VERSIONS.contains(&stable_version.as_str()) {
            return Err(format!(
                "{source}: the Rollout's image {image} is not one of the ponger versions {}",
                VERSIONS.join(", ")
            ));
        }
        let image_name = image_name.to_owned();
        let stable_hash = pod_template_hash(&template);
        let canary_template = versioned_template(&template, &image_name, version);
        let mut canary_hash = pod_template_hash(&canary_template);
        if canary_hash == stable_hash {
            // Same template: Argo Rollouts would not start a rollout at all;
            // the rehearsal still plays one, with a distinct ReplicaSet.
            canary_hash = pod_template_hash(&serde_json::json!([canary_template, "rehearsal"]));
        }
        let canary = &rollout["spec"]["strategy"]["canary"];
        let steps = canary["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|step| parse_step(step).map_err(|error| format!("{source}: {error}")))
            .collect::<Result<Vec<_>, _>>()?;
        let env = |name: &str| -> Option<String> {
            container["env"].as_array().and_then(|env| {
                env.iter()
                    .find(|entry| entry["name"] == name)
                    .and_then(|entry| entry["value"].as_str().map(str::to_owned))
            })
        };
        let drain_delay = env("PONGER_DRAIN_DELAY");
        let grace_period = Duration::from_secs(
            template["spec"]["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30),
        );
        let readiness_period = Duration::from_secs(
            container["readinessProbe"]["periodSeconds"]
                .as_u64()
                .unwrap_or(10),
        );
        let pinger = pinger_settings(&rendered, &source)?;
        let prometheus_config = prometheus_config(&rendered, &source)?;
        let mut plan = Self {
            source,
            namespace,
            rollout_name,
            replicas,
            template,
            image_name,
            stable_version,
            canary_version: version.to_owned(),
            stable_hash,
            canary_hash,
            steps,
            starting_step: None,
            analysis: None,
            rollout_args: canary["analysis"]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            drain_delay,
            grace_period,
            readiness_period,
            pinger,
            prometheus_config,
            rendered,
        };
        let analysis = &canary["analysis"];
        if analysis.is_object() {
            plan.starting_step = Some(analysis["startingStep"].as_u64().unwrap_or(0) as usize);
            let mut templates = Vec::new();
            for reference in analysis["templates"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let (kind, name) = match (
                    reference["templateName"].as_str(),
                    reference["clusterTemplateName"].as_str(),
                ) {
                    (Some(name), _) => ("AnalysisTemplate", name),
                    (None, Some(name)) => ("ClusterAnalysisTemplate", name),
                    _ => {
                        return Err(format!(
                            "{}: an analysis template reference without a name",
                            plan.source
                        ));
                    }
                };
                let object = plan.rendered.named(kind, name).cloned().ok_or_else(|| {
                    format!(
                        "{}: the Rollout refers to {kind} {name}, which is not in the manifests",
                        plan.source
                    )
                })?;
                templates.push(object);
            }
            plan.analysis = Some(plan.analysis_spec("ours", &templates)?);
        }
        for (index, step) in canary["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if step.get("analysis").is_some() {
                return Err(format!(
                    "{}: step {index} is an inline analysis step, which the rehearsal does not play (only background analysis)",
                    plan.source
                ));
            }
        }
        Ok(plan)
    }

    /// The canary's pod template: the new image tag and version label.
    pub fn canary_template(&self) -> Value {
        versioned_template(&self.template, &self.image_name, &self.canary_version)
    }

    /// An AnalysisSpec from AnalysisTemplate objects, with the Rollout's
    /// arguments (as Argo Rollouts passes them to the AnalysisRun).
    pub fn analysis_spec(&self, label: &str, templates: &[Value]) -> Result<AnalysisSpec, Error> {
        let mut values: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut metrics_json = Vec::new();
        let mut dry_run: Vec<String> = Vec::new();
        let mut names = Vec::new();
        for template in templates {
            let name = string(&template["metadata"]["name"]);
            names.push(name.clone());
            for arg in template["spec"]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let arg_name = string(&arg["name"]);
                let value = self.arg_value(&arg, &name)?;
                let entry = values.entry(arg_name).or_insert(None);
                if value.is_some() {
                    *entry = value;
                }
            }
            for metric in template["spec"]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                metrics_json.push((name.clone(), metric));
            }
            for entry in template["spec"]["dryRun"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                dry_run.push(string(&entry["metricName"]));
            }
        }
        for arg in &self.rollout_args {
            let arg_name = string(&arg["name"]);
            let value = self.arg_value(arg, &self.rollout_name)?;
            values.insert(arg_name, value);
        }
        let mut seen = BTreeSet::new();
        let mut metrics = Vec::new();
        for (template, metric) in metrics_json {
            let metric = substitute(&metric, &values)
                .map_err(|error| format!("AnalysisTemplate {template}: {error}"))?;
            let spec = metric_spec(&metric, &dry_run)
                .map_err(|error| format!("AnalysisTemplate {template}: {error}"))?;
            if !seen.insert(spec.name.clone()) {
                return Err(format!(
                    "AnalysisTemplate {template}: metric {} is defined twice",
                    spec.name
                ));
            }
            metrics.push(spec);
        }
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

    fn arg_value(&self, arg: &Value, owner: &str) -> Result<Option<String>, Error> {
        let name = string(&arg["name"]);
        if let Some(value) = arg.get("value").filter(|value| !value.is_null()) {
            return Ok(Some(match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            }));
        }
        let from = &arg["valueFrom"];
        if from.is_null() {
            return Ok(None);
        }
        if let Some(which) = from["podTemplateHashValue"].as_str() {
            return match which {
                "Latest" => Ok(Some(self.canary_hash.clone())),
                "Stable" => Ok(Some(self.stable_hash.clone())),
                other => Err(format!(
                    "{owner}: argument {name}: podTemplateHashValue {other:?} is not Latest or Stable"
                )),
            };
        }
        if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            return match path {
                "metadata.namespace" => Ok(Some(self.namespace.clone())),
                "metadata.name" => Ok(Some(self.rollout_name.clone())),
                other => Err(format!(
                    "{owner}: argument {name}: fieldRef {other} is not supported by the rehearsal (metadata.namespace, metadata.name)"
                )),
            };
        }
        Err(format!(
            "{owner}: argument {name}: valueFrom {from} is not supported by the rehearsal (podTemplateHashValue, fieldRef)"
        ))
    }
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

fn parse_step(step: &Value) -> Result<Step, Error> {
    if let Some(weight) = step.get("setWeight") {
        let weight = weight
            .as_u64()
            .filter(|weight| *weight <= 100)
            .ok_or_else(|| format!("setWeight {weight} is not a percentage"))?;
        return Ok(Step::SetWeight(weight as u32));
    }
    if let Some(pause) = step.get("pause") {
        let duration = &pause["duration"];
        if duration.is_null() {
            return Ok(Step::Pause(None));
        }
        let duration = match duration {
            Value::Number(seconds) => Duration::from_secs(seconds.as_u64().unwrap_or(0)),
            Value::String(text) => match text.parse::<u64>() {
                Ok(seconds) => Duration::from_secs(seconds),
                Err(_) => parse_go_duration(text)?,
            },
            other => return Err(format!("pause duration {other} is not a duration")),
        };
        return Ok(Step::Pause(Some(duration)));
    }
    if step.get("analysis").is_some() {
        return Ok(Step::Pause(Some(Duration::ZERO)));
    }
    Err(format!(
        "canary step {step} is not supported by the rehearsal (setWeight, pause and background analysis only)"
    ))
}

fn pinger_settings(rendered: &Rendered, source: &str) -> Result<PingerSettings, Error> {
    let deployment = rendered
        .of_kind("Deployment")
        .find(|deployment| {
            deployment["spec"]["template"]["spec"]["containers"]
                .as_array()
                .is_some_and(|containers| {
                    containers.iter().any(|container| {
                        container["image"]
                            .as_str()
                            .is_some_and(|image| split_image(image).0.ends_with("pinger"))
                    })
                })
        })
        .ok_or_else(|| format!("{source}: no pinger Deployment"))?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = |name: &str| -> Option<String> {
        container["env"].as_array().and_then(|env| {
            env.iter()
                .find(|entry| entry["name"] == name)
                .and_then(|entry| entry["value"].as_str().map(str::to_owned))
        })
    };
    let rate = match env("PINGER_RATE") {
        Some(rate) => rate
            .parse::<f64>()
            .map_err(|_| format!("{source}: PINGER_RATE {rate:?} is not a number"))?,
        None => 10.0,
    };
    Ok(PingerSettings {
        rate,
        target_name: env("PINGER_TARGET_NAME").unwrap_or_else(|| "ping".to_owned()),
        timeout: env("PINGER_TIMEOUT"),
        template: deployment["spec"]["template"].clone(),
    })
}

/// The Prometheus configuration among the ConfigMaps: the one whose scrape
/// configs discover pods.
fn prometheus_config(rendered: &Rendered, source: &str) -> Result<Value, Error> {
    for config_map in rendered.of_kind("ConfigMap") {
        let Some(data) = config_map["data"].as_object() else {
            continue;
        };
        for (key, text) in data {
            let Some(text) = text.as_str() else { continue };
            if !text.contains("kubernetes_sd_configs") {
                continue;
            }
            let origin = format!(
                "ConfigMap {} key {key}",
                string(&config_map["metadata"]["name"])
            );
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

fn metric_spec(metric: &Value, dry_run: &[String]) -> Result<MetricSpec, Error> {
    let name = string(&metric["name"]);
    let context = |what: &str| format!("metric {name}: {what}");
    let duration = |key: &str| -> Result<Option<Duration>, Error> {
        match &metric[key] {
            Value::Null => Ok(None),
            Value::String(text) if text.is_empty() => Ok(None),
            Value::String(text) => parse_go_duration(text)
                .map(Some)
                .map_err(|error| context(&format!("{key}: {error}"))),
            other => Err(context(&format!(
                "{key} {other} is not a duration such as 30s"
            ))),
        }
    };
    let int = |key: &str, default: Option<i64>| -> Result<Option<i64>, Error> {
        match &metric[key] {
            Value::Null => Ok(default),
            Value::Number(number) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| context(&format!("{key} is not an integer"))),
            Value::String(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| context(&format!("{key} {text:?} is not an integer"))),
            other => Err(context(&format!("{key} {other} is not an integer"))),
        }
    };
    let condition = |key: &str| -> Result<Option<Condition>, Error> {
        match metric[key].as_str() {
            None | Some("") => Ok(None),
            Some(text) => Condition::parse(text)
                .map(Some)
                .map_err(|error| context(&format!("{key}: {error}"))),
        }
    };
    let provider = metric["provider"]
        .as_object()
        .ok_or_else(|| context("no provider"))?;
    let prometheus = provider.get("prometheus").ok_or_else(|| {
        context(&format!(
            "provider {} is not supported by the rehearsal (prometheus only)",
            provider.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let query = prometheus["query"]
        .as_str()
        .filter(|query| !query.trim().is_empty())
        .ok_or_else(|| context("the prometheus provider has no query"))?
        .to_owned();
    let timeout = match &prometheus["timeout"] {
        Value::Number(seconds) => Duration::from_secs(seconds.as_u64().unwrap_or(30)),
        _ => Duration::from_secs(30),
    };
    Ok(MetricSpec {
        interval: duration("interval")?,
        initial_delay: duration("initialDelay")?,
        count: int("count", None)?,
        failure_limit: int("failureLimit", Some(0))?.unwrap_or(0),
        inconclusive_limit: int("inconclusiveLimit", Some(0))?.unwrap_or(0),
        consecutive_error_limit: int(
            "consecutiveErrorLimit",
            Some(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
        )?
        .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
        success: condition("successCondition")?,
        failure: condition("failureCondition")?,
        address: string(&prometheus["address"]),
        query,
        timeout,
        dry_run: dry_run.iter().any(|entry| entry == &name || entry == ".*"),
        name,
    })
}

/// Replaces `{{args.NAME}}` in every string of `value`, as Argo Rollouts
/// resolves a metric's arguments; an argument without a value is an error.
pub fn substitute(value: &Value, args: &BTreeMap<String, Option<String>>) -> Result<Value, Error> {
    Ok(match value {
        Value::String(text) => Value::String(substitute_text(text, args)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| substitute(item, args))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| Ok((key.clone(), substitute(item, args)?)))
                .collect::<Result<_, Error>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute_text(text: &str, args: &BTreeMap<String, Option<String>>) -> Result<String, Error> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
        let key = after[..close].trim();
        let name = key
            .strip_prefix("args.")
            .ok_or_else(|| format!("{{{{{key}}}}} is not an argument reference (args.NAME)"))?;
        match args.get(name) {
            Some(Some(value)) => out.push_str(value),
            Some(None) => {
                return Err(format!(
                    "argument {name} has no value (neither the template nor the Rollout gives one)"
                ));
            }
            None => return Err(format!("argument {name} is used but not declared")),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Go's time.ParseDuration for the units manifests use (h, m, s, ms, us, ns),
/// e.g. `30s`, `1m30s`, `500ms`, `1.5h`.
pub fn parse_go_duration(text: &str) -> Result<Duration, Error> {
    let form = || format!("{text:?} is not a duration such as 30s, 1m30s or 500ms");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(form());
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(form)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| form())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(form()),
        };
        total += number * unit;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
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
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_go_duration("30").is_err());
        assert!(parse_go_duration("soon").is_err());
        assert_eq!(go_duration(Duration::from_millis(6000)), "6s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn arguments() {
        let mut args = BTreeMap::new();
        args.insert("canary-hash".to_owned(), Some("abc".to_owned()));
        args.insert("missing".to_owned(), None);
        assert_eq!(
            substitute_text("x{{args.canary-hash}}y{{ args.canary-hash }}", &args),
            Ok("xabcyabc".to_owned())
        );
        assert!(
            substitute_text("{{args.missing}}", &args)
                .unwrap_err()
                .contains("no value")
        );
        assert!(
            substitute_text("{{args.other}}", &args)
                .unwrap_err()
                .contains("not declared")
        );
    }

    #[test]
    fn hashes_differ_per_template() {
        let a = pod_template_hash(&serde_json::json!({"image": "ponger:initial"}));
        let b = pod_template_hash(&serde_json::json!({"image": "ponger:errors"}));
        assert_ne!(a, b);
        assert!(a.len() >= 6);
    }
}
