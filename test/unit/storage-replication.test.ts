import assert from "node:assert/strict";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { baseOffsetOf, batchSizeAt, lastOffsetDeltaOf } from "../../common/src/batch/layout.js";
import { CorruptBatchError, InvalidArgumentError } from "../../common/src/errors.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";
import { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { CountingIo, makeBatch, tempDir, testConfig } from "./storage-fixtures.js";

/** [baseOffset, lastOffset] of each batch in a buffer of whole batches. */
function spans(records: Buffer): [number, number][] {
  const out: [number, number][] = [];
  for (let at = 0; at < records.length; at += batchSizeAt(records, at)) {
    const base = baseOffsetOf(records, at);
    out.push([base, base + lastOffsetDeltaOf(records, at)]);
  }
  return out;
}

describe("partition log: high watermark and replicated appends", () => {
  let dir: string;
  let cleanup: () => void;
  const logs: PartitionLog[] = [];
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close();
    cleanup();
  });

  const open = async (name: string, config: Partial<PartitionConfig> = {}, io?: CountingIo): Promise<PartitionLog> => {
    const log = await PartitionLog.open({ dir: path.join(dir, name), topic: "orders", partition: 0, config: testConfig(config), recover: false, ...(io ? { io } : {}) });
    logs.push(log);
    return log;
  };
  /** Appends batches of the given record counts to `log` under `epoch`. */
  const fill = async (log: PartitionLog, counts: number[], epoch = 1): Promise<void> => {
    for (const [i, records] of counts.entries()) await log.append(makeBatch({ records, seed: i, payloadBytes: 40 + i }), epoch);
  };

  it("without replication the high watermark is the log end and 'append' and 'logEnd' fire together", async () => {
    const log = await open("a");
    const seen: string[] = [];
    log.on("append", (hw: number) => seen.push(`append ${hw}`));
    log.on("logEnd", (leo: number) => seen.push(`logEnd ${leo}`));
    await fill(log, [2, 3]);
    assert.equal(log.highWatermark, 5);
    assert.deepEqual(seen.sort(), ["append 2", "append 5", "logEnd 2", "logEnd 5"]);
    log.setHighWatermark(1); // ignored: the watermark follows the log end
    assert.equal(log.highWatermark, 5);
    assert.equal(log.read(0, 1 << 20).highWatermark, 5);
  });

  it("replicated: appends move the log end only; setHighWatermark clamps, never goes back, and emits 'append'", async () => {
    const log = await open("a");
    await fill(log, [1]);
    log.setReplicated(true);
    assert.equal(log.highWatermark, 1, "starts at the log end it had");
    const appends: number[] = [];
    const logEnds: number[] = [];
    log.on("append", (hw: number) => appends.push(hw));
    log.on("logEnd", (leo: number) => logEnds.push(leo));
    await fill(log, [2, 3]);
    assert.deepEqual(logEnds, [3, 6]);
    assert.deepEqual(appends, []);
    assert.equal(log.highWatermark, 1);
    log.setHighWatermark(3);
    log.setHighWatermark(2); // lower: ignored
    log.setHighWatermark(3); // same: no event
    log.setHighWatermark(100); // clamped to the log end
    assert.equal(log.highWatermark, 6);
    assert.deepEqual(appends, [3, 6]);
    log.setReplicated(false);
    assert.equal(log.highWatermark, log.logEndOffset);
  });

  it("turning replication off publishes everything written", async () => {
    const log = await open("a");
    log.setReplicated(true);
    await fill(log, [4]);
    const appends: number[] = [];
    log.on("append", (hw: number) => appends.push(hw));
    log.setReplicated(false);
    assert.deepEqual(appends, [4]);
    assert.equal(log.highWatermark, 4);
  });

  it("consumer reads stop at the high watermark without splitting a batch; replication reads go to the log end", async () => {
    const log = await open("a", { indexIntervalBytes: 64 });
    log.setReplicated(true);
    await fill(log, [1, 2, 3, 1, 4]); // batches [0,0] [1,2] [3,5] [6,6] [7,10]
    log.setHighWatermark(6);
    const consumer = log.read(0, 1 << 20);
    assert.deepEqual(spans(consumer.records), [[0, 0], [1, 2], [3, 5]]);
    assert.equal(consumer.nextOffset, 6);
    assert.equal(consumer.highWatermark, 6);
    assert.equal(consumer.logEndOffset, 11);
    assert.deepEqual(spans(log.read(4, 1 << 20).records), [[3, 5]], "from the middle of the last visible batch");
    const atWatermark = log.read(6, 1 << 20);
    assert.equal(atWatermark.records.length, 0);
    assert.equal(atWatermark.nextOffset, 6);
    assert.equal(log.read(9, 1 << 20).nextOffset, 9, "above the watermark: empty, not out of range");
    assert.equal(log.read(11, 1 << 20).records.length, 0);
    assert.throws(() => log.read(12, 1 << 20), /out of range|12/);
    assert.deepEqual(spans(log.read(0, 1 << 20, "logEnd").records), [[0, 0], [1, 2], [3, 5], [6, 6], [7, 10]]);
    // maxBytes still applies below the watermark, and the limit moves on as it grows.
    assert.deepEqual(spans(log.read(0, 1).records), [[0, 0]]);
    log.setHighWatermark(7);
    assert.deepEqual(spans(log.read(3, 1 << 20).records), [[3, 5], [6, 6]]);
    log.setHighWatermark(11);
    assert.deepEqual(spans(log.read(6, 1 << 20).records), [[6, 6], [7, 10]]);
  });

  it("a watermark inside a batch (not a boundary) hides that batch", async () => {
    const log = await open("a");
    log.setReplicated(true);
    await fill(log, [2, 5]); // [0,1] [2,6]
    log.setHighWatermark(4);
    assert.deepEqual(spans(log.read(0, 1 << 20).records), [[0, 1]]);
    const inside = log.read(2, 1 << 20);
    assert.equal(inside.records.length, 0);
    assert.equal(inside.nextOffset, 2);
  });

  it("the watermark limit holds across segments: earlier segments read whole, the one holding it is cut", async () => {
    const log = await open("a", { segmentBytes: 250 });
    log.setReplicated(true);
    await fill(log, [1, 1, 1, 1, 1, 1, 1, 1]);
    assert.ok(log.segmentCount >= 3);
    log.setHighWatermark(5);
    const seen: [number, number][] = [];
    let offset = 0;
    for (;;) {
      const result = log.read(offset, 1 << 20);
      if (result.records.length === 0) break;
      seen.push(...spans(result.records));
      offset = result.nextOffset;
    }
    assert.deepEqual(seen, [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]]);
    assert.equal(offset, 5);
  });

  it("appendReplicated stores the master's batches byte for byte, with their offsets and epochs", async () => {
    const master = await open("master");
    await fill(master, [1, 3, 2], 4);
    await master.append(makeBatch({ records: 2, seed: 9 }), 5);
    const slave = await open("slave", { segmentBytes: 200 });
    slave.setReplicated(true);
    const logEnds: number[] = [];
    slave.on("logEnd", (leo: number) => logEnds.push(leo));
    const all = master.read(0, 1 << 20, "logEnd").records;
    const firstTwo = master.read(0, 110, "logEnd");
    assert.deepEqual(spans(firstTwo.records), [[0, 0]]);
    const first = await slave.appendReplicated(firstTwo.records);
    assert.deepEqual([first.baseOffset, first.lastOffset], [0, 0]);
    const rest = master.read(firstTwo.nextOffset, 1 << 20, "logEnd");
    const second = await slave.appendReplicated(rest.records);
    assert.deepEqual([second.baseOffset, second.lastOffset], [1, 7], "the result spans every batch");
    assert.ok(second.logAppendTimeMs > 0);
    assert.equal(slave.logEndOffset, 8);
    assert.deepEqual(logEnds, [1, 8]);
    assert.equal(slave.highWatermark, 0, "a slave's watermark comes from its master");
    assert.deepEqual(slave.read(0, 1 << 20, "logEnd").records.length > 0, true);
    let copy = Buffer.alloc(0);
    for (let offset = 0; offset < slave.logEndOffset; ) {
      const part = slave.read(offset, 1 << 20, "logEnd");
      copy = Buffer.concat([copy, part.records]);
      offset = part.nextOffset;
    }
    assert.deepEqual(copy, all);
    assert.deepEqual(slave.leaderEpochs.entries(), [{ epoch: 4, startOffset: 0 }, { epoch: 5, startOffset: 6 }]);
    assert.ok(slave.segmentCount > 1, "rolled on its own segment size");
  });

  it("appendReplicated refuses a span that does not continue the log, has a gap, a bad length or a bad CRC", async () => {
    const master = await open("master");
    await fill(master, [1, 2, 1]);
    const records = master.read(0, 1 << 20, "logEnd").records;
    const slave = await open("slave");
    const firstSize = batchSizeAt(records, 0);
    const secondSize = batchSizeAt(records, firstSize);
    await assert.rejects(slave.appendReplicated(records.subarray(firstSize)), (e: unknown) => e instanceof InvalidArgumentError && /offset 1.*is 0/.test((e as Error).message));
    const gap = Buffer.concat([records.subarray(0, firstSize), records.subarray(firstSize + secondSize)]);
    await assert.rejects(slave.appendReplicated(gap), (e: unknown) => e instanceof InvalidArgumentError && /offset 3 where 1 should follow/.test((e as Error).message));
    await assert.rejects(slave.appendReplicated(records.subarray(0, records.length - 5)), CorruptBatchError);
    const flipped = Buffer.from(records);
    flipped[firstSize + 70]! ^= 0xff;
    await assert.rejects(slave.appendReplicated(flipped), (e: unknown) => e instanceof CorruptBatchError && /CRC/.test((e as Error).message));
    await assert.rejects(slave.appendReplicated(Buffer.alloc(0)), InvalidArgumentError);
    assert.equal(slave.logEndOffset, 0, "nothing was written");
    const ok = await slave.appendReplicated(records);
    assert.deepEqual([ok.baseOffset, ok.lastOffset], [0, 3]);
  });

  it("appendReplicated batches group-commit with one fsync under the sync policy", async () => {
    const io = new CountingIo();
    const master = await open("master");
    await fill(master, [1, 1, 1, 1]);
    const records = master.read(0, 1 << 20, "logEnd").records;
    const slave = await open("slave", { flush: "sync" }, io);
    const before = io.fdatasyncs;
    await slave.appendReplicated(records);
    assert.equal(io.fdatasyncs - before, 1);
  });
});
