//! Child processes: every one is registered while it lives, runs in its own
//! process group (a Ctrl-C in the terminal reaches the rehearsal only, which
//! then stops them in order), is killed if the rehearsal itself dies
//! (parent-death signal), and is killed when its handle is dropped. Starting,
//! waiting and signalling are the launcher's, shared with the tests and the
//! benchmarks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use launcher::{Launch, Process};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

type Registry = Mutex<BTreeMap<u32, String>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Every child still registered (pid, name).
pub fn live() -> Vec<(u32, String)> {
    registry()
        .lock()
        .map(|children| {
            children
                .iter()
                .map(|(pid, name)| (*pid, name.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every registered child: the last resort on any exit path.
pub fn kill_all() {
    for (pid, _) in live() {
        signal(pid, Signal::SIGKILL);
    }
}

/// Sends `signal` to a child we spawned; one already gone is not an error.
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// Stderr lines kept of each child, for the error that names why it stopped.
const LOG_LINES: usize = 40;
/// How long ponger and pinger may take to log their listening address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running child with its last stderr lines.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    process: Process,
    pub address: Option<SocketAddr>,
}

impl Proc {
    /// Spawns `program` with `args` (one of the workspace's binaries: the
    /// rehearsal's own `OTEL_*`, `PONGER_*` and `PINGER_*` are not passed on).
    /// When `wait_listening`, waits (up to 20 s) for the JSON log line
    /// `{"fields":{"message":"listening","address":...}}`.
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        wait_listening: bool,
    ) -> Result<Self, String> {
        let launch = Launch::workspace_binary(name, program)
            .args(args)
            .envs(envs.iter().map(|(key, value)| (key, value)));
        let mut proc = Self::start(launch)?;
        if wait_listening {
            let address = proc.process.wait_listening_async(START_TIMEOUT).await;
            proc.address = Some(address.map_err(|error| proc.failed(&error))?);
        }
        Ok(proc)
    }

    /// Starts `launch` in a process group of its own, killed if the rehearsal
    /// dies, and registers it.
    pub fn start(launch: Launch) -> Result<Self, String> {
        let process = launch
            .own_process_group()
            .die_with_parent()
            .keep_log_lines(LOG_LINES)
            .spawn()
            .map_err(|error| error.to_string())?;
        let (name, pid) = (process.name().to_owned(), process.pid());
        if let Ok(mut children) = registry().lock() {
            children.insert(pid, name.clone());
        }
        Ok(Self {
            name,
            pid,
            process,
            address: None,
        })
    }

    /// Waits (up to `timeout`) until `GET path` on `address` answers 200.
    pub async fn wait_http_ok(
        &mut self,
        address: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let ready = self
            .process
            .wait_http_ok_async(address, path, timeout)
            .await;
        ready.map_err(|error| self.failed(&error))
    }

    /// The message of a failed start or probe; the child has exited or been
    /// killed by then.
    fn failed(&self, error: &launcher::Error) -> String {
        self.unregister();
        error.to_string()
    }

    /// Sends `signal`; nothing once the exit has been seen.
    pub fn signal(&self, signal: Signal) {
        let _ = self.process.signal(signal);
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(LOG_LINES)
    }

    fn unregister(&self) {
        if let Ok(mut children) = registry().lock() {
            children.remove(&self.pid);
        }
    }

    /// Exit status if it has exited.
    pub fn try_exited(&mut self) -> Option<String> {
        let status = self.process.try_exit()?;
        self.unregister();
        Some(status.to_string())
    }

    /// Waits for the exit.
    pub async fn wait(&mut self) -> String {
        let status = self.process.wait_exit_async(Duration::MAX).await;
        self.unregister();
        match status {
            Ok(status) => status.to_string(),
            Err(error) => format!("unknown status: {error}"),
        }
    }

    /// SIGTERM, then up to `grace` for the exit, then SIGKILL (as the kubelet).
    pub async fn terminate(&mut self, grace: Duration) -> String {
        let stopped = self.process.stop_async(grace).await;
        self.unregister();
        stopped.to_string()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The process is killed as its handle drops.
        self.unregister();
    }
}

/// The executable `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    launcher::on_path(name).ok()
}
