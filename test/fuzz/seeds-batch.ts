/**
 * Valid record batches for the batch fuzzers' corpora, built with the real encoder at fixed
 * timestamps so `write-seeds.ts` writes the same bytes every time:
 *
 *   batch/   one batch per file, as a producer sends it (validateBatch, decodeRecords)
 *   log/     batches laid end to end from offset 0, as a segment or a fetch holds them
 *   gzip/    [attributes int16 BE][records section]: what decompressRecords is given
 */
import {
  ATTRIBUTES_AT,
  CONTROL_BIT,
  CRC_AT,
  RECORDS_AT,
  TIMESTAMP_TYPE_BIT,
  computeBatchCrc,
  encodeBatch,
  stampBatch,
  type RecordInput,
} from "../../common/src/batch/index.js";

const T0 = 1_700_000_000_000;

/** Sets attribute bits and fixes the CRC, for batch kinds the encoder does not write. */
function withAttributes(batch: Buffer, bits: number): Buffer {
  batch.writeInt16BE(batch.readInt16BE(ATTRIBUTES_AT) | bits, ATTRIBUTES_AT);
  batch.writeUInt32BE(computeBatchCrc(batch), CRC_AT);
  return batch;
}

function records(count: number, make: (i: number) => RecordInput): RecordInput[] {
  return Array.from({ length: count }, (_, i) => make(i));
}

/** name → one batch, as a producer sends it (base offset 0, leader epoch 0). */
export function singleBatches(): Record<string, Buffer> {
  const three = [
    { key: "k0", value: "value zero", timestamp: T0, headers: { h: "x" } },
    { key: null, value: null, timestamp: T0 + 5 },
    { key: "k2", value: "value two", timestamp: T0 - 5 },
  ];
  return {
    "three-records": encodeBatch(three),
    "three-records-gzip": encodeBatch(three, { compression: "gzip" }),
    "null-key-null-value": encodeBatch([{ key: null, value: null, timestamp: T0 }]),
    "empty-key-empty-value": encodeBatch([{ key: "", value: "", timestamp: T0 }]),
    idempotent: encodeBatch(records(5, (i) => ({ value: `v${i}`, timestamp: T0 + i })), { producerId: 7, producerEpoch: 1, baseSequence: 40 }),
    headers: encodeBatch(
      records(6, (i) => ({ key: `key-${i}`, value: "x".repeat(i * 7), timestamp: T0 + i * 1000, headers: Object.fromEntries(Array.from({ length: i }, (_, j) => [`h${j}`, `value ${j}`])) })),
    ),
    "odd-header-keys": encodeBatch([{ value: "v", timestamp: T0, headers: { __proto__: "p", "ünïcødé": "✓", "": "" } as Record<string, string> }]),
    "wide-timestamps": encodeBatch([
      { value: "old", timestamp: 1 },
      { value: "new", timestamp: 2 ** 49 },
    ]),
    "many-gzip": encodeBatch(records(50, (i) => ({ key: `k${i % 4}`, value: `message number ${i}`, timestamp: T0 + i })), { compression: "gzip" }),
    "log-append-time": withAttributes(encodeBatch([{ value: "a", timestamp: T0 }]), TIMESTAMP_TYPE_BIT),
    control: withAttributes(encodeBatch([{ key: "\u0000\u0000\u0000\u0000", value: "\u0000\u0000\u0000\u0000\u0000\u0000", timestamp: T0 }]), CONTROL_BIT),
    "binary-value": encodeBatch([{ key: Buffer.from([0xff, 0xfe]), value: Buffer.from([0, 1, 2, 0x80, 0xff]), timestamp: T0 }]),
  };
}

/** Batches laid end to end with dense offsets from 0, stamped at leader epoch 3. */
export function logSpans(): Record<string, Buffer> {
  const batches = singleBatches();
  const span = (...names: string[]): Buffer => {
    let offset = 0;
    const parts = names.map((name) => {
      const batch = Buffer.from(batches[name]!);
      stampBatch(batch, offset, 3);
      offset += batch.readInt32BE(RECORDS_AT - 4);
      return batch;
    });
    return Buffer.concat(parts);
  };
  return {
    "one-batch": span("three-records"),
    "three-batches": span("three-records", "idempotent", "headers"),
    "gzip-and-plain": span("many-gzip", "null-key-null-value"),
    "control-in-the-middle": span("idempotent", "control", "log-append-time"),
  };
}

/** [attributes int16 BE][records section] of the compressed and plain single batches. */
export function recordSections(): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [name, batch] of Object.entries(singleBatches())) {
    if (!["three-records", "three-records-gzip", "many-gzip", "headers"].includes(name)) continue;
    out[name] = Buffer.concat([batch.subarray(ATTRIBUTES_AT, ATTRIBUTES_AT + 2), batch.subarray(RECORDS_AT)]);
  }
  return out;
}
