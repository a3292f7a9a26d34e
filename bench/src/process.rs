//! The workspace's release binaries as child processes, started by the
//! launcher, and what the benchmarks read of a process: resident memory and
//! CPU time. Loopback requests that must cost the measured process as little
//! as possible are the launcher's [`get`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use launcher::process::Signal;
use launcher::{Launch, Process as Child};

pub use launcher::http::get;

/// A running binary, killed when dropped. Its logs are discarded: reading
/// them would cost the harness, whose CPU time is measured too.
pub struct Process(Child);

impl Process {
    /// Starts `dir/name` with `args` and `envs`; `OTEL_*`, `PONGER_*` and
    /// `PINGER_*` from the harness's environment are not passed on.
    pub fn start(dir: &Path, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let child = Launch::workspace_binary(name, dir.join(name))
            .args(args)
            .envs(envs.iter().copied())
            .discard_logs()
            .spawn()
            .unwrap_or_else(|error| panic!("{error}"));
        Self(child)
    }

    /// Waits until `GET path` on `address` answers 200, or panics after
    /// `timeout` (or at once if the process exits).
    pub fn wait_ok(self, address: SocketAddr, path: &str, timeout: Duration) -> Self {
        let mut process = self;
        process
            .0
            .wait_http_ok(address, path, timeout)
            .unwrap_or_else(|error| panic!("{error}"));
        process
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) {
        let _ = self.0.signal(Signal::SIGTERM);
        let _ = self.0.wait_exit(timeout);
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
    launcher::free_loopback_address().expect("a free loopback port")
}

/// Where the release binaries are: beside this harness.
pub fn binary_dir() -> PathBuf {
    let paths = ["ponger", "pinger", "bare-pong"].map(|name| {
        launcher::built_binary(name).unwrap_or_else(|error| {
            panic!(
                "{error}: run `cargo build --release --workspace --bins` (scripts/bench.sh does)"
            )
        })
    });
    paths[0].parent().map(Path::to_path_buf).unwrap_or_default()
}
