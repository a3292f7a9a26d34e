//! Semantic checks of the Kubernetes manifests, the Prometheus rules and the
//! dashboard against what really exists: the metrics and labels the real
//! binaries expose, the Argo Rollouts controller's documented metrics, the
//! images the Dockerfile and bake file build, the Services the manifests
//! define. Needs kubectl (for `kubectl kustomize`) and the built binaries.

use std::collections::{BTreeMap, BTreeSet};

use deploycheck::{
    CONTROLLER_LABELS, CONTROLLER_METRICS, Catalog, SCRAPE_LABELS, dashboard_queries,
    k8s_target_labels, kustomize, object, of_kind, promql, read, real_exposition, resolve_args,
    used_args, yaml_documents, yaml_file,
};
use serde_json::Value;

const OVERLAYS: &[&str] = &["k8s/overlays/canary", "k8s/overlays/bluegreen"];

/// The analyses a Rollout runs: (where, templates, args).
fn analyses(rollout: &Value) -> Vec<(String, Vec<String>, Vec<Value>)> {
    let strategy = &rollout["spec"]["strategy"];
    let mut found = Vec::new();
    let mut add = |place: &str, analysis: &Value| {
        if analysis.is_null() {
            return;
        }
        let templates = analysis["templates"]
            .as_array()
            .expect("analysis templates")
            .iter()
            .map(|t| t["templateName"].as_str().expect("templateName").to_owned())
            .collect();
        let args = analysis["args"].as_array().cloned().unwrap_or_default();
        found.push((place.to_owned(), templates, args));
    };
    add("canary.analysis", &strategy["canary"]["analysis"]);
    add(
        "blueGreen.prePromotionAnalysis",
        &strategy["blueGreen"]["prePromotionAnalysis"],
    );
    add(
        "blueGreen.postPromotionAnalysis",
        &strategy["blueGreen"]["postPromotionAnalysis"],
    );
    found
}

/// Resolves an argument's value as the controller would, for the parts a
/// manifest alone determines (podTemplateHashValue gets a placeholder hash).
fn argument_value(rollout: &Value, arg: &Value) -> String {
    if let Some(value) = arg["value"].as_str() {
        return value.to_owned();
    }
    let from = &arg["valueFrom"];
    if let Some(which) = from["podTemplateHashValue"].as_str() {
        assert!(
            which == "Latest" || which == "Stable",
            "podTemplateHashValue must be Latest or Stable, not {which}"
        );
        return format!("hash-of-{which}");
    }
    if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
        let mut value = rollout;
        for part in path.split('.') {
            value = &value[part];
        }
        return value
            .as_str()
            .unwrap_or_else(|| panic!("fieldRef {path} does not resolve on the Rollout"))
            .to_owned();
    }
    panic!("argument {arg} has neither value nor a supported valueFrom")
}

#[test]
fn every_analysis_argument_is_declared_supplied_and_resolvable() {
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        let rollout = object(&objects, "Rollout", "ponger");
        let found = analyses(rollout);
        assert!(!found.is_empty(), "{overlay}: the Rollout runs no analysis");
        if overlay.ends_with("bluegreen") {
            assert_eq!(
                found.len(),
                2,
                "{overlay}: pre- and post-promotion analysis"
            );
        }
        for (place, templates, args) in found {
            let supplied: BTreeMap<String, String> = args
                .iter()
                .map(|arg| {
                    (
                        arg["name"].as_str().expect("arg name").to_owned(),
                        argument_value(rollout, arg),
                    )
                })
                .collect();
            let hash_arg = args
                .iter()
                .find(|arg| arg["name"] == "canary-hash")
                .unwrap_or_else(|| panic!("{overlay} {place}: no canary-hash argument"));
            assert_eq!(
                hash_arg["valueFrom"]["podTemplateHashValue"], "Latest",
                "{overlay} {place}: the analysis must judge the new (Latest) pods"
            );
            for template_name in templates {
                let template = object(&objects, "AnalysisTemplate", &template_name);
                let declared: BTreeMap<String, Option<String>> = template["spec"]["args"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|arg| {
                        (
                            arg["name"].as_str().expect("arg name").to_owned(),
                            arg["value"].as_str().map(str::to_owned),
                        )
                    })
                    .collect();
                for (name, default) in &declared {
                    assert!(
                        default.is_some() || supplied.contains_key(name),
                        "{overlay} {place}: argument {name} of {template_name} is not supplied"
                    );
                }
                for name in supplied.keys() {
                    assert!(
                        declared.contains_key(name),
                        "{overlay} {place}: {name} is supplied but {template_name} declares no such argument"
                    );
                }
                let metrics = template["spec"]["metrics"].to_string();
                for name in used_args(&metrics) {
                    assert!(
                        declared.contains_key(&name),
                        "{overlay}: {template_name} uses {{{{args.{name}}}}} without declaring it"
                    );
                }
                // Every metric resolves completely, and its Prometheus address
                // names a Service of this deployment.
                let mut values = supplied.clone();
                for (name, default) in &declared {
                    if let Some(default) = default {
                        values
                            .entry(name.clone())
                            .or_insert_with(|| default.clone());
                    }
                }
                for metric in template["spec"]["metrics"].as_array().expect("metrics") {
                    let resolved = resolve_args(&metric.to_string(), &values);
                    assert!(!resolved.contains("{{"), "{resolved}");
                    let metric: Value = serde_json::from_str(&resolved).expect("metric JSON");
                    let address = metric["provider"]["prometheus"]["address"]
                        .as_str()
                        .expect("prometheus address");
                    assert_service_url(
                        &objects,
                        address,
                        rollout["metadata"]["namespace"].as_str(),
                    );
                }
            }
        }
    }
}

