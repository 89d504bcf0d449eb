// The producer against a broker whose flow control holds or refuses its batches (issue #6),
// over real gRPC to the in-process fake broker (clients-fake-cluster.ts): a held partition
// keeps at most THROTTLED_IN_FLIGHT batches at the broker and pipelines again once acks say
// nothing was held; THROTTLED refusals are resent after their retry-after, in order, past
// `retries`, until the send timeout, and an idempotent producer keeps each batch's sequence.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { decodeRecords } from "../../common/src/batch/index.js";
import { SluiceError, StorageFullError, ThrottledError } from "../../common/src/errors.js";
import { Sluice, type RetryOptions } from "../../clients/src/index.js";
import { THROTTLED_IN_FLIGHT } from "../../clients/src/producer/partition-queue.js";
import { FakeCluster, type ProduceRecord } from "./clients-fake-cluster.js";

/** `retries: 1`: every THROTTLED batch below is refused more often than that. */
const ONE_RETRY: RetryOptions = { retries: 1, initialRetryMs: 10, maxRetryMs: 50 };
/** Small batches: maxBatchBytes' minimum, so a few hundred messages make dozens of batches. */
const SMALL_BATCHES = { lingerMs: 0, maxBatchBytes: 1024 } as const;
/** setTimeout may fire up to a millisecond before Date.now() says its delay passed. */
const TIMER_SLACK_MS = 2;

function values(prefix: string, count: number): { value: string }[] {
  return Array.from({ length: count }, (_, i) => ({ value: `${prefix}${i}-${"x".repeat(90)}` }));
}

function storedValues(cluster: FakeCluster, topic: string): string[] {
  return cluster.log(topic, 0).batches.flatMap((b) => decodeRecords(b.bytes).map((r) => r.value!.toString()));
}

/** A request's batch by its first message (what the test sent is unique per message). */
function firstValue(record: ProduceRecord): string {
  return decodeRecords(record.batch)[0]!.value!.toString();
}

function requestsOf(cluster: FakeCluster, topic: string): ProduceRecord[] {
  return cluster.produceRequests.filter((r) => r.topic === topic);
}

/** Attempts per batch (keyed by first message), in the order the batches first arrived. */
function attemptsByBatch(records: ProduceRecord[]): Map<string, ProduceRecord[]> {
  const byBatch = new Map<string, ProduceRecord[]>();
  for (const record of records) {
    const key = firstValue(record);
    const attempts = byBatch.get(key) ?? [];
    attempts.push(record);
    byBatch.set(key, attempts);
  }
  return byBatch;
}

