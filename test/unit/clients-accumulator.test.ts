// The producer's accumulator: one open batch per partition, sealed when it lingered long
// enough or reached maxBatchBytes; acks map back to each send call in input order.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { decodeRecords, recordCountOf, validateBatch } from "../../common/src/batch/index.js";
import { SluiceError } from "../../common/src/errors.js";
import { RecordAccumulator } from "../../clients/src/producer/accumulator.js";
import { ProducerBatch, SendCall } from "../../clients/src/producer/send-call.js";

function accumulator(options: { lingerMs: number; maxBatchBytes?: number }) {
  const sealed: ProducerBatch[] = [];
  const acc = new RecordAccumulator(
    { lingerMs: options.lingerMs, maxBatchBytes: options.maxBatchBytes ?? 1 << 20, compression: "none", deliveryTimeoutMs: 30_000 },
    (batch) => sealed.push(batch),
  );
  return { acc, sealed };
}

/** Appends `count` messages of one call, to partitions chosen by `partitionOf`. */
function send(acc: RecordAccumulator, topic: string, values: string[], partitionOf: (i: number) => number = () => 0): SendCall {
  const call = new SendCall(topic, values.length);
  const partitions = acc.partitionsOf(topic);
  values.forEach((value, i) => acc.append(partitions, partitionOf(i), { value }, Date.now(), call, i));
  return call;
}

describe("record accumulator", () => {
  it("lingerMs 0: everything appended in one tick shares a batch, sealed on the next tick", async () => {
    const { acc, sealed } = accumulator({ lingerMs: 0 });
    send(acc, "t", ["a", "b"]);
    send(acc, "t", ["c"]);
    assert.equal(sealed.length, 0, "nothing is sealed synchronously");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(sealed.length, 1);
    assert.deepEqual(decodeRecords(sealed[0]!.bytes).map((r) => r.value?.toString()), ["a", "b", "c"]);
    assert.equal(validateBatch(sealed[0]!.bytes, 1 << 20), 3, "a valid RecordBatch v2 with 3 records");
  });

  it("lingerMs: a batch waits that long for more messages, not less", async () => {
    const { acc, sealed } = accumulator({ lingerMs: 60 });
    const started = Date.now();
    send(acc, "t", ["a"]);
    await sleep(25);
    send(acc, "t", ["b"]);
    assert.equal(sealed.length, 0, "still lingering after 25 ms");
    while (sealed.length === 0 && Date.now() - started < 2000) await sleep(5);
    const waited = Date.now() - started;
    assert.ok(waited >= 55, `sealed after ${waited} ms, at least lingerMs`);
    assert.ok(waited < 500, `sealed after ${waited} ms, not much later than lingerMs`);
    assert.equal(recordCountOf(sealed[0]!.bytes), 2, "the message sent while lingering joined the batch");
  });

  it("lingerMs: each partition's batch lingers from its own first message", async () => {
    const { acc, sealed } = accumulator({ lingerMs: 60 });
    send(acc, "t", ["p0"], () => 0);
    await sleep(35);
    send(acc, "t", ["p1"], () => 1);
    while (sealed.length === 0) await sleep(2);
    assert.deepEqual(sealed.map((b) => b.partition), [0], "partition 0's batch goes first");
    while (sealed.length === 1) await sleep(2);
    assert.deepEqual(sealed.map((b) => b.partition), [0, 1]);
  });

  it("seals a batch as soon as the next message would push it past maxBatchBytes", () => {
    const { acc, sealed } = accumulator({ lingerMs: 10_000, maxBatchBytes: 4096 });
    const value = "v".repeat(100);
    const call = send(acc, "t", Array.from({ length: 200 }, () => value));
    assert.ok(sealed.length >= 5, `${sealed.length} full batches sealed without waiting for the linger`);
    for (const batch of sealed) assert.ok(batch.bytes.length <= 4096, `batch of ${batch.bytes.length} bytes fits`);
    acc.sealAll();
    const total = sealed.reduce((n, b) => n + b.recordCount, 0);
    assert.equal(total, 200);
    assert.deepEqual(sealed.map((b) => b.sequence), sealed.map((_, i) => i), "batches of a partition are numbered in order");
    assert.equal(call.settled, false);
  });

  it("a single message larger than maxBatchBytes travels alone", () => {
    const { acc, sealed } = accumulator({ lingerMs: 10_000, maxBatchBytes: 1024 });
    send(acc, "t", ["small", "x".repeat(5000), "small"]);
    acc.sealAll();
    assert.deepEqual(sealed.map((b) => b.recordCount), [1, 1, 1]);
  });

  it("keeps topics and partitions in separate batches", () => {
    const { acc, sealed } = accumulator({ lingerMs: 10_000 });
    send(acc, "a", ["1", "2", "3", "4"], (i) => i % 2);
    send(acc, "b", ["5"]);
    acc.sealAll();
    const seen = sealed.map((b) => `${b.topic}/${b.partition}:${decodeRecords(b.bytes).map((r) => r.value?.toString()).join("")}`);
    assert.deepEqual(seen.sort(), ["a/0:13", "a/1:24", "b/0:5"]);
    acc.close();
  });

  it("acks give each message its offset, and a send resolves in input order once all its batches are acked", async () => {
    const { acc, sealed } = accumulator({ lingerMs: 10_000 });
    const call = send(acc, "t", ["a", "b", "c", "d", "e"], (i) => (i < 3 ? 1 : 0));
    acc.sealAll();
    const byPartition = new Map(sealed.map((b) => [b.partition, b]));
    byPartition.get(0)!.acknowledge(100);
    assert.equal(call.settled, false, "one batch still unacknowledged");
    byPartition.get(1)!.acknowledge(7);
    assert.deepEqual(await call.promise, [
      { topic: "t", partition: 1, offset: 7 },
      { topic: "t", partition: 1, offset: 8 },
      { topic: "t", partition: 1, offset: 9 },
      { topic: "t", partition: 0, offset: 100 },
      { topic: "t", partition: 0, offset: 101 },
    ]);
  });

  it("a failed batch rejects every send with a message in it, once", async () => {
    const { acc, sealed } = accumulator({ lingerMs: 10_000 });
    const first = send(acc, "t", ["a"]);
    const second = send(acc, "t", ["b", "c"]);
    acc.sealAll();
    const error = new SluiceError("NOT_LEADER", "moved");
    sealed[0]!.fail(error);
    sealed[0]!.fail(new SluiceError("INTERNAL", "later failures are ignored"));
    await assert.rejects(first.promise, (e: unknown) => e === error);
    await assert.rejects(second.promise, (e: unknown) => e === error);
    assert.equal(sealed[0]!.abandoned, true);
  });
});
