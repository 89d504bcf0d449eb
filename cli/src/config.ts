/**
 * Server configuration files (YAML). Keys are the long flag names in camelCase; flags given
 * on the command line override the file, and the file overrides defaults. Unknown keys are
 * refused so a typo never silently does nothing.
 *
 * Values land in the same object as flags, which the servers read with String() and Number():
 * so a value is a scalar or a list of scalars, except under STRUCTURED_KEYS, whose lists and
 * mappings the server validates itself (naming the field) and which must be plain data. YAML
 * can say more than that, and each of these used to pass the loader and fail later, untyped
 * or silently: `port: {toString: 1}` (String() throws a TypeError), `port: &a [*a]` (a list
 * that contains itself reads as "", port 0), a top level `!!omap` or `!!set` (a Map, whose
 * entries Object.keys does not see: the whole file ignored).
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { InvalidConfigError } from "../../common/src/errors.js";

export type ConfigValues = Record<string, unknown>;

/** Keys whose value is a list or mapping the server checks itself: the ingress flow rules. */
export const STRUCTURED_KEYS: readonly string[] = ["flow"];
/** Deepest nesting of a structured value; a flow rule needs two levels. */
const MAX_STRUCTURED_DEPTH = 16;

export function loadConfigFile(path: string | undefined, allowedKeys: readonly string[]): ConfigValues {
  if (!path) return {};
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new InvalidConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (err) {
    throw new InvalidConfigError(`config file ${path} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (!isPlainObject(parsed)) {
    throw new InvalidConfigError(`config file ${path} must be a YAML mapping of option names to values`);
  }
  for (const [key, value] of Object.entries(parsed)) {
    if (!allowedKeys.includes(key)) {
      throw new InvalidConfigError(`config file ${path}: unknown key "${key}"; known keys: ${allowedKeys.join(", ")}`);
    }
    const problem = STRUCTURED_KEYS.includes(key) ? plainDataProblem(value) : scalarProblem(value);
    if (problem !== null) throw new InvalidConfigError(`config file ${path}: ${key} ${problem}`);
  }
  return parsed;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

function isScalar(value: unknown): boolean {
  return value === null || typeof value === "string" || typeof value === "number" || typeof value === "boolean";
}

/** Why a value is not a scalar or a list of scalars, or null when it is. */
function scalarProblem(value: unknown): string | null {
  if (isScalar(value) || (Array.isArray(value) && value.every(isScalar))) return null;
  const what = Array.isArray(value) ? "a list holding lists or mappings" : isPlainObject(value) ? "a mapping" : `a ${describeKind(value)}`;
  return `must be a single value or a list of values, not ${what}`;
}

/**
 * Why a value is not plain data (scalars, lists, mappings; each collection met once, so no
 * alias loops back or repeats; at most MAX_STRUCTURED_DEPTH deep), or null when it is.
 */
function plainDataProblem(value: unknown): string | null {
  const seen = new Set<object>();
  const pending: { node: unknown; depth: number }[] = [{ node: value, depth: 1 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { node, depth } = next;
    if (isScalar(node)) continue;
    if (!Array.isArray(node) && !isPlainObject(node)) return `must hold only values, lists and mappings, not a ${describeKind(node)}`;
    if (seen.has(node)) return "must not use an alias of a list or mapping it already holds (write the value out)";
    if (depth > MAX_STRUCTURED_DEPTH) return `must not nest lists and mappings more than ${MAX_STRUCTURED_DEPTH} levels deep`;
    seen.add(node);
    for (const child of Array.isArray(node) ? node : Object.values(node)) pending.push({ node: child, depth: depth + 1 });
  }
  return null;
}

/** "set", "map", "date"…: what YAML tags such as !!set and !!omap turn into. */
function describeKind(value: unknown): string {
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return typeof name === "string" && name !== "" ? `${name.toLowerCase()} (YAML tag)` : typeof value;
}

/**
 * Merges flags over file values: a flag counts only when the user gave it (commander's
 * value source is "cli" or "env"), so a flag's default never hides the file's value.
 */
export function mergeOptions(
  flags: Record<string, unknown>,
  sources: (key: string) => string | undefined,
  file: ConfigValues,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(file)) out[key] = value;
  for (const [key, value] of Object.entries(flags)) {
    const source = sources(key);
    if (source === "cli" || source === "env" || !(key in out)) out[key] = value;
  }
  return out;
}
