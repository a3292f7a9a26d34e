//! The workspace's binaries as child processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The path of a workspace binary built beside the running test
/// (`target/<profile>/<name>`). Panics with the command to run when missing.
pub fn binary(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test knows its own path");
    // Test executables live in target/<profile>/deps/.
    let profile_dir = test_executable
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable is inside target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running binary. Its stderr (JSON log lines) is collected; it is killed
/// when dropped.
pub struct Service {
    name: String,
    child: Child,
    address: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `name` with `args` and `envs` (`OTEL_*` and `RUST_LOG` from the
    /// test's own environment are removed first) and waits until it logs the
    /// address it listens on.
    pub fn start(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary(name));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("PONGER_") || key.starts_with("PINGER_")
            {
                command.env_remove(key);
            }
        }
        command.env("RUST_LOG", "info");
        command.envs(envs.iter().copied());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(address) = instrumentation::server::listening_address(&line) {
                        let _ = address_sender.send(address);
                    }
                    logs.lock().expect("log lock").push(line);
                }
            });
        }
        let address = match address_receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{name} did not report a listen address; its stderr:\n{}",
                    logs.lock().expect("log lock").join("\n")
                );
            }
        };
        Self {
            name: name.to_owned(),
            child,
            address,
            logs,
        }
    }

    /// A ponger on a free loopback port; `args` follow `--listen 127.0.0.1:0`.
    pub fn ponger(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start("ponger", &all, envs)
    }

    /// A pinger on a free loopback port sending `rate` pings a second to
    /// `targets` (one URL or several, comma-separated); `args` follow.
    pub fn pinger(targets: &str, rate: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut all = vec![
            "--listen",
            "127.0.0.1:0",
            "--target",
            targets,
            "--rate",
            rate,
        ];
        all.extend_from_slice(args);
        Self::start("pinger", &all, envs)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://<address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Sends SIGTERM, as Kubernetes does when it retires a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.name);
    }

    /// Waits for the process to exit, or panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the log reader drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a binary that is expected to exit by itself (bad flags, `--help`):
/// its exit status and stderr. Panics if it is still running after 10 s.
pub fn run_to_exit(name: &str, args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = Command::new(binary(name))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {name}: {error}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} {args:?} kept running; expected it to exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    (output.status, text)
}

/// Asserts that `name args` (with `envs`) exits with status 2 and exactly one
/// line on stderr that names `flag` and contains `accepted_form`.
pub fn assert_config_error(
    name: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    flag: &str,
    accepted_form: &str,
) {
    let (status, output) = run_to_exit(name, args, envs);
    assert_eq!(status.code(), Some(2), "{name} {args:?} {envs:?}: {output}");
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{name} {args:?} {envs:?}: expected one line, got {output:?}"
    );
    assert!(
        lines[0].contains(flag),
        "{name} {args:?}: {:?} does not name {flag}",
        lines[0]
    );
    assert!(
        lines[0].contains(accepted_form),
        "{name} {args:?}: {:?} does not give the accepted form {accepted_form:?}",
        lines[0]
    );
    assert!(!output.contains("panicked"), "{output}");
}

/// A bad configuration and what its error line must say: arguments,
/// environment variables, the flag named, the accepted form quoted.
pub type ConfigErrorCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);

/// [`assert_config_error`] for each case.
pub fn assert_config_errors(name: &str, cases: &[ConfigErrorCase<'_>]) {
    for (args, envs, flag, accepted_form) in cases {
        assert_config_error(name, args, envs, flag, accepted_form);
    }
}

/// Asserts that `name --listen <address>` ends as a bad flag does (status 2,
/// one line naming `--listen`, the address and why) for an address in use and
/// for one that is not this machine's (192.0.2.1, TEST-NET-1 of RFC 5737).
pub fn assert_unusable_listen_addresses_rejected(name: &str) {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let busy = busy.local_addr().expect("address").to_string();
    for (address, why) in [
        (busy.as_str(), "Address already in use"),
        ("192.0.2.1:8080", "Cannot assign requested address"),
    ] {
        assert_config_error(
            name,
            &["--listen", address],
            &[],
            "--listen",
            "a free address and port of this machine",
        );
        let (_, line) = run_to_exit(name, &["--listen", address], &[]);
        assert!(line.contains(&format!("'{address}'")), "{line}");
        assert!(line.contains(why), "{line}");
    }
}
