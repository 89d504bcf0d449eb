/**
 * Queue groups against a real `sluice dev`: shared consumption with exactly one ack per
 * message, nack delays, dead letters and redrive (SDK and CLI), and ack state that survives
 * SIGKILL of the broker.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice, type Job, type QueueConsumer } from "../../clients/src/index.js";
import { DLQ_HEADERS } from "../../common/src/protocol.js";
import { runCli, startDev, tempDir, type Cluster } from "../helpers/processes.js";

/** A next() abandoned by a timeout, kept for the following call so its job is not lost. */
const pendingNext = new WeakMap<QueueConsumer, Promise<IteratorResult<Job>>>();

/** The next job, or undefined when none arrives within `timeoutMs`. */
async function nextJob(queue: QueueConsumer, timeoutMs: number): Promise<Job | undefined> {
  const next = pendingNext.get(queue) ?? queue.next();
  pendingNext.set(queue, next);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  try {
    const result = await Promise.race([next, timeout]);
    if (result === undefined) return undefined;
    pendingNext.delete(queue);
    return result.done ? undefined : result.value;
  } finally {
    clearTimeout(timer);
  }
}

async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("queue groups", () => {
  let cluster: Cluster;
  let sluice: Sluice;
  before(async () => {
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "queue-test" });
  });
  after(async () => {
    await sluice?.close();
    await cluster?.process.stop();
  });

  it("key ordering: a key is leased to one consumer at a time, in order, and a failing key does not hold up the others", async () => {
    await sluice.admin().createTopic("keyed", { partitions: 1 });
    const producer = sluice.producer({ lingerMs: 1 });
    const keys = ["a", "b", "c", "d"];
    const perKey = 25;
    // Keys interleaved inside each batch, so the broker must split batches by key.
    for (let round = 0; round < perKey; round += 5) {
      await producer.send("keyed", Array.from({ length: 5 * keys.length }, (_, i) => ({ key: keys[i % keys.length]!, value: `${keys[i % keys.length]}-${round + Math.floor(i / keys.length)}` })));
    }
    const clients = [0, 1].map((i) => new Sluice({ nameservers: [cluster.nameserver], clientId: `keyed-${i}` }));
    const queues = clients.map((c) => c.queue({ group: "keyed-workers", topic: "keyed", keyOrdering: true, fromBeginning: true, prefetch: 20, invisibleMs: 5000 }));
    const inFlight = new Map<string, number>();
    const acked = new Map<string, number[]>();
    let failedOnce = false;
    let overlap = "";
    /** Keys acked, in order, with "nack" where key a failed. */
    const timeline: string[] = [];
    try {
      await Promise.all(
        queues.map(async (queue) => {
          for (;;) {
            const job = await nextJob(queue, 3000);
            if (job === undefined) return;
            const key = job.key!.toString();
            if ((inFlight.get(key) ?? 0) > 0) overlap ||= `key ${key} leased twice at once (offset ${job.offset})`;
            inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
            await new Promise((resolve) => setTimeout(resolve, 2));
            inFlight.set(key, inFlight.get(key)! - 1);
            if (key === "a" && !failedOnce) {
              // Key a fails once, with a delay: b, c and d keep flowing meanwhile.
              failedOnce = true;
              timeline.push("nack");
              await job.nack({ delayMs: 500 });
              continue;
            }
            await job.ack();
            timeline.push(key);
            const list = acked.get(key) ?? [];
            list.push(Number(job.value!.toString().split("-")[1]));
            acked.set(key, list);
          }
        }),
      );
    } finally {
      await Promise.all(queues.map((q) => q.close()));
      await Promise.all(clients.map((c) => c.close()));
    }
    assert.equal(overlap, "");
    const failedAt = timeline.indexOf("nack");
    const aRetried = timeline.indexOf("a", failedAt);
    const othersMeanwhile = timeline.slice(failedAt + 1, aRetried).length;
    assert.ok(othersMeanwhile > 0, `other keys were acked while key a waited (${othersMeanwhile})`);
    for (const key of keys) {
      assert.deepEqual(acked.get(key), Array.from({ length: perKey }, (_, i) => i), `key ${key}: every message once, in order`);
    }
  });

  it("5 consumers on a 2-partition topic: every message acked exactly once, the work spread over at least 3 of them", async () => {
    const total = 3000;
    await sluice.admin().createTopic("work", { partitions: 2 });
    const producer = sluice.producer({ lingerMs: 1 });
    for (let i = 0; i < total; i += 500) {
      await producer.send("work", Array.from({ length: 500 }, (_, j) => ({ value: `job-${i + j}` })));
    }
    const acksPerOffset = new Map<string, number>();
    const jobsPerConsumer = [0, 0, 0, 0, 0];
    let acked = 0;
    let allAcked!: () => void;
    const done = new Promise<void>((resolve) => (allAcked = resolve));
    // Separate clients: separate connections, as separate processes would have.
    const clients = jobsPerConsumer.map((_, i) => new Sluice({ nameservers: [cluster.nameserver], clientId: `worker-${i}` }));
    const queues = clients.map((client) => client.queue({ group: "workers", topic: "work", fromBeginning: true, prefetch: 20 }));
    const loops = queues.map(async (queue, i) => {
      for await (const job of queue) {
        jobsPerConsumer[i]!++;
        // A little work, so the broker has to spread the jobs.
        await new Promise((resolve) => setImmediate(resolve));
        await job.ack();
        const key = `${job.partition}:${job.offset}`;
        acksPerOffset.set(key, (acksPerOffset.get(key) ?? 0) + 1);
        if (++acked === total) allAcked();
      }
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([done, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`only ${acked} of ${total} acked`)), 30_000)))]);
      // Give a wrongly redelivered message a moment to show up.
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      clearTimeout(timer);
      await Promise.all(queues.map((q) => q.close()));
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.close()));
    }
    assert.equal(acksPerOffset.size, total, "every offset acked");
    for (const [key, count] of acksPerOffset) assert.equal(count, 1, `offset ${key} acked once`);
    const ends = await sluice.admin().listOffsets("work", "latest");
    assert.equal([...ends.values()].reduce((a, b) => a + b, 0), total);
    const busy = jobsPerConsumer.filter((n) => n > 0).length;
    assert.ok(busy >= 3, `jobs per consumer: ${jobsPerConsumer.join(", ")}`);
    const described = await sluice.admin().describeGroup("workers");
    assert.equal(described.kind, "queue");
    for (const q of described.queue) assert.equal(q.startOffset, q.endOffset, `${q.topic}/${q.partition}: everything acked`);
  });

  it("a nacked message comes back after its delay, not before", async () => {
    await sluice.admin().createTopic("retry", { partitions: 1 });
    await sluice.producer().send("retry", [{ value: "again" }]);
    const queue = sluice.queue({ group: "retriers", topic: "retry", fromBeginning: true });
    try {
      const first = await nextJob(queue, 10_000);
      assert.ok(first, "the message is delivered");
      assert.equal(first.deliveryCount, 1);
      const nackedAt = Date.now();
      await first.nack({ delayMs: 1500, error: "not yet" });
      assert.equal(await nextJob(queue, 1200), undefined, "nothing during the delay");
      const second = await nextJob(queue, 5000);
      const elapsed = Date.now() - nackedAt;
      assert.ok(second, "the message comes back");
      assert.equal(second.offset, first.offset);
      assert.equal(second.value?.toString(), "again");
      assert.equal(second.deliveryCount, 2);
      assert.ok(elapsed >= 1450, `came back after ${elapsed} ms`);
      await second.ack();
    } finally {
      await queue.close();
    }
  });

  it("a poison message lands in %DLQ%<group> after maxDeliveries; dlq list shows it and dlq redrive sends it back", async () => {
    const ns = cluster.nameserver;
    await sluice.admin().createTopic("poison", { partitions: 1 });
    await sluice.producer().send("poison", [{ key: "pk", value: "cannot parse me", headers: { trace: "t-1" } }]);
    const queue = sluice.queue({ group: "poisoned", topic: "poison", fromBeginning: true, maxDeliveries: 3 });
    const deliveries: number[] = [];
    try {
      for (;;) {
        const job = await nextJob(queue, deliveries.length < 3 ? 10_000 : 1500);
        if (job === undefined) break;
        deliveries.push(job.deliveryCount);
        await job.nack({ error: "cannot parse" });
      }
    } finally {
      await queue.close();
    }
    assert.deepEqual(deliveries, [1, 2, 3], "delivered maxDeliveries times, then no more");

    const [letter] = await eventually(async () => {
      const letters = await sluice.admin().deadLetters("poisoned");
      return letters.length > 0 ? letters : undefined;
    }, 10_000, "dead-lettering");
    assert.equal(letter!.key?.toString(), "pk");
    assert.equal(letter!.value?.toString(), "cannot parse me");
    assert.deepEqual(letter!.source, { topic: "poison", partition: 0, offset: 0 });
    assert.equal(letter!.deliveries, 3);
    assert.equal(letter!.error, "cannot parse");
    assert.ok(letter!.deadAtMs > Date.now() - 60_000);
    assert.deepEqual(Object.keys(letter!.headers), ["trace"], "the original headers, without the dlq ones");

    const raw = await sluice.admin().getMessage("%DLQ%poisoned", 0, { offset: letter!.offset });
    assert.equal(raw?.headers[DLQ_HEADERS.topic]?.toString(), "poison", "the stored dead letter carries the dlq headers");

    const listed = await runCli(["--json", "dlq", "list", "poisoned"], { nameserver: ns });
    assert.equal(listed.code, 0, listed.stderr);
    const view = JSON.parse(listed.stdout) as { group: string; topic: string; messages: { value: string; key: string; source: object; deliveries: number; error: string; headers: Record<string, string> }[] };
    assert.equal(view.topic, "%DLQ%poisoned");
    assert.equal(view.messages.length, 1);
    assert.deepEqual(view.messages[0]!.source, { topic: "poison", partition: 0, offset: 0 });
    assert.equal(view.messages[0]!.value, "cannot parse me");
    assert.equal(view.messages[0]!.error, "cannot parse");
    assert.deepEqual(view.messages[0]!.headers, { trace: "t-1" });
    const human = await runCli(["dlq", "list", "poisoned"], { nameserver: ns });
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /OFFSET\s+SOURCE\s+DELIVERIES/);
    assert.match(human.stdout, /poison\/0@0\s+3/);

    const redriven = await runCli(["dlq", "redrive", "poisoned", "--rate", "100"], { nameserver: ns });
    assert.equal(redriven.code, 0, redriven.stderr);
    assert.equal(redriven.stdout.trim(), "1 redriven, 0 remaining");
    const after = await runCli(["--json", "dlq", "list", "poisoned"], { nameserver: ns });
    assert.deepEqual((JSON.parse(after.stdout) as { messages: unknown[] }).messages, [], "redriven letters are no longer listed");

    // Back on its topic: the group gets it again, with its key and headers and without the dlq ones.
    const again = sluice.queue({ group: "poisoned", topic: "poison", maxDeliveries: 3 });
    try {
      const job = await nextJob(again, 10_000);
      assert.ok(job, "the redriven message is delivered");
      assert.equal(job.offset, 1);
      assert.equal(job.key?.toString(), "pk");
      assert.equal(job.value?.toString(), "cannot parse me");
      assert.deepEqual(Object.keys(job.headers), ["trace"]);
      assert.equal(job.deliveryCount, 1);
      await job.ack();
    } finally {
      await again.close();
    }
  });
});

