import { test } from "node:test";
import assert from "node:assert/strict";
import { baseOffsetOf } from "../../common/src/batch/layout.js";
import type { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { appendBatches, segmentFiles, startCluster, waitFor, type Cluster, type LogSet } from "./replication-fixtures.js";

/** Asserts every `.log` segment file of the slave's partition equals the master's, byte for byte. */
function assertSameSegments(cluster: Cluster, topic: string, partition: number): void {
  const ours = segmentFiles(cluster.master.partitionDir(topic, partition));
  const theirs = segmentFiles(cluster.slave.partitionDir(topic, partition));
  assert.deepEqual([...theirs.keys()], [...ours.keys()], "same segment names");
  for (const [name, bytes] of ours) assert.ok(theirs.get(name)!.equals(bytes), `segment ${name} differs`);
}

function caughtUp(cluster: Cluster, topic: string, partition: number): () => boolean {
  return () => {
    const slaveLog = cluster.slave.logs.get(`${topic}/${partition}`);
    return slaveLog !== undefined && slaveLog.logEndOffset === cluster.master.get(topic, partition).logEndOffset;
  };
}

/** Records the base offset of every span the slave appends on a partition. */
function recordAppends(slave: LogSet, topic: string, partition: number): number[] {
  const log = slave.get(topic, partition);
  const firstOffsets: number[] = [];
  const append = log.appendReplicated.bind(log);
  log.appendReplicated = (records: Buffer) => {
    firstOffsets.push(baseOffsetOf(records, 0));
    return append(records);
  };
  return firstOffsets;
}

test("an empty slave catches up byte for byte on every partition, then follows new writes and the high watermark", async () => {
  const cluster = await startCluster({
    config: { segmentBytes: 16 * 1024 },
    prepare: async (master) => {
      await appendBatches(await master.open("orders", 0), 300);
      await appendBatches(await master.open("orders", 1), 40);
      await master.open("empty", 0);
    },
  });
  try {
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(caughtUp(cluster, "orders", 0), "orders/0 to catch up");
    await waitFor(caughtUp(cluster, "orders", 1), "orders/1 to catch up");
    assert.ok(cluster.master.get("orders", 0).segmentCount > 3, "several segments were copied");
    assertSameSegments(cluster, "orders", 0);
    assertSameSegments(cluster, "orders", 1);
    assert.equal(cluster.slave.get("empty", 0).logEndOffset, 0, "empty topics are created too");
    assert.deepEqual(cluster.slave.get("orders", 0).leaderEpochs.entries(), [{ epoch: 1, startOffset: 0 }]);

    // Live traffic, and a topic created while the stream runs.
    await appendBatches(cluster.master.get("orders", 1), 25);
    await cluster.master.createTopic("late", [0]);
    await appendBatches(cluster.master.get("late", 0), 5);
    await waitFor(caughtUp(cluster, "orders", 1), "new writes to reach the slave");
    await waitFor(caughtUp(cluster, "late", 0), "the late topic to reach the slave");
    assertSameSegments(cluster, "orders", 1);
    assertSameSegments(cluster, "late", 0);
    await cluster.master.deleteTopic("empty");
    await waitFor(() => !cluster.slave.logs.has("empty/0"), "the deleted topic to go from the slave");
    // The slave is in sync, so the master's high watermark follows its acks and reaches the slave.
    const masterLog = cluster.master.get("orders", 1);
    await waitFor(() => masterLog.highWatermark === masterLog.logEndOffset, "the master's high watermark");
    await waitFor(() => cluster.slave.get("orders", 1).highWatermark === masterLog.logEndOffset, "the slave's high watermark");
    assert.deepEqual(cluster.tracker.inSyncSlaves(), [1]);
    assert.equal(fetcher.state().connected, true);
    assert.equal(fetcher.state().epoch, 1);
    assert.ok(fetcher.state().lastDataMs !== undefined);
  } finally {
    await cluster.cleanup();
  }
});

test("partial resync: a slave stopped half way resumes from its log end, not from the start", async () => {
  const cluster = await startCluster({
    // Throttled so the first fetcher can be stopped part way.
    sessions: { throttleBytesPerSecond: 1024 * 1024 },
    config: { segmentBytes: 64 * 1024 },
    prepare: async (master) => void (await appendBatches(await master.open("t", 0), 1000, { payloadBytes: 400 })),
  });
  try {
    const masterLog = cluster.master.get("t", 0);
    const first = cluster.fetcher();
    first.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(() => (cluster.slave.logs.get("t/0")?.logEndOffset ?? 0) > masterLog.logEndOffset / 4, "a quarter of the log");
    await first.stop();
    const stoppedAt = cluster.slave.get("t", 0).logEndOffset;
    assert.ok(stoppedAt < masterLog.logEndOffset, `stopped at ${stoppedAt} of ${masterLog.logEndOffset}`);
    assert.equal(first.state().connected, false);
    await appendBatches(masterLog, 10, { payloadBytes: 400 });

    const appends = recordAppends(cluster.slave, "t", 0);
    const second = cluster.fetcher();
    second.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(caughtUp(cluster, "t", 0), "the rest of the log", 8000);
    assert.equal(appends[0], stoppedAt, "the first span resumes at the slave's log end");
    assertSameSegments(cluster, "t", 0);
  } finally {
    await cluster.cleanup();
  }
});

test("a former master with a divergent tail truncates to the last common epoch, then follows", async () => {
  const cluster = await startCluster({
    epoch: 3,
    prepare: async (master, slave) => {
      // Epoch 1 is shared; the slave (master at epoch 2) wrote a tail the new master never had.
      const masterLog = await master.open("t", 0);
      const slaveLog = await slave.open("t", 0);
      for (const log of [masterLog, slaveLog]) await appendBatches(log, 10, { epoch: 1, seed: 1 });
      await appendBatches(slaveLog, 7, { epoch: 2, seed: 2 });
      await appendBatches(masterLog, 12, { epoch: 3, seed: 3 });
    },
  });
  try {
    const slaveLog = cluster.slave.get("t", 0);
    const sharedEnd = 20;
    assert.deepEqual(slaveLog.leaderEpochs.entries(), [{ epoch: 1, startOffset: 0 }, { epoch: 2, startOffset: sharedEnd }]);
    const appends = recordAppends(cluster.slave, "t", 0);
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 2);
    await waitFor(caughtUp(cluster, "t", 0), "the slave to follow");
    assert.equal(appends[0], sharedEnd, "data resumes where epoch 1 ended");
    assert.deepEqual(slaveLog.leaderEpochs.entries(), [{ epoch: 1, startOffset: 0 }, { epoch: 3, startOffset: sharedEnd }]);
    assertSameSegments(cluster, "t", 0);
    assert.equal(fetcher.state().epoch, 3, "the master's newer epoch is learned");
  } finally {
    await cluster.cleanup();
  }
});

