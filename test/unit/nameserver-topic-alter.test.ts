import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { CreatePartitionsRequest, CreatePartitionsResponse } from "../../proto/gen/sluice/v1/broker.js";
import type { BrokerInfo } from "../../proto/gen/sluice/v1/nameserver.js";
import type { BrokerAdminClients } from "../../nameserver/src/broker-admin.js";
import { ClusterState } from "../../nameserver/src/cluster-state.js";
import type { PlacementGroup } from "../../nameserver/src/placement.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";
import type { TopicRecord } from "../../nameserver/src/registry/store.js";
import { grownRecord, planPartitionGrowth } from "../../nameserver/src/topic-alter.js";
import { TopicAdmin } from "../../nameserver/src/topic-admin.js";
import { EMPTY_TOPIC_CONFIG } from "../../nameserver/src/topic-reports.js";

function group(name: string, extra: Partial<PlacementGroup> = {}): PlacementGroup {
  return { group: name, weight: 1, hostedPartitions: 0, hasLiveMaster: true, ...extra };
}

function topic(name: string, assignment: string[]): TopicRecord {
  return { topic: name, partitionCount: assignment.length, assignment, config: { ...EMPTY_TOPIC_CONFIG } };
}

function thrown(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected an error");
}

describe("topic alter: validation", () => {
  it("refuses the same or a smaller count with INVALID_PARTITIONS, naming the current count, not retriable", () => {
    const record = topic("orders", ["b1", "b1", "b1"]);
    for (const asked of [3, 2, 1]) {
      const err = thrown(() => planPartitionGrowth(record, asked, [group("b1")]));
      assert.equal(err.code, "INVALID_PARTITIONS");
      assert.equal(err.retriable, false);
      assert.match(err.message, /topic "orders" has 3 partitions/);
      assert.match(err.message, new RegExp(`${asked}`));
    }
  });

  it("refuses counts outside 1..10000 as bad arguments", () => {
    const record = topic("orders", ["b1"]);
    assert.equal(thrown(() => planPartitionGrowth(record, 10_001, [group("b1")])).code, "INVALID_ARGUMENT");
    assert.equal(thrown(() => planPartitionGrowth(record, 0, [group("b1")])).code, "INVALID_ARGUMENT");
    assert.equal(thrown(() => planPartitionGrowth(record, 2.5, [group("b1")])).code, "INVALID_ARGUMENT");
  });

  it("waits (NOT_READY) while a partition's group is not known yet", () => {
    const err = thrown(() => planPartitionGrowth(topic("orders", ["b1", ""]), 4, [group("b1")]));
    assert.equal(err.code, "NOT_READY");
    assert.equal(err.retriable, true);
    assert.match(err.message, /partition 1/);
  });

  it("refuses while a group holding the topic has no live master: it could not learn the new count", () => {
    const err = thrown(() =>
      planPartitionGrowth(topic("orders", ["b1", "b2"]), 4, [group("b1"), group("b2", { hasLiveMaster: false }), group("b3")]),
    );
    assert.equal(err.code, "NO_BROKERS_AVAILABLE");
    assert.match(err.message, /"b2"/);
  });
});