describe("producer pacing under broker flow control (fake broker)", () => {
  let cluster: FakeCluster;
  let sluice: Sluice | undefined;

  beforeEach(async () => {
    cluster = await new FakeCluster().start();
  });
  afterEach(async () => {
    await sluice?.close();
    sluice = undefined;
    await cluster.stop();
  });

  function client(requestTimeoutMs = 4000): Sluice {
    sluice = new Sluice({ nameservers: [cluster.address], clientId: "flow-pacing-test", retry: ONE_RETRY, requestTimeoutMs });
    return sluice;
  }

  /** How many batches `count` messages of `values(prefix, count)` make, measured on a topic of their own. */
  async function batchesFor(count: number): Promise<number> {
    cluster.createTopic("measure", 1);
    const producer = client().producer(SMALL_BATCHES);
    await producer.send("measure", values("m", count));
    await producer.close();
    return cluster.log("measure", 0).batches.length;
  }

  it("a held partition keeps at most 2 batches at the broker, and pipelines again once acks carry no throttle time", async () => {
    cluster.createTopic("paced", 1);
    const producer = client().producer(SMALL_BATCHES);
    cluster.faults.produceHoldMs = 20;

    // Not throttled yet: a burst of batches pipelines (the broker holds them side by side).
    const first = values("a", 200);
    await producer.send("paced", first);
    const unthrottled = requestsOf(cluster, "paced");
    assert.ok(unthrottled.length >= 10, `${unthrottled.length} batches`);
    assert.ok(cluster.maxProduceInFlight("paced", 0) > THROTTLED_IN_FLIGHT, `without throttling ${cluster.maxProduceInFlight("paced", 0)} in flight`);

    // Acks now say the broker held the batch: after the first one, at most 2 in flight.
    cluster.faults.produceThrottleTimeMs = 20;
    await producer.send("paced", [{ value: "first throttled ack" }]);
    cluster.produceRequests.length = 0;
    const paced = values("b", 300);
    const started = Date.now();
    // Many sends in one tick: they share batches, sealed by size.
    await Promise.all(Array.from({ length: 30 }, (_, s) => producer.send("paced", paced.slice(s * 10, s * 10 + 10))));
    const pacedMs = Date.now() - started;
    const throttled = requestsOf(cluster, "paced");
    assert.ok(throttled.length >= 20, `${throttled.length} batches`);
    const inFlight = throttled.map((r) => r.inFlight);
    assert.ok(
      inFlight.every((n) => n <= THROTTLED_IN_FLIGHT),
      `in flight at each arrival while throttled: ${inFlight.join(",")}`,
    );
    assert.equal(Math.max(...inFlight), THROTTLED_IN_FLIGHT, "one batch waits at the broker while the next is on its way");
    // Two batches per 20 ms hold at best.
    assert.ok(pacedMs >= (throttled.length / THROTTLED_IN_FLIGHT) * 20 * 0.8, `${throttled.length} paced batches in ${pacedMs} ms`);

    // The broker stops holding (acks say 0 ms): the partition pipelines again.
    cluster.faults.produceThrottleTimeMs = 0;
    cluster.produceRequests.length = 0;
    const released = values("c", 300);
    await Promise.all(Array.from({ length: 30 }, (_, s) => producer.send("paced", released.slice(s * 10, s * 10 + 10))));
    const afterRelease = requestsOf(cluster, "paced").map((r) => r.inFlight);
    assert.ok(Math.max(...afterRelease) > THROTTLED_IN_FLIGHT, `in flight once released: ${afterRelease.join(",")}`);

    const expected = [...first, { value: "first throttled ack" }, ...paced, ...released].map((m) => m.value);
    assert.deepEqual(storedValues(cluster, "paced"), expected, "every message once, in send order");
  });

  it("THROTTLED refusals are resent after their retry-after, past `retries`, in order, nothing stored twice", async () => {
    const count = 120;
    const batches = await batchesFor(count);
    assert.ok(batches >= 6, `${batches} batches`);
    cluster.createTopic("refused", 1);
    const retryAfterMs = 60;
    // The first batch is appended; every other batch of the burst is refused, and the first
    // refused one three more times (more than retries: 1 would allow).
    const extraRefusals = 3;
    cluster.faults.throttleRefusals = { passFirst: 1, count: batches - 1 + extraRefusals, retryAfterMs };
    const producer = client().producer(SMALL_BATCHES);
    const sent = values("r", count);
    const metas = await producer.send("refused", sent);

    assert.deepEqual(storedValues(cluster, "refused"), sent.map((m) => m.value), "every message once, in send order");
    assert.deepEqual(metas.map((m) => m.offset), sent.map((_, i) => i));
    const records = requestsOf(cluster, "refused");
    assert.ok(records.every((r) => r.result === "appended" || r.result === "THROTTLED"), `results: ${records.map((r) => r.result).join(",")}`);
    assert.equal(records.filter((r) => r.result === "appended").length, batches, "each batch appended once");

    // Several batches were pipelined when the first refusal came back: all of them were refused.
    const firstResend = records.findIndex((r, i) => records.slice(0, i).some((earlier) => firstValue(earlier) === firstValue(r)));
    const burst = records.slice(0, firstResend).filter((r) => r.result === "THROTTLED");
    assert.equal(burst.length, batches - 1, "every batch after the first was refused before anything was resent");

    const byBatch = attemptsByBatch(records);
    assert.equal(byBatch.size, batches);
    const refusalCounts = [...byBatch.values()].map((attempts) => attempts.filter((r) => r.result === "THROTTLED").length);
    assert.ok(Math.max(...refusalCounts) >= 1 + extraRefusals, `refusals per batch: ${refusalCounts.join(",")}`);
    for (const [batch, attempts] of byBatch) {
      assert.equal(attempts.at(-1)!.result, "appended", `${batch} ends appended`);
      for (let i = 1; i < attempts.length; i++) {
        const waitedMs = attempts[i]!.arrivedAtMs - attempts[i - 1]!.answeredAtMs!;
        assert.ok(waitedMs >= retryAfterMs - TIMER_SLACK_MS, `${batch.slice(0, 4)} resent ${waitedMs} ms after its refusal (retry-after ${retryAfterMs})`);
      }
    }
    // Resends go in order: the batches' last (appending) attempts arrive in send order.
    const appendOrder = records.filter((r) => r.result === "appended").map(firstValue);
    assert.deepEqual(appendOrder, [...byBatch.keys()], "appended in the order first sent");
  });

  it("refused until the send timeout: the send rejects with THROTTLED, retriable, about when the timeout passes", async () => {
    cluster.createTopic("refused-forever", 1);
    cluster.faults.throttleRefusals = { count: Infinity, retryAfterMs: 100 };
    const requestTimeoutMs = 800;
    const producer = client(requestTimeoutMs).producer({ lingerMs: 0 });
    const unexpected: unknown[] = [];
    const onUnexpected = (err: unknown): void => void unexpected.push(err);
    process.on("unhandledRejection", onUnexpected);
    process.on("uncaughtException", onUnexpected);
    try {
      const started = Date.now();
      // Two sends in separate batches: one refused while the other waits its turn.
      const sending = producer.send("refused-forever", [{ value: "one" }]);
      await new Promise((resolve) => setImmediate(resolve));
      const queued = producer.send("refused-forever", [{ value: "two" }]);
      const outcomes = await Promise.allSettled([sending, queued]);
      const tookMs = Date.now() - started;
      for (const outcome of outcomes) {
        assert.equal(outcome.status, "rejected");
        const err = (outcome as PromiseRejectedResult).reason as SluiceError;
        assert.ok(err instanceof SluiceError, `a SluiceError, got ${String(err)}`);
        assert.equal(err.code, "THROTTLED", err.message);
        assert.equal(err.retriable, true);
      }
      assert.ok(tookMs >= requestTimeoutMs - 250, `gave up after ${tookMs} ms, before the ${requestTimeoutMs} ms timeout`);
      assert.ok(tookMs <= requestTimeoutMs + 250, `gave up after ${tookMs} ms, well past the ${requestTimeoutMs} ms timeout`);
      const records = requestsOf(cluster, "refused-forever");
      assert.ok(records.length >= 5, `${records.length} attempts in ${tookMs} ms at a 100 ms retry-after`);
      assert.ok(records.every((r) => r.result === "THROTTLED"));
      assert.deepEqual(storedValues(cluster, "refused-forever"), []);
      await producer.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unexpected, [], "no other error reached the application");
    } finally {
      process.off("unhandledRejection", onUnexpected);
      process.off("uncaughtException", onUnexpected);
    }
  });

  it("held so long that queued batches pass the send timeout: those fail with THROTTLED, not REQUEST_TIMED_OUT", async () => {
    cluster.createTopic("held-long", 1);
    const requestTimeoutMs = 800;
    const producer = client(requestTimeoutMs).producer({ lingerMs: 0 });
    cluster.faults.produceHoldMs = 300;
    cluster.faults.produceThrottleTimeMs = 300;
    await producer.send("held-long", [{ value: "warm-up" }]);
    // One batch per send (a turn of the event loop each); 2 in flight per 300 ms cannot deliver them all in time.
    const started = Date.now();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 12; i++) {
      sends.push(producer.send("held-long", [{ value: `h${i}` }]).then(() => Date.now() - started));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const outcomes = await Promise.allSettled(sends);
    const tookMs = Date.now() - started;
    const delivered = outcomes.flatMap((o, i) => (o.status === "fulfilled" ? [`h${i}`] : []));
    const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as SluiceError] : []));
    assert.ok(delivered.length >= 2 && refused.length >= 2, `${delivered.length} delivered, ${refused.length} failed`);
    assert.deepEqual(delivered, outcomes.slice(0, delivered.length).map((_, i) => `h${i}`), "the earliest sends were delivered");
    for (const err of refused) {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "THROTTLED", err.message);
      assert.equal(err.retriable, true);
      assert.match(err.message, /requestTimeoutMs.*flow control/, "says the send timed out waiting for flow control");
    }
    assert.ok(tookMs <= requestTimeoutMs + 500, `settled after ${tookMs} ms`);
    assert.deepEqual(storedValues(cluster, "held-long"), ["warm-up", ...delivered], "what was delivered is stored once, in order");
    assert.ok(cluster.maxProduceInFlight("held-long", 0) <= 2);
  });

  it("idempotent: THROTTLED refusals and resends keep each batch's sequence, no OUT_OF_ORDER_SEQUENCE, stored once in order", async () => {
    const count = 120;
    const batches = await batchesFor(count);
    assert.ok(batches >= 8, `${batches} batches`);
    cluster.createTopic("idem", 1);
    // At most 5 batches in flight (plus one sent when the first is acknowledged): refusing
    // 5 + 3 after the first covers the pipelined ones and refuses the first of them again.
    cluster.faults.throttleRefusals = { passFirst: 1, count: 8, retryAfterMs: 50 };
    const producer = client().producer({ ...SMALL_BATCHES, idempotent: true });
    const sent = values("i", count);
    const metas = await producer.send("idem", sent);

    assert.deepEqual(storedValues(cluster, "idem"), sent.map((m) => m.value), "every message once, in send order");
    assert.deepEqual(metas.map((m) => m.offset), sent.map((_, i) => i));
    const records = requestsOf(cluster, "idem");
    const results = records.map((r) => r.result);
    assert.ok(results.every((r) => r === "appended" || r === "THROTTLED"), `results: ${results.join(",")}`);
    assert.equal(results.filter((r) => r === "THROTTLED").length, 8);
    assert.ok(Math.max(...records.map((r) => r.inFlight)) <= 5, "never more than 5 in flight");

    const byBatch = attemptsByBatch(records);
    assert.equal(byBatch.size, batches);
    let nextSequence = 0;
    for (const [batch, attempts] of byBatch) {
      const stamps = new Set(attempts.map((r) => `${r.producerId}/${r.producerEpoch}/${r.baseSequence}`));
      assert.deepEqual([...stamps], [`${producer.producerId}/0/${nextSequence}`], `${batch.slice(0, 4)}: one stamp across ${attempts.length} attempts`);
      nextSequence += attempts[0]!.recordCount;
    }
    assert.equal(nextSequence, count);
    assert.ok(Math.max(...[...byBatch.values()].map((a) => a.length)) >= 3, "a batch was refused more than retries: 1 allows");
  });

  it("refusals by flow control do not use up `retries`: a later retriable failure still gets its retries; `retries: 0` gives up at once", async () => {
    cluster.createTopic("mixed", 1);
    // Three refusals, then two disk-full failures: retries: 2 covers the failures only if the
    // refusals did not count.
    sluice = new Sluice({ nameservers: [cluster.address], clientId: "flow-pacing-retries", retry: { retries: 2, initialRetryMs: 10, maxRetryMs: 20 } });
    const throttled = (): ThrottledError => new ThrottledError("fake: slow down", { retryAfterMs: 20 });
    cluster.faults.produceErrors.push(throttled(), throttled(), throttled(), new StorageFullError("fake: disk full"), new StorageFullError("fake: disk full"));
    await sluice.producer({ lingerMs: 0 }).send("mixed", [{ value: "one" }]);
    assert.deepEqual(storedValues(cluster, "mixed"), ["one"]);
    assert.equal(requestsOf(cluster, "mixed").length, 6);

    await sluice.close();
    sluice = new Sluice({ nameservers: [cluster.address], clientId: "flow-pacing-no-retries", retry: { retries: 0 } });
    cluster.faults.produceErrors.push(throttled());
    const started = Date.now();
    await assert.rejects(sluice.producer({ lingerMs: 0 }).send("mixed", [{ value: "two" }]), (e: unknown) => e instanceof SluiceError && e.code === "THROTTLED");
    assert.ok(Date.now() - started < 500, "retries: 0 never retries, THROTTLED included");
    assert.equal(requestsOf(cluster, "mixed").length, 7);
  });
});