test("a slave whose log ends before the master's log start is reset and copies from there", async () => {
  let logStart = 0;
  const cluster = await startCluster({
    config: { segmentBytes: 4096 },
    prepare: async (master, slave) => {
      const masterLog = await master.open("t", 0);
      const slaveLog = await slave.open("t", 0);
      await appendBatches(slaveLog, 5, { seed: 1 });
      await appendBatches(masterLog, 5, { seed: 1 });
      await appendBatches(masterLog, 200, { seed: 2 });
      await masterLog.advanceLogStart(150);
      logStart = masterLog.logStartOffset;
    },
  });
  try {
    assert.ok(logStart > 10, `master log starts at ${logStart}`);
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(caughtUp(cluster, "t", 0), "the reset slave to catch up");
    assert.equal(cluster.slave.get("t", 0).logStartOffset, logStart);
    assertSameSegments(cluster, "t", 0);
  } finally {
    await cluster.cleanup();
  }
});

test("a slave at a newer epoch than the master is refused, and the master hears it was deposed", async () => {
  const deposedBy: number[] = [];
  const cluster = await startCluster({
    epoch: 4,
    sessions: { onStaleEpoch: (epoch) => deposedBy.push(epoch) },
    prepare: async (master) => void (await appendBatches(await master.open("t", 0), 3)),
  });
  try {
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 5);
    await waitFor(() => deposedBy.length > 0, "the refusal");
    assert.equal(deposedBy[0], 5);
    assert.equal(fetcher.state().connected, false);
    assert.equal(cluster.slave.logs.size, 0, "nothing was applied");
  } finally {
    await cluster.cleanup();
  }
});

test("sync mode: a produce's replication wait resolves only after the slave has the batch", async () => {
  let slaveLog: PartitionLog | undefined;
  let releaseAppend: (() => void) | undefined;
  const cluster = await startCluster({
    tracker: { mode: { kind: "sync" }, minInSyncSlaves: 1 },
    prepare: async (master) => void (await master.open("t", 0)),
  });
  try {
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(() => cluster.tracker.isInSync(1) && cluster.slave.logs.has("t/0"), "the slave to join");
    cluster.tracker.checkWriteGate("t", 0);
    // Hold the slave's next append so the master's wait visibly depends on it.
    slaveLog = cluster.slave.get("t", 0);
    const append = slaveLog.appendReplicated.bind(slaveLog);
    slaveLog.appendReplicated = async (records: Buffer) => {
      await new Promise<void>((resolve) => (releaseAppend = resolve));
      return append(records);
    };
    const masterLog = cluster.master.get("t", 0);
    const before = masterLog.logEndOffset;
    const lastOffset = await appendBatches(masterLog, 1);
    let replicated = false;
    const wait = cluster.tracker.waitReplicated("t", 0, lastOffset).then(() => {
      replicated = true;
      assert.ok(slaveLog!.logEndOffset > lastOffset, "the slave holds the batch when the wait resolves");
    });
    await waitFor(() => releaseAppend !== undefined, "the slave to receive the batch");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(replicated, false, "not acknowledged while the slave has not appended");
    assert.equal(masterLog.highWatermark, before, "consumers do not see it yet");
    releaseAppend!();
    await wait;
    assert.equal(masterLog.highWatermark, lastOffset + 1);
    await waitFor(() => slaveLog!.highWatermark === lastOffset + 1, "the slave's high watermark");
  } finally {
    releaseAppend?.();
    await cluster.cleanup();
  }
});

