import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { BrokerInfo, HostedPartition } from "../../proto/gen/sluice/v1/nameserver.js";
import { ClusterState } from "../../nameserver/src/cluster-state.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";

const INTERVAL_MS = 1000;
const EXPIRY_MS = 3000;

function setup(): { clock: FakeClock; state: ClusterState; store: MemoryRegistryStore } {
  const clock = new FakeClock(1_000_000);
  const store = new MemoryRegistryStore();
  const state = new ClusterState({
    store,
    clock,
    heartbeatIntervalMs: INTERVAL_MS,
    expiryMs: EXPIRY_MS,
    logger: silentLogger,
    learnTopicsFromReports: true,
  });
  return { clock, state, store };
}

function broker(group: string, brokerId: number, extra: Partial<BrokerInfo> = {}): BrokerInfo {
  return {
    cluster: "c",
    group,
    brokerId,
    address: `127.0.0.1:${10_000 + brokerId + (group === "b2" ? 100 : 0)}`,
    httpAddress: "",
    version: "test",
    role: brokerId === 0 ? "master" : "slave",
    epoch: 1,
    weight: 1,
    ...extra,
  };
}

function hosted(topic: string, partitions: number[], partitionCount: number): HostedPartition[] {
  return partitions.map((partition) => ({
    topic,
    partition,
    partitionCount,
    logEndOffset: 0,
    sizeBytes: 0,
    config: { retentionMs: 60_000, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 },
  }));
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof SluiceError && err.code === code);
}

