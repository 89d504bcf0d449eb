// The producer across failures of its partition's master, against an in-process fake broker
// group (clients-fake-group.ts): idempotent sequences, retries recognised as duplicates,
// per-partition order kept on retry, resends to a new master, and errors surfaced only when
// nothing explains them or the send timeout passed.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, before, describe, it } from "node:test";
import { decodeRecords } from "../../common/src/batch/index.js";
import { MessageTooLargeError, NotEnoughReplicasError, NotLeaderError, SluiceError } from "../../common/src/errors.js";
import { Sluice } from "../../clients/src/index.js";
import { FakeGroup, producerHeader, type ReceivedBatch } from "./clients-fake-group.js";

const FAST_RETRY = { retries: 2, initialRetryMs: 10, maxRetryMs: 40 };

function storedValues(group: FakeGroup, topic: string, partition: number): string[] {
  return group.log(topic, partition).batches.flatMap((b) => decodeRecords(b.bytes).map((r) => r.value!.toString()));
}

function values(prefix: string, count: number): { value: string }[] {
  return Array.from({ length: count }, (_, i) => ({ value: `${prefix}${i}-${"x".repeat(60)}` }));
}

async function eventually(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

const sequenceOf = (r: ReceivedBatch) => `${r.producerId}/${r.producerEpoch}/${r.baseSequence}`;

describe("producer failover against a fake broker group", () => {
  let group: FakeGroup;
  let sluice: Sluice;

  before(async () => {
    group = await FakeGroup.start(2);
  });
  afterEach(async () => {
    await sluice?.close();
    for (const broker of group.brokers) {
      if (!broker.running) await broker.start();
      Object.assign(broker.faults, { produceErrors: [], breakAfterAppends: undefined, holdAcks: false, frozen: false });
      broker.received.length = 0;
    }
    group.promote(group.brokers[0]!);
  });
  after(async () => {
    await group.stop();
  });

  function client(requestTimeoutMs = 5000): Sluice {
    sluice = new Sluice({ nameservers: [group.nameserverAddress], clientId: "failover-test", retry: FAST_RETRY, requestTimeoutMs, routeRefreshMs: 100 });
    return sluice;
  }

  it("stamps one producer id, epoch 0 and consecutive record sequences per partition", async () => {
    group.createTopic("stamps", 2);
    const producer = client().producer({ idempotent: true, lingerMs: 0 });
    for (let round = 0; round < 3; round++) {
      await producer.send("stamps", [
        { value: `a${round}`, partition: 0 },
        { value: `b${round}`, partition: 0 },
        { value: `c${round}`, partition: 1 },
      ]);
    }
    for (const [partition, perBatch] of [[0, 2], [1, 1]] as const) {
      const headers = group.log("stamps", partition).batches.map((b) => producerHeader(b.bytes));
      assert.deepEqual(
        headers,
        [0, 1, 2].map((i) => ({ producerId: producer.producerId, producerEpoch: 0, baseSequence: i * perBatch, recordCount: perBatch })),
        `partition ${partition}`,
      );
    }
    assert.ok(producer.producerId! > 0 && Number.isSafeInteger(producer.producerId));
  });

  it("a stream broken after the master appended: retries are recognised, every message once, in order", async () => {
    group.createTopic("broken", 1);
    const master = group.brokers[0]!;
    master.faults.breakAfterAppends = 3;
    const producer = client().producer({ idempotent: true, lingerMs: 0, maxBatchBytes: 1024 });
    const sent = values("m", 150);
    const metas = await producer.send("broken", sent);
    assert.deepEqual(storedValues(group, "broken", 0), sent.map((m) => m.value), "every message once, in order");
    assert.deepEqual(metas.map((m) => m.offset), sent.map((_, i) => i), "offsets of the first append");
    const duplicates = master.received.filter((r) => r.result === "duplicate");
    assert.ok(duplicates.length >= 1, "the unacknowledged batch came back as a duplicate");
    for (const duplicate of duplicates) {
      assert.ok(
        master.received.some((r) => r.result === "appended" && sequenceOf(r) === sequenceOf(duplicate)),
        "a retry carries the sequence of its first attempt",
      );
    }
  });

  it("master killed with batches unacknowledged: they go to the new master with the same sequences, no error, no duplicate", async () => {
    group.createTopic("killed", 1);
    const [oldMaster, newMaster] = group.brokers as [typeof group.brokers[0], typeof group.brokers[0]];
    const producer = client().producer({ idempotent: true, lingerMs: 0, maxBatchBytes: 1024 });
    await producer.send("killed", [{ value: "warm-up" }]);
    const acknowledgedBefore = oldMaster.received.length;
    oldMaster.faults.holdAcks = true;
    const sent = values("k", 60);
    const sending = producer.send("killed", sent);
    await eventually("the old master appended the batches in flight", () => oldMaster.received.length >= acknowledgedBefore + 5);
    const appendedThere = oldMaster.received.slice(acknowledgedBefore).filter((r) => r.result === "appended").map(sequenceOf);
    assert.equal(appendedThere.length, 5, "five batches in flight at most");
    const started = Date.now();
    oldMaster.stop();
    group.promote(newMaster);
    const metas = await sending;
    const tookMs = Date.now() - started;
    assert.deepEqual(storedValues(group, "killed", 0), ["warm-up", ...sent.map((m) => m.value)], "each message once, in order");
    assert.deepEqual(metas.map((m) => m.offset), sent.map((_, i) => i + 1));
    const recognised = newMaster.received.filter((r) => r.result === "duplicate").map(sequenceOf);
    assert.deepEqual(recognised, appendedThere, "the new master recognised exactly what the old one had appended");
    assert.ok(tookMs < 3000, `resent within ${tookMs} ms`);
  });

  it("a frozen master: once the route names another, its batches are resent there", async () => {
    group.createTopic("frozen", 1);
    const [oldMaster, newMaster] = group.brokers as [typeof group.brokers[0], typeof group.brokers[0]];
    const producer = client(10_000).producer({ idempotent: true, lingerMs: 0 });
    await producer.send("frozen", [{ value: "before" }]);
    oldMaster.faults.frozen = true;
    const sending = producer.send("frozen", [{ value: "during" }]);
    await sleep(100);
    group.promote(newMaster);
    const started = Date.now();
    const [meta] = await sending;
    assert.equal(meta!.offset, 1);
    assert.ok(Date.now() - started < 5000, "well before the 10 s send timeout");
    assert.deepEqual(storedValues(group, "frozen", 0), ["before", "during"]);
  });

  it("failover errors are retried past `retries` until the send timeout, with the same sequence every time", async () => {
    group.createTopic("gate", 1);
    const master = group.brokers[0]!;
    master.faults.produceErrors.push(
      ...Array.from({ length: 4 }, () => new NotEnoughReplicasError("fake: slaves 1 and 2 are 900 ms behind")),
      new NotLeaderError("fake: leadership moving"),
    );
    const producer = client().producer({ idempotent: true, lingerMs: 0 });
    const [meta] = await producer.send("gate", [{ value: "held back" }]);
    assert.equal(meta!.offset, 0);
    assert.equal(master.received.length, 6, "five refusals then the append, though retries is 2");
    assert.equal(new Set(master.received.map(sequenceOf)).size, 1, "every attempt carried the same sequence");

    // Other retriable errors keep the `retries` cap (THROTTLED has its own rule: clients-flow-pacing).
    master.faults.produceErrors.push(...Array.from({ length: 4 }, () => new SluiceError("STORAGE_FULL", "fake: disk full")));
    await assert.rejects(producer.send("gate", [{ value: "disk full" }]), (e: unknown) => e instanceof SluiceError && e.code === "STORAGE_FULL");
  });

  it("the send timeout ends the retrying with the last error", async () => {
    group.createTopic("timeout", 1);
    group.brokers[0]!.faults.produceErrors.push(...Array.from({ length: 1000 }, () => new NotEnoughReplicasError("fake: no slave in sync")));
    const producer = client(600).producer({ idempotent: true, lingerMs: 0 });
    const started = Date.now();
    await assert.rejects(producer.send("timeout", [{ value: "x" }]), (e: unknown) => e instanceof SluiceError && e.code === "NOT_ENOUGH_REPLICAS");
    const tookMs = Date.now() - started;
    assert.ok(tookMs >= 450 && tookMs < 1500, `gave up after ${tookMs} ms, at the 600 ms send timeout`);
  });

  it("a refused batch in the middle of a pipeline: the later ones, refused as out of order, go again after it", async () => {
    group.createTopic("pipeline", 1);
    const master = group.brokers[0]!;
    master.faults.produceErrors.push(null, new NotEnoughReplicasError("fake: a slave dropped out"));
    const producer = client().producer({ idempotent: true, lingerMs: 0, maxBatchBytes: 1024 });
    const sent = values("p", 100);
    await producer.send("pipeline", sent);
    assert.deepEqual(storedValues(group, "pipeline", 0), sent.map((m) => m.value), "in order, once each");
    assert.ok(
      master.received.some((r) => r.result === "OUT_OF_ORDER_SEQUENCE"),
      "batches sent behind the refused one were refused as out of order (and retried, not surfaced)",
    );
  });

  it("a batch refused for good fails its send; the partition goes on in a new epoch from sequence 0", async () => {
    group.createTopic("too-large", 1);
    group.brokers[0]!.faults.produceErrors.push(new MessageTooLargeError("fake: too large"));
    const producer = client().producer({ idempotent: true, lingerMs: 0 });
    await assert.rejects(producer.send("too-large", [{ value: "big" }]), (e: unknown) => e instanceof SluiceError && e.code === "MESSAGE_TOO_LARGE");
    const [meta] = await producer.send("too-large", [{ value: "next" }]);
    assert.equal(meta!.offset, 0);
    const [stored] = group.log("too-large", 0).batches;
    assert.deepEqual(producerHeader(stored!.bytes), { producerId: producer.producerId, producerEpoch: 1, baseSequence: 0, recordCount: 1 });
  });

  it("without idempotence, batches carry no producer state and a broken stream is still retried", async () => {
    group.createTopic("plain", 1);
    group.brokers[0]!.faults.breakAfterAppends = 2;
    const producer = client().producer({ acks: "all", lingerMs: 0, maxBatchBytes: 1024 });
    const sent = values("n", 60);
    await producer.send("plain", sent);
    const stored = storedValues(group, "plain", 0);
    for (const m of sent) assert.ok(stored.includes(m.value), "at least once");
    assert.equal(producerHeader(group.log("plain", 0).batches[0]!.bytes).producerId, -1);
    assert.equal(producer.producerId, undefined);
  });
});