test("when the master ends the stream, the slave reconnects and resumes where it stopped", async () => {
  const cluster = await startCluster({
    prepare: async (master) => void (await appendBatches(await master.open("t", 0), 20)),
  });
  try {
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(caughtUp(cluster, "t", 0), "the first catch-up");
    const appends = recordAppends(cluster.slave, "t", 0);
    const resumeAt = cluster.master.get("t", 0).logEndOffset;
    await cluster.restartSessions();
    await appendBatches(cluster.master.get("t", 0), 5);
    await waitFor(caughtUp(cluster, "t", 0), "the slave to reconnect and catch up");
    assert.equal(appends[0], resumeAt);
    assertSameSegments(cluster, "t", 0);
    assert.deepEqual(cluster.sessions.connectedSlaves(), [1]);
  } finally {
    await cluster.cleanup();
  }
});

test("a slave that learns a newer epoch drops its master's stream and stops applying what it sends", async () => {
  const deposedBy: number[] = [];
  const cluster = await startCluster({
    epoch: 2,
    sessions: { onStaleEpoch: (epoch) => deposedBy.push(epoch) },
    prepare: async (master) => void (await appendBatches(await master.open("t", 0), 5)),
  });
  try {
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 2);
    await waitFor(caughtUp(cluster, "t", 0), "the catch-up");
    const slaveEnd = cluster.slave.get("t", 0).logEndOffset;
    // The role layer hears of epoch 3 (another broker was promoted) before the old master does.
    fetcher.follow({ brokerId: 0, address: cluster.address }, 3);
    await appendBatches(cluster.master.get("t", 0), 5);
    await waitFor(() => deposedBy.includes(3), "the reconnect with epoch 3 to be refused");
    assert.equal(cluster.slave.get("t", 0).logEndOffset, slaveEnd, "nothing from epoch 2 was applied after epoch 3 was known");
    assert.equal(fetcher.state().epoch, 3);
  } finally {
    await cluster.cleanup();
  }
});

test("the master keeps at most maxUnackedBytesPerSession in flight, serving partitions round-robin", async () => {
  const windowBytes = 64 * 1024;
  const chunkBytes = 16 * 1024;
  const cluster = await startCluster({
    sessions: { maxUnackedBytesPerSession: windowBytes, chunkBytes },
    prepare: async (master, slave) => {
      for (const partition of [0, 1]) {
        await appendBatches(await master.open("t", partition), 400, { payloadBytes: 500 });
        await slave.open("t", partition);
      }
    },
  });
  const held: (() => void)[] = [];
  let holding = true;
  try {
    // The slave receives but does not append (so never acks) until released.
    const received: { partition: number; bytes: number }[] = [];
    for (const partition of [0, 1]) {
      const log = cluster.slave.get("t", partition);
      const append = log.appendReplicated.bind(log);
      log.appendReplicated = async (records: Buffer) => {
        received.push({ partition, bytes: records.length });
        if (holding) await new Promise<void>((resolve) => held.push(resolve));
        return append(records);
      };
    }
    const fetcher = cluster.fetcher();
    fetcher.follow({ brokerId: 0, address: cluster.address }, 1);
    await waitFor(() => received.length > 0, "the first data");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const inFlight = received.reduce((sum, r) => sum + r.bytes, 0);
    const batchBytes = 61 + 500;
    // A batch is sent whole, so the last chunk may overshoot the window by less than one batch.
    assert.ok(inFlight < windowBytes + batchBytes, `${inFlight} B sent without acks, window ${windowBytes} B`);
    assert.ok(inFlight >= windowBytes - chunkBytes, `only ${inFlight} B sent: the window should fill`);
    assert.deepEqual(
      received.slice(0, 4).map((r) => r.partition),
      [0, 1, 0, 1],
      "partitions alternate",
    );
    holding = false;
    for (const release of held.splice(0)) release();
    for (const partition of [0, 1]) await waitFor(caughtUp(cluster, "t", partition), `t/${partition}`);
    for (const partition of [0, 1]) assertSameSegments(cluster, "t", partition);
  } finally {
    holding = false;
    for (const release of held.splice(0)) release();
    await cluster.cleanup();
  }
});
