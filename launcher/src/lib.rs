//! One launcher for the workspace's binaries (ponger, pinger) and Prometheus,
//! shared by the tests (testkit), the benchmarks (bench) and the rehearsal
//! (scenarios). It is a library with typed errors: the rehearsal is a
//! user-facing command and reports them; the tests turn them into failures.
//!
//! - [`Launch`] and [`Process`]: a child with its arguments, environment and
//!   captured stderr; bounded waits for its listening address, an HTTP probe
//!   or its exit; SIGTERM; killed when dropped.
//! - [`prometheus`]: Prometheus with a given configuration and exemplar
//!   storage on, and the decoding of its HTTP API's answers.
//! - [`exposition`]: `/metrics` pages (classic text and OpenMetrics, with
//!   exemplars) read into samples.
//! - [`http`]: one GET over a fresh loopback connection.

pub mod exposition;
pub mod http;
pub mod process;
pub mod prometheus;
mod wait;

pub use exposition::{Exposition, Sample};
pub use process::{Launch, Process, Stopped};
pub use prometheus::Prometheus;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong starting, probing or stopping a child.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} is missing", path.display())]
    NotBuilt { path: PathBuf },
    #[error("{name} is not on PATH")]
    NotOnPath { name: String },
    #[error("cannot start {name} ({}): {source}", program.display())]
    Spawn {
        name: String,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} exited at start ({status}):\n{logs}")]
    ExitedAtStart {
        name: String,
        status: ExitStatus,
        logs: String,
    },
    #[error("{name} did not report a listen address within {timeout:?}:\n{logs}")]
    NotListening {
        name: String,
        timeout: Duration,
        logs: String,
    },
    #[error("{name} was not ready within {timeout:?}:\n{logs}")]
    NotReady {
        name: String,
        timeout: Duration,
        logs: String,
    },
    #[error("{name} did not exit within {timeout:?}")]
    StillRunning { name: String, timeout: Duration },
    #[error("cannot signal {name}: {source}")]
    Signal { name: String, source: nix::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
}

/// A binary built beside the running executable: `target/<profile>/<name>`
/// for a binary, a test (in `deps/`) or a benchmark harness of the workspace.
pub fn built_binary(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name().is_some_and(|last| last == "deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::NotBuilt { path })
    }
}

/// The executable `name` on PATH.
pub fn on_path(name: &str) -> Result<PathBuf, Error> {
    which::which(name).map_err(|_| Error::NotOnPath {
        name: name.to_owned(),
    })
}

/// A loopback address whose port was free a moment ago.
pub fn free_loopback_address() -> Result<SocketAddr, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(Error::NoPort)
}