describe("queue ack state across a broker crash", () => {
  it("acked messages are never delivered again after SIGKILL and restart; every unacked one is", async () => {
    const dataDir = tempDir();
    const first = await startDev({ dataDir });
    const total = 400;
    const ackedOffsets = new Set<string>();
    let client = new Sluice({ nameservers: [first.nameserver], clientId: "crash-1" });
    try {
      await client.admin().createTopic("durable", { partitions: 2 });
      await client.producer().send("durable", Array.from({ length: total }, (_, i) => ({ value: `d-${i}` })));
      const queue = client.queue({ group: "survivors", topic: "durable", fromBeginning: true, prefetch: 50, invisibleMs: 2000 });
      const held: Job[] = [];
      while (ackedOffsets.size < total / 2) {
        const job = await nextJob(queue, 10_000);
        assert.ok(job, "jobs keep coming");
        // Every fifth job is taken and left unsettled: it must come back too.
        if (ackedOffsets.size % 5 === 4 && held.length < 20) {
          held.push(job);
          continue;
        }
        await job.ack();
        ackedOffsets.add(`${job.partition}:${job.offset}`);
      }
      assert.equal(ackedOffsets.size, total / 2);
      await first.process.stop("SIGKILL");
      void queue.close();
    } finally {
      await client.close();
    }

    const second = await startDev({ dataDir });
    client = new Sluice({ nameservers: [second.nameserver], clientId: "crash-2" });
    const delivered = new Map<string, number>();
    try {
      const queue = client.queue({ group: "survivors", topic: "durable", prefetch: 50, invisibleMs: 2000 });
      while (delivered.size < total - ackedOffsets.size) {
        const job = await nextJob(queue, 15_000);
        assert.ok(job, `after the restart only ${delivered.size} of ${total - ackedOffsets.size} unacked messages came back`);
        const key = `${job.partition}:${job.offset}`;
        assert.ok(!ackedOffsets.has(key), `acked message ${key} was delivered again`);
        delivered.set(key, (delivered.get(key) ?? 0) + 1);
        await job.ack();
      }
      assert.equal(await nextJob(queue, 1000), undefined, "nothing else is delivered");
      await queue.close();
    } finally {
      await client.close();
      await second.process.stop();
    }
    assert.equal(delivered.size + ackedOffsets.size, total, "every message is acked exactly once across the crash");
  });
});
