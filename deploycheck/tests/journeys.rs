//! The journeys users follow (README, walkthroughs, the Killercoda scenario,
//! the workflows that run them) are free of the defects a careful reading
//! against kustomize, Argo Rollouts and the images found: labels that miss the
//! Rollout's pods, absolute kustomize roots, unbounded waits, client-side
//! applies of large CRDs, drifting or unexplained version pins.

use std::path::{Path, PathBuf};

use deploycheck::{kustomize, of_kind, read, repo, yaml_documents};
use serde_json::Value;

/// Every Markdown page whose commands users run.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md"), repo().join("scenarios/README.md")];
    for dir in [
        "scenarios/walkthroughs",
        "scenarios/killercoda/pingpong-rollouts",
    ] {
        pages.extend(files_in(dir, "md"));
    }
    pages
}

fn files_in(relative: &str, extension: &str) -> Vec<PathBuf> {
    let dir = repo().join(relative);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// Every shell script and workflow of the repository.
fn scripts() -> Vec<PathBuf> {
    let mut scripts = files_in("scripts", "sh");
    scripts.push(repo().join(".ci/run"));
    scripts.extend(files_in("scenarios/killercoda/pingpong-rollouts", "sh"));
    scripts.extend(files_in(
        "scenarios/killercoda/pingpong-rollouts/assets",
        "sh",
    ));
    scripts.extend(files_in(".github/workflows", "yml"));
    scripts
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn name(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Shell commands of a page: fenced shell blocks and Killercoda's
/// `` `cmd`{{exec}} `` (joined with their continuation lines).
fn commands(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_shell = false;
    let mut in_other = false;
    for line in page.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_shell || in_other {
                in_shell = false;
                in_other = false;
            } else if matches!(info.trim(), "sh" | "bash" | "shell" | "console") {
                in_shell = true;
            } else {
                in_other = true;
            }
            continue;
        }
        if in_shell {
            found.push(line.to_owned());
        }
        for (start, _) in line.match_indices('`') {
            if let Some(end) = line[start + 1..].find("`{{exec}}") {
                found.push(line[start + 1..start + 1 + end].to_owned());
            }
        }
    }
    join_continuations(&found)
}

fn join_continuations(lines: &[String]) -> Vec<String> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in lines {
        current.push_str(line.trim_end().trim_end_matches('\\'));
        current.push(' ');
        if !line.trim_end().ends_with('\\') {
            joined.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        joined.push(current);
    }
    joined
}

#[test]
fn every_pod_template_carries_the_part_of_label() {
    for dir in ["k8s/base", "k8s/overlays/canary", "k8s/overlays/bluegreen"] {
        let objects = kustomize(dir);
        let workloads: Vec<&Value> = ["Deployment", "StatefulSet", "Rollout"]
            .iter()
            .flat_map(|kind| of_kind(&objects, kind))
            .collect();
        assert!(
            workloads.iter().any(|w| w["kind"] == "Rollout"),
            "{dir}: no Rollout rendered"
        );
        for workload in workloads {
            let labels = &workload["spec"]["template"]["metadata"]["labels"];
            assert_eq!(
                labels["app.kubernetes.io/part-of"], "pingpong",
                "{dir}: the pods of {} {} lack app.kubernetes.io/part-of: pingpong ({labels})",
                workload["kind"], workload["metadata"]["name"]
            );
        }
    }
}

#[test]
fn the_error_limit_is_documented_as_argo_applies_it() {
    // Argo Rollouts errors a run when consecutive errors EXCEED the limit
    // (scenarios/src/analysis.rs models the same rule).
    let template = read("k8s/base/analysis-template.yaml");
    let limits: Vec<u64> = yaml_documents(&template)[0]["spec"]["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|metric| metric["consecutiveErrorLimit"].as_u64().unwrap_or(4))
        .collect();
    assert!(limits.iter().all(|limit| *limit == 4), "{limits:?}");
    let comment: String = template
        .lines()
        .take_while(|line| line.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !comment.contains("consecutiveErrorLimit errors in a row abort"),
        "the template's comment says the limit itself aborts: {comment}"
    );
    assert!(
        comment.contains("exceed consecutiveErrorLimit") && comment.contains("the fifth with 4"),
        "the template's comment must say the errors in a row must exceed the limit: {comment}"
    );
    let readme = read("README.md");
    let row = readme
        .lines()
        .find(|line| line.starts_with("| `consecutiveErrorLimit`"))
        .expect("README's row of consecutiveErrorLimit");
    assert!(row.contains("the fifth in a row"), "{row}");
    assert!(
        !readme.contains("after `consecutiveErrorLimit` the run errors"),
        "README says the run errors at the limit rather than after it"
    );
}

/// The Argo Rollouts release the repository pins: the default of the
/// Killercoda settings, which must match the vendored CRDs.
fn pinned_argo_rollouts() -> String {
    let env = read("scenarios/killercoda/pingpong-rollouts/assets/pingpong-env.sh");
    let start = env
        .find("ARGO_ROLLOUTS_VERSION:-")
        .expect("pingpong-env.sh pins ARGO_ROLLOUTS_VERSION")
        + "ARGO_ROLLOUTS_VERSION:-".len();
    env[start..]
        .split('}')
        .next()
        .expect("a version")
        .to_owned()
}

#[test]
fn argo_rollouts_is_installed_server_side_at_the_pinned_release() {
    let pinned = pinned_argo_rollouts();
    let mut installs = 0;
    let sources: Vec<PathBuf> = pages().into_iter().chain(scripts()).collect();
    for source in &sources {
        let body = text(source);
        let lines = if source.extension().is_some_and(|e| e == "md") {
            commands(&body)
        } else {
            join_continuations(&body.lines().map(str::to_owned).collect::<Vec<_>>())
        };
        for line in lines
            .iter()
            .filter(|line| line.contains("argo-rollouts/releases/download/"))
        {
            let version = line
                .split("argo-rollouts/releases/download/")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .expect("a release in the URL");
            assert!(
                version == pinned || version == "${ARGO_ROLLOUTS_VERSION}",
                "{}: Argo Rollouts {version}, but the pinned release is {pinned}: {line}",
                name(source)
            );
            if line.contains("install.yaml") {
                installs += 1;
                assert!(
                    line.contains("apply --server-side"),
                    "{}: install.yaml applied client-side; its CRDs exceed the \
                     last-applied annotation limit: {line}",
                    name(source)
                );
            }
        }
    }
    assert!(installs >= 2, "found {installs} installs of Argo Rollouts");
    let crds = read("deploycheck/crds/argo-rollouts/README.md");
    assert!(
        crds.contains(&format!("argo-rollouts {pinned}")) || crds.contains(&format!("`{pinned}`")),
        "the vendored CRDs are not those of {pinned}"
    );
}

/// Why a command line waits without a bound, if it does.
fn unbounded_wait(line: &str) -> Option<&'static str> {
    let waits_on_kubectl = (line.contains("rollout status") || line.contains("kubectl wait"))
        && !line.contains("kubectl argo rollouts");
    if waits_on_kubectl && !line.contains("--timeout") {
        return Some("kubectl waits without --timeout");
    }
    if line.contains("kubectl argo rollouts")
        && line.contains(" status ")
        && !line.contains("--timeout")
    {
        return Some("kubectl argo rollouts status waits without --timeout");
    }
    None
}

#[test]
fn every_wait_is_bounded() {
    let mut problems = Vec::new();
    for page in pages() {
        for command in commands(&text(&page)) {
            if let Some(why) = unbounded_wait(&command) {
                problems.push(format!("{}: {why}: {command}", name(&page)));
            }
        }
    }
    for script in scripts() {
        let body = text(&script);
        let lines = join_continuations(&body.lines().map(str::to_owned).collect::<Vec<_>>());
        for line in &lines {
            if let Some(why) = unbounded_wait(line) {
                problems.push(format!("{}: {why}: {line}", name(&script)));
            }
        }
        // A polling loop must have a deadline: SECONDS-based, or a bounded count.
        let loops = lines.iter().filter(|line| {
            let line = line.trim_start();
            line.starts_with("while ") || line.starts_with("until ")
        });
        for line in loops {
            let bounded = body.contains("deadline") || body.contains("$SECONDS");
            if !bounded {
                problems.push(format!(
                    "{}: a loop without a deadline: {line}",
                    name(&script)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "unbounded waits:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        unbounded_wait("kubectl -n argo-rollouts rollout status deployment/argo-rollouts"),
        Some("kubectl waits without --timeout"),
        "the check can fail"
    );
}

fn image_tags(image_prefix: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in [
        "docker-compose.yml",
        "k8s/base/prometheus.yaml",
        "k8s/base/tempo.yaml",
        "k8s/base/grafana.yaml",
    ] {
        for line in read(file).lines() {
            if let Some(at) = line.find(&format!("image: {image_prefix}:")) {
                let tag = line[at + image_prefix.len() + 8..].trim().to_owned();
                found.push((file.to_owned(), tag));
            }
        }
    }
    found
}

#[test]
fn versions_are_pinned_once_and_the_readme_states_them() {
    let readme = read("README.md");
    let pins = [
        // The 2.53 line is Prometheus' long-term-support 2.x release; its
        // latest patch. 3.x changes defaults (UTF-8 names, no console flags).
        ("prom/prometheus", "v2.53.5"),
        // Tempo 3.0 removed the config sections tempo/tempo.yaml uses; 2.6 is
        // the last line whose image has wget for the compose healthcheck.
        ("grafana/tempo", "2.6.1"),
        ("grafana/grafana", "11.3.0"),
    ];
    for (image, version) in pins {
        let tags = image_tags(image);
        assert!(
            tags.len() >= 2,
            "{image}: pinned in compose and k8s: {tags:?}"
        );
        for (file, tag) in &tags {
            assert_eq!(tag, version, "{file}: {image}:{tag}, expected {version}");
        }
        assert!(
            readme.contains(&format!("{image}:{version}")),
            "README.md does not state the pin {image}:{version}"
        );
    }
    assert!(
        read("tempo/tempo.yaml").contains("Grafana Tempo 2.6.1"),
        "tempo/tempo.yaml is written for the pinned Tempo"
    );
    // Builder and runtime on one Debian release: the binary's glibc symbols
    // must exist in the runtime image.
    let dockerfile = read("Dockerfile");
    let arg = |name: &str| -> String {
        dockerfile
            .lines()
            .find_map(|line| line.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("Dockerfile: no ARG {name}"))
            .to_owned()
    };
    let (builder, runtime) = (arg("RUST_IMAGE"), arg("RUNTIME_IMAGE"));
    let debian = [("bookworm", "debian12"), ("trixie", "debian13")];
    let pair = debian
        .iter()
        .find(|(codename, _)| builder.ends_with(codename))
        .unwrap_or_else(|| panic!("builder {builder} names no known Debian release"));
    assert!(
        runtime.contains(pair.1),
        "builder {builder} and runtime {runtime} are on different Debian releases"
    );
    assert!(
        builder.ends_with("trixie"),
        "builder {builder}: Debian 13 (trixie) is the release the Rust images are updated for"
    );
    for image in [&builder, &runtime] {
        assert!(
            readme.contains(image.as_str()),
            "README.md does not state {image}"
        );
    }
}

/// The `resources:` entries of every kustomization a page or script writes
/// with a heredoc.
fn written_kustomization_resources(body: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut in_resources = false;
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed == "resources:" {
            in_resources = true;
            continue;
        }
        if in_resources {
            if let Some(entry) = trimmed.strip_prefix("- ") {
                entries.push(entry.split_whitespace().next().unwrap_or("").to_owned());
                continue;
            }
            in_resources = false;
        }
    }
    entries
}

#[test]
fn kustomizations_written_by_pages_and_scripts_name_relative_resources() {
    let mut checked = 0;
    for source in pages().into_iter().chain(scripts()) {
        let body = text(&source);
        if !body.contains("kustomization.yaml <<") && !body.contains("kustomization.yaml\" <<") {
            continue;
        }
        for entry in written_kustomization_resources(&body) {
            checked += 1;
            assert!(
                !entry.starts_with('/')
                    && !entry.starts_with('~')
                    && !entry.starts_with("$OLDPWD")
                    && !entry.starts_with("${HOME")
                    && !entry.starts_with("$HOME"),
                "{}: kustomize refuses absolute roots in resources: {entry}",
                name(&source)
            );
        }
    }
    assert!(checked >= 2, "found {checked} written kustomizations");
}
