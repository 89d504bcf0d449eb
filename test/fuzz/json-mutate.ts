/**
 * Structure-aware mutators for JSON inputs (REST bodies, WebSocket frames, JSON files): the
 * seed is parsed, one node of its tree is replaced or removed, and the result is written
 * back as text. What replaces a node: random JSON values of every type (so each field gets
 * wrong types), edge numbers (2^53 + 1, 1e308, -0, fractions), huge strings, strings with
 * lone surrogates, objects with `__proto__` and unknown keys, and nesting thousands of levels
 * deep. Inputs that do not parse (earlier byte damage) are mutated as bytes instead: invalid
 * UTF-8 and truncated JSON come from the byte mutators.
 */
import { BYTE_MUTATORS, flipBits, type Mutator, type Rng } from "./mutate.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const EDGE_NUMBERS = [0, -0, 1, -1, 0.5, -0.5, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53 + 2, -(2 ** 53) - 2, 1e308, -1e308, 5e-324, 1e21, 1_000_000, 1_000_001];
const EDGE_STRINGS = ["", " ", "0", "-1", "true", "null", "__proto__", "constructor", "%groups", "orders", "topic:orders.*", "topic:", "topic:\ud800*", "client:a?b*", "broker", "token-bucket", "warm-up", "concurrency", "\u0000", "\ud800", "\udfff\ud800", "💥", "a".repeat(250), "queue", "tail", "open", "ack"];
const KEYS = ["op", "mode", "topic", "group", "partitions", "from", "messages", "name", "scope", "limiter", "version", "set", "deleted", "epoch", "master", "__proto__", "constructor", "toString", "valueOf", "x"];

/** Sets an own property, also "__proto__" (a plain assignment would change the prototype instead). */
function setKey(target: { [key: string]: Json }, key: string, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function randomString(rng: Rng): string {
  const roll = rng.int(40);
  if (roll < 24) return rng.pick(EDGE_STRINGS);
  if (roll < 39) return String.fromCharCode(...Array.from({ length: rng.smallLength(24) }, () => rng.int(0x10000)));
  return "x".repeat(rng.range(1000, 70_000));
}

/** A random JSON value; containers up to `depth` levels. */
export function randomJson(rng: Rng, depth = 2): Json {
  switch (rng.int(depth > 0 ? 8 : 6)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick(EDGE_NUMBERS);
    case 3:
      return rng.int(2000) - 1000;
    case 4:
    case 5:
      return randomString(rng);
    case 6:
      return Array.from({ length: rng.smallLength(6) }, () => randomJson(rng, depth - 1));
    default: {
      const out: { [key: string]: Json } = {};
      for (let n = rng.smallLength(5); n > 0; n--) setKey(out, rng.pick(KEYS), randomJson(rng, depth - 1));
      return out;
    }
  }
}

/** `[[[…]]]` or `{"a":{"a":…}}` `depth` levels deep, as text (building it as a value would cost more). */
export function deeplyNestedText(depth: number, object: boolean): string {
  return object ? `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}` : `${"[".repeat(depth)}${"]".repeat(depth)}`;
}

const DEEP = "\u0000deep\u0000";
/** Deep enough to overflow JSON.stringify (about 5000 levels) and far less. */
const DEEP_LEVELS = [40, 100, 1000, 6000];
const MAX_TREE_EDIT_BYTES = 1024;
const DEEP_TEXT = JSON.stringify(DEEP);

/** Walks to a random node of `root` and returns a setter for it (null for the root itself). */
function randomSlot(root: Json, rng: Rng): { parent: Json[] | { [key: string]: Json }; key: string | number } | null {
  let slot: { parent: Json[] | { [key: string]: Json }; key: string | number } | null = null;
  let node = root;
  for (let depth = 0; depth < 6 && node !== null && typeof node === "object" && rng.chance(0.75); depth++) {
    const keys: (string | number)[] = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    if (keys.length === 0) break;
    const key = rng.pick(keys);
    slot = { parent: node, key };
    node = (node as Record<string | number, Json>)[key]!;
  }
  return slot;
}

/** Replaces, removes or adds one node of the parsed input; falls back to `fallback` on unparsable input. */
export function jsonTreeMutator(fallback: Mutator): Mutator {
  return (input, rng, context) => {
    // Big inputs are the huge strings and deep nests made earlier: re-parsing them costs more
    // than it finds; byte damage still reaches them.
    if (input.length > MAX_TREE_EDIT_BYTES) return fallback(input, rng, context);
    let root: Json;
    try {
      root = JSON.parse(input.toString("utf8")) as Json;
    } catch {
      return fallback(input, rng, context);
    }
    const slot = randomSlot(root, rng);
    // 0-14: a random value in its place; 15: deep nesting; 16-19: removed, or a key added.
    const roll = rng.int(20);
    if (slot === null) {
      root = roll === 15 ? DEEP : randomJson(rng);
    } else if (roll >= 16) {
      if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1);
      else if (rng.chance(0.5)) delete slot.parent[slot.key as string];
      else setKey(slot.parent, rng.pick(KEYS), randomJson(rng));
    } else {
      const value = roll === 15 ? DEEP : randomJson(rng);
      if (Array.isArray(slot.parent)) slot.parent[slot.key as number] = value;
      else setKey(slot.parent, slot.key as string, value);
    }
    let text: string;
    try {
      text = JSON.stringify(root);
    } catch {
      return fallback(input, rng, context); // an input nested too deeply to write back
    }
    if (text.includes(DEEP_TEXT)) {
      text = text.replace(DEEP_TEXT, deeplyNestedText(rng.pick(DEEP_LEVELS), rng.chance(0.5)));
    }
    return Buffer.from(text, "utf8");
  };
}

/** Byte mutators and tree edits, the tree edits making up `treeShare` of the picks. */
export function jsonMutators(treeShare: number): Mutator[] {
  const tree = jsonTreeMutator(flipBits);
  const copies = Math.round((BYTE_MUTATORS.length * treeShare) / (1 - treeShare));
  return [...BYTE_MUTATORS, ...Array.from({ length: copies }, () => tree)];
}
