//! The Killercoda scenario as Killercoda runs it: the assets laid out exactly
//! as index.json says (a target is a directory; the file keeps its name), under
//! a scratch root standing for the VM's `/` (HOME is its /root), the
//! background script run with the repository cloned from a local git
//! repository of this working tree and the registry set, then the foreground
//! wait. Real bash, git and `kubectl kustomize`; nothing here needs a cluster.
//! The one stand-in: `kubectl` for deploy-version.sh, whose `kubectl patch`
//! needs a cluster, is a recorder (see the last test).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::workspace;
use serde_json::Value;

const REGISTRY: &str = "registry.workshop.test/pingpong/";

fn scenario() -> PathBuf {
    workspace().join("scenarios/killercoda/pingpong-rollouts")
}

/// The VM: a scratch root with the assets where index.json puts them.
struct Vm {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Vm {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("scratch root");
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("root")).expect("/root");
        let index: Value = serde_json::from_str(
            &std::fs::read_to_string(scenario().join("index.json")).expect("index.json"),
        )
        .expect("index.json is JSON");
        for asset in index["details"]["assets"]["host01"]
            .as_array()
            .expect("assets of host01")
        {
            let file = asset["file"].as_str().expect("file");
            let target = asset["target"].as_str().expect("target");
            assert!(
                target.starts_with('/'),
                "asset {file}: target {target} is not absolute"
            );
            // Killercoda: the target is a directory, created if needed, and
            // the file keeps its own name inside it.
            let directory = root.join(target.trim_start_matches('/'));
            std::fs::create_dir_all(&directory).unwrap_or_else(|error| {
                panic!("asset {file}: target {target} cannot be a directory: {error}")
            });
            let destination = directory.join(file);
            std::fs::copy(scenario().join("assets").join(file), &destination)
                .unwrap_or_else(|error| panic!("asset {file}: {error}"));
            if asset["chmod"].as_str() == Some("+x") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&destination, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod +x");
            }
        }
        Self { _dir: dir, root }
    }

    fn home(&self) -> PathBuf {
        self.root.join("root")
    }

    /// Runs `script` (an installed asset, found on the VM's PATH) as
    /// Killercoda would, with `envs`, bounded by `limit`.
    fn run(&self, script: &str, args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
        let bin = self.root.join("usr/local/bin");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("timeout");
        command
            .arg(format!("{}s", limit.as_secs()))
            .arg(bin.join(script))
            .args(args)
            .env("HOME", self.home())
            .env("PATH", path)
            .env_remove("PINGPONG_REPO")
            .env_remove("PINGPONG_REGISTRY")
            .env_remove("PINGPONG_REF")
            .envs(envs.iter().copied())
            .stdin(Stdio::null());
        command.output().expect("the script runs")
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A git repository holding this working tree's files (tracked and untracked
/// but not ignored), on branch `main`: what the presenter's fork would hold.
fn local_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("repository directory");
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(workspace())
        .output()
        .expect("git ls-files");
    assert!(listed.status.success(), "git ls-files failed");
    for name in listed.stdout.split(|byte| *byte == 0) {
        let name = String::from_utf8_lossy(name);
        let source = workspace().join(name.as_ref());
        if name.is_empty() || !source.is_file() {
            continue;
        }
        let destination = dir.path().join(name.as_ref());
        std::fs::create_dir_all(destination.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&source, &destination).expect("copy a repository file");
    }
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=workshop",
                "-c",
                "user.email=workshop@example.invalid",
            ])
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "workshop"]);
    dir
}

#[test]
fn the_background_setup_writes_an_overlay_that_renders_with_the_workshop_registry() {
    let vm = Vm::new();
    assert!(
        vm.home().join("pingpong-env.sh").is_file(),
        "index.json must put pingpong-env.sh in /root, where the scripts source it"
    );
    let repository = local_repository();
    let repo = repository.path().display().to_string();
    let settings = [
        ("PINGPONG_REPO", repo.as_str()),
        ("PINGPONG_REGISTRY", REGISTRY),
    ];

    let setup = vm.run("setup.sh", &[], &settings, Duration::from_secs(120));
    assert!(setup.status.success(), "setup.sh: {}", text(&setup));
    assert!(
        vm.home().join(".pingpong-setup-done").is_file(),
        "no marker; log:\n{}",
        std::fs::read_to_string(vm.home().join("pingpong-setup.log")).unwrap_or_default()
    );

    let rendered = Command::new("kubectl")
        .arg("kustomize")
        .arg(vm.home().join("pingpong-deploy"))
        .output()
        .expect("kubectl must be on PATH");
    assert!(
        rendered.status.success(),
        "kubectl kustomize of the overlay setup.sh wrote: {}",
        text(&rendered)
    );
    let manifests = String::from_utf8_lossy(&rendered.stdout);
    let images: Vec<&str> = manifests
        .lines()
        .filter_map(|line| line.trim().strip_prefix("image: "))
        .filter(|image| image.contains("ponger:") || image.contains("pinger:"))
        .collect();
    assert!(
        images.contains(&"registry.workshop.test/pingpong/ponger:initial")
            && images.contains(&"registry.workshop.test/pingpong/pinger:latest"),
        "{images:?}"
    );
    assert!(
        images.iter().all(|image| image.starts_with(REGISTRY)),
        "every ponger and pinger image comes from the workshop's registry: {images:?}"
    );

    let started = Instant::now();
    let wait = vm.run("wait-setup.sh", &[], &[], Duration::from_secs(30));
    assert!(wait.status.success(), "wait-setup.sh: {}", text(&wait));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&wait.stdout).contains("Ready"));
    let bashrc = std::fs::read_to_string(vm.home().join(".bashrc")).expect(".bashrc");
    assert!(bashrc.contains("pingpong-env.sh"), "{bashrc}");
}

