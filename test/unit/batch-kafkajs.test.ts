// Cross-checks the batch codec against kafkajs, an independent implementation of Kafka's
// RecordBatch v2: what we build, kafkajs reads; what kafkajs builds, we read and validate.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { describe, it } from "node:test";
import { gunzipSync } from "node:zlib";
import {
  ATTRIBUTES_AT,
  CONTROL_BIT,
  CRC_AT,
  CRC_COVERED_FROM,
  LEADER_EPOCH_AT,
  RECORDS_AT,
  TIMESTAMP_TYPE_BIT,
  computeBatchCrc,
  decodeRecords,
  encodeBatch,
  stampBatch,
  validateBatch,
  type RecordInput,
} from "../../common/src/batch/index.js";

// kafkajs is CommonJS and its protocol internals have no types: resolve from the repo root.
const requireFromRoot = createRequire(path.join(process.cwd(), "package.json"));
const { RecordBatch: kafkaEncodeBatch } = requireFromRoot("kafkajs/src/protocol/recordBatch/v0/index.js") as {
  RecordBatch: (args: Record<string, unknown>) => Promise<{ buffer: Buffer }>;
};
const kafkaRecord = requireFromRoot("kafkajs/src/protocol/recordBatch/record/v0/index.js") as (args: Record<string, unknown>) => unknown;
const kafkaDecodeBatch = requireFromRoot("kafkajs/src/protocol/recordBatch/v0/decoder.js") as (decoder: unknown) => Promise<KafkaBatch>;
const KafkaDecoder = requireFromRoot("kafkajs/src/protocol/decoder.js") as new (buffer: Buffer) => unknown;
const kafkaCrc32c = requireFromRoot("kafkajs/src/protocol/recordBatch/crc32C/index.js") as (buffer: Buffer) => number;

interface KafkaRecord {
  attributes: number;
  timestamp: string;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | Buffer[]>;
}
interface KafkaBatch {
  firstOffset: string;
  firstTimestamp: string;
  maxTimestamp: string;
  partitionLeaderEpoch: number;
  lastOffsetDelta: number;
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  inTransaction: boolean;
  records: KafkaRecord[];
}

const MAX_BATCH_BYTES = 16 * 1024 * 1024;
const T0 = 1_700_000_000_000;
const KAFKA_GZIP = 1;

function asBuffer(bytes: Buffer | string | null | undefined): Buffer | null {
  if (bytes === null || bytes === undefined) return null;
  return typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
}

const INPUTS: RecordInput[] = [
  { key: "k0", value: "first", timestamp: T0 },
  { key: null, value: null, timestamp: T0 + 1 },
  { key: Buffer.from([1, 2, 3]), value: "", timestamp: T0 - 10 },
  { value: "headers", timestamp: T0 + 400_000, headers: { "trace-id": "abc", bin: Buffer.from([0, 255]), empty: "", "ключ": "🚀" } },
  { key: "big", value: Buffer.alloc(5000, 0x61), timestamp: T0 + 2 ** 35 },
];

/** The same records as kafkajs Record encoders, deltas relative to T0. */
function kafkaRecordsFor(inputs: RecordInput[]): unknown[] {
  return inputs.map((input, index) =>
    kafkaRecord({
      offsetDelta: index,
      timestampDelta: (input.timestamp ?? T0) - T0,
      key: asBuffer(input.key),
      value: asBuffer(input.value),
      headers: Object.fromEntries(Object.entries(input.headers ?? {}).map(([name, value]) => [name, asBuffer(value)])),
    }),
  );
}

async function kafkaBatchFor(inputs: RecordInput[], compression: number): Promise<Buffer> {
  const timestamps = inputs.map((input) => input.timestamp ?? T0);
  const encoder = await kafkaEncodeBatch({
    compression,
    firstTimestamp: T0,
    maxTimestamp: Math.max(...timestamps),
    lastOffsetDelta: inputs.length - 1,
    producerEpoch: -1,
    firstSequence: -1,
    records: kafkaRecordsFor(inputs),
  });
  return encoder.buffer;
}

describe("batch codec vs kafkajs: our batches, kafkajs decoder", () => {
  for (const compression of ["none", "gzip"] as const) {
    it(`${compression}: CRC, header fields and every record field match`, async () => {
      const batch = encodeBatch(INPUTS, { compression, producerId: 77, producerEpoch: 3, baseSequence: 500 });
      stampBatch(batch, 1000, 9);
      assert.equal(batch.readUInt32BE(CRC_AT), kafkaCrc32c(batch.subarray(CRC_COVERED_FROM)), "CRC32C agrees with kafkajs's");

      const decoded = await kafkaDecodeBatch(new KafkaDecoder(batch));
      assert.equal(decoded.firstOffset, "1000");
      assert.equal(decoded.partitionLeaderEpoch, 9);
      assert.equal(decoded.lastOffsetDelta, INPUTS.length - 1);
      assert.equal(decoded.firstTimestamp, String(T0));
      assert.equal(decoded.maxTimestamp, String(T0 + 2 ** 35));
      assert.equal(decoded.producerId, "77");
      assert.equal(decoded.producerEpoch, 3);
      assert.equal(decoded.firstSequence, 500);
      assert.equal(decoded.inTransaction, false);
      assert.equal(decoded.records.length, INPUTS.length);
      decoded.records.forEach((record, i) => {
        const input = INPUTS[i]!;
        assert.equal(record.attributes, 0);
        assert.equal(record.offset, String(1000 + i), `offset ${i}`);
        assert.equal(record.timestamp, String(input.timestamp), `timestamp ${i}`);
        assert.deepEqual(record.key, asBuffer(input.key), `key ${i}`);
        assert.deepEqual(record.value, asBuffer(input.value), `value ${i}`);
        const expected = Object.fromEntries(Object.entries(input.headers ?? {}).map(([name, value]) => [name, asBuffer(value)]));
        assert.deepEqual(record.headers, expected, `headers ${i}`);
      });
    });
  }

  it("uncompressed batches are byte-for-byte identical to kafkajs's", async () => {
    const ours = encodeBatch(INPUTS);
    const theirs = await kafkaBatchFor(INPUTS, 0);
    assert.deepEqual(ours, theirs);
  });

  it("gzip batches decompress to the same records section as kafkajs's", async () => {
    const ours = encodeBatch(INPUTS, { compression: "gzip" });
    const theirs = await kafkaBatchFor(INPUTS, KAFKA_GZIP);
    assert.deepEqual(ours.subarray(LEADER_EPOCH_AT, CRC_AT), theirs.subarray(LEADER_EPOCH_AT, CRC_AT));
    assert.deepEqual(ours.subarray(ATTRIBUTES_AT, RECORDS_AT), theirs.subarray(ATTRIBUTES_AT, RECORDS_AT));
    assert.deepEqual(gunzipSync(ours.subarray(RECORDS_AT)), gunzipSync(theirs.subarray(RECORDS_AT)));
  });
});

