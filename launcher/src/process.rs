//! A child process: started with its arguments and environment, its stderr
//! read line by line on a thread of its own (the last lines kept, the
//! listening address the workspace's binaries log picked out), bounded waits,
//! signals, and a kill when its handle is dropped.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::{Error, http, wait};

/// Stderr lines a process keeps unless told otherwise.
const DEFAULT_LOG_LINES: usize = 10_000;
/// Stderr lines quoted in an error.
const ERROR_LOG_LINES: usize = 40;
/// The pipe closes with the process; its reader needs moments to see the end.
const DRAIN: Duration = Duration::from_millis(200);
/// One readiness probe may take this long: a probed path may answer late by
/// design (the benchmarks' `bare-pong` delays `/ping` by 2 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A SIGKILLed process is gone at once; this only bounds the reaping.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Environment prefixes of the workspace binaries' own configuration: a child
/// is configured by what its caller passes, never by the caller's environment.
const OWN_CONFIGURATION: [&str; 3] = ["OTEL_", "PONGER_", "PINGER_"];

/// A process to start.
pub struct Launch {
    name: String,
    command: Command,
    /// How many stderr lines to keep; `None`: stderr is discarded.
    log_lines: Option<usize>,
    /// Stdout is read into the same lines as stderr.
    stdout_too: bool,
}

impl Launch {
    /// `program`, called `name` in messages; stdin and stdout are closed,
    /// stderr is captured.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        let mut command = Command::new(program.into());
        command.stdin(Stdio::null()).stdout(Stdio::null());
        Self {
            name: name.into(),
            command,
            log_lines: Some(DEFAULT_LOG_LINES),
            stdout_too: false,
        }
    }

    /// One of the workspace's binaries (ponger, pinger): this process's
    /// `OTEL_*`, `PONGER_*` and `PINGER_*` variables are not passed on, and it
    /// logs at `info`, where it names the address it listens on.
    pub fn workspace_binary(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        let mut launch = Self::new(name, program);
        for (key, _) in std::env::vars_os() {
            let own = key
                .to_str()
                .is_some_and(|key| OWN_CONFIGURATION.iter().any(|p| key.starts_with(p)));
            if own {
                launch.command.env_remove(key);
            }
        }
        launch.command.env("RUST_LOG", "info");
        launch
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn envs<I, K, V>(mut self, envs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(envs);
        self
    }

    /// A process group of its own: a Ctrl-C in the terminal reaches the
    /// caller only, which then stops its children in order.
    pub fn own_process_group(mut self) -> Self {
        self.command.process_group(0);
        self
    }

    /// SIGKILLed by the kernel when the thread that starts it ends (Linux's
    /// parent-death signal): start it from a thread that lives as long as the
    /// caller, such as the main thread or an async runtime's worker.
    pub fn die_with_parent(mut self) -> Self {
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl(2), which is async-signal-safe.
        unsafe {
            self.command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        self
    }

    /// Keeps the last `lines` stderr lines (10,000 unless told).
    pub fn keep_log_lines(mut self, lines: usize) -> Self {
        self.log_lines = Some(lines);
        self
    }

    /// Reads stdout into the kept lines too, as it comes (`--help`, or what
    /// a binary prints before it exits).
    pub fn capture_stdout(mut self) -> Self {
        self.stdout_too = true;
        self
    }

    /// Sends stderr nowhere: no reader thread runs in the caller (the
    /// benchmarks measure the caller's CPU time too).
    pub fn discard_logs(mut self) -> Self {
        self.log_lines = None;
        self
    }

    /// Starts the process.
    pub fn spawn(mut self) -> Result<Process, Error> {
        let piped = |yes: bool| if yes { Stdio::piped() } else { Stdio::null() };
        self.command
            .stderr(piped(self.log_lines.is_some()))
            .stdout(piped(self.stdout_too));
        let program = PathBuf::from(self.command.get_program());
        let spawn_error = |source| Error::Spawn {
            name: self.name.clone(),
            program: program.clone(),
            source,
        };
        let mut child = self.command.spawn().map_err(spawn_error)?;
        let captured = Arc::new(Mutex::new(Captured {
            keep: self.log_lines.unwrap_or(0),
            ..Captured::default()
        }));
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child.stderr.take().map(|stream| Box::new(stream) as _),
            child.stdout.take().map(|stream| Box::new(stream) as _),
        ];
        for stream in streams.into_iter().flatten() {
            lock(&captured).open_streams += 1;
            let reader = captured.clone();
            let started = std::thread::Builder::new()
                .name(format!("{}-output", self.name))
                .spawn(move || read_lines(stream, &reader));
            if let Err(source) = started {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_error(source));
            }
        }
        Ok(Process {
            name: self.name,
            child,
            captured,
            exited: None,
        })
    }
}

