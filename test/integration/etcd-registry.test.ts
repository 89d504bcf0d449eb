/**
 * What only the etcd store does, on a real etcd: its key layout, broker records held by a
 * lease, and clear errors when etcd is unreachable or the endpoint is wrong.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Etcd3 } from "etcd3";
import { SluiceError } from "../../common/src/errors.js";
import { EtcdRegistryStore, RegistryUnavailableError } from "../../nameserver/src/registry/etcd-store.js";
import type { BrokerRecord, TopicRecord } from "../../nameserver/src/registry/store.js";
import { brokerRecord, topicRecord } from "../helpers/registry-records.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";

const BROKER: BrokerRecord = brokerRecord();
const TOPIC: TopicRecord = topicRecord("orders", {
  partitionCount: 1,
  assignment: ["b1"],
  config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 },
});

/** A port nothing listens on: connecting is refused at once. */
const DEAD_ENDPOINT = "http://127.0.0.1:1";

describe("EtcdRegistryStore on a real etcd", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess;
  let raw: Etcd3;
  const stores: EtcdRegistryStore[] = [];
  const open = (cluster: string): EtcdRegistryStore => {
    const store = new EtcdRegistryStore({ endpoints: [etcd.endpoint], cluster });
    stores.push(store);
    return store;
  };

  before(async () => {
    etcd = await startEtcd();
    raw = new Etcd3({ hosts: etcd.endpoint });
  });
  after(async () => {
    raw?.close();
    await Promise.all(stores.map((store) => store.close()));
    await etcd?.stop();
  });

  test("records are JSON under /sluice/<cluster>/brokers/… and /sluice/<cluster>/topics/…", async () => {
    const store = open("layout");
    await store.putBroker(BROKER);
    await store.createTopic(TOPIC);
    const keys = await raw.getAll().prefix("/sluice/layout/").strings();
    assert.deepEqual(Object.keys(keys).sort(), ["/sluice/layout/brokers/sluice/b1/0", "/sluice/layout/topics/orders"]);
    assert.deepEqual(JSON.parse(keys["/sluice/layout/topics/orders"] as string), TOPIC);
    assert.equal(store.keyPrefix, "/sluice/layout/");
  });

  test("two clusters on one etcd do not see each other", async () => {
    const a = open("cluster-a");
    const b = open("cluster-b");
    await a.putBroker(BROKER);
    await a.createTopic(TOPIC);
    assert.deepEqual(await b.listBrokers(), []);
    assert.deepEqual(await b.listTopics(), []);
    assert.equal(await b.createTopic(TOPIC), true);
  });

  test("a broker put under its lease vanishes when the lease is revoked", async () => {
    const store = open("lease-revoke");
    const lease = raw.lease(10, { autoKeepAlive: false });
    const leaseId = await lease.grant();
    await store.putBroker(BROKER, { leaseId });
    await store.putBroker({ ...BROKER, brokerId: 1, role: "slave" });
    assert.equal((await store.listBrokers()).length, 2);
    await lease.revoke();
    assert.deepEqual(
      (await store.listBrokers()).map((b) => b.brokerId),
      [1],
    );
  });

  test("a broker put under a lease nobody keeps alive vanishes when the lease expires", async () => {
    const store = open("lease-expiry");
    const lease = raw.lease(1, { autoKeepAlive: false });
    await store.putBroker(BROKER, { leaseId: await lease.grant() });
    assert.equal((await store.listBrokers()).length, 1);
    const deadline = Date.now() + 10_000;
    while ((await store.listBrokers()).length > 0) {
      assert.ok(Date.now() < deadline, "the broker record outlived its 1 s lease by 10 s");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    lease.release();
  });

  test("putting a broker under a lease that does not exist is refused with a clear error", async () => {
    const store = open("lease-missing");
    await assert.rejects(store.putBroker(BROKER, { leaseId: "123456789" }), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "INVALID_ARGUMENT");
      assert.match(err.message, /lease 123456789 does not exist/);
      return true;
    });
    assert.deepEqual(await store.listBrokers(), []);
  });

  test("connect() resolves against a running etcd", async () => {
    const store = await EtcdRegistryStore.connect({ endpoints: [etcd.endpoint], cluster: "connect" });
    stores.push(store);
    assert.deepEqual(await store.listTopics(), []);
  });
});

describe("EtcdRegistryStore when etcd is not there", () => {
  test("connect() fails with NOT_READY naming the endpoint", async () => {
    const startedMs = Date.now();
    await assert.rejects(EtcdRegistryStore.connect({ endpoints: [DEAD_ENDPOINT] }), (err: unknown) => {
      assert.ok(err instanceof RegistryUnavailableError);
      assert.equal(err.code, "NOT_READY");
      assert.equal(err.retriable, true);
      assert.match(err.message, /etcd at http:\/\/127\.0\.0\.1:1 is unreachable/);
      return true;
    });
    assert.ok(Date.now() - startedMs < 10_000, "a refused connection should fail within the call deadline");
  });

  test("operations of a store whose etcd stopped fail with RegistryUnavailableError", { skip: etcdSkipReason }, async () => {
    const etcd = await startEtcd();
    const store = new EtcdRegistryStore({ endpoints: [etcd.endpoint], cluster: "stopped", requestTimeoutMs: 1000, dialTimeoutMs: 1000 });
    try {
      await store.createTopic(TOPIC);
      await etcd.stop();
      await assert.rejects(store.getTopic("orders"), RegistryUnavailableError);
      await assert.rejects(store.putBroker(BROKER), new RegExp(`etcd at ${etcd.endpoint} is unreachable`));
    } finally {
      await store.close();
      await etcd.stop();
    }
  });

  test("endpoints are validated when the store is made", () => {
    assert.throws(() => new EtcdRegistryStore({ endpoints: [] }), /no etcd endpoint given/);
    assert.throws(() => new EtcdRegistryStore({ endpoints: ["tcp://127.0.0.1:2379"] }), /must be http:\/\/ or https:\/\/ with a port/);
    assert.throws(() => new EtcdRegistryStore({ endpoints: ["http://127.0.0.1"] }), /must be http:\/\/ or https:\/\/ with a port/);
    assert.throws(() => new EtcdRegistryStore({ endpoints: ["not a url"] }), /is not a URL/);
    assert.throws(() => new EtcdRegistryStore({ endpoints: ["http://127.0.0.1:2379"], cluster: "a/b" }), /contain no "\/"/);
  });
});