/// `url` is `http://<service>[.<namespace>[.svc[...]]]:<port>[/path]` naming a
/// Service of `objects` with that port.
fn assert_service_url(objects: &[Value], url: &str, namespace: Option<&str>) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url}: expected http://"));
    let host_port = rest.split('/').next().unwrap_or_default();
    let (host, port) = host_port
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url}: no port"));
    let mut parts = host.split('.');
    let service_name = parts.next().unwrap_or_default();
    if let Some(ns) = parts.next() {
        assert_eq!(Some(ns), namespace, "{url}: names another namespace");
    }
    let service = object(objects, "Service", service_name);
    let port: u64 = port.parse().expect("numeric port");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["port"].as_u64() == Some(port)),
        "{url}: Service {service_name} has no port {port}"
    );
}

#[test]
fn services_and_pinger_targets_reach_the_ponger_pods() {
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        let rollout = object(&objects, "Rollout", "ponger");
        let pod_labels = rollout["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .expect("pod labels");
        let selects_ponger = |service: &Value| {
            service["spec"]["selector"]
                .as_object()
                .expect("selector")
                .iter()
                .all(|(key, value)| pod_labels.get(key) == Some(value))
        };
        let blue_green = &rollout["spec"]["strategy"]["blueGreen"];
        for key in ["activeService", "previewService"] {
            if let Some(name) = blue_green[key].as_str() {
                assert!(
                    selects_ponger(object(&objects, "Service", name)),
                    "{overlay}: {key} {name} does not select the ponger pods"
                );
            }
        }
        let deployments = of_kind(&objects, "Deployment");
        let pingers: Vec<_> = deployments
            .iter()
            .filter(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .is_some_and(|image| image.contains("pinger"))
            })
            .collect();
        assert!(!pingers.is_empty(), "{overlay}: no pinger");
        for pinger in pingers {
            let env = &pinger["spec"]["template"]["spec"]["containers"][0]["env"];
            let target = env
                .as_array()
                .expect("env")
                .iter()
                .find(|e| e["name"] == "PINGER_TARGET")
                .and_then(|e| e["value"].as_str())
                .expect("PINGER_TARGET");
            for url in target.split(',') {
                assert_service_url(&objects, url, Some("pingpong"));
                let name = url
                    .trim_start_matches("http://")
                    .split([':', '.', '/'])
                    .next()
                    .unwrap_or_default();
                assert!(
                    selects_ponger(object(&objects, "Service", name)),
                    "{overlay}: pinger target {url} does not reach the ponger pods"
                );
            }
        }
    }
}

