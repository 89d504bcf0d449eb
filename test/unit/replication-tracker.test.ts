import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../common/src/clock.js";
import { NotEnoughReplicasError, NotLeaderError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { ReplicaTracker, type ReplicaTrackerOptions } from "../../broker/src/replication/tracker.js";
import type { ReplicationMode } from "../../broker/src/replication/types.js";

const MAX_LAG_MS = 1000;

interface RecordCall {
  ids: number[];
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A tracker whose in-sync records either complete at once (`autoRecord`) or wait for the test. */
function setup(mode: ReplicationMode, overrides: Partial<ReplicaTrackerOptions> & { autoRecord?: boolean } = {}) {
  const clock = new FakeClock(1_000_000);
  const records: RecordCall[] = [];
  const autoRecord = overrides.autoRecord ?? true;
  const tracker = new ReplicaTracker({
    group: "b1",
    mode,
    minInSyncSlaves: 1,
    maxSlaveLagMs: MAX_LAG_MS,
    clock,
    logger: silentLogger,
    recordInSync: (ids) =>
      new Promise<void>((resolve, reject) => {
        records.push({ ids, resolve, reject });
        if (autoRecord) resolve();
      }),
    ...overrides,
  });
  const watermarks: string[] = [];
  tracker.onHighWatermark((topic, partition, hw) => watermarks.push(`${topic}/${partition}=${hw}`));
  return { clock, tracker, records, watermarks };
}

/** Lets promise callbacks (records, waits) run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Tracks the state of a promise without awaiting it. */
function observe(promise: Promise<void>): { state: "pending" | "resolved" | "rejected"; error?: unknown } {
  const seen: { state: "pending" | "resolved" | "rejected"; error?: unknown } = { state: "pending" };
  promise.then(
    () => (seen.state = "resolved"),
    (error: unknown) => Object.assign(seen, { state: "rejected", error }),
  );
  return seen;
}

test("a connected slave joins once it holds the high watermark on every partition, and the join is recorded", async () => {
  const { tracker, records } = setup({ kind: "sync" }, { minInSyncSlaves: 0 });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  tracker.addPartition("a", 1, { logEndOffset: 5, highWatermark: 5 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  assert.equal(tracker.isInSync(2), false, "behind on a/1");
  tracker.acked(2, "a", 1, 4);
  assert.equal(tracker.isInSync(2), false);
  tracker.acked(2, "a", 1, 5);
  assert.equal(tracker.isInSync(2), true);
  await settle();
  assert.deepEqual(records.map((r) => r.ids), [[2]]);
  assert.deepEqual(tracker.inSyncSlaves(), [2]);
});

test("a slave lagging longer than maxSlaveLagMs on one partition leaves at the next tick", async () => {
  const { tracker, clock, records } = setup({ kind: "sync" }, { minInSyncSlaves: 0, initialInSync: [2] });
  tracker.addPartition("a", 0, { logEndOffset: 0, highWatermark: 0 });
  tracker.addPartition("a", 1, { logEndOffset: 0, highWatermark: 0 });
  tracker.slaveConnected(2, []);
  tracker.logEndAdvanced("a", 1, 3);
  clock.advance(MAX_LAG_MS);
  tracker.tick();
  assert.equal(tracker.isInSync(2), true, "exactly maxSlaveLagMs is still in sync");
  clock.advance(1);
  tracker.tick();
  await settle();
  assert.deepEqual(records.map((r) => r.ids), [[]]);
  assert.deepEqual(tracker.inSyncSlaves(), []);
  assert.equal(tracker.status()[0]!.inSync, false);
});

test("a slave that keeps pace under steady writes never counts as lagging (caught up at send time)", () => {
  const { tracker, clock } = setup({ kind: "sync" }, { minInSyncSlaves: 0, initialInSync: [2] });
  tracker.addPartition("a", 0, { logEndOffset: 0, highWatermark: 0 });
  tracker.slaveConnected(2, []);
  let logEnd = 0;
  for (let round = 0; round < 50; round++) {
    // The master sends up to its log end, appends more while the slave works, then the ack arrives.
    tracker.dataSent(2, "a", 0, { fromOffset: logEnd - (round === 0 ? 0 : 10), endOffset: logEnd, bytes: 1000, logEndAtSend: logEnd });
    const sentEnd = logEnd;
    logEnd += 10;
    tracker.logEndAdvanced("a", 0, logEnd);
    clock.advance(300);
    tracker.acked(2, "a", 0, sentEnd);
    tracker.tick();
  }
  assert.equal(tracker.isInSync(2), true);
  assert.ok(tracker.status()[0]!.lagMs <= 300, `lag ${tracker.status()[0]!.lagMs} ms`);
  // Once acks stop covering what was sent, the lag grows past the limit.
  clock.advance(MAX_LAG_MS);
  tracker.tick();
  assert.equal(tracker.status()[0]!.inSync, false);
});

test("a slave whose stream closes while behind leaves at once; one that closes caught up leaves when the log moves on", async () => {
  const { tracker, records } = setup({ kind: "sync" }, { minInSyncSlaves: 0, initialInSync: [2, 3] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.slaveConnected(3, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.slaveDisconnected(3);
  assert.equal(tracker.status()[1]!.inSync, true, "caught up when it left");
  tracker.logEndAdvanced("a", 0, 11);
  assert.deepEqual(tracker.status().map((s) => s.inSync), [true, false]);
  tracker.acked(2, "a", 0, 11);
  tracker.logEndAdvanced("a", 0, 12);
  tracker.slaveDisconnected(2);
  assert.deepEqual(tracker.status().map((s) => s.inSync), [false, false]);
  await settle();
  assert.deepEqual(records.at(-1)!.ids, []);
});

test("a slave of the recorded set that never connects gets maxSlaveLagMs before it leaves", () => {
  const { tracker, clock } = setup({ kind: "sync" }, { minInSyncSlaves: 0, initialInSync: [2] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  tracker.logEndAdvanced("a", 0, 20);
  tracker.tick();
  assert.equal(tracker.isInSync(2), true);
  clock.advance(MAX_LAG_MS + 1);
  tracker.tick();
  assert.equal(tracker.status()[0]!.inSync, false);
});

test("sync: a wait that only a dropped slave blocks resolves only after the smaller set is recorded", async () => {
  const { tracker, clock, records } = setup({ kind: "sync" }, { autoRecord: false, initialInSync: [2, 3] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.slaveConnected(3, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.logEndAdvanced("a", 0, 11);
  const wait = observe(tracker.waitReplicated("a", 0, 10));
  tracker.acked(2, "a", 0, 11);
  await settle();
  assert.equal(wait.state, "pending", "slave 3 has not acked");
  clock.advance(MAX_LAG_MS + 1);
  tracker.tick();
  assert.equal(tracker.status()[1]!.inSync, false, "slave 3 dropped");
  assert.deepEqual(records.map((r) => r.ids), [[2]]);
  await settle();
  assert.equal(wait.state, "pending", "the record of [2] is still being written");
  assert.deepEqual(tracker.inSyncSlaves(), [2, 3]);
  records[0]!.resolve();
  await settle();
  assert.equal(wait.state, "resolved");
  assert.deepEqual(tracker.inSyncSlaves(), [2]);
});

test("sync: a joining slave counts at once for waits, before its record completes", async () => {
  const { tracker, records } = setup({ kind: "sync" }, { autoRecord: false, initialInSync: [2] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.slaveConnected(3, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  assert.deepEqual(records.map((r) => r.ids), [[2, 3]]);
  tracker.logEndAdvanced("a", 0, 12);
  const wait = observe(tracker.waitReplicated("a", 0, 11));
  tracker.acked(2, "a", 0, 12);
  await settle();
  assert.equal(wait.state, "pending", "slave 3 joined and counts");
  tracker.acked(3, "a", 0, 12);
  await settle();
  assert.equal(wait.state, "resolved");
});

test("quorum:k counts k acks of the recorded set; a joiner counts only once recorded", async () => {
  const { tracker, records } = setup({ kind: "quorum", k: 2 }, { autoRecord: false, initialInSync: [2, 3, 4] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  for (const id of [2, 3, 4]) tracker.slaveConnected(id, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.logEndAdvanced("a", 0, 20);
  const first = observe(tracker.waitReplicated("a", 0, 14));
  tracker.acked(4, "a", 0, 20);
  await settle();
  assert.equal(first.state, "pending", "one ack of two");
  tracker.acked(2, "a", 0, 15);
  await settle();
  assert.equal(first.state, "resolved");
  assert.equal(tracker.highWatermark("a", 0, 20), 15, "second highest ack");

  // Slave 5 joins (holds the high watermark) but its record is pending: it does not count yet.
  tracker.slaveConnected(5, [{ topic: "a", partition: 0, logEndOffset: 15 }]);
  assert.deepEqual(records.at(-1)!.ids, [2, 3, 4, 5]);
  const second = observe(tracker.waitReplicated("a", 0, 19));
  tracker.acked(5, "a", 0, 20);
  await settle();
  assert.equal(second.state, "pending", "5 is not recorded yet");
  records.at(-1)!.resolve();
  await settle();
  assert.equal(second.state, "resolved", "4 and 5 hold offset 19");
});

test("sync: a wait fails with NOT_ENOUGH_REPLICAS naming the slaves once the set falls below minInSyncSlaves", async () => {
  const { tracker, clock } = setup({ kind: "sync" }, { initialInSync: [2] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.logEndAdvanced("a", 0, 11);
  const wait = observe(tracker.waitReplicated("a", 0, 10));
  clock.advance(MAX_LAG_MS + 1);
  tracker.tick();
  await settle();
  assert.equal(wait.state, "rejected");
  assert.ok(wait.error instanceof NotEnoughReplicasError);
  assert.match((wait.error as Error).message, /^b1: 0 slaves in sync, 1 required \(minInSyncSlaves\); slave 2: lag 1001 ms \/ 0 B/);
  await assert.rejects(tracker.waitReplicated("a", 0, 10), NotEnoughReplicasError);
});

test("quorum: waits fail when fewer than k slaves are left, and the gate refuses", async () => {
  const { tracker } = setup({ kind: "quorum", k: 2 }, { initialInSync: [2, 3] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.slaveConnected(3, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.checkWriteGate("a", 0);
  tracker.logEndAdvanced("a", 0, 11);
  const wait = observe(tracker.waitReplicated("a", 0, 10));
  tracker.slaveDisconnected(3);
  await settle();
  assert.equal(wait.state, "rejected");
  assert.throws(() => tracker.checkWriteGate("a", 0), (err: Error) => {
    assert.ok(err instanceof NotEnoughReplicasError);
    assert.match(err.message, /^b1: 1 slave in sync, 2 required \(quorum:2\); slave 3: disconnected/);
    return true;
  });
});

test("the write gate names every slave out of sync with its lag in ms and bytes", () => {
  const { tracker, clock } = setup({ kind: "sync" }, { minInSyncSlaves: 2 });
  tracker.addPartition("a", 0, { logEndOffset: 100, highWatermark: 100, bytesPerOffset: 1024 });
  tracker.slaveConnected(1, [{ topic: "a", partition: 0, logEndOffset: 100 }]);
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 60 }]);
  tracker.slaveConnected(3, [{ topic: "a", partition: 0, logEndOffset: 100 }]);
  tracker.slaveDisconnected(3);
  tracker.logEndAdvanced("a", 0, 101);
  tracker.acked(1, "a", 0, 101);
  clock.advance(812);
  assert.throws(
    () => tracker.checkWriteGate("a", 0),
    (err: Error) => {
      assert.ok(err instanceof NotEnoughReplicasError);
      assert.ok(err.retriable);
      assert.match(err.message, /^b1: 1 slave in sync, 2 required \(minInSyncSlaves\); slave 2: lag 812 ms \/ 41984 B, slave 3: disconnected \(/);
      return true;
    },
  );
  // async mode never refuses.
  setup({ kind: "async" }).tracker.checkWriteGate("a", 0);
});

test("async: waits resolve at once; the high watermark is still the minimum ack of the in-sync set", async () => {
  const { tracker, watermarks } = setup({ kind: "async" }, { initialInSync: [2] });
  tracker.addPartition("a", 0, { logEndOffset: 5, highWatermark: 5 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 5 }]);
  tracker.logEndAdvanced("a", 0, 9);
  await tracker.waitReplicated("a", 0, 8);
  assert.equal(tracker.highWatermark("a", 0, 9), 5);
  tracker.acked(2, "a", 0, 7);
  assert.equal(tracker.highWatermark("a", 0, 9), 7);
  assert.deepEqual(watermarks, ["a/0=7"]);
});

test("high watermark: the log end with no slave in sync, never backwards, clamped to the log end", async () => {
  const { tracker, watermarks, clock } = setup({ kind: "sync" }, { minInSyncSlaves: 0 });
  tracker.addPartition("a", 0, { logEndOffset: 3, highWatermark: 1 });
  assert.deepEqual(watermarks, ["a/0=3"], "no slave counts: the log end");
  tracker.logEndAdvanced("a", 0, 8);
  assert.deepEqual(watermarks, ["a/0=3", "a/0=8"]);
  await tracker.waitReplicated("a", 0, 7);
  // A slave joins at the high watermark; the high watermark then follows its acks.
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 8 }]);
  tracker.logEndAdvanced("a", 0, 12);
  assert.equal(tracker.highWatermark("a", 0, 12), 8);
  tracker.acked(2, "a", 0, 10);
  assert.equal(tracker.highWatermark("a", 0, 12), 10);
  assert.equal(tracker.highWatermark("a", 0, 9), 9, "clamped to the log end asked about");
  // The slave leaves (lag): with nobody in sync the high watermark jumps to the log end.
  clock.advance(MAX_LAG_MS + 1);
  tracker.tick();
  await settle();
  assert.equal(watermarks.at(-1), "a/0=12");
});

test("quorum: a slave holding acknowledged data stays in sync until k of the others hold it", async () => {
  const { tracker, clock } = setup({ kind: "quorum", k: 2 }, { initialInSync: [2, 3, 4] });
  tracker.addPartition("a", 0, { logEndOffset: 10, highWatermark: 10 });
  for (const id of [2, 3, 4]) tracker.slaveConnected(id, [{ topic: "a", partition: 0, logEndOffset: 10 }]);
  tracker.logEndAdvanced("a", 0, 20);
  tracker.acked(2, "a", 0, 20);
  tracker.acked(3, "a", 0, 20);
  assert.equal(tracker.highWatermark("a", 0, 20), 20);
  // 3's stream closes and the log moves on; 4 lags. Dropping 3 now would leave offsets
  // 10..19 on one copy of {2, 4}, and a controller hearing from one of them could lose them.
  tracker.slaveDisconnected(3);
  tracker.logEndAdvanced("a", 0, 21);
  clock.advance(10);
  tracker.tick();
  assert.equal(tracker.status()[1]!.inSync, true, "3 is kept");
  tracker.acked(4, "a", 0, 20);
  tracker.tick();
  await settle();
  assert.deepEqual(tracker.inSyncSlaves(), [2, 4]);
});

test("a failed record is retried at the next tick, and close() fails pending waits with NOT_LEADER", async () => {
  let attempts = 0;
  const { tracker } = setup(
    { kind: "sync" },
    {
      minInSyncSlaves: 0,
      recordInSync: async () => {
        attempts++;
        if (attempts === 1) throw new Error("etcd unreachable");
      },
    },
  );
  tracker.addPartition("a", 0, { logEndOffset: 0, highWatermark: 0 });
  tracker.slaveConnected(2, []);
  await settle();
  assert.deepEqual(tracker.inSyncSlaves(), []);
  tracker.tick();
  await settle();
  assert.equal(attempts, 2);
  assert.deepEqual(tracker.inSyncSlaves(), [2]);
  tracker.logEndAdvanced("a", 0, 1);
  const wait = tracker.waitReplicated("a", 0, 0);
  tracker.close();
  await assert.rejects(wait, NotLeaderError);
  await assert.rejects(tracker.waitReplicated("a", 0, 0), NotLeaderError);
});

test("status() reports each slave's connection, membership and lag", () => {
  const { tracker, clock } = setup({ kind: "sync" }, { minInSyncSlaves: 0 });
  tracker.addPartition("a", 0, { logEndOffset: 50, highWatermark: 50 });
  tracker.addPartition("a", 1, { logEndOffset: 10, highWatermark: 10 });
  tracker.slaveConnected(2, [{ topic: "a", partition: 0, logEndOffset: 50 }, { topic: "a", partition: 1, logEndOffset: 10 }]);
  tracker.slaveConnected(3, [{ topic: "a", partition: 0, logEndOffset: 20 }]);
  // Bytes are estimated per partition from what was sent: 500 B per offset on a/0, unknown on a/1.
  tracker.dataSent(3, "a", 0, { fromOffset: 20, endOffset: 30, bytes: 5000, logEndAtSend: 50 });
  clock.advance(250);
  assert.deepEqual(tracker.status(), [
    { brokerId: 2, connected: true, inSync: true, lagMessages: 0, lagBytes: 0, lagMs: 0 },
    { brokerId: 3, connected: true, inSync: false, lagMessages: 40, lagBytes: 15000, lagMs: 250 },
  ]);
  tracker.removePartition("a", 1);
  tracker.acked(3, "a", 0, 50);
  assert.equal(tracker.status()[1]!.inSync, true, "joins once a/1 is gone and a/0 caught up");
});

test("invalid options are refused at construction", () => {
  assert.throws(() => setup({ kind: "quorum", k: 0 }), /quorum:0/);
  assert.throws(() => setup({ kind: "sync" }, { maxSlaveLagMs: 0 }), /maxSlaveLagMs/);
  assert.throws(() => setup({ kind: "sync" }, { minInSyncSlaves: -1 }), /minInSyncSlaves/);
});

test("quorum: while a smaller in-sync set is being recorded, the watermark holds under both sets", async () => {
  const { tracker, clock, records } = setup({ kind: "quorum", k: 1 }, { autoRecord: false, initialInSync: [2, 3] });
  tracker.addPartition("a", 0, { logEndOffset: 100, highWatermark: 100 });
  for (const id of [2, 3]) tracker.slaveConnected(id, [{ topic: "a", partition: 0, logEndOffset: 100 }]);
  // 3 keeps up; 2 stays behind for longer than the lag limit: the tracker starts recording {3}.
  clock.advance(MAX_LAG_MS + 10);
  tracker.logEndAdvanced("a", 0, 200);
  tracker.acked(3, "a", 0, 200);
  tracker.tick();
  assert.deepEqual(records.at(-1)?.ids, [3]);
  // Until the record lands 2 still counts, and now it acks further than 3. An ack resting on
  // 2 alone would be lost if the controller then promoted 3 from the recorded {3}.
  tracker.logEndAdvanced("a", 0, 300);
  tracker.acked(2, "a", 0, 290);
  tracker.acked(3, "a", 0, 250);
  assert.equal(tracker.highWatermark("a", 0, 300), 250, "bounded by the set being recorded");
  const waiting = observe(tracker.waitReplicated("a", 0, 270));
  await settle();
  assert.equal(waiting.state, "pending");
  records.at(-1)!.resolve();
  await settle();
  tracker.acked(3, "a", 0, 280);
  await settle();
  assert.equal(waiting.state, "resolved");
});
