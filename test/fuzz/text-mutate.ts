/**
 * Mutators for line-oriented text files (YAML config, leader-epochs, the recovery-point
 * checkpoint): a snippet of the format's own syntax put where a value or a line starts, so
 * damage looks like what an editor, a truncated write or a hostile user leaves behind.
 */
import type { Mutator, Rng } from "./mutate.js";

/** YAML that loaders trip on: anchors and aliases (also cyclic), tags, odd scalars, objects that are not data. */
export const YAML_SNIPPETS: readonly string[] = [
  "&a ", "*a", "&a [*a]", "&a {self: *a}", "!!binary aGk=", "!!str ", "!!map {}", "!!set {a}", "!!omap [a: 1]", "!custom x",
  "? [a, b]\n: 1", "<<: {port: 1}", "{toString: 1}", "{valueOf: 2}", "{__proto__: {port: 1}}", "[1, 2]", "[]", "{}",
  "'unterminated", "\"\\x\"", "|\n  text\n", ">-\n  folded\n", "---\n", "...\n", "%YAML 1.1\n---\n", "%TAG ! tag:x,2000:\n---\n",
  "1e400", "-1e400", ".inf", ".nan", "0x1F", "0o17", "1_000", "~", "null", "true", "yes", "2001-12-14t21:59:43.10-05:00",
  "- ", "\t", "  ", "#", ": ", ":", "-", "\u0000", "\ufeff", "\ud800", "x".repeat(500),
];

/** leader-epochs and checkpoint lines: numbers at and past the safe range, signs, spacing, separators. */
export const LINE_SNIPPETS: readonly string[] = [
  "-1", "-2", "0", "9007199254740991", "9007199254740993", "99999999999999999999", "1e3", "0x10", "+1", "01", " ", "  ", "\t", "\r", "\n", "\n\n", "-", "NaN", "Infinity",
  "sluice-leader-epochs 1\n", "sluice-leader-epochs 2\n", "orders", "%groups", "a b c d", "\u0000",
];

function insertAt(input: Buffer, at: number, snippet: string, replace: number): Buffer {
  return Buffer.concat([input.subarray(0, at), Buffer.from(snippet, "utf8"), input.subarray(Math.min(input.length, at + replace))]);
}

/** Where a value or a line starts: after ": ", after "- ", after a newline or a space; else anywhere. */
function anchorPoint(input: Buffer, rng: Rng): number {
  const text = input.toString("latin1");
  const points: number[] = [];
  for (let i = 0; i < text.length && points.length < 64; i++) {
    const c = text[i];
    if (c === "\n" || c === " ") points.push(i + 1);
  }
  return points.length > 0 && rng.chance(0.8) ? rng.pick(points) : rng.int(input.length + 1);
}

export function snippetMutator(snippets: readonly string[]): Mutator {
  return (input, rng) => {
    const at = anchorPoint(input, rng);
    // Usually replaces what was there (a value), sometimes only inserts.
    const replace = rng.chance(0.6) ? rng.smallLength(12) : 0;
    return insertAt(input, at, rng.pick(snippets), replace);
  };
}

/**
 * Nesting beyond any config: flow sequences or block indentation a hundred deep. (Thousands
 * deep overflow the yaml parser's stack, at ~10 ms a parse: that case is a corpus file.)
 */
export const deepYaml: Mutator = (input, rng) => {
  const depth = rng.pick([20, 50, 120]);
  const nest = rng.chance(0.5)
    ? `${"[".repeat(depth)}${"]".repeat(depth)}`
    : Array.from({ length: Math.min(depth, 300) }, (_, i) => `${"  ".repeat(i)}k:`).join("\n");
  return insertAt(input, anchorPoint(input, rng), nest, 0);
};
