/**
 * The random half of fuzzing: a seeded PRNG and the byte mutators every decoder's fuzz test
 * starts from (the driver that runs them is driver.ts).
 *
 * A mutator takes an input and returns a damaged copy; the driver stacks a few per input,
 * so a flipped bit can land in a batch whose length field was also tampered with. The
 * generic ones know nothing of the format: bit flips, interesting bytes, truncation,
 * garbage appended or inserted, ranges deleted or repeated, a splice with another corpus
 * entry, big-endian int32 and varint lengths overwritten with edge values (0, -1, 2^31-1,
 * the input's own length ± 1, an oversized length), and fresh random bytes. Decoder tests add
 * format-aware ones (int32At for known length fields, resealing a batch's CRC) through the
 * same type.
 */

/** mulberry32 (the one in test/helpers/seeded-random.ts), as a class so one object serves a whole input. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [min, max]. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** A length that is usually small: 0..max, log-uniform-ish, so short inputs dominate. */
  smallLength(max: number): number {
    return Math.min(max, Math.floor(Math.exp(this.next() * Math.log(max + 1))) - 1 + this.int(2));
  }

  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) out[i] = (this.next() * 256) | 0;
    return out;
  }
}

/** The seed of iteration `iteration` of a run with base seed `seed`: each input reproduces on its own. */
export function iterationSeed(seed: number, iteration: number): number {
  let h = (seed ^ Math.imul(iteration + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export interface MutationContext {
  /** Every seed input: splices borrow from them. */
  readonly corpus: readonly Buffer[];
}

/** Returns a damaged copy of `input` (never changes `input`). */
export type Mutator = (input: Buffer, rng: Rng, context: MutationContext) => Buffer;

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x22, 0x7b, 0x5b];
/** Lengths and counts that break naive decoders: zero, negative, signed/unsigned edges. */
const INTERESTING_INT32 = [0, 1, -1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, -0x80000000, 0x40000000, 61, 60, 12];
/** Varint encodings of oversized and negative lengths (zigzag and plain readers both get hurt). */
const INTERESTING_VARINTS: readonly number[][] = [
  [0xff, 0xff, 0xff, 0xff, 0x0f], // 2^32 - 1 (zigzag: -2^31)
  [0xfe, 0xff, 0xff, 0xff, 0x0f], // zigzag: 2^31 - 1
  [0x01], // zigzag: -1 (null)
  [0x03], // zigzag: -2
  [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // 2^64 - 1
  [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], // 11 bytes: too long
  [0xff, 0xff, 0xff, 0x7f], // 2^28 - 1
  [0x80], // cut off
];

function copy(input: Buffer): Buffer {
  return Buffer.from(input);
}

export const flipBits: Mutator = (input, rng) => {
  if (input.length === 0) return copy(input);
  const out = copy(input);
  for (let n = rng.range(1, 8); n > 0; n--) out[rng.int(out.length)]! ^= 1 << rng.int(8);
  return out;
};

export const setInterestingByte: Mutator = (input, rng) => {
  if (input.length === 0) return Buffer.from([rng.pick(INTERESTING_BYTES)]);
  const out = copy(input);
  for (let n = rng.range(1, 4); n > 0; n--) out[rng.int(out.length)] = rng.chance(0.7) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
  return out;
};

export const truncate: Mutator = (input, rng) => copy(input.subarray(0, rng.int(input.length + 1)));

export const extendWithGarbage: Mutator = (input, rng) => Buffer.concat([input, rng.bytes(rng.chance(0.1) ? rng.range(64, 4096) : rng.range(1, 64))]);

export const insertGarbage: Mutator = (input, rng) => {
  const at = rng.int(input.length + 1);
  return Buffer.concat([input.subarray(0, at), rng.bytes(rng.range(1, 32)), input.subarray(at)]);
};

export const deleteRange: Mutator = (input, rng) => {
  if (input.length === 0) return copy(input);
  const from = rng.int(input.length);
  const to = Math.min(input.length, from + rng.range(1, 32));
  return Buffer.concat([input.subarray(0, from), input.subarray(to)]);
};

export const duplicateRange: Mutator = (input, rng) => {
  if (input.length === 0) return copy(input);
  const from = rng.int(input.length);
  const to = Math.min(input.length, from + rng.range(1, 128));
  const at = rng.int(input.length + 1);
  return Buffer.concat([input.subarray(0, at), input.subarray(from, to), input.subarray(at)]);
};

/** A prefix of this input and a suffix of another seed: crosses structures. */
export const spliceCorpus: Mutator = (input, rng, context) => {
  const other = context.corpus.length === 0 ? input : rng.pick(context.corpus);
  return Buffer.concat([input.subarray(0, rng.int(input.length + 1)), other.subarray(rng.int(other.length + 1))]);
};

/** An int32 value worth trying in a length or count field of `input`. */
export function interestingInt32(input: Buffer, rng: Rng): number {
  const roll = rng.int(4);
  if (roll === 0) return input.length + rng.range(-13, 13); // around the real size
  if (roll === 1) return rng.int(0x100000000) | 0; // anything
  return rng.pick(INTERESTING_INT32);
}

/** Overwrites a big-endian int32 somewhere (aligned or not) with an edge value. */
export const overwriteInt32: Mutator = (input, rng) => {
  if (input.length < 4) return setInterestingByte(input, rng, { corpus: [] });
  const out = copy(input);
  out.writeInt32BE(interestingInt32(input, rng), rng.int(input.length - 3));
  return out;
};

/** Replaces a few bytes with a varint of an oversized, negative or over-long value. */
export const overwriteVarint: Mutator = (input, rng) => {
  const varint = Buffer.from(rng.pick(INTERESTING_VARINTS));
  const at = rng.int(input.length + 1);
  const replaced = rng.chance(0.5) ? Math.min(varint.length, input.length - at) : 0;
  return Buffer.concat([input.subarray(0, at), varint, input.subarray(at + replaced)]);
};

export const randomBytes: Mutator = (_input, rng) => rng.bytes(rng.smallLength(512));

/** A mutator that writes an edge int32 at one of the given offsets: a format's length and count fields. */
export function int32At(offsets: readonly number[]): Mutator {
  return (input, rng) => {
    const at = rng.pick(offsets);
    if (at + 4 > input.length) return copy(input);
    const out = copy(input);
    out.writeInt32BE(interestingInt32(input, rng), at);
    return out;
  };
}

/** Weighted so that small, local damage dominates and whole-input replacement is rare. */
export const BYTE_MUTATORS: readonly Mutator[] = [
  flipBits, flipBits, flipBits,
  setInterestingByte, setInterestingByte,
  truncate, truncate,
  extendWithGarbage,
  insertGarbage,
  deleteRange,
  duplicateRange,
  spliceCorpus,
  overwriteInt32, overwriteInt32,
  overwriteVarint, overwriteVarint,
  randomBytes,
];

/** Applies 1..maxMutations mutators from `mutators` to a copy of `input`. */
export function mutate(input: Buffer, rng: Rng, context: MutationContext, mutators: readonly Mutator[], maxMutations = 4): Buffer {
  let out = input;
  for (let n = rng.range(1, maxMutations); n > 0; n--) out = rng.pick(mutators)(out, rng, context);
  return out === input ? copy(input) : out;
}
