// Malformed batches must give typed errors (CorruptBatchError), never a crash, a wrong
// answer or an endless loop. "Resealed" batches get a fresh length field and CRC after
// being damaged, so the damage reaches the record parser instead of the CRC check.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorruptBatchError, MessageTooLargeError, SluiceError } from "../../common/src/errors.js";
import {
  ATTRIBUTES_AT,
  BATCH_LENGTH_AT,
  CRC_AT,
  LAST_OFFSET_DELTA_AT,
  MAGIC_AT,
  RECORDS_AT,
  RECORD_COUNT_AT,
  computeBatchCrc,
  decodeRecords,
  encodeBatch,
  validateBatch,
} from "../../common/src/batch/index.js";

const MAX_BATCH_BYTES = 1024 * 1024;
const T0 = 1_700_000_000_000;

function sampleBatch(compression: "none" | "gzip" = "none"): Buffer {
  return encodeBatch(
    [
      { key: "k0", value: "value zero", timestamp: T0, headers: { h: "x" } },
      { key: null, value: null, timestamp: T0 + 5 },
      { key: "k2", value: "value two", timestamp: T0 - 5 },
    ],
    { compression },
  );
}

/** Rewrites the length field and CRC so the batch passes the header checks again. */
function reseal(batch: Buffer): Buffer {
  batch.writeInt32BE(batch.length - 12, BATCH_LENGTH_AT);
  batch.writeUInt32BE(computeBatchCrc(batch), CRC_AT);
  return batch;
}

/** A resealed batch with the header of a good batch and the given records section. */
function batchWithSection(section: Buffer, recordCount: number): Buffer {
  const batch = Buffer.concat([sampleBatch().subarray(0, RECORDS_AT), section]);
  batch.writeInt32BE(recordCount, RECORD_COUNT_AT);
  batch.writeInt32BE(recordCount - 1, LAST_OFFSET_DELTA_AT);
  return reseal(batch);
}

function assertCorrupt(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CorruptBatchError, `expected CorruptBatchError, got ${String(err)}`);
    if (message) assert.match((err as Error).message, message);
    return true;
  });
}

/** Decoding either succeeds or fails with a CorruptBatchError; nothing else. */
function decodeOrCorrupt(data: Buffer): void {
  try {
    decodeRecords(data);
  } catch (err) {
    assert.ok(err instanceof CorruptBatchError, `expected CorruptBatchError, got ${(err as Error).stack}`);
  }
}

