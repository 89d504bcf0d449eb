import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CorruptBatchError, InvalidArgumentError } from "../../common/src/errors.js";
import {
  ATTRIBUTES_AT,
  BASE_SEQUENCE_AT,
  COMPRESSION_MASK,
  LEADER_EPOCH_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  RecordBatchBuilder,
  attributesOf,
  baseOffsetOf,
  baseTimestampOf,
  decodeRecords,
  encodeBatch,
  forEachRecord,
  lastOffsetDeltaOf,
  maxTimestampOf,
  recordCountOf,
  stampBatch,
  validateBatch,
  type DecodedRecord,
  type RecordInput,
} from "../../common/src/batch/index.js";

const MAX_BATCH_BYTES = 64 * 1024 * 1024;
const T0 = 1_700_000_000_000;

function asBuffer(bytes: Buffer | string | null | undefined): Buffer | null {
  if (bytes === null || bytes === undefined) return null;
  return typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
}

/** Asserts that `decoded` carries exactly `inputs`, field by field. */
function assertSameRecords(decoded: DecodedRecord[], inputs: RecordInput[], firstOffset: number, defaultTimestamp: number): void {
  assert.equal(decoded.length, inputs.length);
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i]!;
    const record = decoded[i]!;
    assert.equal(record.offset, firstOffset + i, `offset of record ${i}`);
    assert.equal(record.timestamp, input.timestamp ?? defaultTimestamp, `timestamp of record ${i}`);
    assert.deepEqual(record.key, asBuffer(input.key), `key of record ${i}`);
    assert.deepEqual(record.value, asBuffer(input.value), `value of record ${i}`);
    const expectedHeaders: Record<string, Buffer> = {};
    for (const [name, value] of Object.entries(input.headers ?? {})) expectedHeaders[name] = asBuffer(value)!;
    assert.deepEqual(record.headers, expectedHeaders, `headers of record ${i}`);
  }
}

const MIXED: RecordInput[] = [
  { key: null, value: "plain" },
  { value: Buffer.from([0, 1, 2, 255]) },
  { key: "string key", value: null },
  { key: Buffer.from("buffer key"), value: "" },
  { key: "", value: Buffer.alloc(0) },
  { key: "k", value: "with headers", headers: { trace: "abc", bin: Buffer.from([9, 8, 7]), empty: "" } },
  { key: "ünïcødé 🚀", value: "välue ✓", headers: { "ключ": "значение" } },
  { value: "x".repeat(300), timestamp: T0 + 5 },
  { value: "earlier than the first record", timestamp: T0 - 86_400_000 },
  { value: "far future", timestamp: T0 + 2 ** 40 },
];

