import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { baseOffsetOf } from "../../common/src/batch/layout.js";
import { ClosedError, StorageError, StorageFullError } from "../../common/src/errors.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";
import { PartitionLog, type AppendResult } from "../../broker/src/storage/partition-log.js";
import type { StorageIo } from "../../broker/src/storage/storage-io.js";
import { CountingIo, FailingIo, capturingLogger, eventually, makeBatch, readAll, tempDir, testConfig } from "./storage-fixtures.js";

describe("partition log: group commit and write failures", () => {
  let dir: string;
  let cleanup: () => void;
  const opened: PartitionLog[] = [];
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(async () => {
    for (const log of opened.splice(0)) await log.close().catch(() => undefined);
    cleanup();
  });

  const partitionDir = (): string => path.join(dir, "orders-0");
  const open = async (io: StorageIo, config: Partial<PartitionConfig> = {}, recover = false): Promise<PartitionLog> => {
    const log = await PartitionLog.open({ dir: partitionDir(), topic: "orders", partition: 0, config: testConfig(config), io, recover, logger: capturingLogger().logger });
    opened.push(log);
    return log;
  };
  const logFileSizes = (): number[] =>
    fs.readdirSync(partitionDir()).filter((name) => name.endsWith(".log")).sort().map((name) => fs.statSync(path.join(partitionDir(), name)).size);

  it("sync: 100 concurrent appends share few fsyncs and resolve in offset order", async () => {
    const io = new CountingIo();
    const log = await open(io, { flush: "sync" });
    const resolved: number[] = [];
    const appends: Promise<AppendResult>[] = [];
    for (let i = 0; i < 100; i++) {
      appends.push(log.append(makeBatch({ records: 2, seed: i })).then((result) => (resolved.push(result.baseOffset), result)));
      // Spread arrivals over a few ticks, as network reads would.
      if (i % 25 === 24) await new Promise((resolve) => setImmediate(resolve));
    }
    const results = await Promise.all(appends);
    assert.deepEqual(results.map((r) => r.baseOffset), Array.from({ length: 100 }, (_, i) => 2 * i));
    assert.deepEqual(resolved, [...resolved].sort((a, b) => a - b), "promises resolve in offset order");
    assert.ok(io.fdatasyncs >= 1 && io.fdatasyncs <= 10, `${io.fdatasyncs} fsyncs for 100 appends`);
    assert.ok(io.writevs <= 10, `${io.writevs} writes for 100 appends`);
  });

  it("sync: appends arriving during an fsync form the next group, and nobody sees unsynced bytes", async () => {
    const io = new CountingIo();
    const log = await open(io, { flush: "sync" });
    io.holdSyncs = true;
    const first = log.append(makeBatch({ records: 3 }));
    await eventually(() => io.heldSyncs === 1);
    assert.equal(log.logEndOffset, 0, "written but not yet synced: invisible");
    assert.equal(log.read(0, 100).records.length, 0);
    const later = [log.append(makeBatch({ seed: 1 })), log.append(makeBatch({ seed: 2 }))];
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(io.heldSyncs, 1, "the next group waits for the fsync in flight");
    io.releaseSyncs();
    assert.equal((await first).baseOffset, 0);
    assert.deepEqual((await Promise.all(later)).map((r) => r.baseOffset), [3, 4]);
    assert.equal(io.fdatasyncs, 2);
    assert.equal(log.logEndOffset, 5);
  });

  it("interval and os: appends never fsync on their own", async () => {
    for (const flush of ["interval", "os"] as const) {
      const io = new CountingIo();
      const log = await open(io, { flush });
      await Promise.all(Array.from({ length: 20 }, (_, seed) => log.append(makeBatch({ seed }))));
      assert.equal(io.fdatasyncs, 0, flush);
      assert.equal(log.flushedOffset, 0);
      await log.flush();
      assert.ok(io.fdatasyncs > 0);
      assert.equal(log.flushedOffset, 20);
      await log.delete();
    }
  });

  it("ENOSPC mid-write: no torn tail, the group and everything after it rejected, the offset rolled back", async () => {
    const io = new FailingIo();
    const log = await open(io, { indexIntervalBytes: 0 });
    const kept = [0, 1, 2].map((seed) => makeBatch({ records: 2, seed }));
    for (const batch of kept) await log.append(batch);
    const sizeBefore = logFileSizes();
    const indexBefore = fs.readFileSync(path.join(partitionDir(), "00000000000000000000.index"));

    io.failNextWrite(50);
    const failed = [log.append(makeBatch({ records: 4, seed: 10 })), log.append(makeBatch({ seed: 11 }))];
    const results = await Promise.allSettled(failed);
    for (const result of results) {
      assert.equal(result.status, "rejected");
      assert.ok(result.reason instanceof StorageFullError, String(result.reason));
      assert.equal(result.reason.code, "STORAGE_FULL");
      assert.equal(result.reason.retriable, true);
    }
    assert.deepEqual(logFileSizes(), sizeBefore, "nothing torn stays on disk");
    assert.deepEqual(fs.readFileSync(path.join(partitionDir(), "00000000000000000000.index")), indexBefore);
    assert.equal(log.logEndOffset, 6);

    const next = makeBatch({ records: 3, seed: 20 });
    assert.equal((await log.append(next)).baseOffset, 6, "the next append reuses the rolled-back offset");
    assert.deepEqual(readAll(log, 0), Buffer.concat([...kept, next]));
    await log.close();

    const { logger, lines } = capturingLogger();
    const reopened = await PartitionLog.open({ dir: partitionDir(), topic: "orders", partition: 0, config: testConfig(), recover: true, logger });
    opened.push(reopened);
    assert.equal(reopened.logEndOffset, 9);
    assert.equal(lines.filter((line) => /dropped|rebuilding/.test(line.msg)).length, 0, JSON.stringify(lines));
  });

  it("a failure in a group that rolled a segment removes the new segment and truncates the old one", async () => {
    const io = new FailingIo();
    const log = await open(io, { segmentBytes: 400 });
    await log.append(makeBatch({ payloadBytes: 100 })); // 161 bytes
    await log.append(makeBatch({ payloadBytes: 100 })); // 322
    assert.equal(log.segmentCount, 1);
    const sizesBefore = logFileSizes();
    // One group: 71 bytes still fit the old segment (written), then a 261-byte batch rolls to
    // a new segment, whose write runs out of space.
    io.failNextWrite(0, { afterWrites: 1 });
    const group = [log.append(makeBatch({ payloadBytes: 10 })), log.append(makeBatch({ payloadBytes: 200 })), log.append(makeBatch())];
    for (const result of await Promise.allSettled(group)) {
      assert.ok(result.status === "rejected" && result.reason instanceof StorageFullError, String(result.status === "rejected" && result.reason));
    }
    assert.equal(log.segmentCount, 1);
    assert.deepEqual(logFileSizes(), sizesBefore);
    assert.deepEqual(fs.readdirSync(partitionDir()).filter((name) => !name.startsWith("00000000000000000000") && name !== "leader-epochs"), []);
    assert.equal((await log.append(makeBatch({ payloadBytes: 200 }))).baseOffset, 2);
    assert.equal(log.segmentCount, 2);
    assert.ok(fs.existsSync(path.join(partitionDir(), "00000000000000000002.log")));
  });

  it("a reader continuing from where its last read ended gets the right batch, also after a rolled-back write", async () => {
    const io = new FailingIo();
    const log = await open(io, { indexIntervalBytes: 1 << 20 });
    for (let i = 0; i < 5; i++) await log.append(makeBatch({ seed: i }));
    const first = log.read(0, 1 << 20);
    assert.equal(first.nextOffset, 5);
    // The next batch lands exactly where the last read ended.
    await log.append(makeBatch({ seed: 5 }));
    const second = log.read(first.nextOffset, 1 << 20);
    assert.equal(baseOffsetOf(second.records), 5);
    // A failed write is rolled back; what is written after it is found where the read ended.
    io.failNextWrite(30);
    await assert.rejects(log.append(makeBatch({ payloadBytes: 100, seed: 6 })), StorageFullError);
    await log.append(makeBatch({ payloadBytes: 40, seed: 7, records: 2 }));
    const third = log.read(second.nextOffset, 1 << 20);
    assert.equal(baseOffsetOf(third.records), 6);
    assert.equal(third.nextOffset, 8);
    const whole = readAll(log, 0);
    assert.deepEqual(third.records, whole.subarray(whole.length - third.records.length));
  });

  it("a failed periodic fsync fences the partition: no more appends, the recovery point stays", async () => {
    const io = new FailingIo();
    const log = await open(io, { flush: "interval" });
    await log.append(makeBatch());
    await log.flush();
    assert.equal(log.flushedOffset, 1);
    await log.append(makeBatch());
    io.failNextSync("EIO");
    await assert.rejects(log.flush(), StorageError);
    // Linux may report the lost writeback only once: a later fsync "succeeds" over lost pages.
    await log.flush().catch(() => undefined);
    assert.equal(log.flushedOffset, 1, "the recovery point never passes data that failed to reach the disk");
    await assert.rejects(log.append(makeBatch()), (e: unknown) => e instanceof StorageError && /refuses writes until the broker restarts/.test((e as Error).message));
  });

  it("a failed fsync under sync rejects the group and the appends queued behind it", async () => {
    const io = new FailingIo();
    const log = await open(io, { flush: "sync" });
    await log.append(makeBatch());
    io.failNextSync("EIO");
    const first = Promise.allSettled([log.append(makeBatch({ records: 2 }))]);
    // Queued while the failing fsync is in flight: its offset 3 depends on the failed group.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const queued = Promise.allSettled([log.append(makeBatch())]);
    const [[firstResult], [queuedResult]] = await Promise.all([first, queued]);
    assert.ok(firstResult.status === "rejected" && firstResult.reason instanceof StorageError && !(firstResult.reason instanceof StorageFullError));
    assert.ok(queuedResult.status === "rejected" && queuedResult.reason instanceof StorageError);
    assert.equal(log.logEndOffset, 1);
    assert.equal((await log.append(makeBatch())).baseOffset, 1);
    assert.equal(readAll(log, 0).length, 2 * makeBatch().length);
  });

  it("close writes what is queued and then refuses appends", async () => {
    const log = await open(new CountingIo());
    const queued = log.append(makeBatch({ records: 4 }));
    await log.close();
    assert.equal((await queued).lastOffset, 3);
    await assert.rejects(log.append(makeBatch()), ClosedError);
    assert.equal(log.flushedOffset, 4);
  });
});
