import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { InternalError, StorageFullError } from "../../common/src/errors.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";
import { divergencePoint, type EpochHistory } from "../../broker/src/storage/divergence.js";
import { LEADER_EPOCHS_FILE, LeaderEpochCache, type EpochEntry } from "../../broker/src/storage/leader-epochs.js";
import { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { FailingIo, capturingLogger, makeBatch, tempDir, testConfig } from "./storage-fixtures.js";

const e = (epoch: number, startOffset: number): EpochEntry => ({ epoch, startOffset });

describe("leader-epoch cache", () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  it("assigns newer epochs only, persists them, and loads them back", () => {
    const { cache, problem } = LeaderEpochCache.load(dir);
    assert.equal(problem, "missing");
    assert.equal(cache.latestEpoch, -1);
    assert.equal(cache.assign(-1, 0), true, "epoch -1 is a real epoch on an empty history");
    assert.equal(cache.assign(-1, 5), false);
    assert.equal(cache.assign(3, 10), true);
    assert.equal(cache.assign(2, 20), false, "older epoch ignored");
    assert.equal(cache.assign(3, 20), false, "same epoch ignored");
    assert.equal(cache.assign(5, 30), true);
    assert.equal(cache.latestEpoch, 5);
    assert.deepEqual(cache.entries(), [e(-1, 0), e(3, 10), e(5, 30)]);
    assert.deepEqual(fs.readdirSync(dir), [LEADER_EPOCHS_FILE], "no temp file left behind");
    const reloaded = LeaderEpochCache.load(dir);
    assert.equal(reloaded.problem, null);
    assert.deepEqual(reloaded.cache.entries(), [e(-1, 0), e(3, 10), e(5, 30)]);
  });

  it("an epoch starting where the last one started replaces it (that epoch never got data); an earlier start is a bug", () => {
    const { cache } = LeaderEpochCache.load(dir);
    cache.assign(1, 0);
    cache.assign(2, 100);
    cache.assign(4, 100);
    assert.deepEqual(cache.entries(), [e(1, 0), e(4, 100)]);
    assert.throws(() => cache.assign(5, 99), InternalError);
    assert.deepEqual(cache.entries(), [e(1, 0), e(4, 100)]);
  });

  it("endOffsetFor follows Kafka: next epoch's start, the log end for the latest, -1 when unknown", () => {
    const { cache } = LeaderEpochCache.load(dir);
    assert.equal(cache.endOffsetFor(1, 50), -1, "empty history");
    cache.assign(1, 0);
    cache.assign(3, 100);
    cache.assign(4, 180);
    assert.equal(cache.endOffsetFor(1, 250), 100);
    assert.equal(cache.endOffsetFor(2, 250), 100, "an epoch between entries ends where the next one starts");
    assert.equal(cache.endOffsetFor(3, 250), 180);
    assert.equal(cache.endOffsetFor(4, 250), 250);
    assert.equal(cache.endOffsetFor(0, 250), -1);
    assert.equal(cache.endOffsetFor(9, 250), -1);
  });

  it("truncateFrom drops entries at and after an offset; truncateBefore moves the oldest start up; clear empties", () => {
    const { cache } = LeaderEpochCache.load(dir);
    cache.assign(1, 0);
    cache.assign(2, 100);
    cache.assign(3, 200);
    cache.truncateFrom(200);
    assert.deepEqual(cache.entries(), [e(1, 0), e(2, 100)]);
    cache.truncateBefore(150);
    assert.deepEqual(cache.entries(), [e(2, 150)]);
    assert.deepEqual(LeaderEpochCache.load(dir).cache.entries(), [e(2, 150)]);
    cache.clear();
    assert.deepEqual(LeaderEpochCache.load(dir).cache.entries(), []);
    assert.equal(LeaderEpochCache.load(dir).problem, null);
  });

  it("a damaged file is reported, not trusted", () => {
    for (const text of ["garbage\n", "sluice-leader-epochs 1\n3 10\n2 20\n", "sluice-leader-epochs 1\n3 10", "sluice-leader-epochs 1\nthree 10\n"]) {
      fs.writeFileSync(path.join(dir, LEADER_EPOCHS_FILE), text);
      const { cache, problem } = LeaderEpochCache.load(dir);
      assert.match(String(problem), /^unreadable/, text);
      assert.deepEqual(cache.entries(), []);
    }
  });
});