describe("batch codec: round trip", () => {
  for (const compression of ["none", "gzip"] as const) {
    it(`${compression}: keys null/string/Buffer, null and empty values, headers, timestamps`, () => {
      const builder = new RecordBatchBuilder({ compression });
      for (const record of MIXED) builder.append(record, T0);
      const batch = builder.build();
      assert.equal(validateBatch(batch, MAX_BATCH_BYTES), MIXED.length);
      assert.equal(attributesOf(batch) & COMPRESSION_MASK, compression === "gzip" ? 1 : 0);
      assertSameRecords(decodeRecords(batch), MIXED, 0, T0);
    });

    it(`${compression}: a single record`, () => {
      const batch = encodeBatch([{ key: "only", value: "one", timestamp: T0 }], { compression });
      assert.equal(validateBatch(batch, MAX_BATCH_BYTES), 1);
      assert.equal(lastOffsetDeltaOf(batch), 0);
      assert.equal(baseTimestampOf(batch), T0);
      assert.equal(maxTimestampOf(batch), T0);
      assertSameRecords(decodeRecords(batch), [{ key: "only", value: "one", timestamp: T0 }], 0, T0);
    });

    it(`${compression}: 10,000 records`, () => {
      const inputs: RecordInput[] = [];
      for (let i = 0; i < 10_000; i++) {
        inputs.push({
          key: i % 3 === 0 ? null : `key-${i}`,
          value: Buffer.alloc(100, i & 0xff),
          timestamp: T0 + i * 7,
          ...(i % 10 === 0 ? { headers: { n: String(i) } } : {}),
        });
      }
      const batch = encodeBatch(inputs, { compression });
      assert.equal(validateBatch(batch, MAX_BATCH_BYTES), 10_000);
      assert.equal(lastOffsetDeltaOf(batch), 9_999);
      assert.equal(maxTimestampOf(batch), T0 + 9_999 * 7);
      if (compression === "gzip") assert.ok(batch.length < 100 * 10_000 / 4, `gzip batch of ${batch.length} bytes`);
      assertSameRecords(decodeRecords(batch), inputs, 0, T0);
    });
  }

  it("header names repeated across records decode to the same strings", () => {
    // More distinct names (20 "own-*") than the decoder remembers, mixed with repeated ones.
    const inputs = Array.from({ length: 50 }, (_, i) => ({
      value: `v${i}`,
      timestamp: T0,
      headers: { a: `${i}`, "trace-id": "t", [`own-${i % 20}`]: "x", [`${"long".repeat(20)}-${i % 2}`]: "y" },
    }));
    assertSameRecords(decodeRecords(encodeBatch(inputs)), inputs, 0, T0);
  });

  it("a header named __proto__ is a header, not a prototype", () => {
    const headers = JSON.parse('{"__proto__": "p", "x": "y"}') as Record<string, string>;
    const [record] = decodeRecords(encodeBatch([{ value: "v", headers }]));
    assert.deepEqual(Object.keys(record!.headers).sort(), ["__proto__", "x"]);
    assert.equal(Object.getPrototypeOf(record!.headers), Object.prototype);
    assert.deepEqual(record!.headers["__proto__"], Buffer.from("p"));
  });

  it("record.timestamp wins over the append time; base and max timestamps follow the records", () => {
    const builder = new RecordBatchBuilder();
    builder.append({ value: "a" }, T0 + 100);
    builder.append({ value: "b", timestamp: T0 + 500 }, T0 + 101);
    builder.append({ value: "c" }, T0 + 50);
    const batch = builder.build();
    assert.equal(baseTimestampOf(batch), T0 + 100);
    assert.equal(maxTimestampOf(batch), T0 + 500);
    assert.deepEqual(decodeRecords(batch).map((r) => r.timestamp), [T0 + 100, T0 + 500, T0 + 50]);
  });

  it("records without headers share one frozen empty headers object; key and value are views", () => {
    const batch = encodeBatch([{ key: "k1", value: "v1" }, { key: "k2", value: "v2" }]);
    const [a, b] = decodeRecords(batch);
    assert.equal(a!.headers, b!.headers);
    assert.ok(Object.isFrozen(a!.headers));
    assert.equal(a!.value!.buffer, batch.buffer, "value is a view into the batch");
    assert.equal(a!.key!.buffer, batch.buffer, "key is a view into the batch");
  });
});

describe("batch codec: builder", () => {
  it("count and sizeBytes track appends; build resets; the builder is reusable", () => {
    const builder = new RecordBatchBuilder({ initialCapacityBytes: 64 });
    assert.equal(builder.count, 0);
    assert.equal(builder.sizeBytes, 61);
    for (let i = 0; i < 1000; i++) builder.append({ key: `k${i}`, value: Buffer.alloc(50, 1) }, T0 + i);
    assert.equal(builder.count, 1000);
    const size = builder.sizeBytes;
    const first = builder.build();
    assert.equal(first.length, size, "sizeBytes predicts the uncompressed batch size");
    assert.equal(builder.count, 0);
    assert.equal(builder.sizeBytes, 61);

    builder.append({ value: "second batch" }, T0 + 5000);
    const second = builder.build();
    assert.deepEqual(decodeRecords(second).map((r) => [r.offset, r.timestamp, r.value!.toString()]), [[0, T0 + 5000, "second batch"]]);
    // The first batch is owned by the caller: building again did not overwrite it.
    assert.equal(validateBatch(first, MAX_BATCH_BYTES), 1000);
    assert.equal(decodeRecords(first)[999]!.key!.toString(), "k999");
  });

  it("reset drops appended records", () => {
    const builder = new RecordBatchBuilder();
    builder.append({ value: "dropped" }, T0);
    builder.reset();
    assert.equal(builder.count, 0);
    builder.append({ value: "kept" }, T0 + 1);
    const records = decodeRecords(builder.build());
    assert.deepEqual(records.map((r) => [r.value!.toString(), r.timestamp]), [["kept", T0 + 1]]);
  });

  it("header fields: base offset 0, leader epoch 0, producer fields -1 unless given", () => {
    const plain = encodeBatch([{ value: "v" }]);
    assert.equal(baseOffsetOf(plain), 0);
    assert.equal(plain.readInt32BE(LEADER_EPOCH_AT), 0);
    assert.equal(plain.readBigInt64BE(PRODUCER_ID_AT), -1n);
    assert.equal(plain.readInt16BE(PRODUCER_EPOCH_AT), -1);
    assert.equal(plain.readInt32BE(BASE_SEQUENCE_AT), -1);
    assert.equal(plain.readInt16BE(ATTRIBUTES_AT), 0);

    const idempotent = encodeBatch([{ value: "v" }, { value: "w" }], { producerId: 2 ** 40 + 3, producerEpoch: 7, baseSequence: 1234 });
    assert.equal(idempotent.readBigInt64BE(PRODUCER_ID_AT), 2n ** 40n + 3n);
    assert.equal(idempotent.readInt16BE(PRODUCER_EPOCH_AT), 7);
    assert.equal(idempotent.readInt32BE(BASE_SEQUENCE_AT), 1234);
    assert.equal(recordCountOf(idempotent), 2);
  });

  it("refuses bad options, bad records and empty batches with InvalidArgumentError", () => {
    assert.throws(() => new RecordBatchBuilder({ compression: "snappy" as "gzip" }), InvalidArgumentError);
    assert.throws(() => new RecordBatchBuilder({ producerEpoch: 40_000 }), InvalidArgumentError);
    assert.throws(() => new RecordBatchBuilder({ baseSequence: -2 }), InvalidArgumentError);
    assert.throws(() => new RecordBatchBuilder({ producerId: 1.5 }), InvalidArgumentError);
    assert.throws(() => new RecordBatchBuilder({ initialCapacityBytes: 0 }), InvalidArgumentError);
    const builder = new RecordBatchBuilder();
    assert.throws(() => builder.build(), InvalidArgumentError);
    assert.throws(() => encodeBatch([]), InvalidArgumentError);
    assert.throws(() => builder.append({ value: 42 as unknown as string }, T0), InvalidArgumentError);
    assert.throws(() => builder.append({ value: "v" }, Number.NaN), InvalidArgumentError);
    assert.throws(() => builder.append({ value: "v", timestamp: 1.5 }, T0), InvalidArgumentError);
    assert.equal(builder.count, 0, "a refused record is not half-appended");
    builder.append({ value: "good" }, T0);
    assert.throws(() => builder.append({ value: "v", headers: { bad: 7 as unknown as string } }, T0 + 999), InvalidArgumentError);
    const batch = builder.build();
    assert.equal(maxTimestampOf(batch), T0, "a refused record leaves maxTimestamp alone");
    assert.equal(recordCountOf(batch), 1);
  });
});

