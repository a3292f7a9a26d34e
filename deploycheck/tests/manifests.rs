//! Semantic checks of the Kubernetes manifests, the Prometheus rules and the
//! dashboard against what really exists: the metrics and labels the real
//! binaries expose, the Argo Rollouts controller's documented metrics, the
//! images the Dockerfile and bake file build, the Services the manifests
//! define; and the NetworkPolicies against the connections the demo makes
//! (and must not make). Needs kubectl (for `kubectl kustomize`) and the built binaries.

use std::collections::{BTreeMap, BTreeSet};

use deploycheck::netpol::{self, Connection, ContainerPort, Endpoint, Labels};
use deploycheck::{
    CONTROLLER_LABELS, CONTROLLER_METRICS, Catalog, SCRAPE_LABELS, dashboard_queries,
    k8s_target_labels, kustomize, object, of_kind, promql, read, real_exposition, yaml_documents,
    yaml_file,
};
use rollout_model::model::{AnalysisArg, AnalysisTemplate, Rollout, from_value};
use rollout_model::{Args, used_args};
use serde_json::Value;

const OVERLAYS: &[&str] = &["k8s/overlays/canary", "k8s/overlays/bluegreen"];

/// Resolves an argument's value as the controller would, for the parts a
/// manifest alone determines (podTemplateHashValue gets a placeholder hash).
fn argument_value(rollout: &Value, arg: &AnalysisArg) -> String {
    if let Some(value) = &arg.value {
        return value.clone();
    }
    let from = arg
        .value_from
        .as_ref()
        .unwrap_or_else(|| panic!("argument {} has neither value nor valueFrom", arg.name));
    if let Some(which) = &from.pod_template_hash_value {
        assert!(
            which == "Latest" || which == "Stable",
            "podTemplateHashValue must be Latest or Stable, not {which}"
        );
        return format!("hash-of-{which}");
    }
    if let Some(field) = &from.field_ref {
        let mut value = rollout;
        for part in field.field_path.split('.') {
            value = &value[part];
        }
        return value
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "fieldRef {} does not resolve on the Rollout",
                    field.field_path
                )
            })
            .to_owned();
    }
    panic!("argument {} has no supported valueFrom", arg.name)
}

