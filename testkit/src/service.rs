//! The workspace's binaries as child processes, through the launcher; a
//! failure to start, get ready or stop fails the test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use launcher::{Launch, Process};

/// How long a binary may take to log its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of a workspace binary built beside the running test
/// (`target/<profile>/<name>`). Panics with the command to run when missing.
pub fn binary(name: &str) -> PathBuf {
    launcher::built_binary(name).unwrap_or_else(|error| {
        panic!("{error}: build it with `cargo build --workspace --bins` (scripts/test.sh does)")
    })
}

/// A running binary. Its stderr (JSON log lines) is collected; it is killed
/// when dropped.
pub struct Service {
    process: Process,
    address: SocketAddr,
}

impl Service {
    /// Starts `name` with `args` and `envs` (`OTEL_*`, `PONGER_*` and
    /// `PINGER_*` from the test's own environment are not passed on; it logs
    /// at `info`) and waits until it logs the address it listens on.
    pub fn start(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut process = Launch::workspace_binary(name, binary(name))
            .args(args)
            .envs(envs.iter().copied())
            .spawn()
            .unwrap_or_else(|error| panic!("{error}"));
        let address = process
            .wait_listening(START_TIMEOUT)
            .unwrap_or_else(|error| panic!("{error}"));
        Self { process, address }
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
        self.process.pid()
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.process.logs()
    }

    /// Sends SIGTERM, as Kubernetes does when it retires a pod.
    pub fn terminate(&self) {
        self.process
            .signal(launcher::process::Signal::SIGTERM)
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Waits for the process to exit (its last log lines read), or panics
    /// after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process
            .wait_exit(timeout)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// Runs a binary that is expected to exit by itself (bad flags, `--help`):
/// its exit status and its stderr and stdout lines. Panics if it is still
/// running after 10 s.
pub fn run_to_exit(name: &str, args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut process = Launch::new(name, binary(name))
        .args(args)
        .envs(envs.iter().copied())
        .capture_stdout()
        .spawn()
        .unwrap_or_else(|error| panic!("{error}"));
    let status = process
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{name} {args:?} kept running; expected it to exit"));
    (status, process.logs().join("\n"))
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
