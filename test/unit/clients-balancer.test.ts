// Client load balancing (R23) through the one Partitioner interface: nginx's smooth weighted
// round robin vectors, effective weights lowered on failure and restored over time, per-topic
// state, and the producer telling the partitioner which partition failed.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MessageTooLargeError, NotLeaderError, SluiceError } from "../../common/src/errors.js";
import { Sluice, SmoothWeightedRoundRobin, type Partitioner } from "../../clients/src/index.js";
import { checkPartitionerOption, createPartitioner } from "../../clients/src/producer/partitioner.js";
import { FakeCluster } from "./clients-fake-cluster.js";

const A = 0;
const B = 1;
const C = 2;

function picks(partitioner: { partition(message: { value: string }, count: number): number }, count: number, n: number): number[] {
  return Array.from({ length: n }, () => partitioner.partition({ value: "x" }, count));
}

function counts(values: number[], buckets: number): number[] {
  const out = new Array<number>(buckets).fill(0);
  for (const v of values) out[v]!++;
  return out;
}

describe("load balancing: smooth weighted round robin", () => {
  it("weights {4,1,1} pick a, a, b, a, c, a through the Partitioner interface", () => {
    const topicPartitioner = createPartitioner(new SmoothWeightedRoundRobin([4, 1, 1]), "orders");
    assert.deepEqual(picks(topicPartitioner, 3, 12), [A, A, B, A, C, A, A, A, B, A, C, A]);
  });

  it("nginx's other classic vector: weights {5,1,1} pick a, a, b, a, c, a, a", () => {
    const swrr = new SmoothWeightedRoundRobin([5, 1, 1]);
    assert.deepEqual(Array.from({ length: 7 }, () => swrr.pick(3)), [A, A, B, A, C, A, A]);
  });

  it("a failure halves the partition's effective weight, which climbs back over time", () => {
    let nowMs = 0;
    const swrr = new SmoothWeightedRoundRobin([8, 8], { restoreEveryMs: 1000, now: () => nowMs });
    const topic = createPartitioner(swrr, "orders");
    topic.noteFailure(B);
    assert.equal(swrr.effectiveWeight(B, "orders"), 4);
    topic.noteFailure(B);
    assert.equal(swrr.effectiveWeight(B, "orders"), 2);
    assert.deepEqual(counts(picks(topic, 2, 100), 2), [80, 20], "8:2 while lowered");

    nowMs += 999;
    assert.equal(swrr.effectiveWeight(B, "orders"), 2, "nothing restored before a full step");
    nowMs += 1;
    assert.equal(swrr.effectiveWeight(B, "orders"), 3, "one step (a tenth of 8, rounded up) per second");
    nowMs += 10_000;
    assert.equal(swrr.effectiveWeight(B, "orders"), 8, "never above the configured weight");
    assert.deepEqual(counts(picks(topic, 2, 100), 2), [50, 50]);
  });

  it("never lowers a weight below 1, so a failing partition is still probed", () => {
    const swrr = new SmoothWeightedRoundRobin([4, 1], { now: () => 0 });
    for (let i = 0; i < 5; i++) swrr.noteFailure(B, "t");
    assert.equal(swrr.effectiveWeight(B, "t"), 1);
    assert.ok(counts(picks({ partition: (m, n) => swrr.partition(m, n, "t") }, 2, 50), 2)[B]! > 0);
  });

  it("keeps each topic's weights apart", () => {
    const swrr = new SmoothWeightedRoundRobin([2, 2], { now: () => 0 });
    swrr.noteFailure(A, "orders");
    assert.equal(swrr.effectiveWeight(A, "orders"), 1);
    assert.equal(swrr.effectiveWeight(A, "audit"), 2, "another topic's partition 0 is a different partition");
  });

  it("refuses bad weights and accepts any object with partition() as a partitioner", () => {
    assert.throws(() => new SmoothWeightedRoundRobin([4, 0]), (e: unknown) => e instanceof SluiceError && /integers >= 1/.test(e.message));
    assert.throws(() => new SmoothWeightedRoundRobin([1], { restoreEveryMs: 0 }), /restoreEveryMs/);
    const custom: Partitioner = { partition: () => 0 };
    assert.equal(checkPartitionerOption(custom), custom);
    assert.throws(() => checkPartitionerOption({ pick: () => 0 }), /partitioner must be one of/);
    assert.throws(() => createPartitioner({ partition: () => 7 }, "orders").partition({ value: "x" }, 3), /returned 7 for topic "orders"/);
  });
});

describe("load balancing: the producer reports failed partitions", () => {
  let cluster: FakeCluster;
  let sluice: Sluice;

  before(async () => {
    cluster = await new FakeCluster().start();
    sluice = new Sluice({ nameservers: [cluster.address], clientId: "balancer-test", retry: { retries: 3, initialRetryMs: 10, maxRetryMs: 20 } });
  });
  after(async () => {
    await sluice.close();
    await cluster.stop();
  });

  it("a retriable failure lowers the failing partition; a permanent one does not", async () => {
    cluster.createTopic("weighted", 2);
    const failures: [number, string][] = [];
    const partitioner: Partitioner = {
      partition: () => B,
      noteFailure: (partition, topic) => failures.push([partition, topic]),
    };
    const producer = sluice.producer({ partitioner });
    cluster.faults.produceErrors.push(new NotLeaderError("leadership moved"));
    const metas = await producer.send("weighted", [{ value: "a" }]);
    assert.deepEqual(metas.map((m) => m.partition), [B]);
    assert.deepEqual(failures, [[B, "weighted"]]);

    cluster.faults.produceErrors.push(new MessageTooLargeError("too large for the fake"));
    await assert.rejects(producer.send("weighted", [{ value: "b" }]), (e: unknown) => e instanceof SluiceError && e.code === "MESSAGE_TOO_LARGE");
    assert.equal(failures.length, 1, "a message's own fault says nothing about the partition");
    await producer.close();
  });

  it("a smooth weighted round robin producer sends less to a partition that failed", async () => {
    cluster.createTopic("swrr", 2);
    const swrr = new SmoothWeightedRoundRobin([4, 4], { restoreEveryMs: 60_000 });
    const producer = sluice.producer({ partitioner: swrr });
    cluster.faults.produceErrors.push(new NotLeaderError("leadership moved"));
    await producer.send("swrr", [{ value: "first" }]);
    const firstPartition = cluster.logs.get("swrr")![0]!.endOffset === 1 ? A : B;
    assert.equal(swrr.effectiveWeight(firstPartition, "swrr"), 2, "the failed partition's weight was halved");
    const metas = await producer.send("swrr", Array.from({ length: 60 }, (_, i) => ({ value: `m${i}` })));
    const spread = counts(metas.map((m) => m.partition), 2);
    // 4:2 gives a third of 60; the picks before the failure shift it by at most one.
    assert.ok(Math.abs(spread[firstPartition]! - 20) <= 1, `4:2 spread after the failure, got ${spread}`);
    await producer.close();
  });
});
