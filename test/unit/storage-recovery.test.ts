import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { baseOffsetOf, batchSizeAt } from "../../common/src/batch/layout.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";
import { LogManager } from "../../broker/src/storage/log-manager.js";
import { capturingLogger, makeBatch, readAll, tempDir, testConfig } from "./storage-fixtures.js";

const HOUR_MS = 3_600_000;
const T0 = 1_700_000_000_000;

describe("commit log recovery", () => {
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
  const segmentFile = (base: number, kind: string): string => path.join(partitionDir(), `${String(base).padStart(20, "0")}.${kind}`);
  const openManager = async (config: Partial<PartitionConfig> = {}, clock?: FakeClock): Promise<LogManager> => {
    const manager = await LogManager.open({
      dataDir,
      configFor: () => testConfig(config),
      flushIntervalMs: HOUR_MS,
      retentionCheckIntervalMs: HOUR_MS,
      logger: captured.logger,
      ...(clock ? { clock } : {}),
    });
    managers.push(manager);
    return manager;
  };
  /** Appends `count` batches one by one; returns them (stamped) and their base offsets. */
  const fill = async (manager: LogManager, count: number, config: Partial<PartitionConfig> = {}): Promise<{ batches: Buffer[]; bases: number[] }> => {
    const log = await manager.create("orders", 0, testConfig(config));
    const batches: Buffer[] = [];
    const bases: number[] = [];
    for (let i = 0; i < count; i++) {
      const batch = makeBatch({ records: 1 + (i % 3), seed: i, payloadBytes: 50 + (i % 4) * 10 });
      bases.push((await log.append(batch)).baseOffset);
      batches.push(batch);
    }
    return { batches, bases };
  };
  /** What a kill -9 leaves: no clean-shutdown marker, and a checkpoint from some time ago. */
  const crashAfterClose = async (manager: LogManager, recoveryPoint: number): Promise<void> => {
    await manager.close();
    managers.splice(managers.indexOf(manager), 1);
    fs.rmSync(path.join(logsDir(), ".clean-shutdown"));
    fs.writeFileSync(path.join(logsDir(), "recovery-point-checkpoint"), `orders 0 ${recoveryPoint}\n`);
  };
  const segmentBases = (): number[] =>
    fs.readdirSync(partitionDir()).filter((name) => name.endsWith(".log")).map((name) => Number(name.slice(0, 20))).sort((a, b) => a - b);
  const droppedWarnings = () => captured.lines.filter((line) => /recovery dropped/.test(line.msg));
  const snapshotFiles = (): Map<string, Buffer> =>
    new Map(fs.readdirSync(partitionDir()).map((name) => [name, fs.readFileSync(path.join(partitionDir(), name))]));

  it("a clean reopen keeps every batch and rebuilds nothing", async () => {
    const config = { segmentBytes: 600, indexIntervalBytes: 100 };
    const first = await openManager(config);
    const { batches } = await fill(first, 40, config);
    await first.close();
    managers.length = 0;
    assert.ok(fs.existsSync(path.join(logsDir(), ".clean-shutdown")));
    const before = snapshotFiles();
    const checkpoint = fs.readFileSync(path.join(logsDir(), "recovery-point-checkpoint"), "utf8");
    assert.match(checkpoint, /^orders 0 \d+\n$/);

    const manager = await openManager(config);
    assert.equal(manager.recoveredUnclean, false);
    assert.ok(!fs.existsSync(path.join(logsDir(), ".clean-shutdown")), "the marker is removed while running");
    const log = manager.get("orders", 0)!;
    assert.equal(log.logEndOffset, Number(checkpoint.split(" ")[2]));
    assert.deepEqual(readAll(log, 0), Buffer.concat(batches));
    assert.deepEqual(snapshotFiles(), before);
    assert.deepEqual(captured.lines, []);
  });

  it("a torn tail (log cut mid-batch) is truncated to the last whole batch", async () => {
    const first = await openManager({ segmentBytes: 1000 });
    const { batches, bases } = await fill(first, 30, { segmentBytes: 1000 });
    const lastBase = segmentBases().at(-1)!;
    await crashAfterClose(first, bases[5]!);
    const lastLog = segmentFile(lastBase, "log");
    const tornAt = fs.statSync(lastLog).size - 20;
    fs.truncateSync(lastLog, tornAt);

    const manager = await openManager({ segmentBytes: 1000 });
    assert.equal(manager.recoveredUnclean, true);
    const log = manager.get("orders", 0)!;
    assert.equal(log.logEndOffset, bases[29]);
    assert.deepEqual(readAll(log, 0), Buffer.concat(batches.slice(0, 29)));
    const [warning] = droppedWarnings();
    assert.ok(warning, JSON.stringify(captured.lines));
    assert.equal(warning.droppedFromOffset, bases[29]);
    assert.equal(warning.droppedBytes, batches[29]!.length - 20);
    assert.equal((await log.append(makeBatch())).baseOffset, bases[29], "the next append takes the dropped offset");
    assert.equal(log.flushedOffset, bases[29]);
  });

  it("a bit flip in the last batch drops that batch only", async () => {
    const first = await openManager();
    const { batches, bases } = await fill(first, 10);
    await crashAfterClose(first, 0);
    const file = segmentFile(0, "log");
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 3]! ^= 0x10;
    fs.writeFileSync(file, bytes);

    const log = (await openManager()).get("orders", 0)!;
    assert.equal(log.logEndOffset, bases[9]);
    assert.deepEqual(readAll(log, 0), Buffer.concat(batches.slice(0, 9)));
    const [warning] = droppedWarnings();
    // Batch 9 holds one record; its header is intact, so the warning can name its offsets.
    assert.match(warning!.msg, new RegExp(`^recovery dropped offsets ${bases[9]}\\.\\.${bases[9]} \\(${batches[9]!.length} bytes\\)`));
    assert.match(String(warning!.reason), /CRC32C mismatch/);
  });

  it("a bit flip in a middle batch drops everything from there, later segments included", async () => {
    const config = { segmentBytes: 500 };
    const first = await openManager(config);
    const { batches, bases } = await fill(first, 30, config);
    const endBefore = first.get("orders", 0)!.logEndOffset;
    const segmentsBefore = segmentBases();
    assert.ok(segmentsBefore.length >= 5);
    await crashAfterClose(first, 0);
    // Corrupt the second batch of the second segment.
    const victimSegment = segmentsBefore[1]!;
    const file = segmentFile(victimSegment, "log");
    const bytes = fs.readFileSync(file);
    const secondBatchAt = batchSizeAt(bytes, 0);
    const victimBase = baseOffsetOf(bytes, secondBatchAt);
    bytes[secondBatchAt + 70]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    const victim = bases.indexOf(victimBase);

    const manager = await openManager(config);
    const log = manager.get("orders", 0)!;
    assert.equal(log.logEndOffset, victimBase);
    assert.deepEqual(readAll(log, 0), Buffer.concat(batches.slice(0, victim)));
    assert.deepEqual(segmentBases(), segmentsBefore.slice(0, 2), "later segments are deleted");
    assert.equal(log.segmentCount, 2);
    const [warning] = droppedWarnings();
    assert.equal(warning!.droppedFromOffset, victimBase);
    assert.equal(warning!.droppedToOffset, endBefore - 1);
    const droppedBytes = batches.slice(victim).reduce((sum, batch) => sum + batch.length, 0);
    assert.equal(warning!.droppedBytes, droppedBytes);
    assert.equal((warning!.droppedSegments as unknown[]).length, segmentsBefore.length - 2);
    // The rebuilt indexes serve every remaining offset.
    for (let i = 0; i < victim; i++) assert.equal(baseOffsetOf(log.read(bases[i]!, 1).records), bases[i]);
  });

  it("validation starts at the segment holding the recovery point", async () => {
    const config = { segmentBytes: 500 };
    const first = await openManager(config);
    const { bases } = await fill(first, 30, config);
    const segments = segmentBases();
    await crashAfterClose(first, segments.at(-1)! + 1);
    // Damage below the recovery point is not looked for (that is what the checkpoint buys).
    const file = segmentFile(0, "log");
    const bytes = fs.readFileSync(file);
    bytes[80]! ^= 0xff;
    fs.writeFileSync(file, bytes);
    const log = (await openManager(config)).get("orders", 0)!;
    assert.equal(log.logEndOffset, bases[29]! + 1 + (29 % 3));
    assert.deepEqual(droppedWarnings(), []);
  });

  it("missing and garbage index files are rebuilt, on a clean start too", async () => {
    const config = { segmentBytes: 800, indexIntervalBytes: 150 };
    const clock = new FakeClock(T0);
    const first = await openManager(config, clock);
    const log0 = await first.create("orders", 0, testConfig(config));
    const batches: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      clock.advance(7);
      const batch = makeBatch({ records: 2, seed: i, payloadBytes: 40 });
      await log0.append(batch);
      batches.push(batch);
    }
    await first.close();
    managers.length = 0;
    const segments = segmentBases();
    assert.ok(segments.length >= 5);
    const originalIndexes = segments.map((base) => fs.readFileSync(segmentFile(base, "index")));
    const originalTimes = segments.map((base) => fs.readFileSync(segmentFile(base, "timeindex")));
    fs.rmSync(segmentFile(segments[0]!, "index"));
    fs.writeFileSync(segmentFile(segments[1]!, "index"), Buffer.from("not an index at all"));
    fs.writeFileSync(segmentFile(segments[2]!, "timeindex"), Buffer.alloc(0));
    // Well-formed entries that point at the wrong place: caught by the last-entry check.
    const lying = Buffer.alloc(8);
    lying.writeInt32BE(1, 0);
    lying.writeInt32BE(0, 4);
    fs.writeFileSync(segmentFile(segments.at(-1)!, "index"), lying);
    fs.rmSync(segmentFile(segments.at(-1)!, "timeindex"));
    // A sorted time index naming an offset past its segment's end (left from a longer past).
    const stale = Buffer.alloc(24);
    stale.writeBigInt64BE(BigInt(T0), 0);
    stale.writeInt32BE(0, 8);
    stale.writeBigInt64BE(BigInt(T0 + 1), 12);
    stale.writeInt32BE(9999, 20);
    fs.writeFileSync(segmentFile(segments[3]!, "timeindex"), stale);

    const manager = await openManager(config, clock);
    assert.equal(manager.recoveredUnclean, false);
    const log = manager.get("orders", 0)!;
    assert.deepEqual(readAll(log, 0, 1), Buffer.concat(batches));
    for (let offset = 0; offset < 80; offset++) assert.equal(baseOffsetOf(log.read(offset, 1).records), offset - (offset % 2));
    for (const [i, base] of segments.entries()) {
      assert.deepEqual(fs.readFileSync(segmentFile(base, "index")), originalIndexes[i], `offset index of segment ${base} rebuilt exactly`);
    }
    assert.deepEqual(fs.readFileSync(segmentFile(segments[0]!, "timeindex")), originalTimes[0], "an intact time index is kept");
    // Rebuilt time indexes come from batch maxTimestamps (all T0 here), kept monotonic: lookups
    // stay sorted and land on the segment's first batch.
    assert.deepEqual(log.offsetForTimestamp(T0 + 7), { offset: 0, timestampMs: T0 + 7 });
    assert.equal(captured.lines.filter((line) => /rebuilding/.test(line.msg)).length, 6);
    assert.deepEqual(droppedWarnings(), []);
  });

  it("after a crash, time entries past the recovery point come from maxTimestamp, kept monotonic", async () => {
    const clock = new FakeClock(T0);
    const first = await openManager({}, clock);
    const log0 = await first.create("orders", 0, testConfig());
    const clientTimes = [T0 - 50, T0 + 50, T0 + 150, T0 + 250, T0 + 100, T0 + 450];
    for (const [i, timestampMs] of clientTimes.entries()) {
      clock.set(T0 + 100 * i);
      await log0.append(makeBatch({ timestampMs, seed: i }));
    }
    await crashAfterClose(first, 3);

    const log = (await openManager({}, clock)).get("orders", 0)!;
    // Below the recovery point: the real append times, kept from the flushed index.
    assert.deepEqual(log.offsetForTimestamp(T0 + 1), { offset: 1, timestampMs: T0 + 100 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 200), { offset: 2, timestampMs: T0 + 200 });
    // Past it: max(maxTimestamp, previous), so the stale T0+100 of batch 4 gets no entry.
    assert.deepEqual(log.offsetForTimestamp(T0 + 201), { offset: 3, timestampMs: T0 + 250 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 251), { offset: 5, timestampMs: T0 + 450 });
  });

  it("a process killed without close loses nothing it wrote, under any flush policy", async () => {
    for (const flush of ["os", "interval", "sync"] as const) {
      const { dir, cleanup: cleanupThis } = tempDir();
      const open = () => LogManager.open({ dataDir: dir, configFor: () => testConfig({ flush }), flushIntervalMs: HOUR_MS, retentionCheckIntervalMs: HOUR_MS });
      const killed = await open();
      const log = await killed.create("orders", 0, testConfig({ flush, segmentBytes: 400 }));
      const batches = Array.from({ length: 12 }, (_, seed) => makeBatch({ seed, records: 2 }));
      await Promise.all(batches.map((batch) => log.append(batch)));
      // No close: the page cache holds the bytes, the marker was removed at open.
      const recovered = await open();
      assert.equal(recovered.recoveredUnclean, true, flush);
      assert.deepEqual(readAll(recovered.get("orders", 0)!, 0), Buffer.concat(batches), flush);
      await recovered.close();
      cleanupThis();
    }
  });
  it("after a crash, segments whose append times were rebuilt from old client timestamps are not expired early", async () => {
    // Real clock: the files' modification times are now; the batches claim a 2023 timestamp.
    const config = { segmentBytes: 300, retentionMs: 24 * HOUR_MS };
    const first = await openManager(config);
    await fill(first, 12, config);
    assert.ok((first.get("orders", 0)?.segmentCount ?? 0) > 2);
    await crashAfterClose(first, 0);
    for (const name of fs.readdirSync(partitionDir())) {
      if (name.endsWith(".timeindex")) fs.rmSync(path.join(partitionDir(), name));
    }
    const second = await openManager(config);
    const log = second.get("orders", 0)!;
    const before = log.segmentCount;
    assert.equal(log.applyRetention(Date.now()), 0, "data appended minutes ago is not a day old, whatever its timestamps say");
    assert.equal(log.segmentCount, before);
    assert.equal(log.applyRetention(Date.now() + 2 * 24 * HOUR_MS), before - 1, "it still expires once really old");
  });
});
