/**
 * One set of behaviours every RegistryStore must have, run against each implementation: the
 * in-memory store, and the etcd store on a real etcd started for this file. A name server must
 * not be able to tell which one it runs on (except that only etcd is shared between processes).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { EtcdRegistryStore } from "../../nameserver/src/registry/etcd-store.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";
import { brokerKey, type BrokerRecord, type RegistryStore, type TopicRecord } from "../../nameserver/src/registry/store.js";
import { brokerRecord, topicRecord } from "../helpers/registry-records.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";

/**
 * A fresh, empty registry per test, and a second handle on the same registry (for etcd, a
 * second client: another name server sharing it; the in-memory store can only share itself).
 */
interface Registry {
  store: RegistryStore;
  otherHandle(): RegistryStore;
}

interface StoreFactory {
  name: string;
  skip: string | false;
  setUp(): Promise<void>;
  fresh(): Registry;
  tearDown(): Promise<void>;
}

function memoryFactory(): StoreFactory {
  return {
    name: "MemoryRegistryStore",
    skip: false,
    setUp: async () => undefined,
    fresh: () => {
      const store = new MemoryRegistryStore();
      return { store, otherHandle: () => store };
    },
    tearDown: async () => undefined,
  };
}

function etcdFactory(): StoreFactory {
  let etcd: EtcdProcess | undefined;
  const opened: RegistryStore[] = [];
  let clusters = 0;
  return {
    name: "EtcdRegistryStore",
    skip: etcdSkipReason,
    setUp: async () => {
      etcd = await startEtcd();
    },
    fresh: () => {
      if (etcd === undefined) throw new Error("etcd did not start");
      // A cluster name of its own gives each test an empty key space on the shared etcd.
      const options = { endpoints: [etcd.endpoint], cluster: `conformance-${++clusters}` };
      const open = (): RegistryStore => {
        const store = new EtcdRegistryStore(options);
        opened.push(store);
        return store;
      };
      return { store: open(), otherHandle: open };
    },
    tearDown: async () => {
      await Promise.all(opened.splice(0).map((store) => store.close()));
      await etcd?.stop();
    },
  };
}

const broker = brokerRecord;
const topic = topicRecord;

const byKey = (a: BrokerRecord, b: BrokerRecord): number => brokerKey(a).localeCompare(brokerKey(b));
const byTopic = (a: TopicRecord, b: TopicRecord): number => a.topic.localeCompare(b.topic);