describe("partition log: leader epochs", () => {
  let dir: string;
  let cleanup: () => void;
  let captured: ReturnType<typeof capturingLogger>;
  let log: PartitionLog | undefined;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    captured = capturingLogger();
  });
  afterEach(async () => {
    await log?.close();
    log = undefined;
    cleanup();
  });
  const partitionDir = (): string => path.join(dir, "orders-0");
  const epochFile = (): string => path.join(partitionDir(), LEADER_EPOCHS_FILE);
  const open = async (config: Partial<PartitionConfig> = {}, io?: FailingIo): Promise<PartitionLog> =>
    (log = await PartitionLog.open({
      dir: partitionDir(), topic: "orders", partition: 0, config: testConfig(config), recover: false, logger: captured.logger, ...(io ? { io } : {}),
    }));
  const reopen = async (config: Partial<PartitionConfig> = {}): Promise<PartitionLog> => {
    await log!.close();
    return open(config);
  };

  it("follows the epochs of appended batches and assignEpoch, and survives a reopen", async () => {
    let current = await open();
    assert.ok(!fs.existsSync(epochFile()), "a new empty partition writes no file");
    await current.append(makeBatch()); // epoch -1 (not replicated)
    await current.append(makeBatch({ records: 3 }), 2);
    await current.append(makeBatch(), 2);
    current.assignEpoch(5); // became master at the log end
    assert.deepEqual(current.leaderEpochs.entries(), [e(-1, 0), e(2, 1), e(5, 5)]);
    await current.append(makeBatch(), 5);
    assert.equal(current.leaderEpochs.latestEpoch, 5);
    current = await reopen();
    assert.deepEqual(current.leaderEpochs.entries(), [e(-1, 0), e(2, 1), e(5, 5)]);
  });

  it("rebuilds a missing or damaged file from batch headers", async () => {
    let current = await open({ segmentBytes: 300 });
    for (const [i, epoch] of [1, 1, 3, 3, 3, 4, 4].entries()) await current.append(makeBatch({ seed: i, payloadBytes: 60 }), epoch);
    assert.ok(current.segmentCount > 2);
    const expected = [e(1, 0), e(3, 2), e(4, 5)];
    assert.deepEqual(current.leaderEpochs.entries(), expected);
    await current.close();
    fs.rmSync(epochFile());
    current = await open({ segmentBytes: 300 });
    assert.deepEqual(current.leaderEpochs.entries(), expected);
    assert.ok(fs.existsSync(epochFile()), "the rebuilt history is written");
    fs.writeFileSync(epochFile(), "not an epoch file");
    current = await reopen({ segmentBytes: 300 });
    assert.deepEqual(current.leaderEpochs.entries(), expected);
    assert.equal(captured.lines.filter((line) => /rebuilt the leader-epoch history/.test(line.msg)).length, 2);
  });

  it("drops entries at or past the log end on open (a crash after the entry, before its data)", async () => {
    let current = await open();
    await current.append(makeBatch({ records: 2 }), 1);
    await current.close();
    fs.writeFileSync(epochFile(), "sluice-leader-epochs 1\n1 0\n2 2\n");
    current = await open();
    assert.deepEqual(current.leaderEpochs.entries(), [e(1, 0)]);
    assert.equal(fs.readFileSync(epochFile(), "utf8"), "sluice-leader-epochs 1\n1 0\n");
  });

  it("an append that fails takes its new epoch entry back", async () => {
    const io = new FailingIo();
    const current = await open({}, io);
    await current.append(makeBatch(), 1);
    io.failNextWrite(10);
    await assert.rejects(current.append(makeBatch(), 2), StorageFullError);
    assert.deepEqual(current.leaderEpochs.entries(), [e(1, 0)]);
    await current.append(makeBatch(), 3);
    assert.deepEqual(current.leaderEpochs.entries(), [e(1, 0), e(3, 1)]);
  });

  it("retention moves the oldest epoch's start up to the new log start", async () => {
    const current = await open({ segmentBytes: 300, retentionBytes: 1 });
    for (const [i, epoch] of [1, 1, 1, 2, 2, 2, 2].entries()) await current.append(makeBatch({ seed: i, payloadBytes: 60 }), epoch);
    current.applyRetention(Date.now());
    assert.ok(current.logStartOffset > 0);
    const entries = current.leaderEpochs.entries();
    assert.equal(entries[0]!.startOffset, current.logStartOffset);
    assert.equal(entries.at(-1)!.epoch, 2);
  });
});

describe("divergencePoint", () => {
  const h = (entries: EpochEntry[], logEndOffset: number): EpochHistory => ({ entries, logEndOffset });
  const cases: { name: string; master: EpochHistory; slave: EpochHistory; expected: number }[] = [
    { name: "identical logs", master: h([e(1, 0), e(2, 50)], 80), slave: h([e(1, 0), e(2, 50)], 80), expected: 80 },
    { name: "slave behind in the latest epoch", master: h([e(1, 0), e(2, 50)], 80), slave: h([e(1, 0), e(2, 50)], 60), expected: 60 },
    { name: "slave behind by a whole epoch", master: h([e(1, 0), e(2, 50)], 80), slave: h([e(1, 0)], 40), expected: 40 },
    {
      name: "former master with an unreplicated tail in the old epoch",
      master: h([e(1, 0), e(2, 50)], 80),
      slave: h([e(1, 0)], 65),
      expected: 50,
    },
    {
      name: "former master with a whole divergent epoch",
      master: h([e(1, 0), e(3, 50)], 90),
      slave: h([e(1, 0), e(2, 55)], 70),
      expected: 50,
    },
    {
      name: "several epochs, the last common one in the middle",
      master: h([e(1, 0), e(2, 20), e(4, 40), e(6, 70)], 100),
      slave: h([e(1, 0), e(2, 20), e(4, 40), e(5, 60)], 65),
      expected: 60,
    },
    { name: "slave ahead in the same epoch", master: h([e(3, 0)], 30), slave: h([e(3, 0)], 45), expected: 30 },
    { name: "empty slave", master: h([e(1, 0)], 30), slave: h([], 0), expected: 0 },
    { name: "empty slave past the master's end", master: h([e(1, 0)], 30), slave: h([], 500), expected: 30 },
    { name: "no common epoch: truncate everything", master: h([e(4, 0)], 30), slave: h([e(2, 10)], 40), expected: 10 },
    {
      name: "pre-epoch data (-1) shared by both",
      master: h([e(-1, 0), e(1, 100)], 150),
      slave: h([e(-1, 0)], 70),
      expected: 70,
    },
    {
      name: "pre-epoch data, slave holds more of it than the master kept",
      master: h([e(-1, 0), e(1, 100)], 150),
      slave: h([e(-1, 0)], 120),
      expected: 100,
    },
    { name: "unrelated pre-epoch data on the slave", master: h([e(1, 0)], 50), slave: h([e(-1, 0)], 20), expected: 0 },
  ];
  for (const { name, master, slave, expected } of cases) {
    it(name, () => assert.equal(divergencePoint(master, slave), expected));
  }
});
