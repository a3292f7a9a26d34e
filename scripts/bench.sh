#!/usr/bin/env bash
# Runs every benchmark and prints the table of docs/benchmarks.md:
#   1. the criterion micro-benchmarks of the instrumentation (record, /metrics encode);
#   2. the harness (bench/src/main.rs) driving the release binaries on loopback:
#      throughput against a bare axum server (wrk), the pinger's schedule at
#      5,000/s, delay fidelity, memory, start-up.
# Takes about 10 minutes on 2 cores. Run it on an otherwise idle machine.
#
#   scripts/bench.sh                  # everything
#   scripts/bench.sh --quick          # a short smoke run of the harness (not figures to quote)
#   scripts/bench.sh schedule memory  # only these harness measurements (no criterion)
#
# Needs wrk (apt-get install -y wrk). Results also go to target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk is missing: apt-get install -y wrk" >&2
  exit 1
fi
# 5,000 connections in flight need more than the usual 1,024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

out=target/bench
mkdir -p "$out"
cargo build --release --workspace --bins --locked

if [ "$#" -eq 0 ]; then
  echo "== criterion: instrumentation cost (group 2)"
  cargo bench -p pingpong-bench --bench instrumentation --locked 2>&1 | tee "$out/criterion.txt"
fi

echo "== harness: throughput, schedule, fidelity, memory, startup (groups 1, 3 to 6)"
{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
} > "$out/results.md"
status=0
target/release/pingpong-bench "$@" | tee -a "$out/results.md" || status=$?
if [ "$status" -ne 0 ]; then
  echo "results: $out/results.md (a figure missed its bar; exit $status)"
else
  echo "results: $out/results.md"
fi
exit "$status"