#[derive(Default)]
struct Captured {
    lines: VecDeque<String>,
    keep: usize,
    /// The first listening address logged.
    address: Option<SocketAddr>,
    /// Streams still being read.
    open_streams: usize,
}

fn lock(captured: &Mutex<Captured>) -> MutexGuard<'_, Captured> {
    captured.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lines(stream: impl Read, captured: &Mutex<Captured>) {
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        let mut captured = lock(captured);
        // Only until the address is known: the line is parsed as JSON.
        if captured.address.is_none() {
            captured.address = instrumentation::server::listening_address(&line);
        }
        if captured.lines.len() == captured.keep {
            captured.lines.pop_front();
        }
        if captured.keep > 0 {
            captured.lines.push_back(line);
        }
    }
    lock(captured).open_streams -= 1;
}

/// How [`Process::stop`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    Exited(ExitStatus),
    /// Still running after the grace period, then SIGKILLed.
    Killed {
        grace: Duration,
    },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(status) => write!(formatter, "{status}"),
            Self::Killed { grace } => {
                write!(formatter, "killed after the {grace:?} grace period")
            }
        }
    }
}

/// A running (or exited, not yet dropped) child. Dropping it kills it.
pub struct Process {
    name: String,
    child: Child,
    captured: Arc<Mutex<Captured>>,
    exited: Option<ExitStatus>,
}

impl Process {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address the process logged that it listens on, if it has yet.
    pub fn listening_address(&self) -> Option<SocketAddr> {
        lock(&self.captured).address
    }

    /// The stderr lines kept so far.
    pub fn logs(&self) -> Vec<String> {
        lock(&self.captured).lines.iter().cloned().collect()
    }

