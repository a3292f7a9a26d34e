//! Child processes: every one is registered while it lives, runs in its own
//! process group (a Ctrl-C in the terminal reaches the rehearsal only, which
//! then stops them in order), is killed if the rehearsal itself dies
//! (parent-death signal), and is killed when its handle is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

const LOG_LINES: usize = 40;

/// A running child with its last stderr lines.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    logs: Arc<Mutex<VecDeque<String>>>,
    pub address: Option<SocketAddr>,
}

impl Proc {
    /// Spawns `program` with `args`. When `wait_listening`, waits (up to 20 s)
    /// for the JSON log line `{"fields":{"message":"listening","address":...}}`.
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        wait_listening: bool,
    ) -> Result<Self, String> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("PONGER_") || key.starts_with("PINGER_")
            {
                command.env_remove(key);
            }
        }
        command.env("RUST_LOG", "info");
        command.envs(envs.iter().map(|(key, value)| (key, value)));
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe
        // and sets this child's parent-death signal.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start {name} ({}): {error}", program.display()))?;
        let pid = child.id().unwrap_or_default();
        if let Ok(mut children) = registry().lock() {
            children.insert(pid, name.to_owned());
        }
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (address_sender, mut address_receiver) = tokio::sync::mpsc::channel(1);
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(address) = instrumentation::server::listening_address(&line) {
                        let _ = address_sender.try_send(address);
                    }
                    if let Ok(mut logs) = logs.lock() {
                        if logs.len() == LOG_LINES {
                            logs.pop_front();
                        }
                        logs.push_back(line);
                    }
                }
            });
        }
        let mut proc = Self {
            name: name.to_owned(),
            pid,
            child,
            logs,
            address: None,
        };
        if wait_listening {
            let address = tokio::select! {
                address = address_receiver.recv() => address,
                _ = tokio::time::sleep(Duration::from_secs(20)) => None,
                status = proc.child.wait() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    proc.unregister();
                    return Err(format!("{name} exited at start ({}):\n{}", describe(status), proc.log_tail()));
                }
            };
            match address {
                Some(address) => proc.address = Some(address),
                None => {
                    proc.kill().await;
                    return Err(format!(
                        "{name} did not report a listen address within 20 s:\n{}",
                        proc.log_tail()
                    ));
                }
            }
        }
        Ok(proc)
    }

    pub fn log_tail(&self) -> String {
        self.logs
            .lock()
            .map(|logs| logs.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    fn unregister(&self) {
        if let Ok(mut children) = registry().lock() {
            children.remove(&self.pid);
        }
    }

    /// Exit status if it has exited.
    pub fn try_exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.unregister();
                Some(status.to_string())
            }
            _ => None,
        }
    }

    /// Waits for the exit.
    pub async fn wait(&mut self) -> String {
        let status = self.child.wait().await;
        self.unregister();
        describe(status)
    }

    /// SIGTERM, then up to `grace` for the exit, then SIGKILL (as the kubelet).
    pub async fn terminate(&mut self, grace: Duration) -> String {
        signal(self.pid, Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                self.unregister();
                describe(status)
            }
            Err(_) => {
                self.kill().await;
                format!("killed after the {grace:?} grace period")
            }
        }
    }

    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.unregister();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.start_kill();
        }
        self.unregister();
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("unknown status: {error}"),
    }
}

/// The executable `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}