#[test]
fn every_analysis_argument_is_declared_supplied_and_resolvable() {
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        let rollout_object = object(&objects, "Rollout", "ponger");
        let rollout: Rollout = from_value(rollout_object).expect("a Rollout");
        let found = rollout.spec.strategy.analyses();
        assert!(!found.is_empty(), "{overlay}: the Rollout runs no analysis");
        if overlay.ends_with("bluegreen") {
            assert_eq!(
                found.len(),
                2,
                "{overlay}: pre- and post-promotion analysis"
            );
        }
        for (place, analysis) in found {
            let supplied: Args = analysis
                .args
                .iter()
                .map(|arg| (arg.name.clone(), Some(argument_value(rollout_object, arg))))
                .collect();
            let hash_arg = analysis
                .args
                .iter()
                .find(|arg| arg.name == "canary-hash")
                .unwrap_or_else(|| panic!("{overlay} {place}: no canary-hash argument"));
            assert_eq!(
                hash_arg
                    .value_from
                    .as_ref()
                    .and_then(|from| from.pod_template_hash_value.as_deref()),
                Some("Latest"),
                "{overlay} {place}: the analysis must judge the new (Latest) pods"
            );
            for reference in &analysis.templates {
                let template_name = reference.template_name.as_deref().expect("templateName");
                let template: AnalysisTemplate =
                    from_value(object(&objects, "AnalysisTemplate", template_name))
                        .expect("an AnalysisTemplate");
                let declared: Args = template
                    .spec
                    .args
                    .iter()
                    .map(|arg| (arg.name.clone(), arg.value.clone()))
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
                let metrics = serde_json::to_string(&template.spec.metrics).expect("JSON");
                for name in used_args(&metrics).expect("closed {{ }} tags") {
                    assert!(
                        declared.contains_key(&name),
                        "{overlay}: {template_name} uses {{{{args.{name}}}}} without declaring it"
                    );
                }
                // Every metric resolves completely, and its Prometheus address
                // names a Service of this deployment.
                let mut values = supplied.clone();
                for (name, default) in &declared {
                    if default.is_some() {
                        values
                            .entry(name.clone())
                            .or_insert_with(|| default.clone());
                    }
                }
                for metric in &template.spec.metrics {
                    let metric = metric
                        .resolved(&values)
                        .unwrap_or_else(|error| panic!("{overlay} {template_name}: {error}"));
                    let prometheus = metric.provider.prometheus.expect("a prometheus provider");
                    assert_service_url(
                        &objects,
                        &prometheus.address,
                        rollout.metadata.namespace.as_deref(),
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

/// A pod that the rendered manifests run, by the workload that makes it.
struct WorkloadPod {
    workload: String,
    template: Value,
    endpoint: Endpoint,
}

impl WorkloadPod {
    fn labels(&self) -> &Labels {
        self.endpoint.labels().expect("workload pods are pods")
    }

    fn env(&self, name: &str) -> Vec<String> {
        self.template["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["name"] == name)
            .filter_map(|e| e["value"].as_str().map(str::to_owned))
            .collect()
    }

    fn ports(&self) -> &[ContainerPort] {
        self.endpoint.ports()
    }
}

fn string_map(value: &Value) -> Labels {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn container_ports(template: &Value) -> Vec<ContainerPort> {
    template["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| ContainerPort {
            name: p["name"].as_str().map(str::to_owned),
            number: p["containerPort"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .expect("containerPort"),
            protocol: p["protocol"].as_str().unwrap_or("TCP").to_owned(),
        })
        .collect()
}

/// Every pod the Deployments and Rollouts of `objects` run.
fn workload_pods(objects: &[Value]) -> Vec<WorkloadPod> {
    of_kind(objects, "Deployment")
        .into_iter()
        .chain(of_kind(objects, "Rollout"))
        .map(|workload| {
            let namespace = workload["metadata"]["namespace"]
                .as_str()
                .expect("namespaced workload");
            let namespace_labels =
                string_map(&object(objects, "Namespace", namespace)["metadata"]["labels"]);
            let template = workload["spec"]["template"].clone();
            WorkloadPod {
                workload: format!(
                    "{}/{}",
                    workload["kind"].as_str().unwrap_or_default(),
                    workload["metadata"]["name"].as_str().unwrap_or_default()
                ),
                endpoint: Endpoint::pod(
                    namespace,
                    namespace_labels,
                    string_map(&template["metadata"]["labels"]),
                    container_ports(&template),
                ),
                template,
            }
        })
        .collect()
}

/// The Argo Rollouts controller's pod as its upstream install.yaml makes it
/// (Deployment argo-rollouts: pods labelled app.kubernetes.io/name:
/// argo-rollouts, ports metrics 8090 and healthz 8080), in the namespace the
/// Kubernetes Prometheus configuration scrapes it in.
fn rollouts_controller() -> (Endpoint, u16) {
    let config = yaml_file("prometheus/prometheus-k8s.yml");
    let job = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .find(|job| job["job_name"] == "argo-rollouts")
        .expect("an argo-rollouts scrape job");
    let target = job["static_configs"][0]["targets"][0]
        .as_str()
        .expect("controller target");
    let (host, port) = target.rsplit_once(':').expect("host:port");
    let namespace = host.split('.').nth(1).expect("service.namespace");
    let port: u16 = port.parse().expect("port");
    let labels = [("app.kubernetes.io/name", "argo-rollouts")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let ports = [("metrics", 8090), ("healthz", 8080)]
        .into_iter()
        .map(|(name, number)| ContainerPort {
            name: Some(name.into()),
            number,
            protocol: "TCP".into(),
        })
        .collect();
    (Endpoint::pod(namespace, Labels::new(), labels, ports), port)
}

/// The pods (and their port numbers) behind `url`
/// (`http://<service>[.<namespace>...]:<port>[/path]`), through the Service of
/// that name: its selector and its port's targetPort.
fn backends<'a>(
    objects: &[Value],
    pods: &'a [WorkloadPod],
    url: &str,
) -> Vec<(&'a WorkloadPod, u16)> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("{url}: no scheme"));
    let host_port = rest.split('/').next().unwrap_or_default();
    let (host, port) = host_port
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url}: no port"));
    let port: u64 = port.parse().expect("numeric port");
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default();
    let service = object(objects, "Service", name);
    let namespace = service["metadata"]["namespace"].as_str();
    if let Some(ns) = parts.next() {
        assert_eq!(Some(ns), namespace, "{url}: another namespace");
    }
    let service_port = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"].as_u64() == Some(port))
        .unwrap_or_else(|| panic!("{url}: Service {name} has no port {port}"));
    let selector = string_map(&service["spec"]["selector"]);
    let found: Vec<_> = pods
        .iter()
        .filter(|pod| {
            matches!(&pod.endpoint, Endpoint::Pod { namespace: ns, .. } if Some(ns.as_str()) == namespace)
                && selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
        })
        .map(|pod| {
            let number = match &service_port["targetPort"] {
                Value::Null => u16::try_from(port).expect("port"),
                Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()).expect("port"),
                Value::String(port_name) => pod
                    .ports()
                    .iter()
                    .find(|p| p.name.as_deref() == Some(port_name))
                    .unwrap_or_else(|| panic!("{url}: {} has no port named {port_name}", pod.workload))
                    .number,
                other => panic!("{url}: targetPort {other}"),
            };
            (pod, number)
        })
        .collect();
    assert!(!found.is_empty(), "{url}: Service {name} selects no pod");
    found
}

/// One connection the demo needs (or must not get).
struct Flow {
    what: String,
    from: Endpoint,
    to: Endpoint,
    port: u16,
    protocol: &'static str,
}

/// Every connection the demo makes, derived from the manifests and the
/// configuration files that name their peers.
fn needed_flows(objects: &[Value], pods: &[WorkloadPod]) -> Vec<Flow> {
    let mut flows = Vec::new();
    let to_url = |flows: &mut Vec<Flow>, what: &str, from: &WorkloadPod, url: &str| {
        for (backend, port) in backends(objects, pods, url) {
            flows.push(Flow {
                what: format!("{what}: {} -> {} ({url})", from.workload, backend.workload),
                from: from.endpoint.clone(),
                to: backend.endpoint.clone(),
                port,
                protocol: "TCP",
            });
        }
    };
    let by_name = |name: &str| -> Vec<&WorkloadPod> {
        pods.iter()
            .filter(|pod| {
                pod.labels()
                    .get("app.kubernetes.io/name")
                    .map(String::as_str)
                    == Some(name)
            })
            .collect()
    };
    let prometheus = by_name("prometheus");
    assert_eq!(prometheus.len(), 1, "one Prometheus");
    let prometheus = prometheus[0];

    for pod in pods {
        for target in pod.env("PINGER_TARGET") {
            for url in target.split(',') {
                to_url(&mut flows, "pings", pod, url);
            }
        }
        for endpoint in pod.env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            to_url(&mut flows, "OTLP", pod, &endpoint);
        }
    }

    // Scrapes, as prometheus-k8s.yml selects targets: the scrape annotation
    // and the container port names its keep rule accepts.
    let config = yaml_file("prometheus/prometheus-k8s.yml");
    let port_names: Vec<String> = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["relabel_configs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|rule| {
            rule["source_labels"][0] == "__meta_kubernetes_pod_container_port_name"
                && rule["action"] == "keep"
        })
        .and_then(|rule| rule["regex"].as_str().map(str::to_owned))
        .expect("a keep rule on the container port name")
        .split('|')
        .map(str::to_owned)
        .collect();
    let mut scraped = 0;
    for pod in pods {
        if pod.template["metadata"]["annotations"]["prometheus.io/scrape"] != "true" {
            continue;
        }
        for port in pod.ports() {
            if port
                .name
                .as_ref()
                .is_some_and(|name| port_names.contains(name))
            {
                scraped += 1;
                flows.push(Flow {
                    what: format!("scrape {} port {}", pod.workload, port.number),
                    from: prometheus.endpoint.clone(),
                    to: pod.endpoint.clone(),
                    port: port.number,
                    protocol: "TCP",
                });
            }
        }
    }
    assert!(scraped >= 5, "only {scraped} scrape targets found");

    // The controller scraped by Prometheus, and querying it for analyses.
    let (controller, controller_port) = rollouts_controller();
    flows.push(Flow {
        what: "scrape the Argo Rollouts controller".into(),
        from: prometheus.endpoint.clone(),
        to: controller.clone(),
        port: controller_port,
        protocol: "TCP",
    });
    for template in of_kind(objects, "AnalysisTemplate") {
        let namespace = template["metadata"]["namespace"]
            .as_str()
            .expect("namespace");
        for metric in template["spec"]["metrics"].as_array().expect("metrics") {
            let address = metric["provider"]["prometheus"]["address"]
                .as_str()
                .expect("prometheus address")
                .replace("{{args.namespace}}", namespace);
            for (backend, port) in backends(objects, pods, &address) {
                flows.push(Flow {
                    what: format!("analysis query {} -> {}", metric["name"], backend.workload),
                    from: controller.clone(),
                    to: backend.endpoint.clone(),
                    port,
                    protocol: "TCP",
                });
            }
        }
    }

    let tempo_config = yaml_file("tempo/tempo.yaml");
    let remote_writes = tempo_config["metrics_generator"]["storage"]["remote_write"]
        .as_array()
        .expect("Tempo remote_write");
    for tempo in by_name("tempo") {
        for remote_write in remote_writes {
            let url = remote_write["url"].as_str().expect("url");
            to_url(&mut flows, "remote write", tempo, url);
        }
    }
    let datasources = yaml_file("grafana/provisioning/datasources/datasources.yaml");
    for grafana in by_name("grafana") {
        for datasource in datasources["datasources"].as_array().expect("datasources") {
            let url = datasource["url"].as_str().expect("datasource url");
            to_url(&mut flows, "datasource", grafana, url);
        }
    }

    // Pod discovery: the API server, through the kubernetes Service (443) or
    // at its endpoint (6443 on kubeadm and kind).
    for port in [443, 6443] {
        flows.push(Flow {
            what: format!("Prometheus pod discovery (API server :{port})"),
            from: prometheus.endpoint.clone(),
            to: Endpoint::Address,
            port,
            protocol: "TCP",
        });
    }
    // DNS, to CoreDNS in kube-system or a node-local cache.
    let core_dns = Endpoint::pod(
        "kube-system",
        Labels::new(),
        [("k8s-app".to_owned(), "kube-dns".to_owned())].into(),
        vec![],
    );
    for pod in pods {
        for protocol in ["UDP", "TCP"] {
            for to in [&core_dns, &Endpoint::Address] {
                flows.push(Flow {
                    what: format!("DNS/{protocol} from {}", pod.workload),
                    from: pod.endpoint.clone(),
                    to: to.clone(),
                    port: 53,
                    protocol,
                });
            }
        }
    }
    flows
}

/// Connections that must be refused: from another namespace (even with our
/// labels), between our pods where nothing needs them, to the internet.
fn refused_flows(pods: &[WorkloadPod]) -> Vec<Flow> {
    let mut flows = Vec::new();
    let (controller, _) = rollouts_controller();
    for pod in pods {
        let stranger = Endpoint::pod("default", Labels::new(), pod.labels().clone(), vec![]);
        for port in pod.ports() {
            flows.push(Flow {
                what: format!("another namespace -> {} port {}", pod.workload, port.number),
                from: stranger.clone(),
                to: pod.endpoint.clone(),
                port: port.number,
                protocol: "TCP",
            });
            if pod
                .labels()
                .get("app.kubernetes.io/name")
                .map(String::as_str)
                != Some("prometheus")
            {
                flows.push(Flow {
                    what: format!(
                        "Argo Rollouts controller -> {} port {}",
                        pod.workload, port.number
                    ),
                    from: controller.clone(),
                    to: pod.endpoint.clone(),
                    port: port.number,
                    protocol: "TCP",
                });
            }
        }
        for port in [80, 443] {
            if port == 443 && pod.workload == "Deployment/prometheus" {
                continue;
            }
            flows.push(Flow {
                what: format!("{} -> the internet :{port}", pod.workload),
                from: pod.endpoint.clone(),
                to: Endpoint::Address,
                port,
                protocol: "TCP",
            });
        }
    }
    let named = |name: &str| {
        pods.iter()
            .find(|pod| {
                pod.labels()
                    .get("app.kubernetes.io/name")
                    .map(String::as_str)
                    == Some(name)
            })
            .unwrap_or_else(|| panic!("no {name} pod"))
    };
    for (from, to, port) in [
        ("ponger", "prometheus", 9090),
        ("pinger", "prometheus", 9090),
        ("pinger", "grafana", 3000),
        ("ponger", "pinger", 8081),
        ("grafana", "ponger", 8080),
        ("tempo", "ponger", 8080),
    ] {
        flows.push(Flow {
            what: format!("{from} -> {to} port {port}"),
            from: named(from).endpoint.clone(),
            to: named(to).endpoint.clone(),
            port,
            protocol: "TCP",
        });
    }
    flows
}

fn check(policies: &[Value], flow: &Flow) -> bool {
    netpol::allows(
        policies,
        Connection {
            from: &flow.from,
            to: &flow.to,
            port: flow.port,
            protocol: flow.protocol,
        },
    )
    .unwrap_or_else(|error| panic!("{}: {error}", flow.what))
}

#[test]
fn network_policies_deny_by_default_and_allow_exactly_the_demo_flows() {
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        let pods = workload_pods(&objects);
        let policies: Vec<Value> = of_kind(&objects, "NetworkPolicy")
            .into_iter()
            .cloned()
            .collect();

        // Default deny, both directions, for every pod of the namespace.
        let default_deny = policies.iter().find(|p| {
            p["spec"]["podSelector"]
                .as_object()
                .is_some_and(|selector| selector.is_empty())
                && p["spec"].get("ingress").is_none()
                && p["spec"].get("egress").is_none()
        });
        let default_deny =
            default_deny.unwrap_or_else(|| panic!("{overlay}: no default-deny NetworkPolicy"));
        assert_eq!(
            netpol::policy_types(default_deny),
            ["Ingress", "Egress"],
            "{overlay}: the default deny covers both directions"
        );

        let mut failures = Vec::new();
        let needed = needed_flows(&objects, &pods);
        for flow in &needed {
            if !check(&policies, flow) {
                failures.push(format!("needed but refused: {}", flow.what));
            }
        }
        let refused = refused_flows(&pods);
        for flow in &refused {
            if check(&policies, flow) {
                failures.push(format!("allowed but not needed: {}", flow.what));
            }
        }
        assert!(failures.is_empty(), "{overlay}:\n{}", failures.join("\n"));
        assert!(
            needed.len() > 20 && refused.len() > 20,
            "{overlay}: too few flows"
        );

        // Without the policies, the refused flows would pass: the refusals
        // above are the policies' doing.
        assert!(refused.iter().all(|flow| check(&[], flow)));
    }
}

#[test]
fn network_policy_selectors_and_ports_name_what_exists() {
    let (controller, _) = rollouts_controller();
    // Peerless egress (any address) is only for DNS and the API server.
    let any_address_ports: [(u16, &str); 4] =
        [(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")];
    for overlay in OVERLAYS {
        let objects = kustomize(overlay);
        let pods = workload_pods(&objects);
        let policies = of_kind(&objects, "NetworkPolicy");
        assert!(policies.len() > 1, "{overlay}: no NetworkPolicy");
        let selected = |selector: &Value, namespace: &str| -> Vec<&WorkloadPod> {
            pods.iter()
                .filter(|pod| {
                    matches!(&pod.endpoint, Endpoint::Pod { namespace: ns, .. } if ns == namespace)
                        && netpol::selects(selector, pod.labels()).expect("selector")
                })
                .collect()
        };
        for policy in policies {
            let name = policy["metadata"]["name"].as_str().expect("name");
            let namespace = policy["metadata"]["namespace"].as_str().expect("namespace");
            let what = format!("{overlay}: NetworkPolicy {name}");
            let own = selected(&policy["spec"]["podSelector"], namespace);
            assert!(!own.is_empty(), "{what}: its podSelector selects no pod");
            for (key, peers_key) in [("ingress", "from"), ("egress", "to")] {
                for rule in policy["spec"][key].as_array().cloned().unwrap_or_default() {
                    let peers = rule[peers_key].as_array().cloned().unwrap_or_default();
                    // The pods on the far side of the rule, with their ports.
                    let mut far: Vec<(String, Vec<ContainerPort>)> = Vec::new();
                    for peer in &peers {
                        if peer.get("namespaceSelector").is_some() {
                            let matches = netpol::selects(
                                &peer["namespaceSelector"],
                                controller.namespace_labels().expect("a pod"),
                            )
                            .expect("selector")
                                && netpol::selects(
                                    peer.get("podSelector").unwrap_or(&Value::Null),
                                    controller.labels().expect("a pod"),
                                )
                                .expect("selector");
                            assert!(
                                matches,
                                "{what}: peer {peer} is in another namespace and is not the Argo Rollouts controller"
                            );
                            far.push((
                                "the Argo Rollouts controller".into(),
                                controller.ports().to_vec(),
                            ));
                        } else {
                            let peer_pods = selected(&peer["podSelector"], namespace);
                            assert!(!peer_pods.is_empty(), "{what}: peer {peer} selects no pod");
                            far.extend(
                                peer_pods
                                    .iter()
                                    .map(|pod| (pod.workload.clone(), pod.ports().to_vec())),
                            );
                        }
                    }
                    let ports = rule["ports"].as_array().cloned().unwrap_or_default();
                    if peers.is_empty() {
                        assert_eq!(
                            key, "egress",
                            "{what}: an ingress rule open to every source"
                        );
                        assert!(
                            !ports.is_empty(),
                            "{what}: egress to any address on any port"
                        );
                        for port in &ports {
                            let number = port["port"].as_u64().expect("numeric port");
                            let protocol = port["protocol"].as_str().unwrap_or("TCP");
                            assert!(
                                any_address_ports
                                    .iter()
                                    .any(|(n, p)| u64::from(*n) == number && *p == protocol),
                                "{what}: egress to any address on {number}/{protocol}"
                            );
                        }
                        continue;
                    }
                    // A port names what the destination listens on: the
                    // policy's own pods for ingress, the peers for egress.
                    let destinations: Vec<(String, Vec<ContainerPort>)> = if key == "ingress" {
                        own.iter()
                            .map(|pod| (pod.workload.clone(), pod.ports().to_vec()))
                            .collect()
                    } else {
                        far
                    };
                    for port in &ports {
                        let number = port["port"].as_u64().expect("numeric port");
                        let protocol = port["protocol"].as_str().unwrap_or("TCP");
                        for (workload, listening) in &destinations {
                            assert!(
                                listening.iter().any(
                                    |p| u64::from(p.number) == number && p.protocol == protocol
                                ),
                                "{what}: {key} port {number}/{protocol}, but {workload} does not listen on it"
                            );
                        }
                    }
                }
            }
        }
    }
}
