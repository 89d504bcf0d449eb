// Runs the test suite with node:test through tsx.
//
// Usage: node scripts/run-tests.mjs [dir-or-file …]   (default: test/unit and test/integration)
// Unit tests run in parallel; integration tests start real processes, so they run two at a
// time to stay well inside the 2-core budget.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function collect(path, out) {
  if (statSync(path).isDirectory()) {
    for (const name of readdirSync(path).sort()) collect(join(path, name), out);
  } else if (path.endsWith(".test.ts")) {
    out.push(path);
  }
  return out;
}

const targets = process.argv.slice(2);
const groups = targets.length
  ? [{ files: targets.flatMap((t) => collect(t, [])), concurrency: 2 }]
  : [
      { files: collect("test/unit", []), concurrency: 4 },
      { files: collect("test/integration", []), concurrency: 2 },
    ];

let failed = false;
for (const { files, concurrency } of groups) {
  if (files.length === 0) continue;
  const result = spawnSync(
    process.execPath,
    ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-timeout=180000", "--test-reporter=spec", ...files],
    { stdio: "inherit", env: { ...process.env, SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? "warn" } },
  );
  if (result.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
