//! The rehearsal renders the manifests with `kubectl kustomize` when kubectl
//! is on PATH and with its own reader otherwise. For every overlay, both
//! renderings must give the same rehearsal: the same objects, the same
//! Rollout strategy and analysis, the same plan. (The reader leaves out
//! kustomize's `labels` and the generators' name hashes; nothing the
//! rehearsal plays depends on them.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rollout_model::model::{AnalysisTemplate, Rollout, from_value};
use scenarios::manifests::{self, Rendered};
use scenarios::plan::Plan;

const OVERLAYS: &[&str] = &["k8s", "k8s/overlays/canary", "k8s/overlays/bluegreen"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("a workspace member")
        .to_path_buf()
}

fn renderings(overlay: &str) -> (Rendered, Rendered) {
    let dir = workspace().join(overlay);
    let kubectl = which::which("kubectl")
        .expect("kubectl is missing: run scripts/install-test-deps.sh (it installs kubectl)");
    let by_kubectl = manifests::render_with_kubectl(&kubectl, &dir).expect("kubectl kustomize");
    let by_reader = manifests::read(&dir).expect("the reader");
    (by_kubectl, by_reader)
}

/// Kind and name of every object; a generated ConfigMap's name without the
/// hash kustomize appends.
fn kinds_and_names(rendered: &Rendered, generated: &BTreeSet<String>) -> BTreeSet<String> {
    rendered
        .objects
        .iter()
        .map(|object| {
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let name = match name.rsplit_once('-') {
                Some((base, _)) if kind == "ConfigMap" && generated.contains(base) => base,
                _ => name,
            };
            format!("{kind}/{name}")
        })
        .collect()
}

fn analysis_templates(rendered: &Rendered) -> Vec<(String, String)> {
    rendered
        .of_kind("AnalysisTemplate")
        .map(|object| {
            let template: AnalysisTemplate = from_value(object).expect("an AnalysisTemplate");
            (
                template.metadata.name.clone(),
                format!("{:?}", template.spec),
            )
        })
        .collect()
}

/// What the rehearsal plays, with the pod-template hashes (which the labels
/// kustomize adds change) named by role.
fn played(plan: &Plan) -> String {
    let text = format!(
        "{} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {} {:?} {:?}",
        plan.namespace,
        plan.rollout_name,
        plan.replicas,
        plan.steps,
        plan.starting_step,
        plan.analysis,
        plan.drain_delay,
        plan.grace_period,
        plan.readiness_period,
        plan.prometheus_config,
        plan.pinger.rate,
        plan.pinger.target_name,
        plan.pinger.timeout,
        plan.stable_version,
    );
    text.replace(&plan.canary_hash, "<canary-hash>")
        .replace(&plan.stable_hash, "<stable-hash>")
}

#[test]
fn the_reader_and_kubectl_kustomize_give_the_same_rehearsal_for_every_overlay() {
    for overlay in OVERLAYS {
        let (by_kubectl, by_reader) = renderings(overlay);
        let generated: BTreeSet<String> = by_reader
            .of_kind("ConfigMap")
            .filter_map(|object| object["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            kinds_and_names(&by_kubectl, &generated),
            kinds_and_names(&by_reader, &generated),
            "{overlay}: the objects"
        );
        assert_eq!(by_kubectl.namespace, by_reader.namespace, "{overlay}");
        let strategy = |rendered: &Rendered| {
            let rollout: Rollout = from_value(
                rendered
                    .named("Rollout", "ponger")
                    .expect("the ponger Rollout"),
            )
            .expect("a Rollout");
            rollout.spec.strategy
        };
        assert_eq!(strategy(&by_kubectl), strategy(&by_reader), "{overlay}");
        assert_eq!(
            analysis_templates(&by_kubectl),
            analysis_templates(&by_reader),
            "{overlay}"
        );
        let plan =
            |rendered: Rendered| Plan::from_rendered(rendered, overlay.to_string(), "errors");
        match (plan(by_kubectl), plan(by_reader)) {
            (Ok(kubectl), Ok(reader)) => {
                assert_eq!(played(&kubectl), played(&reader), "{overlay}: the plan");
            }
            // Blue-green has no canary to rehearse: both say so alike.
            (Err(kubectl), Err(reader)) => {
                assert!(overlay.ends_with("bluegreen"), "{overlay}: {kubectl}");
                assert_eq!(kubectl, reader, "{overlay}");
            }
            (kubectl, reader) => panic!(
                "{overlay}: kubectl gives {:?}, the reader {:?}",
                kubectl.err(),
                reader.err()
            ),
        }
    }
}
