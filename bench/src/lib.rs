//! The benchmark harness behind `scripts/bench.sh`: runs the workspace's
//! release binaries on loopback, loads them, and measures their costs
//! (throughput against a bare server, the pinger's schedule, delay fidelity,
//! memory, start-up). Each measurement returns [`Figure`]s; `pingpong-bench`
//! prints them as the Markdown table of `docs/benchmarks.md`.

pub mod figures;
pub mod measure;
pub mod otlp_sink;
pub mod process;
pub mod rounds;