describe("batch codec vs kafkajs: kafkajs batches, our decoder", () => {
  for (const [name, compression] of [["none", 0], ["gzip", KAFKA_GZIP]] as const) {
    it(`${name}: validateBatch passes and every field decodes`, async () => {
      const batch = await kafkaBatchFor(INPUTS, compression);
      assert.equal(validateBatch(batch, MAX_BATCH_BYTES), INPUTS.length);
      const records = decodeRecords(batch);
      assert.equal(records.length, INPUTS.length);
      records.forEach((record, i) => {
        const input = INPUTS[i]!;
        assert.equal(record.offset, i);
        assert.equal(record.timestamp, input.timestamp);
        assert.deepEqual(record.key, asBuffer(input.key));
        assert.deepEqual(record.value, asBuffer(input.value));
        const expected = Object.fromEntries(Object.entries(input.headers ?? {}).map(([key, value]) => [key, asBuffer(value)]));
        assert.deepEqual(record.headers, expected);
      });
    });
  }

  it("10,000 kafkajs records, gzip, stamped at a base offset", async () => {
    const inputs = Array.from({ length: 10_000 }, (_, i) => ({ key: `k${i}`, value: Buffer.alloc(100, i & 0xff), timestamp: T0 + i }));
    const batch = await kafkaBatchFor(inputs, KAFKA_GZIP);
    stampBatch(batch, 5_000_000, 2);
    assert.equal(validateBatch(batch, MAX_BATCH_BYTES), 10_000);
    const records = decodeRecords(batch, 5_009_990);
    assert.deepEqual(records.map((r) => r.offset), Array.from({ length: 10 }, (_, i) => 5_009_990 + i));
    assert.deepEqual(records[9]!.value, Buffer.alloc(100, 9_999 & 0xff));
    assert.equal(records[9]!.timestamp, T0 + 9_999);
  });

  it("kafkajs-only shapes: repeated header keys (last wins), transactional batches", async () => {
    const record = kafkaRecord({ offsetDelta: 0, timestampDelta: 0, key: null, value: Buffer.from("v"), headers: { dup: ["a", "b"], one: "c" } });
    const encoder = await kafkaEncodeBatch({ firstTimestamp: T0, maxTimestamp: T0, transactional: true, producerId: 5, records: [record] });
    const batch = encoder.buffer;
    assert.equal(validateBatch(batch, MAX_BATCH_BYTES), 1);
    const [decoded] = decodeRecords(batch);
    assert.deepEqual(decoded!.headers, { dup: Buffer.from("b"), one: Buffer.from("c") });
  });

  it("a null header value (legal in Kafka, length -1) decodes as an empty Buffer", async () => {
    // kafkajs cannot encode one; our builder writes -1 for a null that slips past the types.
    const batch = encodeBatch([{ value: "v", timestamp: T0, headers: { nothing: null as unknown as string } }]);
    const decoded = await kafkaDecodeBatch(new KafkaDecoder(batch));
    assert.deepEqual(decoded.records[0]!.headers, { nothing: null });
    assert.deepEqual(decodeRecords(batch)[0]!.headers, { nothing: Buffer.alloc(0) });
  });

  it("log-append-time batches report maxTimestamp; control batches yield no records", () => {
    const resealed = (attributes: number): Buffer => {
      const batch = encodeBatch([{ value: "a", timestamp: T0 }, { value: "b", timestamp: T0 + 50 }]);
      batch.writeInt16BE(batch.readInt16BE(ATTRIBUTES_AT) | attributes, ATTRIBUTES_AT);
      batch.writeUInt32BE(computeBatchCrc(batch), CRC_AT);
      return batch;
    };
    assert.deepEqual(decodeRecords(resealed(TIMESTAMP_TYPE_BIT)).map((r) => r.timestamp), [T0 + 50, T0 + 50]);
    const after = encodeBatch([{ value: "after", timestamp: T0 }]);
    stampBatch(after, 2, 0);
    const data = Buffer.concat([resealed(CONTROL_BIT), after]);
    assert.deepEqual(decodeRecords(data).map((r) => [r.offset, r.value!.toString()]), [[2, "after"]]);
  });
});
