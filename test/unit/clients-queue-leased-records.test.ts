// Finding leased records in delivered batches: only leased offsets, and leases in the batch the
// broker sent last (and does not resend) found in the copy kept per partition.
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

  it("finds leases in the batch received last for the partition when a delivery omits it", () => {
    const records = new LeasedRecords();
    const stored = batch(100, Array.from({ length: 50 }, (_, i) => `v${i}`));
    const first = collect(records, 0, stored, [100, 101]);
    // The broker does not resend the batch it sent last: the delivery carries no bytes.
    const second = collect(records, 0, Buffer.alloc(0), [102, 149]);
    assert.equal(second.found, 2);
    assert.equal(second.pairs[1]![0].value?.toString(), "v49");
    assert.equal(first.pairs.length, 2);
    // The kept batch belongs to partition 0 only.
    assert.equal(collect(records, 1, Buffer.alloc(0), [100]).found, 0);
  });

  it("uses the kept batch and new batches in one delivery, then keeps the newest", () => {
    const records = new LeasedRecords();
    collect(records, 0, batch(0, ["a", "b", "c"]), [0]);
    const mixed = collect(records, 0, batch(3, ["d", "e"]), [2, 3, 4]);
    assert.deepEqual(mixed.pairs.map(([r]) => r.value?.toString()), ["c", "d", "e"]);
    // Batch 0..2 was replaced by 3..4.
    assert.equal(collect(records, 0, Buffer.alloc(0), [1]).found, 0);
    assert.equal(collect(records, 0, Buffer.alloc(0), [4]).found, 1);
  });

  it("a different batch at the same offsets replaces the kept one (a rewritten log)", () => {
    const records = new LeasedRecords();
    const before = collect(records, 0, batch(5, ["old", "old2"]), [5]);
    const after = collect(records, 0, batch(5, ["new", "new2"]), [5]);
    assert.equal(before.pairs[0]![0].value?.toString(), "old");
    assert.equal(after.pairs[0]![0].value?.toString(), "new");
  });

  it("clear() forgets the kept batches (a new stream)", () => {
    const records = new LeasedRecords();
    collect(records, 0, batch(0, ["a"]), [0]);
    records.clear();
    assert.equal(collect(records, 0, Buffer.alloc(0), [0]).found, 0);
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