/// Image tags the build produces: repository name -> tags.
fn built_images() -> BTreeMap<String, BTreeSet<String>> {
    let dockerfile = read("Dockerfile");
    let stages: BTreeSet<String> = dockerfile
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.len() == 4
                && words[0].eq_ignore_ascii_case("FROM")
                && words[2].eq_ignore_ascii_case("AS"))
            .then(|| words[3].to_owned())
        })
        .collect();
    let bake = read("docker-bake.hcl");
    let profiles_line = bake
        .lines()
        .find(|line| line.trim_start().starts_with("profile ="))
        .expect("bake matrix of profiles");
    let profiles: Vec<String> = profiles_line
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!profiles.is_empty(), "no profiles in {profiles_line}");
    assert!(
        bake.contains(r#"tags   = ["${REGISTRY}ponger:${profile}"]"#),
        "ponger tags"
    );
    assert!(
        bake.contains(r#"target = "ponger-${profile}""#),
        "ponger targets"
    );
    let mut images: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for profile in &profiles {
        assert!(
            stages.contains(&format!("ponger-{profile}")),
            "bake builds ponger-{profile}, the Dockerfile has no such stage"
        );
        assert!(
            dockerfile.contains(&format!("ENV PONGER_PROFILE={profile}")),
            "stage ponger-{profile} does not bake in its profile"
        );
        images
            .entry("ponger".into())
            .or_default()
            .insert(profile.clone());
    }
    // pinger: tags = ["${REGISTRY}pinger:${PINGER_TAG}"], PINGER_TAG defaults to ...
    assert!(stages.contains("pinger"), "no pinger stage");
    let pinger_default = bake
        .split("variable \"PINGER_TAG\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .expect("PINGER_TAG default");
    images
        .entry("pinger".into())
        .or_default()
        .insert(pinger_default.to_owned());
    images
}

#[test]
fn every_image_of_ours_that_a_deployment_names_is_built() {
    let built = built_images();
    assert_eq!(
        built["ponger"]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["best", "errors", "initial", "slow"]
    );
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        let mut seen = 0;
        for workload in of_kind(&objects, "Deployment")
            .into_iter()
            .chain(of_kind(&objects, "Rollout"))
        {
            for container in workload["spec"]["template"]["spec"]["containers"]
                .as_array()
                .expect("containers")
            {
                let image = container["image"].as_str().expect("image");
                let (name, tag) = image.rsplit_once(':').expect("tagged image");
                let repository = name.rsplit('/').next().unwrap_or(name);
                if let Some(tags) = built.get(repository) {
                    seen += 1;
                    assert!(
                        tags.contains(tag),
                        "{overlay}: {image} is not built (tags: {tags:?})"
                    );
                }
            }
        }
        assert!(seen >= 2, "{overlay}: expected ponger and pinger images");
    }
    // docker-compose: default tags and build targets.
    let compose = yaml_file("docker-compose.yml");
    let ponger = &compose["services"]["ponger"];
    assert_eq!(
        ponger["image"],
        "${REGISTRY:-}ponger:${PONGER_TAG:-initial}"
    );
    assert_eq!(ponger["build"]["target"], "ponger-${PONGER_TAG:-initial}");
    assert!(built["ponger"].contains("initial"));
    let pinger_image = compose["services"]["pinger"]["image"]
        .as_str()
        .expect("pinger image");
    let default_tag = pinger_image
        .rsplit_once(":-")
        .map(|(_, tag)| tag.trim_end_matches('}'))
        .expect("pinger tag default");
    assert!(built["pinger"].contains(default_tag), "{pinger_image}");
}

/// Checks that every metric and label `expr` uses exists.
fn check_expr(
    what: &str,
    expr: &str,
    catalog: &Catalog,
    recorded: &BTreeSet<String>,
    target_labels: &[String],
    failures: &mut Vec<String>,
) {
    let usage = promql::usage(expr);
    let mut available_labels: BTreeSet<String> = target_labels.iter().cloned().collect();
    for metric in &usage.metrics {
        if catalog.has_metric(metric) {
            available_labels.extend(catalog.labels_of(metric));
        } else if CONTROLLER_METRICS.contains(&metric.as_str()) {
            available_labels.extend(CONTROLLER_LABELS.iter().map(|l| l.to_string()));
        } else if recorded.contains(metric) {
            // Recording rules here aggregate by target.
            available_labels.insert("target".into());
        } else if metric == "up" {
        } else {
            failures.push(format!(
                "{what}: metric {metric} is neither exposed nor documented"
            ));
        }
    }
    for label in usage.labels() {
        if !available_labels.contains(&label) && label != "__name__" {
            failures.push(format!(
                "{what}: label {label} exists on none of {:?}",
                usage.metrics
            ));
        }
    }
    // Literal equality matchers on the binaries' own labels must match a
    // value they really expose (handler="/ping", target="ping", ...).
    for selector in &usage.selectors {
        let Some(metric) = &selector.metric else {
            continue;
        };
        if !catalog.has_metric(metric) {
            continue;
        }
        for (label, op, value) in &selector.matchers {
            let exposed = catalog.labels_of(metric).contains(label);
            if op == "="
                && exposed
                && !value.contains("{{")
                && !catalog.has_value(metric, label, value)
            {
                failures.push(format!(
                    "{what}: {metric}{{{label}=\"{value}\"}} is never exposed"
                ));
            }
        }
    }
}

fn recorded_names() -> BTreeSet<String> {
    rule_documents()
        .iter()
        .flat_map(|(_, rule)| rule["record"].as_str().map(str::to_owned))
        .collect()
}

fn rule_documents() -> Vec<(String, Value)> {
    let dir = deploycheck::repo().join("prometheus/rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("prometheus/rules")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    let mut rules = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("rule file");
        for doc in yaml_documents(&text) {
            for group in doc["groups"].as_array().cloned().unwrap_or_default() {
                for rule in group["rules"].as_array().cloned().unwrap_or_default() {
                    rules.push((
                        file.file_name().unwrap().to_string_lossy().into_owned(),
                        rule,
                    ));
                }
            }
        }
    }
    rules
}

#[test]
fn every_metric_and_label_used_by_analysis_rules_and_dashboard_exists() {
    let catalog = real_exposition();
    // Sanity: the catalog really is the binaries' exposition.
    for metric in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_client_requests_total",
        "ponger_build_info",
    ] {
        assert!(
            catalog.has_metric(metric),
            "the binaries do not expose {metric}"
        );
    }
    let recorded = recorded_names();
    assert!(!recorded.is_empty());
    let k8s_labels = k8s_target_labels();
    for label in [
        "job",
        "namespace",
        "pod",
        "version",
        "rollouts_pod_template_hash",
    ] {
        assert!(
            k8s_labels.iter().any(|l| l == label),
            "the Kubernetes scrape keeps no {label}"
        );
    }
    let compose_labels: Vec<String> = SCRAPE_LABELS.iter().map(|l| l.to_string()).collect();
    let mut failures = Vec::new();

    // The analysis runs on Kubernetes: target labels from pod discovery count.
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        for template in of_kind(&objects, "AnalysisTemplate") {
            for metric in template["spec"]["metrics"].as_array().expect("metrics") {
                let query = metric["provider"]["prometheus"]["query"]
                    .as_str()
                    .expect("query");
                let what = format!("{overlay} {}", metric["name"]);
                check_expr(
                    &what,
                    query,
                    &catalog,
                    &recorded,
                    &k8s_labels,
                    &mut failures,
                );
                // It must select the canary alone.
                let usage = promql::usage(query);
                for selector in &usage.selectors {
                    assert!(
                        selector
                            .matchers
                            .iter()
                            .any(|(label, op, value)| label == "rollouts_pod_template_hash"
                                && op == "="
                                && value == "{{args.canary-hash}}"),
                        "{what}: a selector does not pick the canary's pods: {selector:?}"
                    );
                }
            }
        }
    }
    // Rules and dashboard run in both environments; compose adds no labels
    // beyond job and instance (plus the fixed rollouts_pod_template_hash).
    for (file, rule) in rule_documents() {
        let name = rule["record"]
            .as_str()
            .or(rule["alert"].as_str())
            .unwrap_or_default();
        let expr = rule["expr"].as_str().expect("expr");
        check_expr(
            &format!("{file} {name}"),
            expr,
            &catalog,
            &recorded,
            &compose_labels,
            &mut failures,
        );
    }
    for (title, expr, _) in dashboard_queries("grafana/dashboards/pingpong.json") {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$target", ".+");
        check_expr(
            &format!("panel {title:?}"),
            &expr,
            &catalog,
            &recorded,
            &compose_labels,
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rollout_panels_use_only_documented_controller_metrics() {
    let mut rollout_panels = 0;
    for (title, expr, _) in dashboard_queries("grafana/dashboards/pingpong.json") {
        let usage = promql::usage(&expr.replace("$__rate_interval", "1m"));
        let controller: Vec<_> = usage
            .metrics
            .iter()
            .filter(|m| {
                m.starts_with("rollout_")
                    || m.starts_with("analysis_run")
                    || m.starts_with("experiment_")
            })
            .collect();
        if controller.is_empty() {
            continue;
        }
        rollout_panels += 1;
        for metric in controller {
            assert!(
                CONTROLLER_METRICS.contains(&metric.as_str()),
                "panel {title:?}: {metric} is not a documented Argo Rollouts metric"
            );
        }
        for label in usage.labels() {
            assert!(
                CONTROLLER_LABELS.contains(&label.as_str())
                    || SCRAPE_LABELS.contains(&label.as_str()),
                "panel {title:?}: label {label} is not on the controller's metrics"
            );
        }
    }
    assert!(
        rollout_panels >= 3,
        "expected rollout phase, replicas and analysis panels"
    );
}
