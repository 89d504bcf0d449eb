import assert from "node:assert/strict";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { BASE_SEQUENCE_AT, CRC_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT, computeBatchCrc } from "../../common/src/batch/layout.js";
import { OutOfOrderSequenceError, ProducerFencedError, StorageFullError } from "../../common/src/errors.js";
import { FakeClock } from "../../common/src/clock.js";
import { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { ProducerStateTable, lastSequenceOf } from "../../broker/src/storage/producer-state.js";
import { FailingIo, makeBatch, tempDir, testConfig } from "./storage-fixtures.js";

const MAX_SEQ = 0x7fffffff;

/** A valid batch of an idempotent producer: `records` records from sequence `firstSeq`. */
function producerBatch(producerId: number, producerEpoch: number, firstSeq: number, records = 1, seed = firstSeq): Buffer {
  const batch = makeBatch({ records, seed: seed & 0xffff });
  batch.writeBigInt64BE(BigInt(producerId), PRODUCER_ID_AT);
  batch.writeInt16BE(producerEpoch, PRODUCER_EPOCH_AT);
  batch.writeInt32BE(firstSeq, BASE_SEQUENCE_AT);
  batch.writeUInt32BE(computeBatchCrc(batch), CRC_AT);
  return batch;
}

describe("producer state", () => {
  let dir: string;
  let cleanup: () => void;
  const logs: PartitionLog[] = [];
  const clock = new FakeClock(1_700_000_000_000);
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close();
    cleanup();
  });
  const open = async (name = "orders-0", io?: FailingIo): Promise<PartitionLog> => {
    const log = await PartitionLog.open({ dir: path.join(dir, name), topic: "orders", partition: 0, config: testConfig({ segmentBytes: 600 }), recover: false, clock, ...(io ? { io } : {}) });
    logs.push(log);
    return log;
  };
  /** Checks, then appends when new (as the produce path does); returns the offsets either way. */
  const produce = async (log: PartitionLog, batch: Buffer): Promise<[number, number]> => {
    const duplicate = log.checkProducer(batch);
    const result = duplicate ?? (await log.append(batch, 1));
    return [result.baseOffset, result.lastOffset];
  };

  it("the sequence of a batch's last record wraps after 2^31 − 1", () => {
    assert.equal(lastSequenceOf(0, 4), 4);
    assert.equal(lastSequenceOf(MAX_SEQ, 0), MAX_SEQ);
    assert.equal(lastSequenceOf(MAX_SEQ - 1, 2), 0);
    assert.equal(lastSequenceOf(MAX_SEQ, 3), 2);
  });

  it("a retry of the latest batch is a duplicate answered with its original offsets and append time", async () => {
    const log = await open();
    await log.append(makeBatch({ records: 2 })); // not idempotent: offsets 0-1
    const first = producerBatch(7, 0, 0, 3);
    const original = await log.append(first, 1);
    assert.deepEqual([original.baseOffset, original.lastOffset], [2, 4]);
    clock.advance(5000);
    const duplicate = log.checkProducer(producerBatch(7, 0, 0, 3));
    assert.deepEqual(duplicate, { baseOffset: 2, lastOffset: 4, logAppendTimeMs: original.logAppendTimeMs, logStartOffset: 0 });
    assert.equal(log.logEndOffset, 5);
  });

  it("remembers the 5 latest batches per producer: the 5th-latest is a duplicate, the 6th is out of order", async () => {
    const log = await open();
    const offsets: [number, number][] = [];
    for (let i = 0; i < 6; i++) offsets.push(await produce(log, producerBatch(7, 0, i * 2, 2)));
    assert.deepEqual(log.checkProducer(producerBatch(7, 0, 10, 2))?.baseOffset, offsets[5]![0], "latest");
    assert.deepEqual(log.checkProducer(producerBatch(7, 0, 2, 2))?.baseOffset, offsets[1]![0], "5th-latest");
    assert.throws(() => log.checkProducer(producerBatch(7, 0, 0, 2)), OutOfOrderSequenceError);
    assert.equal(log.checkProducer(producerBatch(7, 0, 12, 2)), null, "the next sequence is new");
  });

  it("a gap in the sequence is refused naming the producer, the expected and received sequence, and the partition", async () => {
    const log = await open();
    await produce(log, producerBatch(42, 3, 0, 4));
    assert.throws(
      () => log.checkProducer(producerBatch(42, 3, 6)),
      (e: unknown) => e instanceof OutOfOrderSequenceError && /producer 42\b.*sequence 6.*orders\/0.*expected sequence 4/.test((e as Error).message),
    );
  });

  it("an older producer epoch is fenced; a newer epoch restarts the sequence at 0", async () => {
    const log = await open();
    await produce(log, producerBatch(9, 2, 0, 2));
    await produce(log, producerBatch(9, 2, 2, 2));
    assert.throws(() => log.checkProducer(producerBatch(9, 1, 4)), (e: unknown) => e instanceof ProducerFencedError && /producer 9 .*epoch 1.*epoch 2/.test((e as Error).message));
    assert.throws(() => log.checkProducer(producerBatch(9, 3, 4)), OutOfOrderSequenceError, "a new epoch must start at 0");
    assert.deepEqual(await produce(log, producerBatch(9, 3, 0)), [4, 4]);
    assert.throws(() => log.checkProducer(producerBatch(9, 2, 4)), ProducerFencedError);
    assert.throws(() => log.checkProducer(producerBatch(9, 2, 0, 2)), ProducerFencedError, "even a retry of a batch the old epoch wrote");
  });

  it("sequences wrap to 0 after 2^31 − 1", async () => {
    const log = await open();
    await produce(log, producerBatch(5, 0, MAX_SEQ - 1, 3)); // MAX-1, MAX, 0
    assert.equal(log.checkProducer(producerBatch(5, 0, 1)), null);
    assert.throws(() => log.checkProducer(producerBatch(5, 0, MAX_SEQ)), OutOfOrderSequenceError);
    assert.deepEqual(log.checkProducer(producerBatch(5, 0, MAX_SEQ - 1, 3))?.baseOffset, 0);
  });

  it("an unknown producer id is accepted with any sequence; non-idempotent batches are never checked", async () => {
    const log = await open();
    assert.equal(log.checkProducer(producerBatch(11, 4, 977)), null);
    const plain = makeBatch();
    await log.append(plain);
    assert.equal(log.checkProducer(plain), null);
  });

  it("two batches of one producer in flight are checked against each other", async () => {
    const log = await open();
    const first = log.append(producerBatch(3, 0, 0, 2), 1); // not awaited: still being written
    assert.deepEqual(log.checkProducer(producerBatch(3, 0, 0, 2)), { baseOffset: 0, lastOffset: 1, logAppendTimeMs: clock.now(), logStartOffset: 0 });
    assert.throws(() => log.checkProducer(producerBatch(3, 0, 5)), OutOfOrderSequenceError);
    const second = log.append(producerBatch(3, 0, 2), 1);
    assert.deepEqual((await Promise.all([first, second])).map((r) => r.baseOffset), [0, 2]);
  });

  it("rebuilt on reopen from batch headers: a retry after a restart gets the original offsets", async () => {
    let log = await open();
    for (let i = 0; i < 12; i++) await log.append(makeBatch({ seed: i, payloadBytes: 60 })); // other traffic
    clock.advance(1000);
    const original = await log.append(producerBatch(21, 1, 0, 4), 1);
    clock.advance(1000);
    await log.append(producerBatch(21, 1, 4, 1), 1);
    await log.append(makeBatch());
    assert.ok(log.segmentCount >= 2);
    await log.close();
    logs.splice(0);
    log = await open();
    assert.deepEqual(log.checkProducer(producerBatch(21, 1, 0, 4)), {
      baseOffset: original.baseOffset, lastOffset: original.lastOffset, logAppendTimeMs: original.logAppendTimeMs, logStartOffset: 0,
    });
    assert.equal(log.checkProducer(producerBatch(21, 1, 5)), null);
    assert.throws(() => log.checkProducer(producerBatch(21, 1, 7)), OutOfOrderSequenceError);
    assert.throws(() => log.checkProducer(producerBatch(21, 0, 5)), ProducerFencedError);
  });

  it("a failed group is undone: its batches are new again and the producer continues from before them", async () => {
    const io = new FailingIo();
    const log = await open("orders-0", io);
    await produce(log, producerBatch(8, 0, 0, 2));
    io.failNextWrite(5);
    const failing = [log.append(producerBatch(8, 0, 2, 2), 1), log.append(producerBatch(8, 0, 4), 1), log.append(producerBatch(12, 0, 0), 1)];
    for (const result of await Promise.allSettled(failing)) assert.ok(result.status === "rejected" && result.reason instanceof StorageFullError);
    assert.equal(log.checkProducer(producerBatch(8, 0, 2, 2)), null, "the failed batch is not a duplicate");
    assert.throws(() => log.checkProducer(producerBatch(8, 0, 4)), OutOfOrderSequenceError, "the one after it is a gap now");
    assert.equal(log.checkProducer(producerBatch(8, 0, 0, 2))?.baseOffset, 0, "the written batch is still remembered");
    assert.deepEqual(await produce(log, producerBatch(8, 0, 2, 2)), [2, 3]);
  });

  it("a failed group that bumped the producer epoch restores the old epoch", async () => {
    const io = new FailingIo();
    const log = await open("orders-0", io);
    await produce(log, producerBatch(8, 0, 0));
    io.failNextWrite(5);
    await assert.rejects(log.append(producerBatch(8, 1, 0), 1), StorageFullError);
    assert.equal(log.checkProducer(producerBatch(8, 0, 1)), null, "epoch 0 continues");
  });

  it("a slave derives producer state from replicated batches; truncation forgets the batches it cut", async () => {
    const master = await open("master");
    await produce(master, producerBatch(30, 0, 0, 2));
    await produce(master, producerBatch(30, 0, 2, 2));
    const slave = await open("slave");
    await slave.appendReplicated(master.read(0, 1 << 20, "logEnd").records);
    assert.equal(slave.checkProducer(producerBatch(30, 0, 2, 2))?.baseOffset, 2);
    await slave.truncateTo(2);
    assert.equal(slave.checkProducer(producerBatch(30, 0, 2, 2)), null, "the cut batch is new again");
    await slave.resetTo(100);
    assert.equal(slave.checkProducer(producerBatch(30, 0, 9)), null, "after a reset the producer is unknown");
  });

  it("the table on its own: undo journal settles with the log end", () => {
    const table = new ProducerStateTable("t/0");
    table.record(producerBatch(1, 0, 0), 0, 0, 0, 10, true);
    table.record(producerBatch(1, 0, 1), 0, 1, 1, 11, true);
    table.settleBelow(1);
    table.undoFrom(0); // only offset 1 is still undoable
    assert.deepEqual(table.entry(1)?.batches.map((b) => b.baseOffset), [0]);
  });
});
