// Finding leased records in delivered batches: only leased offsets, each stored batch decoded
// once across deliveries, and a different batch at the same offsets never mistaken for it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeBatch, stampBatch, type DecodedRecord } from "../../common/src/batch/index.js";
import { CorruptBatchError } from "../../common/src/errors.js";
import type { QueueLease } from "../../proto/gen/sluice/v1/groups.js";
import { LeasedRecords } from "../../clients/src/queue/leased-records.js";

function batch(baseOffset: number, values: string[]): Buffer {
  const bytes = encodeBatch(values.map((value) => ({ value })));
  stampBatch(bytes, baseOffset, 0);
  return bytes;
}

const lease = (offset: number): QueueLease => ({ offset, deliveryCount: 1, leaseId: offset + 100, deadlineMs: 0 });

function collect(records: LeasedRecords, partition: number, data: Buffer, offsets: number[]): { found: number; pairs: [DecodedRecord, QueueLease][] } {
  const pairs: [DecodedRecord, QueueLease][] = [];
  const found = records.match(partition, data, offsets.map(lease), (record, l) => pairs.push([record, l]));
  return { found, pairs };
}

describe("leased records", () => {
  it("yields only the leased offsets, in order, across several batches", () => {
    const data = Buffer.concat([batch(10, ["a", "b", "c"]), batch(13, ["d", "e"]), batch(15, ["f"])]);
    const { found, pairs } = collect(new LeasedRecords(), 0, data, [11, 13, 15]);
    assert.equal(found, 3);
    assert.deepEqual(pairs.map(([r, l]) => [r.offset, r.value?.toString(), l.leaseId]), [[11, "b", 111], [13, "d", 113], [15, "f", 115]]);
  });

  it("counts leases whose record is not in the data as not found", () => {
    const data = batch(10, ["a", "b"]);
    const { found, pairs } = collect(new LeasedRecords(), 0, data, [9, 11, 12]);
    assert.equal(found, 1);
    assert.deepEqual(pairs.map(([r]) => r.offset), [11]);
  });

  it("ignores a trailing partial batch, as fetch readers do", () => {
    const whole = batch(0, ["a"]);
    const partial = batch(1, ["b", "c"]).subarray(0, 30);
    const { found } = collect(new LeasedRecords(), 0, Buffer.concat([whole, partial]), [0, 1]);
    assert.equal(found, 1);
  });

  it("decodes a batch shared by several deliveries once (same record objects come back)", () => {
    const records = new LeasedRecords();
    const stored = batch(100, Array.from({ length: 50 }, (_, i) => `v${i}`));
    const first = collect(records, 0, stored, [100, 101]);
    // A later delivery of the same stored batch, received as another buffer.
    const second = collect(records, 0, Buffer.from(stored), [100, 149]);
    assert.equal(second.pairs[0]![0], first.pairs[0]![0], "the cached decode was reused");
    assert.equal(second.pairs[1]![0].value?.toString(), "v49");
    // The same offsets on another partition are another batch.
    const other = collect(records, 1, Buffer.from(stored), [100]);
    assert.notEqual(other.pairs[0]![0], first.pairs[0]![0]);
  });

  it("decodes afresh a different batch found at the same base offset (a rewritten log)", () => {
    const records = new LeasedRecords();
    const before = collect(records, 0, batch(5, ["old", "old2"]), [5]);
    const after = collect(records, 0, batch(5, ["new", "new2"]), [5]);
    assert.equal(before.pairs[0]![0].value?.toString(), "old");
    assert.equal(after.pairs[0]![0].value?.toString(), "new");
  });

  it("stays correct with a cache smaller than one batch", () => {
    const records = new LeasedRecords(16);
    for (let round = 0; round < 3; round++) {
      const { pairs } = collect(records, 0, batch(0, ["x", "y", "z"]), [2]);
      assert.equal(pairs[0]![0].value?.toString(), "z");
    }
  });

  it("refuses a corrupt batch with CORRUPT_BATCH", () => {
    const data = batch(0, ["a", "b"]);
    data[data.length - 1] ^= 0xff; // breaks the CRC
    assert.throws(() => collect(new LeasedRecords(), 0, data, [0]), (err: unknown) => err instanceof CorruptBatchError);
    const short = Buffer.from(data);
    short.writeInt32BE(10, 8); // a length field smaller than the header
    assert.throws(() => collect(new LeasedRecords(), 0, short, [0]), /too small/);
  });
});
