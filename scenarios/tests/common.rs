//! Runs the rehearsal binary as a user would, and reads its report.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// A temporary overlay of `k8s/overlays/canary`: `rest` follows its
/// `resources` line in the kustomization.
pub fn canary_overlay(rest: &str) -> tempfile::TempDir {
    let overlay = tempfile::tempdir().expect("temp dir");
    // kustomize refuses an absolute path in `resources`: name the overlay
    // relative to the temporary directory.
    let canary = format!(
        "{}{}",
        "../".repeat(overlay.path().components().count() - 1),
        workspace()
            .join("k8s/overlays/canary")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!("resources: [{canary}]\n{rest}"),
    )
    .expect("kustomization");
    overlay
}

/// The rehearsal command, the binaries beside it (scripts/test.sh builds them).
pub fn rehearsal(args: &[&str], report_dir: &Path) -> Command {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_scenarios"));
    let dir = exe.parent().expect("bin dir");
    for binary in ["ponger", "pinger"] {
        assert!(
            dir.join(binary).is_file(),
            "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
            dir.join(binary).display()
        );
    }
    let mut command = Command::new(exe);
    command
        .arg("rehearse")
        .args(args)
        .arg("--no-build")
        .arg("--report-dir")
        .arg(report_dir)
        .env_remove("CARGO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs to the end (bounded) and returns status and output.
pub fn run(mut command: Command, limit: Duration) -> Finished {
    let child = command.spawn().expect("the rehearsal starts");
    let (stdout, stderr) = collect(child_streams(child), limit);
    stdout_stderr(stdout, stderr)
}

type Streams = (Child, Arc<Mutex<String>>, Arc<Mutex<String>>);

pub fn child_streams(mut child: Child) -> Streams {
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    for (stream, sink) in [
        (
            Box::new(out) as Box<dyn std::io::Read + Send>,
            stdout.clone(),
        ),
        (Box::new(err), stderr.clone()),
    ] {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut sink = sink.lock().expect("lock");
                sink.push_str(&line);
                sink.push('\n');
            }
        });
    }
    (child, stdout, stderr)
}

fn collect(streams: Streams, limit: Duration) -> (Option<i32>, (String, String)) {
    let (mut child, stdout, stderr) = streams;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the rehearsal ran longer than {limit:?}; its output:\n{}\n{}",
                stdout.lock().expect("lock"),
                stderr.lock().expect("lock")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    let out = stdout.lock().expect("lock").clone();
    let err = stderr.lock().expect("lock").clone();
    (status.code(), (out, err))
}

fn stdout_stderr(code: Option<i32>, (stdout, stderr): (String, String)) -> Finished {
    Finished {
        code,
        stdout,
        stderr,
    }
}

pub fn wait_child(streams: Streams, limit: Duration) -> Finished {
    let (code, output) = collect(streams, limit);
    stdout_stderr(code, output)
}

pub fn report(dir: &Path, version: &str) -> Value {
    let path = dir.join(format!("rehearsal-{version}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).expect("the report is JSON")
}

/// Every pid the rehearsal announced: "(pid N" in its progress lines.
pub fn announced_pids(stdout: &str) -> Vec<u32> {
    stdout
        .match_indices("pid ")
        .filter_map(|(index, _)| {
            stdout[index + 4..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|digits| digits.parse().ok())
        })
        .collect()
}

/// A process is gone when /proc has no entry for it, or only a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

pub fn assert_nothing_left(stdout: &str) {
    let pids = announced_pids(stdout);
    assert!(!pids.is_empty(), "no pid announced in:\n{stdout}");
    // Children exit within a moment of the rehearsal.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind: {left:?}\n{stdout}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