for (const factory of [memoryFactory(), etcdFactory()]) {
  describe(`RegistryStore conformance: ${factory.name}`, { skip: factory.skip }, () => {
    before(() => factory.setUp());
    after(() => factory.tearDown());

    test("a put broker reads back equal, and a second put with the same key replaces it", async () => {
      const { store } = factory.fresh();
      const first = broker();
      await store.putBroker(first);
      assert.deepEqual(await store.getBroker(brokerKey(first)), first);
      const moved = broker({ address: "127.0.0.1:9921", epoch: 2, role: "slave" });
      await store.putBroker(moved);
      assert.deepEqual(await store.getBroker(brokerKey(first)), moved);
      assert.deepEqual(await store.listBrokers(), [moved]);
    });

    test("brokers are told apart by cluster, group and id", async () => {
      const { store } = factory.fresh();
      const brokers = [broker(), broker({ brokerId: 1, role: "slave" }), broker({ group: "b2" }), broker({ cluster: "other" })];
      for (const record of brokers) await store.putBroker(record);
      assert.deepEqual((await store.listBrokers()).sort(byKey), [...brokers].sort(byKey));
      assert.equal(await store.getBroker("sluice/b3/0"), undefined);
    });

    test("removing a broker reports whether it was there", async () => {
      const { store } = factory.fresh();
      const record = broker();
      await store.putBroker(record);
      assert.equal(await store.removeBroker(brokerKey(record)), true);
      assert.equal(await store.removeBroker(brokerKey(record)), false);
      assert.equal(await store.getBroker(brokerKey(record)), undefined);
      assert.deepEqual(await store.listBrokers(), []);
    });

    test("records handed out are copies: mutating one does not change the registry", async () => {
      const { store } = factory.fresh();
      await store.putBroker(broker());
      await store.createTopic(topic("orders"));
      const got = (await store.getBroker("sluice/b1/0")) as BrokerRecord;
      got.address = "mutated:1";
      const gotTopic = (await store.getTopic("orders")) as TopicRecord;
      gotTopic.assignment[0] = "mutated";
      gotTopic.config.retentionMs = 1;
      assert.equal((await store.getBroker("sluice/b1/0"))?.address, "127.0.0.1:9911");
      assert.deepEqual(await store.getTopic("orders"), topic("orders"));
    });

    test("createTopic creates once: a second create of the name resolves false and keeps the first", async () => {
      const { store } = factory.fresh();
      assert.equal(await store.createTopic(topic("orders")), true);
      assert.equal(await store.createTopic(topic("orders", { partitionCount: 5, assignment: ["b1", "b1", "b1", "b1", "b1"] })), false);
      assert.deepEqual(await store.getTopic("orders"), topic("orders"));
    });

    test("concurrent creates of one topic through two handles: exactly one wins", async () => {
      const { store, otherHandle } = factory.fresh();
      const other = otherHandle();
      const attempts = Array.from({ length: 8 }, (_, i) =>
        (i % 2 === 0 ? store : other).createTopic(topic("orders", { partitionCount: 1, assignment: [`b${i}`] })),
      );
      const results = await Promise.all(attempts);
      assert.equal(results.filter(Boolean).length, 1);
      const winner = results.indexOf(true);
      assert.deepEqual((await other.getTopic("orders"))?.assignment, [`b${winner}`]);
    });

    test("putTopic adds or replaces; getTopic of an unknown topic is undefined", async () => {
      const { store } = factory.fresh();
      assert.equal(await store.getTopic("orders"), undefined);
      await store.putTopic(topic("orders"));
      const grown = topic("orders", { partitionCount: 3, assignment: ["b1", "b2", "b1"] });
      await store.putTopic(grown);
      assert.deepEqual(await store.getTopic("orders"), grown);
    });

    test("updateTopic applies the change, keeps the name, and resolves undefined for an unknown topic", async () => {
      const { store } = factory.fresh();
      assert.equal(await store.updateTopic("missing", (current) => current), undefined);
      await store.createTopic(topic("orders"));
      const updated = await store.updateTopic("orders", (current) => ({ ...current, topic: "renamed", assignment: ["b2", "b2"] }));
      assert.deepEqual(updated, topic("orders", { assignment: ["b2", "b2"] }));
      assert.deepEqual(await store.getTopic("orders"), updated);
      assert.equal(await store.getTopic("renamed"), undefined);
    });

    test("concurrent updates through two handles lose nothing (compare-and-swap)", async () => {
      const { store, otherHandle } = factory.fresh();
      const other = otherHandle();
      await store.createTopic(topic("orders", { partitionCount: 0, assignment: [] }));
      const writers = 6;
      await Promise.all(
        Array.from({ length: writers }, (_, i) =>
          (i % 2 === 0 ? store : other).updateTopic("orders", (current) => ({
            ...current,
            partitionCount: current.partitionCount + 1,
            assignment: [...current.assignment, `b${i}`],
          })),
        ),
      );
      const final = (await store.getTopic("orders")) as TopicRecord;
      assert.equal(final.partitionCount, writers);
      assert.deepEqual([...final.assignment].sort(), Array.from({ length: writers }, (_, i) => `b${i}`).sort());
    });

    test("deleteTopic reports whether it existed, and a deleted name can be created again", async () => {
      const { store } = factory.fresh();
      await store.createTopic(topic("orders"));
      assert.equal(await store.deleteTopic("orders"), true);
      assert.equal(await store.deleteTopic("orders"), false);
      assert.equal(await store.getTopic("orders"), undefined);
      assert.equal(await store.createTopic(topic("orders", { partitionCount: 1, assignment: ["b2"] })), true);
    });

    test("listTopics lists every topic and nothing else", async () => {
      const { store } = factory.fresh();
      const topics = [topic("orders"), topic("orders.v2"), topic("payments_eu-1", { partitionCount: 1, assignment: [""] })];
      for (const record of topics) await store.createTopic(record);
      await store.putBroker(broker());
      assert.deepEqual((await store.listTopics()).sort(byTopic), [...topics].sort(byTopic));
    });

    test("what one handle writes, the other reads", async () => {
      const { store, otherHandle } = factory.fresh();
      const other = otherHandle();
      await store.putBroker(broker());
      await store.createTopic(topic("orders"));
      assert.deepEqual(await other.listBrokers(), [broker()]);
      assert.deepEqual(await other.getTopic("orders"), topic("orders"));
      assert.equal(await other.removeBroker("sluice/b1/0"), true);
      assert.equal(await store.getBroker("sluice/b1/0"), undefined);
    });
  });
}
