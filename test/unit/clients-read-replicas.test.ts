// Consumers read from a slave when a partition's master is missing or unreachable, and go
// back to the master when it returns: the replica choice alone, then end to end against a
// fake broker group (clients-fake-group.ts).
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, before, describe, it } from "node:test";
import type { TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import { Sluice } from "../../clients/src/index.js";
import { BrokerReachability, chooseReadReplica, partitionsByReplica } from "../../clients/src/routing/read-replicas.js";
import { CachedRoute } from "../../clients/src/routing/route-cache.js";
import { FakeGroup } from "./clients-fake-group.js";
import { take } from "../helpers/take.js";

function route(master: string | undefined, slaves: string[], partitions = 1): CachedRoute {
  const address = (a: string) => ({ group: "g", brokerId: 0, address: a, httpAddress: "" });
  const topicRoute: TopicRoute = {
    topic: "t",
    partitions: Array.from({ length: partitions }, (_, partition) => ({
      partition,
      group: "g",
      ...(master === undefined ? {} : { master: address(master) }),
      slaves: slaves.map(address),
      epoch: 1,
    })),
  };
  return CachedRoute.from(topicRoute, 0);
}

describe("read replica choice", () => {
  it("the master while it is reachable; else the first reachable slave; the master again once its mark expires", () => {
    let now = 1_000;
    const reachability = new BrokerReachability(5_000, () => now);
    const r = route("m:1", ["s1:1", "s2:1"]);
    assert.deepEqual(chooseReadReplica(r, 0, reachability), { address: "m:1", slave: false });
    assert.equal(reachability.noteFailure("m:1", "NOT_LEADER"), false, "a refusal is not unreachability");
    assert.equal(reachability.noteFailure("m:1", "BROKER_UNAVAILABLE"), true);
    assert.deepEqual(chooseReadReplica(r, 0, reachability), { address: "s1:1", slave: true });
    reachability.noteFailure("s1:1", "REQUEST_TIMED_OUT");
    assert.deepEqual(chooseReadReplica(r, 0, reachability), { address: "s2:1", slave: true }, "the first slave that is reachable");
    now += 5_000;
    assert.deepEqual(chooseReadReplica(r, 0, reachability), { address: "m:1", slave: false }, "marks expire");
    reachability.noteFailure("m:1", "BROKER_UNAVAILABLE");
    reachability.noteSuccess("m:1");
    assert.deepEqual(chooseReadReplica(r, 0, reachability), { address: "m:1", slave: false }, "a success clears the mark");
  });

  it("no master in the route: the first slave; everything marked down: the master anyway; nothing: none", () => {
    const reachability = new BrokerReachability();
    assert.deepEqual(chooseReadReplica(route(undefined, ["s1:1", "s2:1"]), 0, reachability), { address: "s1:1", slave: true });
    for (const a of ["m:1", "s1:1", "s2:1"]) reachability.markDown(a);
    assert.deepEqual(chooseReadReplica(route("m:1", ["s1:1", "s2:1"]), 0, reachability), { address: "m:1", slave: false });
    assert.deepEqual(chooseReadReplica(route(undefined, ["s1:1", "s2:1"]), 0, reachability), { address: "s1:1", slave: true });
    assert.equal(chooseReadReplica(route(undefined, []), 0, reachability), undefined);
  });

  it("groups partitions per replica and names a partition with no replica", () => {
    const reachability = new BrokerReachability();
    reachability.markDown("m:1");
    assert.deepEqual([...partitionsByReplica(route("m:1", ["s1:1"], 3), [0, 2], reachability)], [["s1:1", [0, 2]]]);
    assert.throws(() => partitionsByReplica(route(undefined, [], 1), [0], reachability), /no live master nor slave/);
    assert.throws(() => partitionsByReplica(route("m:1", [], 1), [4], reachability), (e: unknown) => (e as { code?: string }).code === "UNKNOWN_PARTITION");
  });
});


describe("consumers fall back to slaves against a fake broker group", () => {
  let group: FakeGroup;
  let sluice: Sluice;

  before(async () => {
    group = await FakeGroup.start(3);
  });
  afterEach(async () => {
    await sluice?.close();
    for (const broker of group.brokers) if (!broker.running) await broker.start();
    group.promote(group.brokers[0]!);
  });
  after(async () => {
    await group.stop();
  });

  function client(): Sluice {
    sluice = new Sluice({
      nameservers: [group.nameserverAddress],
      clientId: "read-replicas-test",
      retry: { retries: 3, initialRetryMs: 10, maxRetryMs: 50 },
      requestTimeoutMs: 3000,
      routeRefreshMs: 100,
    });
    return sluice;
  }

  it("the master is unreachable: the consumer reads from the first slave, then from the master once it is back, with no gap or duplicate", async () => {
    group.createTopic("away", 1);
    const [master, slave1, slave2] = group.brokers as [typeof group.brokers[0], typeof group.brokers[0], typeof group.brokers[0]];
    const producer = client().producer({ idempotent: true, lingerMs: 0 });
    await producer.send("away", Array.from({ length: 20 }, (_, i) => ({ value: `before-${i}` })));
    master.stop(); // the route still names it: its lease has not expired yet
    const masterStreams = master.stats.subscribeStreams;

    const consumer = sluice.consumer({ fromBeginning: true });
    const iterator = consumer.subscribe("away");
    const first = await take(iterator, 20, 8000);
    assert.deepEqual(first.map((m) => m.offset), Array.from({ length: 20 }, (_, i) => i));
    assert.ok(slave1.stats.bytesStreamed > 0, "the first slave served the reads");
    assert.equal(slave2.stats.bytesStreamed, 0, "the second slave was not needed");
    assert.ok(slave1.stats.listOffsets > 0, "the start offset came from the slave too");

    await master.start();
    await producer.send("away", Array.from({ length: 10 }, (_, i) => ({ value: `after-${i}` })));
    const second = await take(iterator, 10, 8000);
    assert.deepEqual(second.map((m) => m.offset), Array.from({ length: 10 }, (_, i) => 20 + i), "no gap, no duplicate");
    for (let i = 0; i < 50 && master.stats.subscribeStreams === masterStreams; i++) await sleep(100);
    assert.ok(master.stats.subscribeStreams > masterStreams, "the consumer went back to the master");
    const streamedBySlave = slave1.stats.bytesStreamed;
    await producer.send("away", [{ value: "on-master" }]);
    const [third] = await take(iterator, 1, 8000);
    assert.equal(third!.value?.toString(), "on-master");
    assert.equal(third!.offset, 30);
    assert.ok(master.stats.bytesStreamed > 0, "the master serves the reads again");
    assert.equal(slave1.stats.bytesStreamed, streamedBySlave, "the slave no longer does");
    await consumer.close();
  });

  it("a route with no master: reads go to a slave at once", async () => {
    group.createTopic("masterless", 2);
    const producer = client().producer({ lingerMs: 0 });
    await producer.send("masterless", [{ value: "a", partition: 0 }, { value: "b", partition: 1 }]);
    group.routeMaster = undefined;
    group.routeSlaves = [group.brokers[2]!];
    await sleep(300); // the client's route refresh (100 ms) sees the master gone
    const consumer = sluice.consumer({ fromBeginning: true });
    const messages = await take(consumer.subscribe("masterless"), 2, 8000);
    assert.deepEqual(messages.map((m) => m.value?.toString()).sort(), ["a", "b"]);
    assert.ok(group.brokers[2]!.stats.bytesStreamed > 0);
    const ends = await consumer.endOffsets("masterless");
    assert.deepEqual([...ends].sort(), [[0, 1], [1, 1]], "end offsets from the slave too");
    await consumer.close();
  });
});