/// The foreground after a background that failed: the reason, at once.
fn assert_failure_reported(vm: &Vm, expected: &str) {
    let started = Instant::now();
    let wait = vm.run(
        "wait-setup.sh",
        &[],
        &[("PINGPONG_SETUP_TIMEOUT", "60")],
        Duration::from_secs(90),
    );
    assert_eq!(wait.status.code(), Some(1), "{}", text(&wait));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&wait.stderr);
    assert!(
        stderr.contains("The setup failed") && stderr.contains(expected),
        "{}",
        text(&wait)
    );
}

#[test]
fn a_placeholder_repository_is_refused_and_the_foreground_says_so() {
    let vm = Vm::new();
    let setup = vm.run("setup.sh", &[], &[], Duration::from_secs(30));
    assert_eq!(setup.status.code(), Some(1), "{}", text(&setup));
    assert_failure_reported(&vm, "PINGPONG_REPO is still the placeholder");
}

#[test]
fn a_repository_that_cannot_be_cloned_is_reported_by_the_foreground() {
    let vm = Vm::new();
    let missing = vm.root.join("no-such-repository");
    let setup = vm.run(
        "setup.sh",
        &[],
        &[
            ("PINGPONG_REPO", missing.to_str().expect("UTF-8 path")),
            ("PINGPONG_REGISTRY", REGISTRY),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(setup.status.code(), Some(1), "{}", text(&setup));
    assert_failure_reported(&vm, "cannot clone");
}

#[test]
fn the_foreground_gives_up_with_a_message_when_the_background_never_ends() {
    let vm = Vm::new();
    let started = Instant::now();
    let wait = vm.run(
        "wait-setup.sh",
        &[],
        &[("PINGPONG_SETUP_TIMEOUT", "2")],
        Duration::from_secs(30),
    );
    assert_eq!(wait.status.code(), Some(1), "{}", text(&wait));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&wait.stderr);
    assert!(
        stderr.contains("did not finish within 2 s") && stderr.contains("PINGPONG_REPO"),
        "{}",
        text(&wait)
    );
}

#[test]
fn deploy_version_patches_image_and_label_from_the_workshop_registry() {
    let vm = Vm::new();
    // Stand-in for kubectl: `kubectl patch` needs a cluster. It records its
    // arguments, NUL-separated (the patch spans lines).
    let shims = vm.root.join("shims");
    std::fs::create_dir_all(&shims).expect("shims");
    let record = vm.root.join("kubectl-args");
    let kubectl = shims.join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/usr/bin/env bash\nprintf '%s\\0' \"$@\" > '{}'\n",
            record.display()
        ),
    )
    .expect("kubectl shim");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let settings = [
        (
            "PINGPONG_REPO",
            "https://github.com/Workshop-Org/pingpong.git",
        ),
        ("PATH", path.as_str()),
    ];
    let deployed = vm.run(
        "deploy-version.sh",
        &["errors"],
        &settings,
        Duration::from_secs(10),
    );
    assert!(deployed.status.success(), "{}", text(&deployed));
    let args = std::fs::read_to_string(&record).expect("kubectl was called");
    let patch_text = args
        .split('\0')
        .rfind(|arg| !arg.is_empty())
        .expect("the patch");
    let patch: Value = serde_json::from_str(patch_text).expect("JSON patch");
    assert!(
        args.starts_with("-n\0pingpong\0patch\0rollout\0ponger\0"),
        "{args:?}"
    );
    // The registry defaults to ghcr.io of the repository's owner, lower-cased:
    // where images.yml pushes.
    assert_eq!(
        patch[0]["value"], "ghcr.io/workshop-org/ponger:errors",
        "{args}"
    );
    assert_eq!(patch[1]["value"], "errors", "{args}");

    let refused = vm.run(
        "deploy-version.sh",
        &["latest"],
        &settings,
        Duration::from_secs(10),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
}

#[test]
fn every_asset_target_is_a_directory_the_scripts_use() {
    // Killercoda copies `file` INTO `target`: a target that names a file
    // (such as /root/pingpong-env.sh) makes a directory of that name.
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(scenario().join("index.json")).expect("index.json"),
    )
    .expect("JSON");
    for asset in index["details"]["assets"]["host01"]
        .as_array()
        .expect("assets")
    {
        let target = asset["target"].as_str().expect("target");
        let last = Path::new(target)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        assert!(
            !last.contains('.'),
            "asset {}: target {target} looks like a file name; targets are directories",
            asset["file"]
        );
    }
}
