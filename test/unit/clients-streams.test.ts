// The SDK's Produce and Subscribe plumbing against an in-process fake broker and name
// server: acks and offsets, retries after a dropped stream, credit, resets and seeks.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { decodeRecords } from "../../common/src/batch/index.js";
import { NotLeaderError, SluiceError, MessageTooLargeError } from "../../common/src/errors.js";
import { Sluice } from "../../clients/src/index.js";
import { FakeCluster } from "./clients-fake-cluster.js";
import { take } from "../helpers/take.js";

const FAST_RETRY = { retries: 5, initialRetryMs: 10, maxRetryMs: 50 };

function storedValues(cluster: FakeCluster, topic: string, partition: number): string[] {
  return cluster.log(topic, partition).batches.flatMap((b) => decodeRecords(b.bytes).map((r) => r.value!.toString()));
}


describe("SDK streams against a fake broker", () => {
  let cluster: FakeCluster;
  let sluice: Sluice;

  before(async () => {
    cluster = await new FakeCluster().start();
    sluice = new Sluice({ nameservers: [cluster.address], clientId: "streams-test", retry: FAST_RETRY, requestTimeoutMs: 5000 });
  });
  after(async () => {
    await sluice.close();
    await cluster.stop();
  });

  it("send resolves with each message's partition and offset, in input order", async () => {
    cluster.createTopic("acks", 3);
    const producer = sluice.producer({ lingerMs: 0 });
    const messages = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 5}`, value: `v${i}` }));
    const metas = await producer.send("acks", messages);
    assert.equal(metas.length, 30);
    const nextOffset = [0, 0, 0];
    metas.forEach((meta, i) => {
      assert.equal(meta.topic, "acks");
      assert.equal(meta.offset, nextOffset[meta.partition]!++, `message ${i} gets the next offset of its partition`);
      assert.equal(storedValues(cluster, "acks", meta.partition)[meta.offset], `v${i}`);
    });
    assert.equal(cluster.stats.handshakes, 1, "one handshake for the connection");
    await producer.close();
  });

  it("concurrent sends share batches and each resolves with its own messages", async () => {
    cluster.createTopic("shared", 1);
    const producer = sluice.producer({ lingerMs: 5 });
    const sends = Array.from({ length: 20 }, (_, s) => producer.send("shared", Array.from({ length: 50 }, (_, i) => ({ value: `${s}-${i}` }))));
    const results = await Promise.all(sends);
    results.forEach((metas, s) => {
      metas.forEach((meta, i) => assert.equal(storedValues(cluster, "shared", 0)[meta.offset], `${s}-${i}`));
    });
    assert.ok(cluster.log("shared", 0).batches.length < 20, `${cluster.log("shared", 0).batches.length} batches for 20 sends`);
    await producer.close();
  });

  it("a dropped produce stream: its batches are retried on a new stream, in order, without loss", async () => {
    cluster.createTopic("dropped", 1);
    const routesBefore = cluster.stats.getRoutes;
    const streamsBefore = cluster.stats.produceStreams;
    const producer = sluice.producer({ lingerMs: 0, maxBatchBytes: 1024 });
    await producer.send("dropped", [{ value: "warm-up" }]);
    cluster.faults.dropProduceStreamAfter = 3;
    // The next stream is the one that will be dropped: force a fresh one by closing this producer.
    await producer.close();
    const second = sluice.producer({ lingerMs: 0, maxBatchBytes: 1024 });
    const values = Array.from({ length: 100 }, (_, i) => `m${i}-${"x".repeat(60)}`);
    const metas = await second.send("dropped", values.map((value) => ({ value })));
    assert.deepEqual(storedValues(cluster, "dropped", 0), ["warm-up", ...values], "every message once, in order");
    assert.deepEqual(metas.map((m) => m.offset), values.map((_, i) => i + 1));
    assert.ok(cluster.stats.produceStreams >= streamsBefore + 3, "a new stream replaced the dropped one");
    assert.ok(cluster.stats.getRoutes > routesBefore + 1, "routes were refreshed before the retry");
    await second.close();
  });

  it("a retriable refusal (NOT_LEADER) is retried; a permanent one fails the send", async () => {
    cluster.createTopic("refusals", 1);
    const producer = sluice.producer({ lingerMs: 0 });
    cluster.faults.produceErrors.push(new NotLeaderError("leadership moved"));
    const metas = await producer.send("refusals", [{ value: "a" }, { value: "b" }]);
    assert.deepEqual(metas.map((m) => m.offset), [0, 1]);
    cluster.faults.produceErrors.push(new MessageTooLargeError("batch too large for the fake"));
    await assert.rejects(producer.send("refusals", [{ value: "c" }]), (e: unknown) => e instanceof SluiceError && e.code === "MESSAGE_TOO_LARGE");
    assert.deepEqual(storedValues(cluster, "refusals", 0), ["a", "b"]);
    await producer.close();
  });

  it("sending to a topic the name server does not know fails fast with UNKNOWN_TOPIC", async () => {
    const producer = sluice.producer();
    const started = Date.now();
    await assert.rejects(producer.send("nowhere", [{ value: "x" }]), (e: unknown) => e instanceof SluiceError && e.code === "UNKNOWN_TOPIC");
    assert.ok(Date.now() - started < 1000, "no retrying until the timeout");
    const consumer = sluice.consumer();
    await assert.rejects(take(consumer.subscribe("nowhere"), 1), (e: unknown) => e instanceof SluiceError && e.code === "UNKNOWN_TOPIC");
    await producer.close();
  });

  it("acks none: sends resolve with offset -1 once written", async () => {
    cluster.createTopic("noacks", 1);
    const producer = sluice.producer({ acks: "none", lingerMs: 0 });
    const metas = await producer.send("noacks", [{ value: "a" }, { value: "b" }]);
    assert.deepEqual(metas, [{ topic: "noacks", partition: 0, offset: -1 }, { topic: "noacks", partition: 0, offset: -1 }]);
    await producer.flush();
    for (let i = 0; i < 50 && cluster.log("noacks", 0).endOffset < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(storedValues(cluster, "noacks", 0), ["a", "b"]);
    await producer.close();
  });

  it("a consumer from the beginning reads every partition in offset order, within its credit", async () => {
    cluster.createTopic("read", 2);
    const producer = sluice.producer({ lingerMs: 0, maxBatchBytes: 4096 });
    const total = 4000;
    await producer.send("read", Array.from({ length: total }, (_, i) => ({ key: `k${i}`, value: `value-${i}-${"y".repeat(80)}`, headers: { i: String(i) } })));
    await producer.close();
    const creditBefore = cluster.stats.creditGranted;
    const consumer = sluice.consumer({ fromBeginning: true, maxBytesInFlight: 64 * 1024 });
    const messages = await take(consumer.subscribe("read"), total);
    assert.equal(messages.length, total);
    const last = [-1, -1];
    for (const m of messages) {
      assert.equal(m.topic, "read");
      assert.equal(m.offset, last[m.partition]! + 1, "dense offsets per partition");
      last[m.partition] = m.offset;
      assert.equal(m.headers.i?.toString(), m.value!.toString().split("-")[1]);
    }
    const streamed = cluster.log("read", 0).endOffset + cluster.log("read", 1).endOffset;
    assert.equal(streamed, total);
    assert.ok(cluster.stats.creditGranted - creditBefore > 64 * 1024, "credit was granted again as the iterator consumed");
    assert.ok(cluster.stats.maxOverdraftBytes <= 4096 * 2, `the broker never ran far past the credit (${cluster.stats.maxOverdraftBytes} bytes)`);
    await consumer.close();
  });

  it("a consumer from the end sees only new messages", async () => {
    cluster.createTopic("tail", 1);
    const producer = sluice.producer({ lingerMs: 0 });
    await producer.send("tail", [{ value: "old" }]);
    const consumer = sluice.consumer();
    const iterator = consumer.subscribe("tail");
    const first = iterator.next();
    await new Promise((r) => setTimeout(r, 200));
    await producer.send("tail", [{ value: "new" }]);
    const got = await first;
    assert.equal(got.value?.value?.toString(), "new");
    assert.equal(got.value?.offset, 1);
    await consumer.close();
    assert.deepEqual(await iterator.next(), { done: true, value: undefined }, "a closed consumer's iterator is done");
    await producer.close();
  });

  it("next() calls made before data arrives are served in order", async () => {
    cluster.createTopic("waiting", 1);
    const consumer = sluice.consumer();
    const iterator = consumer.subscribe("waiting");
    const first = iterator.next();
    const second = iterator.next();
    await new Promise((r) => setTimeout(r, 200));
    const producer = sluice.producer({ lingerMs: 0 });
    await producer.send("waiting", [{ value: "one" }, { value: "two" }]);
    assert.deepEqual([(await first).value?.value?.toString(), (await second).value?.value?.toString()], ["one", "two"]);
    await consumer.close();
    await producer.close();
  });

  it("a dropped subscribe stream resumes after the last data received, with no gap or duplicate", async () => {
    cluster.createTopic("resume", 1);
    const producer = sluice.producer({ lingerMs: 0, maxBatchBytes: 1024 });
    const total = 3000; // ~250 KiB: several responses of at most 64 KiB of credit
    await producer.send("resume", Array.from({ length: total }, (_, i) => ({ value: `r${i}-${"z".repeat(60)}` })));
    await producer.close();
    const streamsBefore = cluster.stats.subscribeStreams;
    cluster.faults.dropSubscribeStreamAfter = 2;
    const consumer = sluice.consumer({ fromBeginning: true, maxBytesInFlight: 64 * 1024 });
    const messages = await take(consumer.subscribe("resume", { partitions: [0] }), total);
    assert.deepEqual(messages.map((m) => m.offset), Array.from({ length: total }, (_, i) => i));
    assert.ok(cluster.stats.subscribeStreams >= streamsBefore + 2, "a second stream was opened");
    await consumer.close();
  });

  it("an offset outside the log resets to the earliest offset with fromBeginning", async () => {
    cluster.createTopic("reset", 1);
    const producer = sluice.producer({ lingerMs: 0 });
    await producer.send("reset", [{ value: "a" }, { value: "b" }, { value: "c" }]);
    await producer.close();
    const consumer = sluice.consumer({ fromBeginning: true });
    const messages = await take(consumer.subscribe("reset", { offsets: { 0: 1000 } }), 3);
    assert.deepEqual(messages.map((m) => m.value?.toString()), ["a", "b", "c"]);
    await consumer.close();
  });

  it("seek moves a partition backwards and forwards; data sent before the move is dropped", async () => {
    cluster.createTopic("seek", 1);
    const producer = sluice.producer({ lingerMs: 0, maxBatchBytes: 1024 });
    await producer.send("seek", Array.from({ length: 50 }, (_, i) => ({ value: `s${i}` })));
    const consumer = sluice.consumer({ fromBeginning: true });
    const iterator = consumer.subscribe("seek");
    assert.deepEqual((await take(iterator, 10)).map((m) => m.offset), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    consumer.seek(0, 3);
    assert.deepEqual((await take(iterator, 3)).map((m) => m.offset), [3, 4, 5]);
    consumer.seek(0, 40);
    assert.deepEqual((await take(iterator, 10)).map((m) => m.offset), [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
    assert.throws(() => consumer.seek(3, 0), /does not read that partition/);
    const ends = await consumer.endOffsets("seek");
    assert.deepEqual([...ends], [[0, 50]]);
    await consumer.close();
    await producer.close();
  });
});
