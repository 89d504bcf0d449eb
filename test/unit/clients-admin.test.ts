// The admin API's shapes and lookups against the in-process fake name server and broker.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SluiceError } from "../../common/src/errors.js";
import { Sluice } from "../../clients/src/index.js";
import { FakeCluster } from "./clients-fake-cluster.js";

describe("admin API against a fake cluster", () => {
  let cluster: FakeCluster;
  let sluice: Sluice;

  before(async () => {
    cluster = await new FakeCluster().start();
    sluice = new Sluice({ nameservers: [cluster.address], retry: { retries: 2, initialRetryMs: 10, maxRetryMs: 20 }, requestTimeoutMs: 3000 });
  });
  after(async () => {
    await sluice.close();
    await cluster.stop();
  });

  it("creates and lists topics with their placement", async () => {
    const created = await sluice.admin().createTopic("orders", { partitions: 2 });
    assert.equal(created.topic, "orders");
    assert.equal(created.partitions, 2);
    assert.deepEqual(created.placement[1], { partition: 1, group: "b1", master: cluster.address, masterId: 0, slaves: [], epoch: 1 });
    await assert.rejects(sluice.admin().createTopic("orders"), (e: unknown) => e instanceof SluiceError && e.code === "TOPIC_ALREADY_EXISTS");
    const topics = await sluice.admin().listTopics();
    assert.deepEqual(topics.map((t) => [t.topic, t.partitions]), [["orders", 2]]);
  });

  it("describes a topic with each partition's offsets and size", async () => {
    cluster.createTopic("described", 2);
    await sluice.producer({ lingerMs: 0 }).send("described", [{ value: "a", partition: 1 }, { value: "b", partition: 1 }]);
    const description = await sluice.admin().describeTopic("described");
    assert.equal(description.topic, "described");
    const [p0, p1] = description.partitions;
    assert.equal(p0?.endOffset, 0);
    assert.equal(p1?.startOffset, 0);
    assert.equal(p1?.endOffset, 2);
    assert.equal(p1?.highWatermark, 2);
    assert.ok((p1?.sizeBytes ?? 0) > 61, "at least one batch header");
    assert.equal(p1?.master, cluster.address);
    assert.equal(p1?.error, undefined);
  });

  it("lists offsets and gets single messages by offset", async () => {
    cluster.createTopic("lookup", 1);
    await sluice.producer({ lingerMs: 0 }).send("lookup", [
      { key: "k0", value: "v0", headers: { h: "x" } },
      { key: "k1", value: "v1" },
      { key: "k2", value: "v2" },
    ]);
    assert.deepEqual([...(await sluice.admin().listOffsets("lookup", "earliest"))], [[0, 0]]);
    assert.deepEqual([...(await sluice.admin().listOffsets("lookup", "latest"))], [[0, 3]]);
    const message = await sluice.admin().getMessage("lookup", 0, { offset: 1 });
    assert.equal(message?.offset, 1);
    assert.equal(message?.partition, 0);
    assert.equal(message?.topic, "lookup");
    assert.equal(message?.key?.toString(), "k1");
    assert.equal(message?.value?.toString(), "v1");
    const first = await sluice.admin().getMessage("lookup", 0, { offset: 0 });
    assert.equal(first?.headers.h?.toString(), "x");
    assert.equal(await sluice.admin().getMessage("lookup", 0, { offset: 3 }), null, "nothing at the log end yet");
    await assert.rejects(sluice.admin().getMessage("lookup", 0, { offset: 99 }), (e: unknown) => e instanceof SluiceError && e.code === "OFFSET_OUT_OF_RANGE");
    await assert.rejects(sluice.admin().getMessage("lookup", 5, { offset: 0 }), (e: unknown) => e instanceof SluiceError && e.code === "UNKNOWN_PARTITION" && /has 1 partition; partition 5 does not exist/.test(e.message));
    await assert.rejects(sluice.admin().listOffsets("lookup", "newest" as never), /"earliest", "latest" or \{ timestamp: ms \}/);
  });

  it("shows the cluster's brokers in the contract's shape", async () => {
    assert.deepEqual(await sluice.admin().cluster(), {
      brokers: [{ group: "b1", id: 0, role: "master", state: "alive", epoch: 3, address: cluster.address, httpAddress: "", heartbeatAgeMs: 420, partitions: 7, suspicion: 0.42, inSync: null, lagMs: null, lagBytes: null }],
    });
  });
});