describe("cluster state", () => {
  it("routes a partition to its group's live master and slaves, with the epoch", async () => {
    const { state, store } = setup();
    await state.register(broker("b1", 0, { epoch: 4 }), []);
    await state.register(broker("b1", 1, { epoch: 4 }), []);
    await store.createTopic({ topic: "t", partitionCount: 1, assignment: ["b1"], config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } });
    const [route] = await state.routes(["t"]);
    const p0 = route!.partitions[0]!;
    assert.equal(p0.group, "b1");
    assert.equal(p0.master?.address, "127.0.0.1:10000");
    assert.deepEqual(p0.slaves.map((s) => s.brokerId), [1]);
    assert.equal(p0.epoch, 4);
  });

  it("of two brokers claiming master, routes to the higher epoch", async () => {
    const { state, store } = setup();
    await state.register(broker("b1", 0, { epoch: 1 }), []);
    await state.register(broker("b1", 1, { role: "master", epoch: 2 }), []);
    await store.createTopic({ topic: "t", partitionCount: 1, assignment: ["b1"], config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } });
    const [route] = await state.routes(["t"]);
    assert.equal(route!.partitions[0]!.master?.brokerId, 1);
    assert.equal(route!.partitions[0]!.epoch, 2);
  });

  it("answers known=false to a heartbeat from a broker it does not know", async () => {
    const { state } = setup();
    assert.equal(await state.heartbeat(broker("b1", 0), []), false);
    await state.register(broker("b1", 0), []);
    assert.equal(await state.heartbeat(broker("b1", 0), []), true);
  });

  it("expires a silent broker on sweep and drops it from routes", async () => {
    const { clock, state, store } = setup();
    await state.register(broker("b1", 0), []);
    await state.register(broker("b2", 0), []);
    await store.createTopic({ topic: "t", partitionCount: 2, assignment: ["b1", "b2"], config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } });
    clock.advance(2000);
    await state.heartbeat(broker("b2", 0), []);
    assert.deepEqual((await state.brokerStatuses()).map((s) => s.state), ["suspect", "alive"]);
    clock.advance(1001);
    const { expired } = await state.sweep();
    assert.deepEqual(expired.map((e) => e.record.group), ["b1"]);
    const [route] = await state.routes(["t"]);
    assert.equal(route!.partitions[0]!.master, undefined, "b1 has no live master any more");
    assert.equal(route!.partitions[1]!.master?.group, "b2");
    assert.equal(await state.heartbeat(broker("b1", 0), []), false, "the expired broker must register again");
  });

  it("takes a role change from a heartbeat", async () => {
    const { state, store } = setup();
    await state.register(broker("b1", 1), []);
    await state.heartbeat(broker("b1", 1, { role: "master", epoch: 2 }), []);
    const [record] = await store.listBrokers();
    assert.equal(record!.role, "master");
    assert.equal(record!.epoch, 2);
  });

  it("rejects a broker that does not say who it is", async () => {
    const { state } = setup();
    await expectCode(state.register(undefined, []), "INVALID_ARGUMENT");
    await expectCode(state.register(broker("", 0), []), "INVALID_ARGUMENT");
    await expectCode(state.register(broker("b1", 0, { address: "nowhere" }), []), "INVALID_ARGUMENT");
    await expectCode(state.register(broker("b1", 0, { role: "" }), []), "INVALID_ARGUMENT");
  });

  it("rebuilds a topic from the reports of the groups that host it", async () => {
    const { state } = setup();
    await state.register(broker("b1", 0), hosted("orders", [0, 2], 4));
    let [route] = await state.routes(["orders"]);
    assert.deepEqual(route!.partitions.map((p) => p.group), ["b1", "", "b1", ""]);
    assert.equal(route!.config?.retentionMs, 60_000);
    await state.register(broker("b2", 0), hosted("orders", [1, 3], 4));
    [route] = await state.routes(["orders"]);
    assert.deepEqual(route!.partitions.map((p) => p.group), ["b1", "b2", "b1", "b2"]);
    assert.equal(route!.partitions[1]!.master?.group, "b2");
  });

  it("keeps the recorded assignment when a report disagrees", async () => {
    const { state } = setup();
    await state.register(broker("b1", 0), hosted("t", [0], 1));
    await state.register(broker("b2", 0), hosted("t", [0], 1));
    const [route] = await state.routes(["t"]);
    assert.equal(route!.partitions[0]!.group, "b1");
  });

  it("forgets a topic no live broker reports, but only after the grace period", async () => {
    const { clock, state } = setup();
    await state.register(broker("b1", 0), hosted("gone", [0], 1));
    await state.heartbeat(broker("b1", 0), []);
    assert.deepEqual((await state.sweep()).forgottenTopics, [], "still inside the grace period");
    clock.advance(EXPIRY_MS + 1);
    await state.heartbeat(broker("b1", 0), []);
    assert.deepEqual((await state.sweep()).forgottenTopics, ["gone"]);
    await expectCode(state.routes(["gone"]), "UNKNOWN_TOPIC");
  });

  it("keeps a topic whose brokers are all down: its data still exists", async () => {
    const { clock, state } = setup();
    await state.register(broker("b1", 0), hosted("t", [0], 1));
    await state.register(broker("b2", 0), []);
    clock.advance(EXPIRY_MS + 1);
    await state.heartbeat(broker("b2", 0), []);
    const { expired, forgottenTopics } = await state.sweep();
    assert.deepEqual(expired.map((e) => e.record.group), ["b1"]);
    assert.deepEqual(forgottenTopics, []);
    assert.equal((await state.routes(["t"])).length, 1);
  });

  it("ignores reports of a topic just deleted here, until the grace period ends", async () => {
    const { clock, state } = setup();
    await state.register(broker("b1", 0), hosted("t", [0], 1));
    assert.equal(await state.removeTopic("t"), true);
    await state.heartbeat(broker("b1", 0), hosted("t", [0], 1));
    await expectCode(state.routes(["t"]), "UNKNOWN_TOPIC");
    clock.advance(EXPIRY_MS + 1);
    await state.heartbeat(broker("b1", 0), hosted("t", [0], 1));
    assert.equal((await state.routes(["t"])).length, 1, "a broker still hosting it after the grace period brings it back");
  });

  it("names the first unknown topic when asked for several", async () => {
    const { state } = setup();
    await state.register(broker("b1", 0), hosted("known", [0], 1));
    await assert.rejects(state.routes(["known", "missing", "other"]), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "UNKNOWN_TOPIC");
      assert.match(err.message, /"missing"/);
      return true;
    });
  });
});

describe("cluster state after a restart", () => {
  it("answers NOT_READY (retriable) for an unknown topic during the start-up grace, then UNKNOWN_TOPIC", async () => {
    const clock = new FakeClock(5_000);
    const state = new ClusterState({
      store: new MemoryRegistryStore(),
      clock,
      heartbeatIntervalMs: INTERVAL_MS,
      expiryMs: EXPIRY_MS,
      logger: silentLogger,
      learnTopicsFromReports: true,
      startupGraceMs: 2000,
    });
    await assert.rejects(state.routes(["orders"]), (err: unknown) => err instanceof SluiceError && err.code === "NOT_READY" && err.retriable);
    clock.advance(2000);
    await expectCode(state.routes(["orders"]), "UNKNOWN_TOPIC");
  });
});
