import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { OffsetOutOfRangeError } from "../../common/src/errors.js";
import type { PartitionConfig } from "../../broker/src/storage/config.js";
import { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { makeBatch, readAll, tempDir, testConfig } from "./storage-fixtures.js";

const T0 = 1_700_000_000_000;

describe("partition log: time index and retention", () => {
  let dir: string;
  let cleanup: () => void;
  let clock: FakeClock;
  const opened: PartitionLog[] = [];
  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    clock = new FakeClock(T0);
  });
  afterEach(async () => {
    for (const log of opened.splice(0)) await log.close();
    cleanup();
  });

  const open = async (config: Partial<PartitionConfig> = {}): Promise<PartitionLog> => {
    const log = await PartitionLog.open({ dir: path.join(dir, "events-0"), topic: "events", partition: 0, config: testConfig(config), clock, recover: false });
    opened.push(log);
    return log;
  };

  it("finds the first offset appended at or after a time, exactly to the millisecond", async () => {
    const log = await open({ segmentBytes: 300 });
    // t0: offsets 0..1 and 2..4 (same millisecond), t0+10: 5, t0+11: 6..7, then later segments.
    await log.append(makeBatch({ records: 2 }));
    await log.append(makeBatch({ records: 3 }));
    clock.advance(10);
    await log.append(makeBatch({ records: 1 }));
    clock.advance(1);
    const atEleven = await log.append(makeBatch({ records: 2 }));
    assert.equal(atEleven.logAppendTimeMs, T0 + 11);
    for (let i = 0; i < 10; i++) {
      clock.advance(100);
      await log.append(makeBatch({ records: 1, seed: i, payloadBytes: 80 }));
    }
    assert.ok(log.segmentCount > 2);
    assert.deepEqual(log.offsetForTimestamp(0), { offset: 0, timestampMs: T0 });
    assert.deepEqual(log.offsetForTimestamp(T0), { offset: 0, timestampMs: T0 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 1), { offset: 5, timestampMs: T0 + 10 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 10), { offset: 5, timestampMs: T0 + 10 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 11), { offset: 6, timestampMs: T0 + 11 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 12), { offset: 8, timestampMs: T0 + 111 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 511), { offset: 12, timestampMs: T0 + 511 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 1011), { offset: 17, timestampMs: T0 + 1011 });
    assert.equal(log.offsetForTimestamp(T0 + 1012), null);
  });

  it("keeps append times monotonic when the clock steps back", async () => {
    const log = await open();
    clock.set(T0 + 500);
    const first = await log.append(makeBatch());
    clock.set(T0);
    const second = await log.append(makeBatch());
    assert.equal(second.logAppendTimeMs, first.logAppendTimeMs);
    clock.set(T0 + 501);
    await log.append(makeBatch());
    assert.deepEqual(log.offsetForTimestamp(T0 + 100), { offset: 0, timestampMs: T0 + 500 });
    assert.deepEqual(log.offsetForTimestamp(T0 + 501), { offset: 2, timestampMs: T0 + 501 });
  });

  it("keeps the time index across a clean reopen", async () => {
    let log = await open();
    await log.append(makeBatch({ records: 2 }));
    clock.advance(50);
    await log.append(makeBatch());
    await log.close();
    log = await open();
    assert.deepEqual(log.offsetForTimestamp(T0 + 1), { offset: 2, timestampMs: T0 + 50 });
    clock.set(T0); // earlier than the last append: the log must not go back in time
    assert.equal((await log.append(makeBatch())).logAppendTimeMs, T0 + 50);
  });

  it("deletes the oldest segments while the partition stays at or above retentionBytes, never the active one", async () => {
    const log = await open({ segmentBytes: 500, retentionBytes: 1200, retentionMs: 0 });
    const batches = Array.from({ length: 30 }, (_, seed) => makeBatch({ seed, payloadBytes: 139 })); // 200 bytes each
    for (const batch of batches) await log.append(batch);
    // 2 batches (400 bytes) per segment: 15 segments, 6000 bytes.
    assert.equal(log.segmentCount, 15);
    assert.equal(log.sizeBytes, 6000);
    assert.equal(log.applyRetention(clock.now()), 12);
    assert.equal(log.segmentCount, 3);
    assert.equal(log.sizeBytes, 1200);
    assert.equal(log.logStartOffset, 24);
    assert.throws(() => log.read(23, 1000), OffsetOutOfRangeError);
    assert.deepEqual(readAll(log, 24), Buffer.concat(batches.slice(24)));
    assert.equal(fs.readdirSync(path.join(dir, "events-0")).filter((name) => name.endsWith(".log")).length, 3);
    assert.equal(log.applyRetention(clock.now()), 0);

    log.updateConfig(testConfig({ segmentBytes: 500, retentionBytes: 1, retentionMs: 0 }));
    assert.equal(log.applyRetention(clock.now()), 2);
    assert.equal(log.segmentCount, 1, "the active segment stays");
    assert.equal(log.logStartOffset, 28);
    assert.equal((await log.append(makeBatch())).baseOffset, 30);
  });

  it("deletes segments whose newest append is older than retentionMs", async () => {
    const log = await open({ segmentBytes: 500, retentionMs: 60_000 });
    for (let i = 0; i < 12; i++) {
      await log.append(makeBatch({ seed: i, payloadBytes: 139 }));
      clock.advance(10_000); // segment k holds appends at 20k·k and 20k·k + 10k
    }
    assert.equal(log.segmentCount, 6);
    // now = T0 + 120k. Segment newest appends: 10k, 30k, 50k, 70k, 90k, 110k.
    assert.equal(log.applyRetention(clock.now()), 3, "segments last written 110k, 90k and 70k ago are gone");
    assert.equal(log.logStartOffset, 6);
    assert.equal(log.applyRetention(clock.now()), 0);
    clock.advance(1_000_000);
    assert.equal(log.applyRetention(clock.now()), 2, "everything but the active segment");
    assert.equal(log.segmentCount, 1);
    assert.equal(log.logStartOffset, 10);
    assert.equal(log.logEndOffset, 12);
  });

  it("keeps everything when retention is off", async () => {
    const log = await open({ segmentBytes: 200, retentionMs: 0, retentionBytes: 0 });
    for (let i = 0; i < 10; i++) await log.append(makeBatch({ seed: i, payloadBytes: 100 }));
    clock.advance(365 * 24 * 3600 * 1000);
    assert.equal(log.applyRetention(clock.now()), 0);
    assert.equal(log.logStartOffset, 0);
  });
});
