import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ClosedError, InvalidArgumentError } from "../../common/src/errors.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";
import { LogManager } from "../../broker/src/storage/log-manager.js";
import type { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { capturingLogger, makeBatch, readAll, tempDir, testConfig } from "./storage-fixtures.js";

const HOUR_MS = 3_600_000;
const CONFIG: Partial<PartitionConfig> = { segmentBytes: 500, indexIntervalBytes: 100 };

describe("partition log: truncateTo and resetTo", () => {
  let dataDir: string;
  let cleanup: () => void;
  let captured: ReturnType<typeof capturingLogger>;
  const managers: LogManager[] = [];
  beforeEach(() => {
    ({ dir: dataDir, cleanup } = tempDir());
    captured = capturingLogger();
  });
  afterEach(async () => {
    for (const manager of managers.splice(0)) await manager.close();
    cleanup();
  });

  const logsDir = (): string => path.join(dataDir, "logs");
  const partitionDir = (): string => path.join(logsDir(), "orders-0");
  const checkpointFile = (): string => path.join(logsDir(), "recovery-point-checkpoint");
  const segmentBases = (): number[] =>
    fs.readdirSync(partitionDir()).filter((name) => name.endsWith(".log")).map((name) => Number(name.slice(0, 20))).sort((a, b) => a - b);
  const openManager = async (): Promise<LogManager> => {
    const manager = await LogManager.open({ dataDir, configFor: () => testConfig(CONFIG), flushIntervalMs: HOUR_MS, retentionCheckIntervalMs: HOUR_MS, logger: captured.logger });
    managers.push(manager);
    return manager;
  };
  /** 30 batches of 1–3 records: epoch 1 for the first 20, epoch 2 after. */
  const fill = async (manager: LogManager, count = 30): Promise<{ log: PartitionLog; batches: Buffer[]; bases: number[] }> => {
    const log = await manager.create("orders", 0, testConfig(CONFIG));
    const batches: Buffer[] = [];
    const bases: number[] = [];
    for (let i = 0; i < count; i++) {
      const batch = makeBatch({ records: 1 + (i % 3), seed: i, payloadBytes: 50 + (i % 4) * 10 });
      bases.push((await log.append(batch, i < 20 ? 1 : 2)).baseOffset);
      batches.push(batch);
    }
    return { log, batches, bases };
  };
  const closeCleanly = async (manager: LogManager): Promise<void> => {
    await manager.close();
    managers.splice(managers.indexOf(manager), 1);
  };
  /** What kill -9 leaves: no clean-shutdown marker; the checkpoint as it was on disk then. */
  const crash = async (manager: LogManager, checkpoint: string): Promise<void> => {
    await closeCleanly(manager);
    fs.rmSync(path.join(logsDir(), ".clean-shutdown"));
    fs.writeFileSync(checkpointFile(), checkpoint);
  };

  for (const shutdown of ["clean", "crash"] as const) {
    it(`truncateTo a batch inside a segment drops the rest; reopened after a ${shutdown} shutdown it holds the same and appends continue`, async () => {
      const manager = await openManager();
      const { log, batches, bases } = await fill(manager);
      const segmentsBefore = segmentBases();
      const cut = bases.findIndex((base, i) => i >= 12 && !segmentsBefore.includes(base)); // a batch boundary inside a segment
      const cutSegment = segmentsBefore.filter((base) => base <= bases[cut]!).at(-1)!;
      assert.notEqual(cutSegment, bases[cut], "the cut is inside a segment");
      log.setReplicated(true);
      log.setHighWatermark(log.logEndOffset);
      const truncated: number[] = [];
      log.on("truncated", (offset: number) => truncated.push(offset));

      await log.truncateTo(bases[cut]!);
      assert.deepEqual(truncated, [bases[cut]]);
      assert.equal(log.logEndOffset, bases[cut]);
      assert.equal(log.highWatermark, bases[cut]);
      assert.ok(log.flushedOffset <= bases[cut]!);
      assert.deepEqual(readAll(log, 0), Buffer.concat(batches.slice(0, cut)));
      assert.deepEqual(segmentBases(), segmentsBefore.filter((base) => base <= cutSegment));
      assert.deepEqual(log.leaderEpochs.entries(), [{ epoch: 1, startOffset: 0 }], "epoch 2 started after the cut");
      const checkpoint = fs.readFileSync(checkpointFile(), "utf8");
      assert.ok(Number(checkpoint.trim().split(" ")[2]) <= bases[cut]!, `checkpoint rewritten at once: ${checkpoint}`);

      const next = makeBatch({ records: 2, seed: 99 });
      assert.equal((await log.append(next, 3)).baseOffset, bases[cut]);
      assert.deepEqual(log.leaderEpochs.entries(), [{ epoch: 1, startOffset: 0 }, { epoch: 3, startOffset: bases[cut]! }]);
      const expected = Buffer.concat([...batches.slice(0, cut), next]);
      const end = log.logEndOffset;

      if (shutdown === "clean") await closeCleanly(manager);
      else await crash(manager, checkpoint);
      const reopened = (await openManager()).get("orders", 0)!;
      assert.equal(reopened.logEndOffset, end);
      assert.deepEqual(readAll(reopened, 0), expected);
      assert.deepEqual(reopened.leaderEpochs.entries(), [{ epoch: 1, startOffset: 0 }, { epoch: 3, startOffset: bases[cut]! }]);
      assert.equal((await reopened.append(makeBatch(), 3)).baseOffset, end);
      assert.deepEqual(captured.lines.filter((line) => /dropped/.test(line.msg)), [], "recovery found nothing to drop");
      if (shutdown === "clean") assert.deepEqual(captured.lines.filter((line) => /rebuil/.test(line.msg)), [], "indexes and epoch file were cut consistently");
    });
  }

  it("truncateTo the start of a later segment deletes that segment whole; to the log start empties the log", async () => {
    const manager = await openManager();
    const { log, batches, bases } = await fill(manager);
    const segments = segmentBases();
    const third = segments[2]!;
    await log.truncateTo(third);
    assert.deepEqual(segmentBases(), segments.slice(0, 2));
    assert.equal(log.logEndOffset, third);
    assert.deepEqual(readAll(log, 0), Buffer.concat(batches.slice(0, bases.indexOf(third))));
    await log.truncateTo(0);
    assert.deepEqual(segmentBases(), [0]);
    assert.equal(log.logEndOffset, 0);
    assert.equal(log.read(0, 1 << 20).records.length, 0);
    assert.deepEqual(log.leaderEpochs.entries(), []);
    assert.equal((await log.append(makeBatch(), 4)).baseOffset, 0);
    await closeCleanly(manager);
    const reopened = (await openManager()).get("orders", 0)!;
    assert.equal(reopened.logEndOffset, 1);
    assert.deepEqual(reopened.leaderEpochs.entries(), [{ epoch: 4, startOffset: 0 }]);
  });

  it("truncateTo refuses an offset inside a batch, outside the log, or while closing; truncating at the log end changes nothing", async () => {
    const manager = await openManager();
    const { log, bases } = await fill(manager, 10);
    const inside = bases.findIndex((base, i) => bases[i + 1] !== undefined && bases[i + 1]! - base > 1);
    await assert.rejects(log.truncateTo(bases[inside]! + 1), (e: unknown) => e instanceof InvalidArgumentError && /inside a batch/.test((e as Error).message));
    await assert.rejects(log.truncateTo(log.logEndOffset + 1), (e: unknown) => e instanceof InvalidArgumentError && /within the log/.test((e as Error).message));
    await assert.rejects(log.truncateTo(-1), InvalidArgumentError);
    const end = log.logEndOffset;
    await log.truncateTo(end);
    assert.equal(log.logEndOffset, end);
    const closing = log.close();
    await assert.rejects(log.truncateTo(bases[2]!), ClosedError);
    await closing;
  });

  it("truncateTo waits for appends in flight, then cuts them too", async () => {
    const manager = await openManager();
    const { log } = await fill(manager, 5);
    const end = log.logEndOffset;
    const inFlight = [log.append(makeBatch({ seed: 1 })), log.append(makeBatch({ seed: 2 }))];
    const truncation = log.truncateTo(end);
    const results = await Promise.all(inFlight);
    await truncation;
    assert.deepEqual(results.map((r) => r.baseOffset), [end, end + 1]);
    assert.equal(log.logEndOffset, end, "the truncation ran after the queued writes, and cut them");
    assert.equal((await log.append(makeBatch())).baseOffset, end);
  });

  for (const shutdown of ["clean", "crash"] as const) {
    it(`resetTo deletes every segment and starts empty at the offset; reopened after a ${shutdown} shutdown it starts there`, async () => {
      const manager = await openManager();
      const { log } = await fill(manager);
      log.setReplicated(true);
      const resetAt = log.logEndOffset + 1000;
      await log.resetTo(resetAt);
      assert.deepEqual(segmentBases(), [resetAt]);
      assert.equal(log.logStartOffset, resetAt);
      assert.equal(log.logEndOffset, resetAt);
      assert.equal(log.highWatermark, resetAt);
      assert.deepEqual(log.leaderEpochs.entries(), []);
      const checkpoint = fs.readFileSync(checkpointFile(), "utf8");
      const batch = makeBatch({ records: 3 });
      assert.equal((await log.append(batch, 7)).baseOffset, resetAt);

      if (shutdown === "clean") await closeCleanly(manager);
      else await crash(manager, checkpoint);
      const reopened = (await openManager()).get("orders", 0)!;
      assert.equal(reopened.logStartOffset, resetAt);
      assert.equal(reopened.logEndOffset, resetAt + 3);
      assert.deepEqual(readAll(reopened, resetAt), batch);
      assert.deepEqual(reopened.leaderEpochs.entries(), [{ epoch: 7, startOffset: resetAt }]);
      assert.equal((await reopened.append(makeBatch(), 7)).baseOffset, resetAt + 3);
    });
  }

  it("resetTo below the old log end also works (same base offset as an old segment)", async () => {
    const manager = await openManager();
    const { log } = await fill(manager, 10);
    await log.resetTo(0);
    assert.deepEqual(segmentBases(), [0]);
    assert.equal(log.logEndOffset, 0);
    assert.equal((await log.append(makeBatch())).baseOffset, 0);
  });

  it("a crash between cutting the log file and its indexes opens cleanly (indexes rebuilt), clean marker or not", async () => {
    for (const withMarker of [true, false]) {
      const manager = await openManager();
      const { log, batches, bases } = await fill(manager);
      const last = segmentBases().at(-1)!;
      const keep = bases.findIndex((base) => base > last) + 1; // cut after the second batch of the last segment
      const lastFileBytes = batches.slice(bases.indexOf(last), keep).reduce((n, b) => n + b.length, 0);
      const checkpoint = `orders 0 ${log.logEndOffset}\n`;
      await closeCleanly(manager);
      fs.truncateSync(path.join(partitionDir(), `${String(last).padStart(20, "0")}.log`), lastFileBytes);
      if (!withMarker) {
        fs.rmSync(path.join(logsDir(), ".clean-shutdown"));
        fs.writeFileSync(checkpointFile(), checkpoint);
      }
      const reopened = (await openManager()).get("orders", 0)!;
      assert.equal(reopened.logEndOffset, bases[keep], `marker ${withMarker}`);
      assert.deepEqual(readAll(reopened, 0), Buffer.concat(batches.slice(0, keep)));
      assert.deepEqual(reopened.leaderEpochs.entries(), [{ epoch: 1, startOffset: 0 }, { epoch: 2, startOffset: bases[20]! }].filter((e) => e.startOffset < bases[keep]!));
      for (const m of managers.splice(0)) await m.close();
      fs.rmSync(logsDir(), { recursive: true, force: true });
    }
  });
});
