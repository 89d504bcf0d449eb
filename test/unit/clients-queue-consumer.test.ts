// The queue consumer against an in-process fake coordinator: credit, jobs only for leased
// offsets, settles that resolve when the broker answers, reconnection, and close.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { SluiceError } from "../../common/src/errors.js";
import { Sluice, type Job, type QueueConsumer } from "../../clients/src/index.js";
import { FakeCoordinator } from "./clients-queue-fake-coordinator.js";

const TOPIC = "jobs";

async function take(queue: QueueConsumer, count: number, timeoutMs = 5000): Promise<Job[]> {
  const jobs: Job[] = [];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  try {
    while (jobs.length < count) {
      const next = await Promise.race([queue.next(), timeout]);
      if (next === "timeout") throw new Error(`only ${jobs.length} of ${count} jobs arrived`);
      if (next.done) throw new Error(`the queue ended after ${jobs.length} jobs`);
      jobs.push(next.value);
    }
  } finally {
    clearTimeout(timer);
  }
  return jobs;
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("queue consumer (fake coordinator)", () => {
  let fake: FakeCoordinator;
  let sluice: Sluice;

  // A fresh coordinator per test: leases one test leaves behind must not reach the next.
  beforeEach(async () => {
    fake = await new FakeCoordinator(TOPIC, 2).start();
  });
  afterEach(async () => {
    await sluice?.close();
    await fake.stop();
  });

  const client = (): Sluice => (sluice = new Sluice({ nameservers: [fake.address], retry: { retries: 5, initialRetryMs: 20, maxRetryMs: 100 } }));

  it("opens with the options and prefetch credit, and turns leased records into jobs", async () => {
    fake.append(0, ["a", "b", "c"]);
    fake.append(1, ["d"]);
    const queue = client().queue({ group: "workers", topic: TOPIC, invisibleMs: 7000, maxDeliveries: 3, keyOrdering: true, fromBeginning: true, prefetch: 4 });
    try {
      const jobs = await take(queue, 4);
      const open = fake.opens.at(-1)!;
      assert.deepEqual(
        { ...open, memberId: open.memberId === queue.memberId },
        { group: "workers", topic: TOPIC, memberId: true, invisibleMs: 7000, maxDeliveries: 3, keyOrdering: true, fromBeginning: true },
      );
      assert.equal(fake.requests.find((r) => r.open !== undefined)!.creditMessages, 4);
      const byPlace = new Map(jobs.map((j) => [`${j.partition}:${j.offset}`, j]));
      const b = byPlace.get("0:1")!;
      assert.equal(b.topic, TOPIC);
      assert.equal(b.value?.toString(), "b");
      assert.equal(b.key?.toString(), "k1");
      assert.equal(b.headers.n?.toString(), "1");
      assert.equal(b.deliveryCount, 1);
      assert.ok(b.timestamp > 0);
      assert.equal(byPlace.get("1:0")!.value?.toString(), "d");
      await Promise.all(jobs.map((j) => j.ack()));
      assert.deepEqual(fake.acked.slice(-4).sort(), ["0:0", "0:1", "0:2", "1:0"]);
    } finally {
      await sluice.close();
    }
  });

  it("keeps at most `prefetch` jobs leased ahead, and grants more as jobs are taken", async () => {
    fake.append(0, Array.from({ length: 40 }, (_, i) => `p${i}`));
    const queue = client().queue({ group: "workers", topic: TOPIC, prefetch: 8 });
    try {
      await take(queue, 1);
      await until(() => fake.leasedCount() === 8);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(fake.leasedCount(), 8, "1 taken + 7 buffered: the broker never leases past the credit");
      assert.equal(fake.maxCreditOverdraft, 0);
      const jobs = await take(queue, 39);
      assert.equal(new Set(jobs.map((j) => j.offset)).size, 39);
      await Promise.all(jobs.map((j) => j.ack()));
    } finally {
      await sluice.close();
    }
  });

  it("ack resolves only when the broker's QueueSettled arrives, and many acks share a request", async () => {
    fake.append(1, Array.from({ length: 50 }, (_, i) => `s${i}`));
    const queue = client().queue({ group: "workers", topic: TOPIC, prefetch: 64 });
    try {
      const jobs = await take(queue, 50);
      fake.holdAnswers = true;
      const before = fake.requests.length;
      let resolved = 0;
      const acks = jobs.map((j) => j.ack().then(() => resolved++));
      await until(() => fake.requests.length > before);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(resolved, 0, "nothing resolves before the answer");
      const settleRequests = fake.requests.slice(before).filter((r) => r.acks.length > 0);
      assert.equal(settleRequests.length, 1, "50 acks of one tick went in one request");
      assert.equal(settleRequests[0]!.acks.length, 50);
      fake.releaseAnswers();
      await Promise.all(acks);
      assert.equal(resolved, 50);
    } finally {
      fake.holdAnswers = false;
      await sluice.close();
    }
  });

  it("a refused lease rejects that job's ack with UNKNOWN_LEASE; acking twice is refused", async () => {
    fake.append(0, ["x", "y"]);
    const queue = client().queue({ group: "workers", topic: TOPIC, prefetch: 2 });
    try {
      const [first, second] = await take(queue, 2);
      fake.refusedLeases.add(first!.leaseId);
      const [a, b] = await Promise.allSettled([first!.ack(), second!.ack()]);
      assert.equal(a.status, "rejected");
      assert.equal((a as PromiseRejectedResult).reason.code, "UNKNOWN_LEASE");
      assert.equal(b.status, "fulfilled");
      await assert.rejects(second!.ack(), (err: SluiceError) => err.code === "INVALID_ARGUMENT" && /already acked/.test(err.message));
      await assert.rejects(second!.extend(1000), /already acked/);
    } finally {
      fake.refusedLeases.clear();
      await sluice.close();
    }
  });

  it("nack sends the delay and the error text; extend is accepted", async () => {
    fake.append(1, ["n"]);
    const queue = client().queue({ group: "workers", topic: TOPIC, prefetch: 1 });
    try {
      const [job] = await take(queue, 1);
      await job!.extend(60_000);
      await job!.nack({ delayMs: 200, error: "try later" });
      assert.deepEqual(fake.nacked.at(-1), { partition: 1, offset: job!.offset, error: "try later", delayMs: 200 });
      const [again] = await take(queue, 1);
      assert.equal(again!.offset, job!.offset);
      assert.equal(again!.deliveryCount, 2);
      await again!.ack();
    } finally {
      await sluice.close();
    }
  });

  it("a lost stream rejects unanswered settles with a retriable error, then reopens with the same member id", async () => {
    fake.append(0, ["r1", "r2"]);
    const queue = client().queue({ group: "workers", topic: TOPIC, prefetch: 2 });
    try {
      const [first] = await take(queue, 1);
      const opensBefore = fake.opens.length;
      fake.holdAnswers = true;
      const pending = first!.ack();
      await until(() => fake.requests.some((r) => r.acks.some((s) => s.offset === first!.offset && s.partition === 0)));
      fake.killStreams();
      await assert.rejects(pending, (err: SluiceError) => err.code === "BROKER_UNAVAILABLE" && err.retriable && /delivered again/.test(err.message));
      fake.holdAnswers = false;
      // The broker applied r1's ack before the stream died (only the answer was lost), so
      // only r2 comes back: it was buffered, and its lease went with the stream.
      const jobs = await take(queue, 1);
      assert.equal(fake.opens.length, opensBefore + 1);
      assert.equal(fake.opens.at(-1)!.memberId, queue.memberId);
      assert.deepEqual(jobs.map((j) => j.value?.toString()), ["r2"]);
      assert.ok(fake.acked.includes(`0:${first!.offset}`));
      await Promise.all(jobs.map((j) => j.ack()));
      // The lost ack did not count: it may be sent again (the broker decides whether the lease still holds).
      await first!.ack().catch((err: SluiceError) => assert.notEqual(err.code, "INVALID_ARGUMENT", err.message));
    } finally {
      fake.holdAnswers = false;
      await sluice.close();
    }
  });

  it("close hands buffered jobs back, ends the iterator, and refuses later settles", async () => {
    fake.append(1, ["c1", "c2", "c3"]);
    const queue = client().queue({ group: "closers", topic: TOPIC, prefetch: 3 });
    try {
      const [held] = await take(queue, 1);
      await until(() => queue.buffered === 2);
      const nackedBefore = fake.nacked.length;
      const second = await queue.next();
      assert.equal(second.done, false);
      const heldAck = held!.ack();
      await queue.close();
      await heldAck;
      const released = fake.nacked.slice(nackedBefore);
      assert.equal(released.length, 1, "the one job still buffered after next() took one was handed back");
      assert.match(released[0]!.error, /closing queue consumer/);
      assert.deepEqual(await queue.next(), { done: true, value: undefined });
      await assert.rejects(second.value!.ack(), (err: SluiceError) => err.code === "CLOSED");
    } finally {
      await sluice.close();
    }
  });

  it("work finishing while close() waits for confirmations still acks", async () => {
    fake.append(0, ["w1", "w2"]);
    const queue = client().queue({ group: "finishers", topic: TOPIC, prefetch: 2 });
    const [first, second] = await take(queue, 2);
    fake.holdAnswers = true;
    const firstAck = first!.ack();
    const closed = queue.close();
    const secondAck = second!.ack();
    await until(() => fake.acked.length === 2);
    fake.releaseAnswers();
    await Promise.all([firstAck, secondAck, closed]);
    await assert.rejects(second!.extend(10), /already acked/);
    const late = await first!.nack().catch((err: SluiceError) => err.code);
    assert.equal(late, "INVALID_ARGUMENT");
  });

  it("leaving a for-await loop closes the queue consumer", async () => {
    fake.append(0, ["l1", "l2", "l3"]);
    const queue = client().queue({ group: "loopers", topic: TOPIC, prefetch: 3 });
    try {
      for await (const job of queue) {
        await job.ack();
        break;
      }
      await assert.rejects(
        (async () => {
          const extra = await take(queue, 1, 300);
          return extra;
        })(),
        /ended|arrived/,
      );
      await until(() => fake.streams.size === 0);
    } finally {
      await sluice.close();
    }
  });

  it("fails the iteration at once for a topic the name servers do not know", async () => {
    const queue = client().queue({ group: "workers", topic: "missing" });
    try {
      await assert.rejects(queue.next(), (err: SluiceError) => err.code === "UNKNOWN_TOPIC");
      assert.deepEqual(await queue.next(), { done: true, value: undefined });
    } finally {
      await sluice.close();
    }
  });
});
