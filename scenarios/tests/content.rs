//! Every file, manifest, image tag and compose service the workshop content
//! refers to exists in the repository, and the Killercoda scenario is complete.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::workspace;

fn scenario() -> PathBuf {
    workspace().join("scenarios/killercoda/pingpong-rollouts")
}

fn content_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![
        workspace().join("scenarios/killercoda"),
        workspace().join("scenarios/walkthroughs"),
    ];
    files.push(workspace().join("scenarios/README.md"));
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("md" | "sh" | "json")
            ) {
                files.push(path);
            }
        }
    }
    files
}

/// The profiles docker-bake.hcl builds as ponger image tags.
fn bake_tags() -> BTreeSet<String> {
    let bake =
        std::fs::read_to_string(workspace().join("docker-bake.hcl")).expect("docker-bake.hcl");
    let line = bake
        .lines()
        .find(|line| line.trim_start().starts_with("profile ="))
        .expect("a profile matrix");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_killercoda_scenario_is_complete() {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scenario().join("index.json")).expect("index.json"),
    )
    .expect("JSON");
    let details = &index["details"];
    let mut referenced = vec![
        details["intro"]["text"].clone(),
        details["finish"]["text"].clone(),
    ];
    for key in ["background", "foreground"] {
        referenced.push(details["intro"][key].clone());
    }
    let steps = details["steps"].as_array().expect("steps");
    assert_eq!(
        steps.len(),
        8,
        "install, deploy, users, errors, slow, exemplar, best, why"
    );
    for step in steps {
        assert!(step["title"].is_string());
        assert!(
            step["verify"].is_string(),
            "every step has a verify script: {step}"
        );
        referenced.push(step["text"].clone());
        referenced.push(step["verify"].clone());
    }
    for file in referenced.iter().filter_map(|file| file.as_str()) {
        assert!(
            scenario().join(file).is_file(),
            "index.json names {file}, which is missing"
        );
    }
    for asset in details["assets"]["host01"].as_array().expect("assets") {
        let file = asset["file"].as_str().expect("file");
        assert!(
            scenario().join("assets").join(file).is_file(),
            "asset {file} is missing"
        );
    }
    assert!(index["backend"]["imageid"].is_string());
    // Every step has at least one executable command.
    for step in steps {
        let text =
            std::fs::read_to_string(scenario().join(step["text"].as_str().unwrap())).unwrap();
        assert!(text.contains("`{{exec}}"), "{step}: no executable command");
    }
}

#[test]
fn every_shell_script_parses() {
    for file in content_files()
        .into_iter()
        .filter(|file| file.extension().is_some_and(|e| e == "sh"))
    {
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(&file)
            .status()
            .expect("bash");
        assert!(status.success(), "{} does not parse", file.display());
    }
}

const TOP_LEVEL: [&str; 10] = [
    "k8s/",
    "prometheus/",
    "grafana/",
    "tempo/",
    "docs/",
    "scripts/",
    "scenarios/",
    "docker-compose.yml",
    "docker-bake.hcl",
    "Dockerfile",
];

/// Repository paths mentioned in `text` (also behind /root/pingpong/).
fn paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || "`'\"()[]<>,;|".contains(c)) {
        let token = raw
            .trim_start_matches("/root/pingpong/")
            .trim_end_matches(['.', ':', '*']);
        if token.contains("{{") || token.contains('$') || token.contains("://") {
            continue;
        }
        if TOP_LEVEL.iter().any(|prefix| token.starts_with(prefix)) {
            found.push(token.to_owned());
        }
    }
    found
}

#[test]
fn every_referenced_file_manifest_image_and_service_exists() {
    let tags = bake_tags();
    assert_eq!(
        tags,
        scenarios::plan::VERSIONS
            .iter()
            .map(|v| v.to_string())
            .collect::<BTreeSet<_>>(),
        "the rehearsal's versions are the image tags docker-bake.hcl builds"
    );
    let compose = std::fs::read_to_string(workspace().join("docker-compose.yml")).expect("compose");
    let mut checked = 0;
    for file in content_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display();
        for path in paths(&text) {
            let full = workspace().join(&path);
            assert!(
                full.exists(),
                "{name} refers to {path}, which does not exist"
            );
            checked += 1;
        }
        // kustomize targets are kustomizations.
        for (index, _) in text.match_indices("apply -k ") {
            let target = text[index + 9..]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            let target = target
                .trim_start_matches("/root/pingpong/")
                .trim_end_matches(['`', '.', ',', ')']);
            if target.starts_with("k8s") {
                assert!(
                    Path::new(&workspace().join(target))
                        .join("kustomization.yaml")
                        .is_file(),
                    "{name}: {target}"
                );
            }
        }
        // ponger image tags are built.
        for (index, _) in text.match_indices("ponger:") {
            let tag: String = text[index + 7..]
                .chars()
                .take_while(|c| {
                    c.is_ascii_alphanumeric() || *c == '$' || *c == '{' || *c == '}' || *c == '_'
                })
                .collect();
            if tag.is_empty() || tag.starts_with('$') || tag.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            assert!(
                tags.contains(&tag),
                "{name}: image ponger:{tag} is not built by docker-bake.hcl ({tags:?})"
            );
        }
        if text.contains("pinger:") {
            assert!(
                std::fs::read_to_string(workspace().join("docker-bake.hcl"))
                    .unwrap()
                    .contains("pinger:${PINGER_TAG}"),
                "docker-bake.hcl builds pinger"
            );
        }
        // compose services switched by hand exist.
        for (index, pattern) in text
            .match_indices("docker compose up -d ")
            .chain(text.match_indices("docker compose up --wait "))
        {
            let service = text[index + pattern.len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            if service.chars().all(|c| c.is_ascii_lowercase()) && !service.is_empty() {
                assert!(
                    compose.contains(&format!("\n  {service}:\n")),
                    "{name}: compose service {service}"
                );
            }
        }
        if text.contains("PONGER_TAG") {
            assert!(
                compose.contains("PONGER_TAG"),
                "docker-compose.yml reads PONGER_TAG"
            );
        }
    }
    assert!(
        checked > 10,
        "the path scanner found only {checked} references"
    );
}

#[test]
fn the_path_scanner_can_fail() {
    let found = paths("see `k8s/overlays/nowhere/` and /root/pingpong/docs/deploy.md.");
    assert_eq!(
        found,
        vec![
            "k8s/overlays/nowhere/".to_owned(),
            "docs/deploy.md".to_owned()
        ]
    );
    assert!(!workspace().join(&found[0]).exists());
}
