import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { encodeBatch } from "../../common/src/batch/builder.js";
import { baseOffsetOf, batchSizeAt, lastOffsetDeltaOf, validateBatch } from "../../common/src/batch/layout.js";
import { decodeRecords } from "../../common/src/batch/reader.js";
import { CorruptBatchError, OffsetOutOfRangeError } from "../../common/src/errors.js";
import { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { makeBatch, readAll, tempDir, testConfig } from "./storage-fixtures.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";

/** Splits a buffer of whole batches into [baseOffset, lastOffset, bytes] triples. */
function batchesIn(records: Buffer): { baseOffset: number; lastOffset: number; bytes: Buffer }[] {
  const out: { baseOffset: number; lastOffset: number; bytes: Buffer }[] = [];
  for (let at = 0; at < records.length; ) {
    const size = batchSizeAt(records, at);
    const baseOffset = baseOffsetOf(records, at);
    out.push({ baseOffset, lastOffset: baseOffset + lastOffsetDeltaOf(records, at), bytes: records.subarray(at, at + size) });
    at += size;
  }
  return out;
}

describe("partition log: append and read", () => {
  let dir: string;
  let cleanup: () => void;
  let log: PartitionLog | undefined;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(async () => {
    await log?.close();
    log = undefined;
    cleanup();
  });

  const open = async (config: Partial<PartitionConfig> = {}): Promise<PartitionLog> =>
    (log = await PartitionLog.open({ dir: path.join(dir, "orders-0"), topic: "orders", partition: 0, config: testConfig(config), recover: false }));

  it("reads back appended batches byte for byte, with dense offsets and the stamped prefix", async () => {
    const log = await open();
    const batches = [1, 3, 1, 7, 2].map((records, seed) => makeBatch({ records, seed, payloadBytes: 40 + seed }));
    const results = await Promise.all(batches.map((batch) => log.append(batch, 5)));
    assert.deepEqual(
      results.map((r) => [r.baseOffset, r.lastOffset]),
      [[0, 0], [1, 3], [4, 4], [5, 11], [12, 13]],
    );
    assert.equal(log.logEndOffset, 14);
    assert.equal(log.logStartOffset, 0);
    const read = log.read(0, 1 << 20);
    assert.deepEqual(read.records, Buffer.concat(batches));
    assert.equal(read.nextOffset, 14);
    assert.equal(read.logEndOffset, 14);
    for (const [i, batch] of batchesIn(read.records).entries()) {
      assert.equal(batch.baseOffset, results[i]!.baseOffset);
      assert.equal(batch.bytes.readInt32BE(12), 5, "leader epoch stamped");
    }
    assert.equal(log.sizeBytes, Buffer.concat(batches).length);
    assert.ok(fs.existsSync(path.join(dir, "orders-0", "00000000000000000000.log")));
  });

  it("starts a read from the middle of a batch at the batch containing the offset", async () => {
    const log = await open();
    await log.append(makeBatch({ records: 5, seed: 1 }));
    const second = makeBatch({ records: 5, seed: 2 });
    await log.append(second);
    await log.append(makeBatch({ records: 5, seed: 3 }));
    const read = log.read(7, 1);
    assert.deepEqual(read.records, second);
    assert.equal(read.nextOffset, 10);
  });

  it("returns whole batches up to maxBytes, and one batch even when it alone is larger", async () => {
    const log = await open();
    const batches = [0, 1, 2, 3].map((seed) => makeBatch({ seed, payloadBytes: 100 }));
    for (const batch of batches) await log.append(batch);
    const size = batches[0]!.length;
    assert.deepEqual(log.read(0, size * 2 + size / 2).records, Buffer.concat(batches.slice(0, 2)));
    assert.deepEqual(log.read(0, 10).records, batches[0]);
    assert.equal(log.read(0, 10).nextOffset, 1);
    assert.deepEqual(log.read(2, size * 100).records, Buffer.concat(batches.slice(2)));
  });

  it("returns nothing at the log end and refuses offsets outside [logStartOffset, logEndOffset]", async () => {
    const log = await open();
    await log.append(makeBatch({ records: 3 }));
    const atEnd = log.read(3, 1000);
    assert.equal(atEnd.records.length, 0);
    assert.equal(atEnd.nextOffset, 3);
    assert.throws(() => log.read(4, 1000), OffsetOutOfRangeError);
    assert.throws(() => log.read(-1, 1000), OffsetOutOfRangeError);
    assert.throws(() => log.read(1.5, 1000), OffsetOutOfRangeError);
  });

  it("refuses a batch whose length field disagrees with its size", async () => {
    const log = await open();
    const batch = makeBatch();
    await assert.rejects(log.append(Buffer.concat([batch, Buffer.alloc(3)])), CorruptBatchError);
    assert.equal((await log.append(batch)).baseOffset, 0);
  });

  it("rolls segments at segmentBytes and reads straight through all of them", async () => {
    const log = await open({ segmentBytes: 1000, indexIntervalBytes: 200 });
    const batches = Array.from({ length: 40 }, (_, seed) => makeBatch({ records: 1 + (seed % 4), seed, payloadBytes: 60 + (seed % 5) * 30 }));
    // Half appended concurrently (one group crossing roll points), half one at a time.
    await Promise.all(batches.slice(0, 20).map((batch) => log.append(batch)));
    for (const batch of batches.slice(20)) await log.append(batch);
    assert.ok(log.segmentCount > 5, `expected many segments, got ${log.segmentCount}`);
    const files = fs.readdirSync(path.join(dir, "orders-0")).filter((name) => name.endsWith(".log")).sort();
    assert.equal(files.length, log.segmentCount);
    for (const name of files) {
      assert.match(name, /^\d{20}\.log$/);
      const size = fs.statSync(path.join(dir, "orders-0", name)).size;
      const base = Number(name.slice(0, 20));
      const firstBatchOfSegment = log.read(base, 1).records;
      assert.ok(size <= 1000 || size === firstBatchOfSegment.length, `${name} is ${size} bytes`);
      assert.equal(baseOffsetOf(firstBatchOfSegment), base, "segment named by its first offset");
    }
    assert.deepEqual(readAll(log, 0, 700), Buffer.concat(batches));
    assert.deepEqual(readAll(log, 0), Buffer.concat(batches));
  });

  it("finds the batch containing every offset among many small batches through the sparse index", async () => {
    const log = await open({ indexIntervalBytes: 512, segmentBytes: 64 * 1024 });
    const counts: number[] = [];
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 3000; i++) {
      const records = 1 + ((i * 7919) % 5);
      counts.push(records);
      pending.push(log.append(makeBatch({ records, seed: i, payloadBytes: 10 + (i % 13) })));
      if (i % 500 === 499) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    assert.ok(log.segmentCount >= 2);
    // Each index entry (relative offset int32, position int32) names a batch start, roughly
    // one per indexIntervalBytes of log.
    const indexFiles = fs.readdirSync(path.join(dir, "orders-0")).filter((name) => name.endsWith(".index"));
    for (const name of indexFiles) {
      const index = fs.readFileSync(path.join(dir, "orders-0", name));
      const logBytes = fs.readFileSync(path.join(dir, "orders-0", name.replace(".index", ".log")));
      const segmentBase = Number(name.slice(0, 20));
      assert.equal(index.length % 8, 0);
      assert.ok(index.length / 8 >= Math.floor(logBytes.length / (512 + 100)), `${name} has ${index.length / 8} entries`);
      let previousPosition = 0;
      for (let at = 0; at < index.length; at += 8) {
        const relativeOffset = index.readInt32BE(at);
        const position = index.readInt32BE(at + 4);
        assert.equal(baseOffsetOf(logBytes, position), segmentBase + relativeOffset, `${name} entry ${at / 8}`);
        assert.ok(position - previousPosition >= 512, "entries are spaced by indexIntervalBytes");
        previousPosition = position;
      }
    }
    let base = 0;
    for (const records of counts) {
      for (const offset of [base, base + records - 1]) {
        const [first] = batchesIn(log.read(offset, 1).records);
        assert.equal(first!.baseOffset, base, `offset ${offset}`);
        assert.equal(first!.lastOffset, base + records - 1);
      }
      base += records;
    }
    assert.equal(log.logEndOffset, base);
  });

  it("stores batches from the record codec unchanged and serves them decodable at their offsets", async () => {
    const log = await open();
    const plain = encodeBatch([{ key: "k1", value: "v1" }, { value: "v2" }]);
    const gzipped = encodeBatch([{ key: "k3", value: "v3".repeat(50) }, { value: "v4" }, { value: "v5" }], { compression: "gzip" });
    for (const batch of [plain, gzipped]) {
      validateBatch(batch, 1 << 20);
      await log.append(batch);
    }
    const read = log.read(3, 1 << 20);
    validateBatch(read.records, 1 << 20); // the CRC still holds after stamping
    const records = decodeRecords(read.records, 3);
    assert.deepEqual(records.map((r) => [r.offset, r.value?.toString()]), [[3, "v4"], [4, "v5"]]);
    assert.deepEqual(decodeRecords(log.read(0, 1 << 20).records).map((r) => r.offset), [0, 1, 2, 3, 4]);
  });

  it("emits append with the new logEndOffset once the bytes are readable", async () => {
    const log = await open();
    const seen: number[] = [];
    log.on("append", (end: number) => {
      seen.push(end);
      assert.equal(log.read(end - 1, 100).nextOffset, end);
    });
    await log.append(makeBatch({ records: 2 }));
    await log.append(makeBatch({ records: 3 }));
    assert.deepEqual(seen, [2, 5]);
  });
});
