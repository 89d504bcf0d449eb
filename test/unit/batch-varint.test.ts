// Varints and varlongs against kafkajs's encoder: same bytes, same sizes, and back again.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { describe, it } from "node:test";
import { CorruptBatchError } from "../../common/src/errors.js";
import { ByteCursor, sizeOfVarint, sizeOfVarlong, writeVarint, writeVarlong } from "../../common/src/batch/index.js";

const requireFromRoot = createRequire(path.join(process.cwd(), "package.json"));
interface KafkaEncoder {
  writeVarInt(value: number): KafkaEncoder;
  writeVarLong(value: number): KafkaEncoder;
  buffer: Buffer;
}
const KafkaEncoder = requireFromRoot("kafkajs/src/protocol/encoder.js") as new () => KafkaEncoder;

const INT32_EDGES = [0, 1, -1, 63, -64, 64, -65, 127, 128, 8191, -8192, 8192, 2 ** 20, -(2 ** 20), 2 ** 27, 2 ** 28, 2 ** 30, -(2 ** 30), 2 ** 31 - 1, -(2 ** 31)];
const INT64_EDGES = [
  ...INT32_EDGES,
  2 ** 30 - 1, -(2 ** 30) - 1, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, -(2 ** 32), 2 ** 35 + 12345, -(2 ** 35) - 12345,
  1_700_000_000_000, -1_700_000_000_000, 2 ** 49, 2 ** 50, -(2 ** 50), 2 ** 52 - 1, -(2 ** 52),
];

function randomInt32s(count: number): number[] {
  let seed = 7;
  return Array.from({ length: count }, () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed ^ (seed << 13)) | 0;
  });
}

describe("batch codec: varints", () => {
  it("varint bytes, sizes and values match kafkajs for int32 edges and random values", () => {
    const buf = Buffer.alloc(16);
    for (const value of [...INT32_EDGES, ...randomInt32s(2000)]) {
      const end = writeVarint(buf, 0, value);
      const expected = new KafkaEncoder().writeVarInt(value).buffer;
      assert.deepEqual(buf.subarray(0, end), expected, `bytes of ${value}`);
      assert.equal(sizeOfVarint(value), end, `size of ${value}`);
      const cursor = new ByteCursor(buf, 0, end);
      assert.equal(cursor.readVarint("v"), value);
      assert.equal(cursor.pos, end);
    }
  });

  it("varlong bytes, sizes and values match kafkajs up to +-2^52", () => {
    const buf = Buffer.alloc(16);
    for (const value of INT64_EDGES) {
      const end = writeVarlong(buf, 3, value);
      const expected = new KafkaEncoder().writeVarLong(value).buffer;
      assert.deepEqual(buf.subarray(3, end), expected, `bytes of ${value}`);
      assert.equal(sizeOfVarlong(value), end - 3, `size of ${value}`);
      const cursor = new ByteCursor(buf, 3, end);
      assert.equal(cursor.readVarlong("v"), value, `value of ${value}`);
      assert.equal(cursor.pos, end);
    }
  });

  it("reads stop at the cursor's end instead of running on", () => {
    const buf = Buffer.from([0x80, 0x80, 0x01]);
    assert.throws(() => new ByteCursor(buf, 0, 2).readVarint("v"), CorruptBatchError);
    assert.throws(() => new ByteCursor(buf, 0, 2).readVarlong("v"), CorruptBatchError);
    assert.throws(() => new ByteCursor(buf, 3, 3).readInt8("v"), CorruptBatchError);
    assert.throws(() => new ByteCursor(Buffer.from([0x04, 0x61]), 0, 2).readNullableBytes("v"), CorruptBatchError);
    assert.equal(new ByteCursor(buf, 0, 3).readVarint("v"), 8192);
  });
});