    /// The last `lines` stderr lines, one a line.
    pub fn log_tail(&self, lines: usize) -> String {
        let captured = lock(&self.captured);
        let skip = captured.lines.len().saturating_sub(lines);
        let tail: Vec<&str> = captured
            .lines
            .iter()
            .skip(skip)
            .map(String::as_str)
            .collect();
        tail.join("\n")
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends `signal`. Once the exit has been seen this does nothing: the pid
    /// may belong to another process by then.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        if self.exited.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.pid()).map_err(|_| Error::Signal {
            name: self.name.clone(),
            source: nix::Error::ESRCH,
        })?;
        nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(|source| Error::Signal {
            name: self.name.clone(),
            source,
        })
    }

    /// Waits up to `timeout` for the listening address the process logs.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<SocketAddr, Error> {
        wait::until(timeout, || self.listening_or_exited())
            .unwrap_or_else(|| Err(self.not_listening(timeout)))
    }

    /// Waits up to `timeout` until `GET path` on `address` answers 200.
    pub fn wait_http_ok(
        &mut self,
        address: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        wait::until(timeout, || {
            let ok = http::ok(address, path, PROBE_TIMEOUT);
            self.ready_or_exited(ok)
        })
        .unwrap_or_else(|| Err(self.not_ready(timeout)))
    }

    /// Waits up to `timeout` for the exit; the process keeps running if it
    /// does not exit in time.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let status =
            wait::until(timeout, || self.try_exit()).ok_or_else(|| self.still_running(timeout))?;
        self.drain_stderr();
        Ok(status)
    }

    /// SIGTERM, then up to `grace` for the exit, then SIGKILL (as the
    /// kubelet stops a container).
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        let _ = self.signal(Signal::SIGTERM);
        match self.wait_exit(grace) {
            Ok(status) => Stopped::Exited(status),
            Err(_) => {
                self.kill();
                Stopped::Killed { grace }
            }
        }
    }

    /// SIGKILL, and the exit reaped.
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = wait::until(KILL_WAIT, || self.child.try_wait().ok().flatten());
        }
    }

    fn listening_or_exited(&mut self) -> Option<Result<SocketAddr, Error>> {
        match self.listening_address() {
            Some(address) => Some(Ok(address)),
            None => self.exited_at_start().map(Err),
        }
    }

    fn ready_or_exited(&mut self, ready: bool) -> Option<Result<(), Error>> {
        if ready {
            Some(Ok(()))
        } else {
            self.exited_at_start().map(Err)
        }
    }

    fn drain_stderr(&self) {
        wait::until(DRAIN, || self.output_ended());
    }

    /// `Some` once every captured stream has ended.
    fn output_ended(&self) -> Option<()> {
        (lock(&self.captured).open_streams == 0).then_some(())
    }

    fn exited_at_start(&mut self) -> Option<Error> {
        let status = self.try_exit()?;
        self.drain_stderr();
        Some(Error::ExitedAtStart {
            name: self.name.clone(),
            status,
            logs: self.log_tail(ERROR_LOG_LINES),
        })
    }

    fn not_listening(&mut self, timeout: Duration) -> Error {
        self.kill();
        Error::NotListening {
            name: self.name.clone(),
            timeout,
            logs: self.log_tail(ERROR_LOG_LINES),
        }
    }

    fn not_ready(&mut self, timeout: Duration) -> Error {
        self.kill();
        Error::NotReady {
            name: self.name.clone(),
            timeout,
            logs: self.log_tail(ERROR_LOG_LINES),
        }
    }

    fn still_running(&self, timeout: Duration) -> Error {
        Error::StillRunning {
            name: self.name.clone(),
            timeout,
        }
    }
}

/// The same waits for async callers: they poll on the runtime's timer and
/// block one of its threads no longer than a look at the process (and, when
/// it has exited at start, the moment its last output lines take to arrive,
/// at most 200 ms).
impl Process {
    /// [`wait_listening`](Self::wait_listening) from async code.
    pub async fn wait_listening_async(&mut self, timeout: Duration) -> Result<SocketAddr, Error> {
        wait::until_async(timeout, wait::nothing, |()| self.listening_or_exited())
            .await
            .unwrap_or_else(|| Err(self.not_listening(timeout)))
    }

    /// [`wait_http_ok`](Self::wait_http_ok) from async code; each probe runs
    /// on the runtime's blocking pool.
    pub async fn wait_http_ok_async(
        &mut self,
        address: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let probe = || {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || http::ok(address, &path, PROBE_TIMEOUT))
        };
        wait::until_async(timeout, probe, |ok| {
            self.ready_or_exited(ok.unwrap_or(false))
        })
        .await
        .unwrap_or_else(|| Err(self.not_ready(timeout)))
    }

    /// [`wait_exit`](Self::wait_exit) from async code; `Duration::MAX` waits
    /// as long as it takes.
    pub async fn wait_exit_async(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let status = wait::until_async(timeout, wait::nothing, |()| self.try_exit())
            .await
            .ok_or_else(|| self.still_running(timeout))?;
        wait::until_async(DRAIN, wait::nothing, |()| self.output_ended()).await;
        Ok(status)
    }

    /// [`stop`](Self::stop) from async code.
    pub async fn stop_async(&mut self, grace: Duration) -> Stopped {
        let _ = self.signal(Signal::SIGTERM);
        match self.wait_exit_async(grace).await {
            Ok(status) => Stopped::Exited(status),
            Err(_) => {
                self.kill_async().await;
                Stopped::Killed { grace }
            }
        }
    }

    /// [`kill`](Self::kill) from async code.
    pub async fn kill_async(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = wait::until_async(KILL_WAIT, wait::nothing, |()| {
                self.child.try_wait().ok().flatten()
            })
            .await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