describe("topic alter: placement of new partitions", () => {
  it("places new partitions like a new topic's, on the least loaded groups, counting what they host", () => {
    // b1 hosts the topic's two partitions (and nothing else); b2 and b3 are empty.
    const growth = planPartitionGrowth(topic("orders", ["b1", "b1"]), 5, [
      group("b1", { hostedPartitions: 2 }),
      group("b2"),
      group("b3"),
    ]);
    // Shares after placement: b1 2 (its old ones), b2 2, b3 1 — ties go by name.
    assert.deepEqual(growth.added, ["b2", "b3", "b2"]);
    assert.equal(growth.previousCount, 2);
    assert.equal(growth.partitionCount, 5);
    assert.deepEqual(
      [...growth.partitionsByGroup],
      [
        ["b1", []],
        ["b2", [2, 4]],
        ["b3", [3]],
      ],
    );
  });

  it("tells every group holding the topic the new count, even one that receives no new partition", () => {
    const growth = planPartitionGrowth(topic("orders", ["b1", "b2"]), 3, [
      group("b1", { hostedPartitions: 10 }),
      group("b2", { hostedPartitions: 10 }),
      group("b3"),
    ]);
    assert.deepEqual(growth.added, ["b3"]);
    assert.deepEqual([...growth.partitionsByGroup], [["b1", []], ["b2", []], ["b3", [2]]]);
  });

  it("places only on groups with a live master, weighted as for creation", () => {
    const growth = planPartitionGrowth(topic("orders", ["b1"]), 7, [
      group("b1", { hostedPartitions: 1 }),
      group("heavy", { weight: 2 }),
      group("down", { hasLiveMaster: false }),
    ]);
    // 7 partitions in all, b1 already holding one: heavy (weight 2) ends with 5, b1 with 2.
    assert.equal(growth.added.filter((g) => g === "heavy").length, 5);
    assert.equal(growth.added.filter((g) => g === "b1").length, 1);
    assert.ok(!growth.added.includes("down"));
  });

  it("the grown record keeps existing partitions where they are and appends the new ones", () => {
    const record = topic("orders", ["b1", "b2"]);
    const growth = planPartitionGrowth(record, 4, [group("b1", { hostedPartitions: 1 }), group("b2", { hostedPartitions: 1 })]);
    const grown = grownRecord(record, growth);
    assert.equal(grown.partitionCount, 4);
    assert.deepEqual(grown.assignment.slice(0, 2), ["b1", "b2"]);
    assert.deepEqual(grown.assignment.slice(2), growth.added);
  });

  it("the grown record is refused when the count changed since the plan (a concurrent alter)", () => {
    const record = topic("orders", ["b1", "b2"]);
    const growth = planPartitionGrowth(record, 4, [group("b1"), group("b2")]);
    const err = thrown(() => grownRecord(topic("orders", ["b1", "b2", "b1"]), growth));
    assert.equal(err.code, "INVALID_PARTITIONS");
    assert.match(err.message, /from 2 to 3/);
  });

  it("internal topics keep their count", async () => {
    const { admin, calls } = await setup();
    await assert.rejects(admin.createPartitions({ topic: "%groups", partitions: 100 }), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "INVALID_TOPIC_NAME");
      assert.match(err.message, /internal/);
      return true;
    });
    assert.equal(calls.length, 0);
  });
});

/** Broker admin calls recorded instead of sent; `fail` makes one group's calls fail. */
class FakeBrokers {
  readonly calls: Array<{ address: string } & Omit<CreatePartitionsRequest, "header">> = [];
  failAddress = "";

  async createPartitions(address: string, request: Omit<CreatePartitionsRequest, "header">): Promise<CreatePartitionsResponse> {
    this.calls.push({ address, ...request });
    if (address === this.failAddress) throw new SluiceError("STORAGE_ERROR", "disk on fire");
    return { created: request.partitions };
  }

  async deleteTopic(): Promise<void> {}
}

function broker(name: string, port: number): BrokerInfo {
  return {
    cluster: "c",
    group: name,
    brokerId: 0,
    address: `127.0.0.1:${port}`,
    httpAddress: "",
    version: "test",
    role: "master",
    epoch: 1,
    weight: 1,
  };
}

async function setup() {
  const store = new MemoryRegistryStore();
  const state = new ClusterState({
    store,
    clock: new FakeClock(1_000_000),
    heartbeatIntervalMs: 1000,
    expiryMs: 3000,
    logger: silentLogger,
    learnTopicsFromReports: true,
  });
  await state.register(broker("b1", 1001), []);
  await state.register(broker("b2", 1002), []);
  const brokers = new FakeBrokers();
  const admin = new TopicAdmin(state, brokers as unknown as BrokerAdminClients, silentLogger);
  let routeChanges = 0;
  state.onRouteChange(() => routeChanges++);
  return { state, store, brokers, admin, calls: brokers.calls, routeChanges: () => routeChanges };
}

