/**
 * Server configuration files (YAML). Keys are the long flag names in camelCase; flags given
 * on the command line override the file, and the file overrides defaults. Unknown keys are
 * refused so a typo never silently does nothing.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { InvalidConfigError } from "../../common/src/errors.js";

export type ConfigValues = Record<string, unknown>;

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
  if (typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new InvalidConfigError(`config file ${path} must be a YAML mapping of option names to values`);
  }
  for (const key of Object.keys(parsed)) {
    if (!allowedKeys.includes(key)) {
      throw new InvalidConfigError(`config file ${path}: unknown key "${key}"; known keys: ${allowedKeys.join(", ")}`);
    }
  }
  return parsed as ConfigValues;
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
