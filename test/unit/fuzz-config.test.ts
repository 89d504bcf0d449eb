/**
 * Fuzzing the files a broker reads at start: role.json, a partition's leader-epochs, the
 * recovery-point checkpoint and flow-rules.json (the YAML `--config` file, whose parser is a
 * hundred times slower: fuzz-config-yaml.test.ts).
 * A malformed file gives a typed error naming the file (or, for the two files a broker can
 * rebuild from its logs, a stated problem and a rebuild), never an untyped crash; what loads
 * is in range. Each input is written to a real file in a temp directory and read back.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { InternalError, InvalidConfigError, SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { FlowRuleStore } from "../../broker/src/flow/rule-store.js";
import { readRoleFile } from "../../broker/src/roles/role-file.js";
import { LeaderEpochCache } from "../../broker/src/storage/leader-epochs.js";
import { RECOVERY_POINT_CHECKPOINT_FILE, readRecoveryPoints } from "../../broker/src/storage/logs-dir.js";
import { FILE_BUDGET_MS, MIN_FUZZ_ITERATIONS, describeReport, fileBudget, fuzz, fuzzTempDir, type FuzzReport } from "../fuzz/driver.js";
import { checkFlowRule } from "../fuzz/flow-rule-checks.js";
import { jsonMutators } from "../fuzz/json-mutate.js";
import { BYTE_MUTATORS, type Mutator } from "../fuzz/mutate.js";
import { LINE_SNIPPETS, snippetMutator } from "../fuzz/text-mutate.js";

const LINE_SNIPPET = snippetMutator(LINE_SNIPPETS);
const LINE_MUTATORS: Mutator[] = [...BYTE_MUTATORS, ...Array.from({ length: 12 }, () => LINE_SNIPPET)];
const JSON_MUTATORS = jsonMutators(0.6);

/** A typed refusal whose message names the file. */
function refusedNaming(err: unknown, file: string, type: new (...args: never[]) => SluiceError): string {
  assert.ok(err instanceof type, `expected ${type.name}, got ${(err as Error)?.stack ?? String(err)}`);
  assert.ok(err.message.includes(file), `the message names ${file}: ${err.message.slice(0, 300)}`);
  return "refused";
}

describe("fuzz: files read at start", () => {
  const reports: string[] = [];
  const remainingMs = fileBudget(FILE_BUDGET_MS);
  let dir: string;
  before(() => {
    dir = fuzzTempDir("sluice-fuzz-");
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    for (const line of reports) console.log(line);
  });
  const record = (report: FuzzReport): void => {
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS);
    assert.ok(Object.keys(report.outcomes).length >= 2, `both loaded and refused inputs: ${JSON.stringify(report.outcomes)}`);
  };

  it("role.json: refused with a typed error naming the file, or an epoch and a master in range", async () => {
    const file = path.join(dir, "role.json");
    record(
      await fuzz({
        name: "role-file",
        corpusDir: "role-file",
        iterations: MIN_FUZZ_ITERATIONS,
        maxMs: remainingMs(),
        mutators: JSON_MUTATORS,
        run: (input) => {
          fs.writeFileSync(file, input);
          let role: ReturnType<typeof readRoleFile>;
          try {
            role = readRoleFile(dir);
          } catch (err) {
            return refusedNaming(err, file, InternalError);
          }
          assert.ok(role !== undefined && Number.isSafeInteger(role.epoch) && role.epoch >= 0);
          assert.ok(role.master === null || (Number.isSafeInteger(role.master) && role.master >= 0));
          return "loaded";
        },
      }),
    );
  });

  it("leader-epochs: a problem to rebuild from, or entries ascending and in range", async () => {
    const partitionDir = path.join(dir, "orders-0");
    fs.mkdirSync(partitionDir, { recursive: true });
    record(
      await fuzz({
        name: "leader-epochs",
        corpusDir: "leader-epochs",
        iterations: MIN_FUZZ_ITERATIONS,
        maxMs: remainingMs(),
        mutators: LINE_MUTATORS,
        run: (input) => {
          fs.writeFileSync(path.join(partitionDir, "leader-epochs"), input);
          const { cache, problem } = LeaderEpochCache.load(partitionDir);
          if (problem !== null) {
            assert.ok(cache.isEmpty, "a damaged history is rebuilt from the log, not half used");
            return "rebuild";
          }
          let before: { epoch: number; startOffset: number } | undefined;
          for (const entry of cache.entries()) {
            assert.ok(Number.isSafeInteger(entry.epoch) && entry.epoch >= -1 && Number.isSafeInteger(entry.startOffset) && entry.startOffset >= 0);
            if (before) assert.ok(entry.epoch > before.epoch && entry.startOffset > before.startOffset);
            before = entry;
          }
          return "loaded";
        },
      }),
    );
  });

  it("recovery-point checkpoint: malformed lines are skipped, the offsets kept are in range", async () => {
    const logsDir = path.join(dir, "logs");
    fs.mkdirSync(logsDir, { recursive: true });
    record(
      await fuzz({
        name: "recovery-points",
        corpusDir: "recovery-points",
        iterations: MIN_FUZZ_ITERATIONS,
        maxMs: remainingMs(),
        mutators: LINE_MUTATORS,
        run: (input) => {
          fs.writeFileSync(path.join(logsDir, RECOVERY_POINT_CHECKPOINT_FILE), input);
          const points = readRecoveryPoints(logsDir, silentLogger);
          for (const [key, offset] of points) {
            assert.ok(/^\S+ -?\d+$/.test(key), `key ${JSON.stringify(key)}`);
            assert.ok(Number.isSafeInteger(offset) && offset >= 0);
          }
          return points.size === 0 ? "nothing kept" : "kept";
        },
      }),
    );
  });

  it("flow-rules.json: refused with an InvalidConfigError naming the file, or valid rules", async () => {
    const file = path.join(dir, "flow-rules.json");
    record(
      await fuzz({
        name: "flow-rules-file",
        corpusDir: "flow-rules-file",
        iterations: MIN_FUZZ_ITERATIONS,
        maxMs: remainingMs(),
        mutators: JSON_MUTATORS,
        run: (input) => {
          fs.writeFileSync(file, input);
          let store: FlowRuleStore;
          try {
            store = new FlowRuleStore(dir);
          } catch (err) {
            return refusedNaming(err, file, InvalidConfigError);
          }
          for (const { rule } of store.effective([])) checkFlowRule(rule);
          return "loaded";
        },
      }),
    );
  });
});

describe("files read at start that cannot be read at all", () => {
  it("role.json that is a directory: a typed error naming it (was the raw EISDIR)", () => {
    const dataDir = fuzzTempDir("sluice-role-");
    try {
      fs.mkdirSync(path.join(dataDir, "role.json"));
      assert.throws(() => readRoleFile(dataDir), (err: unknown) => refusedNaming(err, path.join(dataDir, "role.json"), InternalError) === "refused");
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("flow-rules.json nested thousands of levels deep: an InvalidConfigError naming it (was a RangeError)", () => {
    const dataDir = fuzzTempDir("sluice-flow-");
    try {
      const file = path.join(dataDir, "flow-rules.json");
      fs.writeFileSync(file, `{"version":1,"set":[{"scope":${"[".repeat(20_000)}${"]".repeat(20_000)}}]}`);
      assert.throws(() => new FlowRuleStore(dataDir), (err: unknown) => refusedNaming(err, file, InvalidConfigError) === "refused");
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
