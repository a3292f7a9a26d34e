#!/usr/bin/env python3
"""Executable documentation: every fenced shell block (```sh, ```bash,
```shell, ```console) of the pages users follow is run somewhere, and the
HTML comment on the line directly above it says where:

  <!-- doc-test: run -->
      needs no Docker engine or cluster: `check` runs it here (scripts/test.sh).
  <!-- doc-test: run-by test NAME[, NAME...] -->
      run by these Rust tests (e.g. the rehearsal, time-scaled); each must exist.
  <!-- doc-test: run-by file PATH -->
      PATH (e.g. a workflow) contains every command line of the block verbatim.
  <!-- doc-test: e2e JOB -->
      needs Docker or a cluster: job JOB of .github/workflows/e2e.yml runs it
      with `scripts/doc-blocks.py run PAGE JOB` (checked here).

A block without a valid marker fails `check`, and so does a fence without a
language (say ```text for what is not shell).

The `run` blocks of a page run in order in one bash session (-euo pipefail),
from the repository root, each page within PAGE_TIMEOUT seconds. `check` runs
them from a scratch directory holding a link to the repository, so that a
block that writes beside the repository (../pingpong-deploy) writes there;
scripts/demo.sh is built in debug there (DEMO_PROFILE=dev, the binaries
scripts/test.sh built), not release.

Usage:
  doc-blocks.py check              validate every marker, run every `run` block
  doc-blocks.py list               every block, its page, line and marker
  doc-blocks.py run PAGE JOB [--after SCRIPT]
                                   run PAGE's `e2e JOB` blocks, preceded by the
                                   `run` blocks of their sections, in one bash
                                   session; then source SCRIPT (checks) in it
  doc-blocks.py self-test          the checks can fail
"""
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->$")
PAGE_TIMEOUT = 300
E2E_WORKFLOW = ".github/workflows/e2e.yml"


def pages(root=ROOT):
    found = [root / "README.md", root / "scenarios" / "README.md"]
    found += sorted((root / "scenarios" / "walkthroughs").glob("*.md"))
    found += sorted((root / "scenarios" / "killercoda").glob("*/*.md"))
    return [p for p in found if p.is_file()]


@dataclass
class Block:
    page: str
    line: int
    language: str
    marker: str
    section: str
    body: str


def blocks_of(text, page):
    """Every fenced block of a Markdown page, with the marker above it."""
    blocks, problems = [], []
    lines = text.splitlines()
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        stripped = line.strip()
        if stripped.startswith("```"):
            language = stripped[3:].strip()
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                problems.append(f"{page}:{start + 1}: fence never closed")
            above = lines[start - 1].strip() if start > 0 else ""
            match = MARKER.match(above)
            if not language:
                problems.append(f"{page}:{start + 1}: fence without a language (```text if not shell)")
            blocks.append(Block(page, start + 1, language, match.group(1) if match else "",
                                section, "\n".join(body) + "\n"))
        i += 1
    return blocks, problems


def command_lines(body):
    """The block's commands: no comments, no blank lines, continuations kept."""
    found = []
    for line in body.splitlines():
        code = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if code.strip():
            found.append(code.strip())
    return found


def test_names(root):
    names = set()
    for path in root.glob("*/tests/*.rs"):
        names.update(re.findall(r"\bfn\s+([a-z0-9_]+)\s*\(", path.read_text()))
    return names


def marker_problems(block, root):
    where = f"{block.page}:{block.line}"
    marker = block.marker
    if not marker:
        return [f"{where}: unmarked shell block (add <!-- doc-test: run | run-by ... | e2e JOB --> above it)"]
    if marker == "run":
        return []
    if marker.startswith("run-by test "):
        known = test_names(root)
        names = [n.strip() for n in marker[len("run-by test "):].split(",") if n.strip()]
        return [f"{where}: no test named {n}" for n in names if n not in known] or \
            ([] if names else [f"{where}: run-by test names no test"])
    if marker.startswith("run-by file "):
        path = root / marker[len("run-by file "):].strip()
        if not path.is_file():
            return [f"{where}: {path.relative_to(root)} does not exist"]
        text = path.read_text()
        return [f"{where}: {path.relative_to(root)} does not run `{c}`"
                for c in command_lines(block.body) if c not in text]
    if marker.startswith("e2e "):
        job = marker[len("e2e "):].strip()
        workflow = root / E2E_WORKFLOW
        if not workflow.is_file():
            return [f"{where}: {E2E_WORKFLOW} is missing"]
        text = workflow.read_text()
        problems = []
        if not re.search(rf"(?m)^  {re.escape(job)}:\s*$", text):
            problems.append(f"{where}: {E2E_WORKFLOW} has no job {job}")
        if f"scripts/doc-blocks.py run {block.page} {job}" not in text:
            problems.append(f"{where}: {E2E_WORKFLOW} does not run "
                            f"`scripts/doc-blocks.py run {block.page} {job}`")
        return problems
    return [f"{where}: unknown marker `doc-test: {marker}`"]


def collect(root=ROOT):
    all_blocks, problems = [], []
    for path in pages(root):
        page = str(path.relative_to(root))
        blocks, found = blocks_of(path.read_text(), page)
        problems += found
        all_blocks += blocks
    shell = [b for b in all_blocks if b.language in SHELL_LANGUAGES]
    for block in shell:
        problems += marker_problems(block, root)
    return shell, problems


def run_script(script, cwd, env, timeout, label):
    print(f"== {label}", flush=True)
    try:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                                timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        print(f"FAIL {label}: still running after {timeout} s")
        return False
    if result.returncode != 0:
        print(f"FAIL {label}: exit status {result.returncode}")
        return False
    return True