describe("batch codec: malformed input", () => {
  it("truncated batches: ignored as a trailing partial batch by decode, rejected by validateBatch", () => {
    for (const compression of ["none", "gzip"] as const) {
      const batch = sampleBatch(compression);
      for (let length = 0; length < batch.length; length++) {
        const cut = Buffer.from(batch.subarray(0, length));
        assert.deepEqual(decodeRecords(cut), [], `prefix of ${length} bytes`);
        assertCorrupt(() => validateBatch(cut, MAX_BATCH_BYTES));
      }
    }
  });

  it("truncated then resealed: records cut short are CorruptBatchError", () => {
    for (const compression of ["none", "gzip"] as const) {
      const batch = sampleBatch(compression);
      for (let length = RECORDS_AT; length < batch.length; length++) {
        const cut = reseal(Buffer.from(batch.subarray(0, length)));
        assert.equal(validateBatch(cut, MAX_BATCH_BYTES), 3, "the header alone looks fine");
        assertCorrupt(() => decodeRecords(cut));
      }
    }
  });

  it("every single bit flip in the magic byte, CRC or covered bytes is caught", () => {
    for (const compression of ["none", "gzip"] as const) {
      const batch = sampleBatch(compression);
      for (let at = MAGIC_AT; at < batch.length; at++) {
        for (let bit = 0; bit < 8; bit++) {
          const flipped = Buffer.from(batch);
          flipped[at]! ^= 1 << bit;
          assertCorrupt(() => validateBatch(flipped, MAX_BATCH_BYTES));
          assertCorrupt(() => decodeRecords(flipped));
        }
      }
    }
  });

  it("bit flips in the length field are rejected by validateBatch and never crash decode", () => {
    const batch = sampleBatch();
    for (let at = BATCH_LENGTH_AT; at < BATCH_LENGTH_AT + 4; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(batch);
        flipped[at]! ^= 1 << bit;
        assertCorrupt(() => validateBatch(flipped, MAX_BATCH_BYTES));
        decodeOrCorrupt(flipped);
        decodeOrCorrupt(Buffer.concat([flipped, batch, batch]));
      }
    }
  });

  it("negative and huge batch lengths", () => {
    const negative = sampleBatch();
    negative.writeInt32BE(-1, BATCH_LENGTH_AT);
    assertCorrupt(() => validateBatch(negative, MAX_BATCH_BYTES));
    assertCorrupt(() => decodeRecords(negative), /smaller than/);

    const huge = sampleBatch();
    huge.writeInt32BE(0x7fffffff, BATCH_LENGTH_AT);
    assertCorrupt(() => validateBatch(huge, MAX_BATCH_BYTES), /truncated/);
    assert.deepEqual(decodeRecords(huge), [], "reads as a trailing partial batch");
    assert.throws(() => validateBatch(Buffer.alloc(MAX_BATCH_BYTES + 1), MAX_BATCH_BYTES), MessageTooLargeError);
  });

  it("bad magic", () => {
    for (const magic of [0, 1, 3, -1]) {
      const batch = sampleBatch();
      batch.writeInt8(magic, MAGIC_AT);
      assertCorrupt(() => validateBatch(batch, MAX_BATCH_BYTES), /magic/);
      assertCorrupt(() => decodeRecords(batch), /magic/);
    }
  });

  it("record count larger or smaller than the data", () => {
    const larger = sampleBatch();
    larger.writeInt32BE(4, RECORD_COUNT_AT);
    assertCorrupt(() => validateBatch(larger, MAX_BATCH_BYTES), /lastOffsetDelta/);
    larger.writeInt32BE(3, LAST_OFFSET_DELTA_AT);
    reseal(larger);
    assertCorrupt(() => decodeRecords(larger), /record count is 4 but the data holds only 3 records/);

    for (const compression of ["none", "gzip"] as const) {
      const enormous = sampleBatch(compression);
      enormous.writeInt32BE(0x7fffffff, RECORD_COUNT_AT);
      enormous.writeInt32BE(0x7ffffffe, LAST_OFFSET_DELTA_AT);
      assertCorrupt(() => decodeRecords(reseal(enormous)), /holds only 3 records/);
    }

    const smaller = sampleBatch();
    smaller.writeInt32BE(2, RECORD_COUNT_AT);
    smaller.writeInt32BE(1, LAST_OFFSET_DELTA_AT);
    assertCorrupt(() => decodeRecords(reseal(smaller)), /bytes follow the last of its 2 records/);

    const none = sampleBatch();
    none.writeInt32BE(0, RECORD_COUNT_AT);
    none.writeInt32BE(-1, LAST_OFFSET_DELTA_AT);
    assertCorrupt(() => validateBatch(reseal(none), MAX_BATCH_BYTES), /must be positive/);
    assertCorrupt(() => decodeRecords(none), /must be positive/);
  });

  // A record "k"/"v" without headers: 10 00 00 00 02 6B 02 76 00 (see builder.ts).
  const GOOD_RECORD = [0x10, 0x00, 0x00, 0x00, 0x02, 0x6b, 0x02, 0x76, 0x00];

  it("the hand-written record of builder.ts decodes, so the variants below differ only where intended", () => {
    const [record] = decodeRecords(batchWithSection(Buffer.from(GOOD_RECORD), 1));
    assert.deepEqual([record!.key!.toString(), record!.value!.toString(), record!.timestamp], ["k", "v", T0]);
  });

  it("record-level lengths: negative, huge, past the record, and fields that end early", () => {
    const cases: Array<[number[], RegExp]> = [
      [[0x01, ...GOOD_RECORD.slice(1)], /record 0 has length -1,/],
      [[0xfe, 0xff, 0xff, 0xff, 0x0f, ...GOOD_RECORD.slice(1)], /record 0 has length 2147483647,/],
      [[0x10, 0x00, 0x00, 0x00, 0x7e, 0x6b, 0x02, 0x76, 0x00], /key of 63 bytes .* runs past the end of its record/],
      [[0x10, 0x00, 0x00, 0x00, 0x03, 0x6b, 0x02, 0x76, 0x00], /key has length -2/],
      [[0x14, 0x00, 0x00, 0x00, 0x02, 0x6b, 0xfe, 0xff, 0xff, 0xff, 0x0f], /value of 2147483647 bytes .* runs past the end of its record/],
      [[0x10, 0x00, 0x00, 0x00, 0x02, 0x6b, 0x02, 0x76, 0x01], /header count -1 does not fit/],
      [[0x10, 0x00, 0x00, 0x00, 0x02, 0x6b, 0x02, 0x76, 0x7e], /header count 63 does not fit/],
      [[0x12, 0x00, 0x00, 0x00, 0x02, 0x6b, 0x02, 0x76, 0x00, 0x00], /has length 9 but its fields end 1 bytes early/],
      [[0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], /record 0 has length 5,/],
      [[0x0c, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80], /offset delta at byte \d+ is cut off by the end of its record/],
    ];
    for (const [bytes, message] of cases) {
      const batch = batchWithSection(Buffer.from(bytes), 1);
      assert.equal(validateBatch(batch, MAX_BATCH_BYTES), 1, "validateBatch checks the header and CRC, not records");
      assertCorrupt(() => decodeRecords(batch), message);
    }
  });

  it("varint and varlong overflow", () => {
    const cases: Array<[number[], RegExp]> = [
      // record length: six bytes, all but the last with the continuation bit
      [[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, ...GOOD_RECORD.slice(1)], /record length is a varint longer than 32 bits/],
      // record length: five bytes whose last carries more than 4 bits
      [[0x80, 0x80, 0x80, 0x80, 0x10, ...GOOD_RECORD.slice(1)], /record length is a varint longer than 32 bits/],
      // a header key length that overflows
      [[0x18, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], /header key is a varint longer than 32 bits/],
      // timestamp delta: eleven bytes
      [[0x24, 0x00, ...Array<number>(10).fill(0xff), 0x01, 0x00, 0x02, 0x6b, 0x02, 0x76, 0x00], /timestamp delta is a varlong longer than 10 bytes/],
      // timestamp delta: 2^56, beyond exact JavaScript numbers
      [[0x20, 0x00, ...Array<number>(8).fill(0x80), 0x01, 0x00, 0x02, 0x6b, 0x02, 0x76, 0x00], /timestamp delta varlong .* exceeds 2\^53/],
    ];
    for (const [bytes, message] of cases) {
      const batch = batchWithSection(Buffer.from(bytes), 1);
      assertCorrupt(() => decodeRecords(batch), message);
      // Without resealing, the same damage fails the CRC, which validateBatch checks.
      const unsealed = Buffer.from(batch);
      unsealed.writeUInt32BE(sampleBatch().readUInt32BE(CRC_AT), CRC_AT);
      assertCorrupt(() => validateBatch(unsealed, MAX_BATCH_BYTES), /CRC32C mismatch/);
    }
  });

  it("unsupported codecs are named; a broken gzip block is corrupt", () => {
    for (const [codec, name] of [[2, "snappy"], [3, "lz4"], [4, "zstd"], [7, "codec 7"]] as const) {
      const batch = sampleBatch();
      batch.writeInt16BE(codec, ATTRIBUTES_AT);
      assertCorrupt(() => decodeRecords(reseal(batch)), new RegExp(`compressed with ${name}, which Sluice does not support`));
    }
    const gzip = sampleBatch();
    gzip.writeInt16BE(1, ATTRIBUTES_AT);
    assertCorrupt(() => decodeRecords(reseal(gzip)), /gzip records section does not decompress/);
  });

  it("fuzz: random damage to resealed batches gives CorruptBatchError or a clean decode", () => {
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    for (const compression of ["none", "gzip"] as const) {
      const batch = sampleBatch(compression);
      for (let round = 0; round < 3000; round++) {
        const damaged = Buffer.from(batch);
        const changes = 1 + Math.floor(random() * 4);
        for (let i = 0; i < changes; i++) {
          // Mostly in the record count and records, sometimes anywhere after the CRC.
          const from = random() < 0.8 ? RECORD_COUNT_AT : ATTRIBUTES_AT;
          damaged[from + Math.floor(random() * (damaged.length - from))] = Math.floor(random() * 256);
        }
        const resized = random() < 0.2 ? damaged.subarray(0, RECORDS_AT + Math.floor(random() * (damaged.length - RECORDS_AT))) : damaged;
        const candidate = reseal(Buffer.from(resized));
        try {
          decodeRecords(candidate);
        } catch (err) {
          assert.ok(err instanceof SluiceError && (err as SluiceError).code === "CORRUPT_BATCH", `round ${round}: ${(err as Error).stack}`);
        }
      }
    }
  });
});