describe("topic alter through the name server's topic admin", () => {
  it("grows a topic: new partitions on their groups, the new count on every group, then the record and a route change", async () => {
    const { store, admin, calls, brokers, routeChanges } = await setup();
    await admin.createTopic({ topic: "orders", partitions: 2, brokerGroups: ["b1"], config: { ...EMPTY_TOPIC_CONFIG } });
    calls.length = 0;
    const changesBefore = routeChanges();

    const route = await admin.createPartitions({ topic: "orders", partitions: 4 });

    assert.deepEqual(route.partitions.map((p) => p.group), ["b1", "b1", "b2", "b2"]);
    assert.deepEqual(
      calls.map((c) => [c.address, c.partitions, c.partitionCount, c.grow]),
      [
        ["127.0.0.1:1001", [], 4, true],
        ["127.0.0.1:1002", [2, 3], 4, true],
      ],
    );
    const record = await store.getTopic("orders");
    assert.equal(record?.partitionCount, 4);
    assert.deepEqual(record?.assignment, ["b1", "b1", "b2", "b2"]);
    assert.ok(routeChanges() > changesBefore, "route watchers are told");
    assert.equal(brokers.failAddress, "");
  });

  it("refuses fewer or the same partitions and an unknown topic, asking no broker and changing nothing", async () => {
    const { store, admin, calls } = await setup();
    await admin.createTopic({ topic: "orders", partitions: 3, brokerGroups: [], config: { ...EMPTY_TOPIC_CONFIG } });
    const before = await store.getTopic("orders");
    calls.length = 0;
    for (const partitions of [3, 2]) {
      await assert.rejects(admin.createPartitions({ topic: "orders", partitions }), (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, "INVALID_PARTITIONS");
        assert.match(err.message, /has 3 partitions/);
        return true;
      });
    }
    await assert.rejects(admin.createPartitions({ topic: "nope", partitions: 3 }), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "UNKNOWN_TOPIC");
      assert.match(err.message, /"nope" does not exist/);
      return true;
    });
    assert.equal(calls.length, 0);
    assert.deepEqual(await store.getTopic("orders"), before);
  });

  it("a broker failure leaves the record unchanged and says so; asking again completes it the same way", async () => {
    const { store, admin, calls, brokers } = await setup();
    await admin.createTopic({ topic: "orders", partitions: 2, brokerGroups: ["b1"], config: { ...EMPTY_TOPIC_CONFIG } });
    calls.length = 0;
    brokers.failAddress = "127.0.0.1:1002";
    await assert.rejects(admin.createPartitions({ topic: "orders", partitions: 4 }), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "STORAGE_ERROR");
      assert.match(err.message, /group "b2".*still has 2 partitions.*disk on fire/);
      return true;
    });
    assert.equal((await store.getTopic("orders"))?.partitionCount, 2);
    const firstPlan = calls.map((c) => [c.address, c.partitions]);

    calls.length = 0;
    brokers.failAddress = "";
    const route = await admin.createPartitions({ topic: "orders", partitions: 4 });
    assert.equal(route.partitions.length, 4);
    assert.deepEqual(calls.map((c) => [c.address, c.partitions]), firstPlan, "the same placement as the failed attempt");
  });

  it("a second alter of the same topic while one runs is told to retry", async () => {
    const { admin, state } = await setup();
    await admin.createTopic({ topic: "orders", partitions: 1, brokerGroups: [], config: { ...EMPTY_TOPIC_CONFIG } });
    assert.ok(state.claimTopicCreation("orders"));
    try {
      await assert.rejects(admin.createPartitions({ topic: "orders", partitions: 2 }), (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, "NOT_READY");
        return true;
      });
    } finally {
      state.releaseTopicCreation("orders");
    }
    assert.equal((await admin.createPartitions({ topic: "orders", partitions: 2 })).partitions.length, 2);
  });
});
