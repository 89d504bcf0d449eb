import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { ClosedError, InvalidTopicNameError } from "../../common/src/errors.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";
import { LogManager, type LogManagerOptions } from "../../broker/src/storage/log-manager.js";
import { eventually, makeBatch, tempDir, testConfig } from "./storage-fixtures.js";

const HOUR_MS = 3_600_000;

describe("log manager", () => {
  let dataDir: string;
  let cleanup: () => void;
  const managers: LogManager[] = [];
  beforeEach(() => ({ dir: dataDir, cleanup } = tempDir()));
  afterEach(async () => {
    for (const manager of managers.splice(0)) await manager.close();
    cleanup();
  });

  const open = async (options: Partial<LogManagerOptions> = {}, config: Partial<PartitionConfig> = {}): Promise<LogManager> => {
    const manager = await LogManager.open({
      dataDir,
      configFor: () => testConfig(config),
      flushIntervalMs: HOUR_MS,
      retentionCheckIntervalMs: HOUR_MS,
      ...options,
    });
    managers.push(manager);
    return manager;
  };
  const reopen = async (manager: LogManager, options: Partial<LogManagerOptions> = {}): Promise<LogManager> => {
    await manager.close();
    managers.splice(managers.indexOf(manager), 1);
    return open(options);
  };
  const checkpointLines = (): string[] =>
    fs.readFileSync(path.join(dataDir, "logs", "recovery-point-checkpoint"), "utf8").split("\n").filter(Boolean).sort();

  it("starts clean on an empty data directory", async () => {
    const manager = await open();
    assert.equal(manager.recoveredUnclean, false);
    assert.deepEqual(manager.all(), []);
    assert.ok(fs.statSync(path.join(dataDir, "logs")).isDirectory());
  });

  it("creates partitions idempotently, in <topic>-<partition> directories, even for topics with dashes", async () => {
    const manager = await open();
    const [a, b] = await Promise.all([manager.create("orders-eu-2", 3, testConfig()), manager.create("orders-eu-2", 3, testConfig())]);
    assert.equal(a, b);
    assert.equal(await manager.create("orders-eu-2", 3, testConfig()), a);
    assert.equal(manager.get("orders-eu-2", 3), a);
    assert.equal(manager.get("orders-eu-2", 0), undefined);
    assert.ok(fs.existsSync(path.join(dataDir, "logs", "orders-eu-2-3", "00000000000000000000.log")));
    await a.append(makeBatch({ records: 4 }));
    await manager.create("orders", 0, testConfig());

    const reopened = await reopen(manager);
    const found = reopened.all().map((log) => [log.topic, log.partition, log.logEndOffset]);
    assert.deepEqual(found.sort(), [["orders", 0, 0], ["orders-eu-2", 3, 4]]);
    assert.deepEqual(checkpointLines(), ["orders 0 0", "orders-eu-2 3 4"]);
    await assert.rejects(reopened.create("bad/name", 0, testConfig()), InvalidTopicNameError);
  });

  it("deleteTopic removes that topic's partitions only", async () => {
    const manager = await open();
    for (const partition of [0, 1, 2]) await manager.create("audit", partition, testConfig());
    await manager.create("audit-log", 0, testConfig());
    await (manager.get("audit", 1)!).append(makeBatch());
    await manager.deleteTopic("audit");
    assert.deepEqual(manager.all().map((log) => log.topic), ["audit-log"]);
    assert.deepEqual(fs.readdirSync(path.join(dataDir, "logs")).filter((name) => !name.includes("checkpoint")), ["audit-log-0"]);
    assert.deepEqual(checkpointLines(), ["audit-log 0 0"]);
    const reopened = await reopen(manager);
    assert.deepEqual(reopened.all().map((log) => log.topic), ["audit-log"]);
  });

  it("removes the remains of an interrupted delete at open", async () => {
    fs.mkdirSync(path.join(dataDir, "logs", "gone-0~deleting"), { recursive: true });
    fs.writeFileSync(path.join(dataDir, "logs", "gone-0~deleting", "00000000000000000000.log"), "x");
    const manager = await open();
    assert.deepEqual(manager.all(), []);
    assert.ok(!fs.existsSync(path.join(dataDir, "logs", "gone-0~deleting")));
  });

  it("interval: fsyncs every flushIntervalMs and records the recovery point; os: only at close", async () => {
    const manager = await open({ flushIntervalMs: 20 });
    const interval = await manager.create("fast", 0, testConfig({ flush: "interval" }));
    const sync = await manager.create("safe", 0, testConfig({ flush: "sync" }));
    const os = await manager.create("lazy", 0, testConfig({ flush: "os" }));
    for (const log of [interval, sync, os]) await Promise.all([1, 2, 3].map((seed) => log.append(makeBatch({ seed }))));
    await eventually(() => interval.flushedOffset === 3 && sync.flushedOffset === 3);
    await eventually(() => checkpointLines().includes("fast 0 3") && checkpointLines().includes("safe 0 3"));
    assert.equal(os.flushedOffset, 0);
    assert.ok(checkpointLines().includes("lazy 0 0"));
    await manager.close();
    managers.length = 0;
    assert.deepEqual(checkpointLines(), ["fast 0 3", "lazy 0 3", "safe 0 3"]);
    assert.ok(fs.existsSync(path.join(dataDir, "logs", ".clean-shutdown")));
    await assert.rejects(manager.create("late", 0, testConfig()), ClosedError);
  });

  it("runs retention every retentionCheckIntervalMs", async () => {
    const clock = new FakeClock(1_000_000);
    const config = { segmentBytes: 200, retentionMs: 60_000 };
    const manager = await open({ retentionCheckIntervalMs: 20, clock }, config);
    const log = await manager.create("metrics", 0, testConfig(config));
    for (let seed = 0; seed < 5; seed++) await log.append(makeBatch({ seed, payloadBytes: 100 }));
    assert.equal(log.segmentCount, 5);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(log.segmentCount, 5, "nothing is old yet");
    clock.advance(60_001);
    await eventually(() => log.segmentCount === 1);
    assert.equal(log.logStartOffset, 4);
  });
});
