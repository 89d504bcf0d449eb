/**
 * Fuzzing the YAML `--config` file of `sluice broker`, `nameserver` and `dev`
 * (cli/src/config.ts): damaged YAML, anchors and aliases (also ones that loop), tags that make
 * Maps and Sets, mappings where values belong, deep nesting, invalid UTF-8. Each file is
 * refused with an InvalidConfigError naming it, or loads into values the servers can read:
 * scalars or lists of them, and for `flow` plain data that parseFlowRules checks. Its own
 * file because the yaml parser takes ~50-150 µs a document, a hundred times a JSON parse.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfigFile } from "../../cli/src/config.js";
import { InvalidConfigError } from "../../common/src/errors.js";
import { parseFlowRules } from "../../common/src/flow/rules.js";
import { FILE_BUDGET_MS, MIN_FUZZ_ITERATIONS, describeReport, fuzz, fuzzTempDir } from "../fuzz/driver.js";
import { checkFlowRule } from "../fuzz/flow-rule-checks.js";
import { BYTE_MUTATORS, type Mutator } from "../fuzz/mutate.js";
import { YAML_SNIPPETS, deepYaml, snippetMutator } from "../fuzz/text-mutate.js";

/** The keys `sluice broker`, `nameserver` and `dev` accept in a config file (cli/src/commands/servers.ts). */
const SERVER_KEYS = [
  "name", "id", "data", "host", "port", "httpPort", "nameserver", "flush", "flushIntervalMs", "heartbeatIntervalMs",
  "segmentBytes", "retentionMs", "retentionBytes", "maxMessageBytes", "cluster", "etcd", "replication", "minInSyncSlaves",
  "maxSlaveLagMs", "replicationThrottleBytes", "leaseTtlMs", "fenceMarginMs", "flow", "maxHeldProduceBytes",
  "metricsPerPartition", "expiryMs", "expiryHeartbeats", "detector", "phiThreshold", "portOffset",
];
const YAML_SNIPPET = snippetMutator(YAML_SNIPPETS);
const MUTATORS: Mutator[] = [...BYTE_MUTATORS, ...Array.from({ length: 20 }, () => YAML_SNIPPET), deepYaml];

function isScalar(value: unknown): boolean {
  return value === null || ["string", "number", "boolean"].includes(typeof value);
}

describe("fuzz: YAML config files", () => {
  let dir: string;
  let report = "";
  const emitWarning = process.emitWarning;
  let warnings = 0;
  before(() => {
    dir = fuzzTempDir("sluice-fuzz-");
    // The yaml package warns on stderr about some inputs (keys that are collections): counted, not printed.
    process.emitWarning = (() => void warnings++) as typeof process.emitWarning;
  });
  after(() => {
    process.emitWarning = emitWarning;
    fs.rmSync(dir, { recursive: true, force: true });
    console.log(`${report} (${warnings} yaml warnings)`);
  });

  it("loadConfigFile: refused with an InvalidConfigError naming the file, or values the servers can read", async () => {
    const file = path.join(dir, "sluice.yaml");
    const result = await fuzz({
      name: "config-yaml",
      corpusDir: "config-yaml",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: FILE_BUDGET_MS,
      mutators: MUTATORS,
      run: (input) => {
        fs.writeFileSync(file, input);
        let values: Record<string, unknown>;
        try {
          values = loadConfigFile(file, SERVER_KEYS);
        } catch (err) {
          assert.ok(err instanceof InvalidConfigError, `expected InvalidConfigError, got ${(err as Error)?.stack ?? String(err)}`);
          assert.ok(err.message.includes(file), `the message names the file: ${err.message.slice(0, 300)}`);
          return "refused";
        }
        assert.equal(Object.getPrototypeOf(values), Object.prototype, "a plain mapping (not a Map from !!omap)");
        for (const [key, value] of Object.entries(values)) {
          assert.ok(SERVER_KEYS.includes(key), `unknown key ${key} loaded`);
          if (key === "flow") continue;
          // servers.ts reads every other value with String() and Number() and quotes it with JSON.stringify.
          assert.ok(isScalar(value) || (Array.isArray(value) && value.every(isScalar)), `${key} holds ${String(typeof value)}, not a scalar or a list of them`);
          JSON.stringify(value);
        }
        if (values.flow === undefined) return "loaded";
        try {
          for (const rule of parseFlowRules(values.flow, `config file ${file}: flow`)) checkFlowRule(rule);
        } catch (err) {
          assert.ok(err instanceof InvalidConfigError, `expected InvalidConfigError, got ${(err as Error)?.stack ?? String(err)}`);
          return "flow refused";
        }
        return "loaded with flow rules";
      },
    });
    report = describeReport(result);
    assert.ok(result.iterations >= MIN_FUZZ_ITERATIONS);
    for (const outcome of ["refused", "loaded", "loaded with flow rules", "flow refused"]) {
      assert.ok((result.outcomes[outcome] ?? 0) > 0, `some inputs end as "${outcome}"`);
    }
  });
});

describe("YAML config values that used to pass the loader and break the servers", () => {
  const cases: [string, string, RegExp][] = [
    // String(value) in servers.ts threw a TypeError: an untyped crash at start.
    ["port: {toString: 1}\n", "a mapping", /port must be a single value or a list of values, not a mapping/],
    // A list that contains itself: String() reads it as "", so the port became 0 (a random port).
    ["port: &a [*a]\n", "a looping alias", /port must be a single value or a list of values/],
    // A Map: Object.keys sees no entries, so the whole file was silently ignored.
    ["!!omap [port: 1]\n", "a !!omap top level", /must be a YAML mapping/],
    ["flow: &r [{scope: broker, limiter: concurrency, maxInFlight: 1, x: *r}]\n", "a flow list that contains itself", /flow must not use an alias/],
    ["flow: !!set {a}\n", "a !!set flow", /flow must hold only values, lists and mappings, not a set/],
  ];
  for (const [text, what, message] of cases) {
    it(`${what}: an InvalidConfigError naming the file and the key`, () => {
      const dir = fuzzTempDir("sluice-config-");
      try {
        const file = path.join(dir, "sluice.yaml");
        fs.writeFileSync(file, text);
        assert.throws(() => loadConfigFile(file, SERVER_KEYS), (err: unknown) => {
          assert.ok(err instanceof InvalidConfigError, String(err));
          assert.ok(err.message.includes(file), err.message);
          assert.match(err.message, message);
          return true;
        });
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