describe("batch codec: stamping and reading logs", () => {
  it("stampBatch then validateBatch still passes; offsets follow the stamped base offset", () => {
    const batch = encodeBatch([{ value: "a" }, { value: "b" }, { value: "c" }], { compression: "gzip" });
    stampBatch(batch, 1_000_000_000_123, 42);
    assert.equal(validateBatch(batch, MAX_BATCH_BYTES), 3);
    assert.equal(baseOffsetOf(batch), 1_000_000_000_123);
    assert.equal(batch.readInt32BE(LEADER_EPOCH_AT), 42);
    assert.deepEqual(decodeRecords(batch).map((r) => r.offset), [1_000_000_000_123, 1_000_000_000_124, 1_000_000_000_125]);
  });

  it("several batches back to back; fromOffset filters; a trailing partial batch is ignored", () => {
    const log: Buffer[] = [];
    let next = 0;
    for (let b = 0; b < 4; b++) {
      const batch = encodeBatch(Array.from({ length: 5 }, (_, i) => ({ value: `b${b}r${i}` })), { compression: b % 2 ? "gzip" : "none" });
      stampBatch(batch, next, 1);
      next += 5;
      log.push(batch);
    }
    const data = Buffer.concat(log);
    assert.deepEqual(decodeRecords(data).map((r) => r.offset), Array.from({ length: 20 }, (_, i) => i));
    assert.deepEqual(decodeRecords(data, 12).map((r) => r.value!.toString()), ["b2r2", "b2r3", "b2r4", "b3r0", "b3r1", "b3r2", "b3r3", "b3r4"]);
    assert.deepEqual(decodeRecords(data, 20), []);

    const cut = data.subarray(0, data.length - 7);
    assert.deepEqual(decodeRecords(cut).map((r) => r.offset), Array.from({ length: 15 }, (_, i) => i));
    assert.deepEqual(decodeRecords(data.subarray(0, log[0]!.length + 5)).length, 5, "a few bytes of the next batch are ignored");

    const seen: number[] = [];
    assert.equal(forEachRecord(data, 7, (r) => seen.push(r.offset)), 13);
    assert.deepEqual(seen, Array.from({ length: 13 }, (_, i) => i + 7));
    assert.deepEqual(decodeRecords(Buffer.alloc(0)), []);
  });

  it("a corrupt batch after good ones throws CorruptBatchError", () => {
    const good = encodeBatch([{ value: "good" }]);
    const bad = encodeBatch([{ value: "bad" }]);
    bad[bad.length - 1] ^= 0x01;
    assert.throws(() => decodeRecords(Buffer.concat([good, bad])), CorruptBatchError);
  });
});
