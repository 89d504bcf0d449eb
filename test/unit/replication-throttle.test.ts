import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../common/src/clock.js";
import { ByteThrottle } from "../../broker/src/replication/throttle.js";
import { appendBatches, segmentFiles, startCluster, waitFor } from "./replication-fixtures.js";

test("the byte throttle starts empty, banks at most one slice, and makes debt wait", () => {
  const clock = new FakeClock(0);
  const throttle = new ByteThrottle(1000, clock);
  assert.equal(throttle.sliceBytes, 100);
  assert.equal(throttle.delayMs(), 0);
  throttle.take(300);
  assert.equal(throttle.delayMs(), 300, "300 B of debt at 1000 B/s");
  clock.advance(300);
  assert.equal(throttle.delayMs(), 0);
  clock.advance(10_000);
  throttle.take(250);
  assert.equal(throttle.delayMs(), 150, "only 100 B were banked during the idle time");
});

test("catch-up under a throttle of R bytes/s takes at least N/R × 0.9; in-sync traffic then flows unthrottled", async () => {
  const bytesPerSecond = 512 * 1024;
  const cluster = await startCluster({
    sessions: { throttleBytesPerSecond: bytesPerSecond },
    config: { segmentBytes: 256 * 1024 },
    prepare: async (master) => void (await appendBatches(await master.open("t", 0), 1000, { payloadBytes: 1000 })),
  });
  try {
    const masterLog = cluster.master.get("t", 0);
    const totalBytes = masterLog.sizeBytes;
    const expectedMs = (totalBytes / bytesPerSecond) * 1000;
    const startedAt = Date.now();
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(() => cluster.slave.logs.get("t/0")?.logEndOffset === masterLog.logEndOffset, "the catch-up", 10_000);
    const tookMs = Date.now() - startedAt;
    console.log(`catch-up of ${totalBytes} B at ${bytesPerSecond} B/s: ${tookMs} ms (N/R = ${Math.round(expectedMs)} ms)`);
    assert.ok(tookMs >= expectedMs * 0.9, `took ${tookMs} ms, expected at least ${Math.round(expectedMs * 0.9)} ms`);
    assert.ok(tookMs < expectedMs * 2, `took ${tookMs} ms, far slower than the throttle allows`);
    const slaveFiles = segmentFiles(cluster.slave.partitionDir("t", 0));
    for (const [name, bytes] of segmentFiles(cluster.master.partitionDir("t", 0))) assert.ok(slaveFiles.get(name)?.equals(bytes), `segment ${name}`);

    // In sync now: the same amount again arrives much faster than the throttle would allow.
    await waitFor(() => cluster.tracker.isInSync(1), "the slave to join the in-sync set");
    const liveStart = Date.now();
    await appendBatches(masterLog, 1000, { payloadBytes: 1000 });
    await waitFor(() => cluster.slave.get("t", 0).logEndOffset === masterLog.logEndOffset, "live traffic", 10_000);
    const liveMs = Date.now() - liveStart;
    assert.ok(liveMs < expectedMs / 2, `in-sync traffic took ${liveMs} ms: throttled?`);
  } finally {
    await cluster.cleanup();
  }
});
