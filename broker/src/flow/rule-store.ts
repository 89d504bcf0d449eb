/**
 * Where run-time flow rule changes live: `<data>/flow-rules.json`, so a `sluice flow set` or
 * `delete` survives a restart. The config file's `flow:` list is the base; the file records
 * what changed since, by (scope, limiter): rules set, and config rules deleted. Kafka layers
 * dynamic quota configs over static ones the same way.
 *
 *   { "version": 1, "set": [FlowRule…], "deleted": [{ "scope", "limiter" }…] }
 *
 * Replaced whole and durably (writeFileDurably). A file that cannot be parsed stops the broker's start with
 * its path: silently dropping an operator's limits would be worse.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidConfigError, SluiceError } from "../../../common/src/errors.js";
import { flowRuleKey, parseFlowRules, type FlowRule } from "../../../common/src/flow/rules.js";
import type { Logger } from "../../../common/src/logger.js";
import { writeFileDurably } from "../storage/storage-io.js";
import type { FlowRuleSource } from "./flow-controller.js";

export const FLOW_RULES_FILE = "flow-rules.json";
const FORMAT_VERSION = 1;

interface StoredChanges {
  set: FlowRule[];
  deleted: { scope: string; limiter: string }[];
}

export class FlowRuleStore {
  private readonly path: string;
  private changes: StoredChanges;

  constructor(dataDir: string) {
    this.path = join(dataDir, FLOW_RULES_FILE);
    this.changes = this.read();
  }

  /** The rules in force at start: the config's, minus deletions, with run-time rules over them. */
  effective(configRules: readonly FlowRule[], logger?: Logger): { rule: FlowRule; source: FlowRuleSource }[] {
    const byKey = new Map<string, { rule: FlowRule; source: FlowRuleSource }>();
    for (const rule of configRules) byKey.set(flowRuleKey(rule), { rule, source: "config" });
    // Said at start, so an edit of the config file that a run-time change hides is not a mystery.
    for (const gone of this.changes.deleted) {
      if (byKey.delete(flowRuleKey(gone))) logger?.warn({ rule: gone, file: this.path }, "a flow rule of the config file stays deleted: it was deleted at run time (sluice flow delete)");
    }
    for (const rule of this.changes.set) {
      if (byKey.get(flowRuleKey(rule))?.source === "config") logger?.warn({ rule, file: this.path }, "a flow rule of the config file is replaced by the one set at run time (sluice flow set)");
      byKey.set(flowRuleKey(rule), { rule, source: "runtime" });
    }
    return [...byKey.values()];
  }

  recordSet(rule: FlowRule): void {
    const key = flowRuleKey(rule);
    this.save({
      set: [...this.changes.set.filter((r) => flowRuleKey(r) !== key), rule],
      deleted: this.changes.deleted.filter((d) => flowRuleKey(d) !== key),
    });
  }

  recordDelete(scope: string, limiter: string): void {
    const key = flowRuleKey({ scope, limiter });
    this.save({
      set: this.changes.set.filter((r) => flowRuleKey(r) !== key),
      deleted: [...this.changes.deleted.filter((d) => flowRuleKey(d) !== key), { scope, limiter }],
    });
  }

  private read(): StoredChanges {
    if (!existsSync(this.path)) return { set: [], deleted: [] };
    const where = `flow rule file ${this.path}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.path, "utf8"));
    } catch (err) {
      throw new InvalidConfigError(`${where} is not valid JSON (${(err as Error).message}); fix or remove it (it holds the rules set with \`sluice flow\`)`);
    }
    try {
      return parseStoredChanges(parsed, where);
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      // A file nested thousands of levels deep overflows the stack of the code quoting a bad
      // value (RangeError): still this file's fault, and said so.
      throw new InvalidConfigError(`${where} cannot be read (${(err as Error).message}); fix or remove it (it holds the rules set with \`sluice flow\`)`, { cause: err });
    }
  }

  private save(changes: StoredChanges): void {
    // Rules arrive parsed (parseFlowRule fills every default), so they are stored as run.
    const text = JSON.stringify({ version: FORMAT_VERSION, ...changes }, null, 2) + "\n";
    writeFileDurably(this.path, text);
    this.changes = changes;
  }
}

/** The changes a parsed flow-rules.json holds; InvalidConfigError (prefixed by `where`) when they do not check. */
function parseStoredChanges(parsed: unknown, where: string): StoredChanges {
  const stored = parsed as { version?: unknown; set?: unknown; deleted?: unknown };
  if (typeof stored !== "object" || stored === null || stored.version !== FORMAT_VERSION) {
    throw new InvalidConfigError(`${where} has version ${showVersion(stored?.version)}; this broker reads version ${FORMAT_VERSION}`);
  }
  const set = parseFlowRules(stored.set ?? [], `${where}: set`);
  const deletedInput = stored.deleted ?? [];
  if (!Array.isArray(deletedInput)) throw new InvalidConfigError(`${where}: deleted must be a list of { scope, limiter }`);
  const deleted = deletedInput.map((d: unknown, i) => {
    const entry = d as { scope?: unknown; limiter?: unknown };
    if (typeof entry?.scope !== "string" || typeof entry.limiter !== "string") {
      throw new InvalidConfigError(`${where}: deleted[${i}] must be { scope, limiter } strings`);
    }
    return { scope: entry.scope, limiter: entry.limiter };
  });
  return { set, deleted };
}

/** A version field as found, short: a list or an object by kind (quoting one could overflow the stack). */
function showVersion(version: unknown): string {
  if (Array.isArray(version)) return "a list";
  if (typeof version === "object" && version !== null) return "an object";
  return typeof version === "string" ? JSON.stringify(version.slice(0, 40)) : String(version);
}
