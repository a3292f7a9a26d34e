//! The workspace's release binaries as child processes, and small loopback
//! HTTP helpers that cost the measured process as little as possible.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running binary, killed when dropped.
pub struct Process {
    pub name: String,
    pub child: Child,
}

impl Process {
    /// Starts `dir/name` with `args` and `envs`; `OTEL_*`, `PONGER_*` and
    /// `PINGER_*` from the harness's environment are not passed on.
    pub fn start(dir: &Path, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::try_start(dir, name, args, envs)
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"))
    }

    pub fn try_start(
        dir: &Path,
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut command = Command::new(dir.join(name));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("PONGER_") || key.starts_with("PINGER_")
            {
                command.env_remove(key);
            }
        }
        command.env("RUST_LOG", "info").envs(envs.iter().copied());
        Ok(Self {
            name: name.to_owned(),
            child: command.spawn()?,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid())
    }

    /// User plus system CPU time in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a `/proc/.../stat` file.
fn cpu_seconds_of(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&index| fields.get(index)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks_per_second()
}

/// The CPU seconds of the threads of `pid` named `name` (or, as Linux keeps
/// only a thread name's first 15 bytes, its beginning).
pub fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return f64::NAN;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| !comm.trim().is_empty() && name.starts_with(comm.trim()))
        })
        .filter_map(|task| task.file_name().to_str()?.parse::<u32>().ok())
        .map(|tid| cpu_seconds_of(&format!("/proc/{pid}/task/{tid}/stat")))
        .sum()
}

fn clock_ticks_per_second() -> f64 {
    // Linux has used 100 on every mainstream architecture for decades; getconf confirms.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A loopback address with a port free right now.
pub fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address")
}

/// One `GET` over a fresh connection: the status code and the body, or `None`
/// when there is no (complete) answer.
pub fn get(address: SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_nodelay(true).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

/// Waits until `GET path` answers 200, or panics after `timeout`.
pub fn wait_ok(address: SocketAddr, path: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((200, _)) = get(address, path, Duration::from_secs(5)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{address}{path} never answered 200"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where the release binaries are: beside this harness.
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the harness knows its own path");
    let dir = exe
        .parent()
        .expect("the harness is in a directory")
        .to_path_buf();
    for name in ["ponger", "pinger", "bare-pong"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `cargo build --release --workspace --bins` (scripts/bench.sh does)",
            dir.join(name).display()
        );
    }
    dir
}