def session(blocks):
    """One bash script running the blocks in order, each announced, and
    ending every background job it started."""
    parts = ["trap 'jobs -p | xargs -r kill 2>/dev/null || true' EXIT"]
    for block in blocks:
        parts.append(f"echo '--- {block.page}:{block.line}' >&2")
        parts.append(block.body)
    return "\n".join(parts)


def check(root=ROOT):
    blocks, problems = collect(root)
    for problem in problems:
        print(f"FAIL {problem}")
    by_page = {}
    for block in blocks:
        if block.marker == "run":
            by_page.setdefault(block.page, []).append(block)
    failed = len(problems)
    with tempfile.TemporaryDirectory() as scratch:
        link = Path(scratch) / root.name
        link.symlink_to(root)
        env = dict(os.environ, DEMO_PROFILE="dev")
        for page, page_blocks in by_page.items():
            label = f"{page}: {len(page_blocks)} runnable block(s)"
            if not run_script(session(page_blocks), link, env, PAGE_TIMEOUT, label):
                failed += 1
    counts = {}
    for block in blocks:
        kind = block.marker.split(" ")[0] if block.marker else "unmarked"
        if block.marker.startswith("run-by"):
            kind = " ".join(block.marker.split(" ")[:2])
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"{len(blocks)} shell blocks: {summary}; {failed} problem(s)")
    return failed == 0


def run_e2e(page, job, after):
    path = ROOT / page
    blocks, problems = blocks_of(path.read_text(), page)
    if problems:
        sys.exit("\n".join(problems))
    wanted = {b.section for b in blocks if b.marker == f"e2e {job}"}
    chosen = [b for b in blocks if b.marker == f"e2e {job}"
              or (b.marker == "run" and b.section in wanted)]
    if not any(b.marker == f"e2e {job}" for b in chosen):
        sys.exit(f"{page} has no block marked `e2e {job}`")
    script = session(chosen)
    if after:
        script += f"\necho '--- {after}' >&2\nsource {after}\n"
    # No overall timeout here: every wait in the blocks is bounded, and the
    # workflow job has its own timeout-minutes.
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT)
    sys.exit(result.returncode)


def list_blocks():
    blocks, problems = collect()
    for block in blocks:
        first = command_lines(block.body)[:1]
        print(f"{block.page}:{block.line}\t{block.marker or 'UNMARKED'}\t{first[0] if first else ''}")
    for problem in problems:
        print(f"PROBLEM {problem}")


def self_test():
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "repo"
        (root / "scenarios" / "walkthroughs").mkdir(parents=True)
        (root / "demo" / "tests").mkdir(parents=True)
        (root / "demo" / "tests" / "t.rs").write_text("#[test]\nfn real_test() {}\n")
        (root / ".github" / "workflows").mkdir(parents=True)
        (root / E2E_WORKFLOW).write_text("jobs:\n  kind:\n    steps:\n      - run: scripts/doc-blocks.py run README.md kind\n")
        cases = {
            "unmarked": ("```sh\necho hi\n```\n", "unmarked shell block"),
            "no language": ("```\necho hi\n```\n", "fence without a language"),
            "missing test": ("<!-- doc-test: run-by test no_such_test -->\n```sh\ncargo test\n```\n", "no test named no_such_test"),
            "missing job": ("<!-- doc-test: e2e compose -->\n```sh\ndocker compose up\n```\n", "has no job compose"),
            "page not run by the job": ("<!-- doc-test: e2e kind -->\n```sh\nkind create cluster\n```\n", None),
            "failing block": ("<!-- doc-test: run -->\n```sh\nfalse\n```\n", "exit status"),
        }
        ok = True
        for name, (markdown, expected) in cases.items():
            page = "scenarios/walkthroughs/w.md" if name == "page not run by the job" else "README.md"
            for p in pages(root):
                p.unlink()
            (root / page).write_text(markdown)
            expected = expected or f"does not run `scripts/doc-blocks.py run {page} kind`"
            out = subprocess.run([sys.executable, __file__, "_check_root", str(root)],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode == 0 or expected not in out.stdout:
                print(f"FAIL self-test {name}: expected a failure naming `{expected}`, got:\n{out.stdout}")
                ok = False
        (root / "scenarios" / "walkthroughs" / "w.md").unlink(missing_ok=True)
        (root / "README.md").write_text("<!-- doc-test: run-by test real_test -->\n```sh\ncargo test\n```\n"
                                        "<!-- doc-test: run -->\n```sh\ntrue\n```\n")
        out = subprocess.run([sys.executable, __file__, "_check_root", str(root)],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            print(f"FAIL self-test: a valid page fails:\n{out.stdout}")
            ok = False
    print("ok   self-test: unmarked, unlabelled, unknown test, missing job, failing block all fail"
          if ok else "self-test failed")
    return ok


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["check"]:
        sys.exit(0 if check() else 1)
    if args[:1] == ["_check_root"] and len(args) == 2:
        sys.exit(0 if check(Path(args[1])) else 1)
    if args == ["list"]:
        list_blocks()
        sys.exit(0)
    if args == ["self-test"]:
        sys.exit(0 if self_test() else 1)
    if args[:1] == ["run"] and len(args) in (3, 5):
        after = args[4] if len(args) == 5 and args[3] == "--after" else None
        if len(args) == 5 and not after:
            sys.exit(__doc__)
        run_e2e(args[1], args[2], after)
    sys.exit(__doc__)
