//! Bad input and broken surroundings: a clear message, a non-zero exit, and
//! no process left behind.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    alive, announced_pids, assert_nothing_left, canary_overlay, child_streams, rehearsal, run,
    wait_child,
};

const QUICK: Duration = Duration::from_secs(30);

#[test]
fn an_unknown_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = run(
        rehearsal(&["latest", "--time-scale", "10"], dir.path()),
        QUICK,
    );
    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("unknown version \"latest\""),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("initial, errors, slow, best"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stdout.contains("pid "),
        "nothing started: {}",
        finished.stdout
    );
}

#[test]
fn unreadable_manifests_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = run(
        rehearsal(&["errors", "--manifests", "/nonexistent/k8s"], dir.path()),
        QUICK,
    );
    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("cannot read manifests at /nonexistent/k8s"),
        "{}",
        finished.stderr
    );

    // A kustomization naming a file that is not YAML.
    let broken = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        broken.path().join("kustomization.yaml"),
        "resources: [rollout.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        broken.path().join("rollout.yaml"),
        "kind: Rollout\nspec: [unclosed\n",
    )
    .unwrap();
    let finished = run(
        rehearsal(
            &["errors", "--manifests", broken.path().to_str().unwrap()],
            dir.path(),
        ),
        QUICK,
    );
    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    // The reader says "rollout.yaml: not valid YAML", kubectl kustomize
    // "MalformedYAMLError: ... in File: rollout.yaml".
    assert!(
        finished.stderr.contains("rollout.yaml") && finished.stderr.contains("YAML"),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_condition_that_does_not_compile_is_refused_before_anything_starts() {
    // The real overlay, with one condition rewritten by a kustomize patch.
    let overlay = canary_overlay(
        "patches:\n  - target: {kind: AnalysisTemplate, name: ponger-health}\n    patch: |\n      - op: replace\n        path: /spec/metrics/0/successCondition\n        value: \"p99(result) >= 0.80\"\n",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = run(
        rehearsal(
            &["errors", "--manifests", overlay.path().to_str().unwrap()],
            dir.path(),
        ),
        QUICK,
    );
    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    let stderr = &finished.stderr;
    assert!(
        stderr.contains("metric success-ratio: successCondition"),
        "{stderr}"
    );
    assert!(stderr.contains("Unknown function: p99"), "{stderr}");
    assert!(
        !finished.stdout.contains("pid "),
        "nothing started: {}",
        finished.stdout
    );

    // The same check applies to a --compare template.
    let template = overlay.path().join("template.yaml");
    std::fs::write(
        &template,
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec:\n  metrics:\n    - name: m\n      successCondition: \"result[0] >=\"\n      provider: {prometheus: {query: up}}\n",
    )
    .unwrap();
    let finished = run(
        rehearsal(
            &["errors", "--compare", template.to_str().unwrap()],
            dir.path(),
        ),
        QUICK,
    );
    assert_eq!(finished.code, Some(2), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("metric m: successCondition: condition `result[0] >=`"),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_missing_prometheus_names_how_to_install_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = rehearsal(&["errors"], dir.path());
    command.env("PATH", "/nonexistent");
    let finished = run(command, QUICK);
    assert_eq!(finished.code, Some(1), "{}", finished.stderr);
    // No apt-get on this PATH either: the one thing to do is named (with
    // apt-get, as root or with sudo, the rehearsal installs the package; see
    // scenarios::prerequisites).
    let message = finished.stderr.trim();
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert!(
        message.contains("prometheus is not on PATH")
            && message.contains("https://prometheus.io/download/")
            && message.contains("--prometheus <path>"),
        "{message}"
    );
}

/// Starts a rehearsal of `best` (it would run a while) and waits for the
/// first step; returns the running child and its streams.
fn started(
    dir: &std::path::Path,
) -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let mut command = rehearsal(&["best", "--time-scale", "10"], dir);
    command.stdout(Stdio::piped());
    let streams = child_streams(command.spawn().expect("starts"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !streams.1.lock().unwrap().contains("step 1/") {
        assert!(
            Instant::now() < deadline,
            "no step after 60 s: {}{}",
            streams.1.lock().unwrap(),
            streams.2.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    streams
}

#[test]
fn prometheus_dying_mid_run_stops_the_rehearsal_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let streams = started(dir.path());
    let stdout = streams.1.lock().unwrap().clone();
    let line = stdout
        .lines()
        .find(|line| line.contains("prometheus (pid "))
        .expect("prometheus line");
    let pid = announced_pids(line)[0];
    assert!(alive(pid));
    kill_hard(pid);
    let finished = wait_child(streams, Duration::from_secs(60));
    assert_eq!(
        finished.code,
        Some(1),
        "{}\n{}",
        finished.stdout,
        finished.stderr
    );
    assert!(
        finished.stderr.contains("Prometheus (pid"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("exited during the rehearsal"),
        "{}",
        finished.stderr
    );
    assert_nothing_left(&finished.stdout);
    assert!(
        !dir.path().join("rehearsal-best.json").exists(),
        "no report for a broken rehearsal"
    );
}

#[test]
fn ctrl_c_stops_every_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let streams = started(dir.path());
    let pid = streams.0.id();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let finished = wait_child(streams, Duration::from_secs(60));
    assert_eq!(
        finished.code,
        Some(130),
        "{}\n{}",
        finished.stdout,
        finished.stderr
    );
    assert_nothing_left(&finished.stdout);
}

/// SIGKILL: the process gets no chance to clean up.
fn kill_hard(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
}
