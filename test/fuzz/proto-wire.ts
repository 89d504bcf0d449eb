/**
 * Protobuf wire-format pieces for fuzzing the generated decoders without knowing their
 * messages: random fields of every wire type, nested messages, packed runs, groups, and
 * deep nesting. The encoding (protobuf spec, "Encoding"):
 *
 *   tag     varint: fieldNumber << 3 | wireType   (0 varint, 1 fixed64, 2 length-delimited,
 *                                                  3 start group, 4 end group, 5 fixed32)
 *   value   varint | 8 bytes | varint length + bytes | fields… end-group tag | 4 bytes
 *
 * Field numbers 1..12 cover every field of Sluice's messages, so a random field often lands
 * on a real one with the right or a wrong wire type; now and then a huge field number is
 * used as an unknown field the decoder must skip.
 */
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Rng, type Mutator } from "./mutate.js";

const MAX_FIELD_NUMBER = 0x1fffffff;
const VARINT_EDGES: readonly bigint[] = [0n, 1n, 127n, 128n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 64n - 1n];

function fieldNumber(rng: Rng): number {
  return rng.chance(0.9) ? rng.range(1, 12) : rng.range(13, MAX_FIELD_NUMBER);
}

function tag(writer: BinaryWriter, field: number, wireType: number): void {
  writer.uint32((field * 8 + wireType) >>> 0);
}

function writeField(writer: BinaryWriter, rng: Rng, depth: number): void {
  const field = fieldNumber(rng);
  switch (rng.int(depth < 3 ? 7 : 5)) {
    case 0:
    case 1:
      tag(writer, field, 0);
      writer.uint64(rng.chance(0.5) ? BigInt(rng.int(300)) : rng.pick(VARINT_EDGES));
      break;
    case 2:
      tag(writer, field, 1);
      writer.fixed64(BigInt.asUintN(64, BigInt(rng.int(0x100000000)) << 32n | BigInt(rng.int(0x100000000))));
      break;
    case 3:
      tag(writer, field, 2);
      writer.bytes(rng.chance(0.5) ? Buffer.from(rng.pick(["orders", "b1", "%groups", "", "ü", "x".repeat(200)])) : rng.bytes(rng.smallLength(64)));
      break;
    case 4:
      tag(writer, field, 5);
      writer.fixed32(rng.int(0x100000000));
      break;
    case 5:
      tag(writer, field, 2);
      writer.bytes(randomWireMessage(rng, depth + 1));
      break;
    default:
      tag(writer, field, 3);
      writer.raw(randomWireMessage(rng, depth + 1));
      tag(writer, field, 4);
  }
}

/** A message of random fields; nested messages and groups up to depth 3. */
export function randomWireMessage(rng: Rng, depth = 0): Uint8Array {
  const writer = new BinaryWriter();
  for (let n = rng.int(depth === 0 ? 12 : 5); n > 0; n--) writeField(writer, rng, depth);
  return writer.finish();
}

/** Random messages made once (a BinaryWriter per mutation would cost more than the decode it feeds). */
const FIELD_POOL: readonly Uint8Array[] = (() => {
  const rng = new Rng(0xf1e1d5);
  return Array.from({ length: 1024 }, () => randomWireMessage(rng));
})();

/** Appends random fields: on the wire, concatenated messages merge, so this is a valid extension. */
export const appendFields: Mutator = (input, rng) => Buffer.concat([input, rng.pick(FIELD_POOL)]);

/** Prepends random fields (earlier values are overwritten by the input's own, or merged). */
export const prependFields: Mutator = (input, rng) => Buffer.concat([rng.pick(FIELD_POOL), input]);

/** A chain of `depth` length-delimited field-1 messages, each holding the next. */
function nestedChain(depth: number): Buffer {
  let inner: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < depth; i++) inner = new BinaryWriter().uint32(10).bytes(inner).finish();
  return Buffer.from(inner);
}

/** Built once: around the generated decoders' recursion limit (100), and far past it. */
const NESTED_CHAINS = [99, 100, 101, 1000].map(nestedChain);

/**
 * Nesting far deeper than any message: a chain of length-delimited field 1 (the first field
 * of most messages is a nested header) or a run of start-group tags, which decoders skip
 * recursively.
 */
export const deepNesting: Mutator = (input, rng) => {
  if (rng.chance(0.5)) return Buffer.concat([input, rng.pick(NESTED_CHAINS)]);
  const start = new BinaryWriter().uint32((fieldNumber(rng) * 8 + 3) >>> 0).finish();
  const depth = rng.chance(0.5) ? rng.range(90, 130) : rng.range(1000, 3000);
  return Buffer.concat([input, Buffer.alloc(depth * start.length).fill(start)]);
};

export const PROTO_MUTATORS: readonly Mutator[] = [appendFields, prependFields, deepNesting];
