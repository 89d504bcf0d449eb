// The settle batcher: many job settles become few QueueRequests, and each caller learns the
// broker's verdict on its own settle.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SluiceError } from "../../common/src/errors.js";
import { toWireError } from "../../common/src/grpc/errors.js";
import type { QueueRequest, QueueSettle } from "../../proto/gen/sluice/v1/groups.js";
import { SettleBatcher, type SettleOwner } from "../../clients/src/queue/settle-batcher.js";

/** A batcher whose flushes run when the test says so, writing to an array. */
function harness(options: { maxSettlesPerRequest?: number; creditThreshold?: number; open?: boolean } = {}) {
  const sent: QueueRequest[] = [];
  const scheduled: (() => void)[] = [];
  const state = { open: options.open ?? true };
  const batcher = new SettleBatcher((request) => (state.open ? (sent.push(request), true) : false), {
    ...(options.maxSettlesPerRequest === undefined ? {} : { maxSettlesPerRequest: options.maxSettlesPerRequest }),
    ...(options.creditThreshold === undefined ? {} : { creditThreshold: options.creditThreshold }),
    schedule: (flush) => scheduled.push(flush),
  });
  const runScheduled = (): void => {
    for (const flush of scheduled.splice(0)) flush();
  };
  return { batcher, sent, scheduled, runScheduled, state };
}

function settle(partition: number, offset: number, extra: Partial<QueueSettle> = {}): QueueSettle {
  return { partition, offset, leaseId: offset + 1000, delayMs: 0, error: "", extendMs: 0, ...extra };
}

const owner = (): SettleOwner => ({ settleStamp: 0 });

/** Resolves to "ok" or the rejection's code, without an unhandled rejection in between. */
function outcome(promise: Promise<void>): Promise<string> {
  return promise.then(
    () => "ok",
    (err: SluiceError) => err.code,
  );
}

describe("settle batcher", () => {
  it("gathers the settles of one turn of the event loop into one request with one correlation id", async () => {
    const { batcher, sent, scheduled, runScheduled } = harness();
    const results = [
      outcome(batcher.add("ack", owner(), settle(0, 1))),
      outcome(batcher.add("nack", owner(), settle(1, 2, { delayMs: 500, error: "boom" }))),
      outcome(batcher.add("extend", owner(), settle(0, 3, { extendMs: 9000 }))),
      outcome(batcher.add("ack", owner(), settle(1, 4))),
    ];
    assert.equal(sent.length, 0, "nothing leaves before the flush");
    assert.equal(scheduled.length, 1, "one flush scheduled for the whole batch");
    runScheduled();
    assert.equal(sent.length, 1);
    const request = sent[0]!;
    assert.ok(request.correlationId > 0);
    assert.deepEqual(request.acks.map((s) => [s.partition, s.offset]), [[0, 1], [1, 4]]);
    assert.deepEqual(request.nacks.map((s) => [s.partition, s.offset, s.delayMs, s.error]), [[1, 2, 500, "boom"]]);
    assert.deepEqual(request.extends.map((s) => [s.offset, s.extendMs]), [[3, 9000]]);
    assert.equal(batcher.pendingSettles, 4);
    batcher.settled({ correlationId: request.correlationId, errors: [] });
    assert.deepEqual(await Promise.all(results), ["ok", "ok", "ok", "ok"]);
    assert.equal(batcher.pendingSettles, 0);
  });

  it("sends a request as soon as it holds the maximum number of settles", async () => {
    const { batcher, sent, runScheduled } = harness({ maxSettlesPerRequest: 3 });
    const results: Promise<string>[] = [];
    for (let offset = 0; offset < 7; offset++) results.push(outcome(batcher.add("ack", owner(), settle(0, offset))));
    assert.deepEqual(sent.map((r) => r.acks.length), [3, 3], "two full requests left at once");
    runScheduled();
    assert.deepEqual(sent.map((r) => r.acks.length), [3, 3, 1]);
    assert.equal(new Set(sent.map((r) => r.correlationId)).size, 3, "each request has its own correlation id");
    for (const request of sent) batcher.settled({ correlationId: request.correlationId, errors: [] });
    assert.deepEqual(await Promise.all(results), Array(7).fill("ok"));
  });

  it("rejects only the settles the broker refused, with their error", async () => {
    const { batcher, sent, runScheduled } = harness();
    const accepted = outcome(batcher.add("ack", owner(), settle(0, 10)));
    const refused = batcher.add("ack", owner(), settle(0, 11));
    const otherPartition = outcome(batcher.add("ack", owner(), settle(1, 11)));
    runScheduled();
    const lease = new SluiceError("UNKNOWN_LEASE", "lease 1011 of offset 11 expired");
    batcher.settled({ correlationId: sent[0]!.correlationId, errors: [{ partition: 0, offset: 11, error: toWireError(lease) }] });
    assert.equal(await accepted, "ok");
    assert.equal(await otherPartition, "ok", "the same offset on another partition is not confused with it");
    await assert.rejects(refused, (err: SluiceError) => err.code === "UNKNOWN_LEASE" && /expired/.test(err.message) && !err.retriable);
  });

  it("an error with offset -1 fails the whole request (the broker could not make it durable)", async () => {
    const { batcher, sent, runScheduled } = harness();
    const results = [outcome(batcher.add("ack", owner(), settle(0, 1))), outcome(batcher.add("nack", owner(), settle(1, 2)))];
    runScheduled();
    const storage = new SluiceError("STORAGE_ERROR", "append to %groups failed");
    batcher.settled({ correlationId: sent[0]!.correlationId, errors: [{ partition: 0, offset: -1, error: toWireError(storage) }] });
    assert.deepEqual(await Promise.all(results), ["STORAGE_ERROR", "STORAGE_ERROR"]);
  });

  it("answers arriving out of order settle the right requests; unknown ids are ignored", async () => {
    const { batcher, sent, runScheduled } = harness();
    const first = outcome(batcher.add("ack", owner(), settle(0, 1)));
    runScheduled();
    const second = outcome(batcher.add("ack", owner(), settle(0, 2)));
    runScheduled();
    batcher.settled({ correlationId: 987654, errors: [] });
    batcher.settled({ correlationId: sent[1]!.correlationId, errors: [] });
    assert.equal(await second, "ok");
    assert.equal(batcher.pendingSettles, 1, "the first request is still waiting");
    batcher.settled({ correlationId: sent[0]!.correlationId, errors: [] });
    assert.equal(await first, "ok");
  });

  it("never puts two settles of one job in one request, so an error names exactly one of them", async () => {
    const { batcher, sent, runScheduled } = harness();
    const job = owner();
    const extended = outcome(batcher.add("extend", job, settle(0, 5, { extendMs: 1000 })));
    const acked = outcome(batcher.add("ack", job, settle(0, 5)));
    runScheduled();
    assert.equal(sent.length, 2, "the second settle of the job closed the first batch");
    assert.equal(sent[0]!.extends.length, 1);
    assert.equal(sent[1]!.acks.length, 1);
    batcher.settled({ correlationId: sent[0]!.correlationId, errors: [] });
    batcher.settled({ correlationId: sent[1]!.correlationId, errors: [{ partition: 0, offset: 5, error: toWireError(new SluiceError("UNKNOWN_LEASE", "gone")) }] });
    assert.equal(await extended, "ok");
    assert.equal(await acked, "UNKNOWN_LEASE");
  });

  it("a lost stream rejects what was sent on it with a retriable error; what was not sent waits for the next stream", async () => {
    const { batcher, sent, runScheduled, state } = harness();
    const sentBefore = outcome(batcher.add("ack", owner(), settle(0, 1)));
    runScheduled();
    state.open = false;
    batcher.streamLost(new SluiceError("BROKER_UNAVAILABLE", "stream gone"));
    assert.equal(await sentBefore, "BROKER_UNAVAILABLE");

    const whileDown = outcome(batcher.add("ack", owner(), settle(0, 2)));
    runScheduled();
    assert.equal(sent.length, 1, "no stream: the batch waits");
    assert.equal(batcher.pendingSettles, 1);
    state.open = true;
    batcher.resume();
    assert.equal(sent.length, 2);
    assert.deepEqual(sent[1]!.acks.map((s) => s.offset), [2]);
    batcher.settled({ correlationId: sent[1]!.correlationId, errors: [] });
    assert.equal(await whileDown, "ok");
  });

  it("gives credit back with the settles, and alone only once the threshold is reached", () => {
    const { batcher, sent, scheduled, runScheduled } = harness({ creditThreshold: 4 });
    batcher.grantCredit(1);
    batcher.grantCredit(2);
    assert.equal(scheduled.length, 0, "below the threshold no request is scheduled for credit alone");
    void batcher.add("ack", owner(), settle(0, 1)).catch(() => undefined);
    runScheduled();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.creditMessages, 3, "the credit rode on the settle request");
    batcher.grantCredit(4);
    runScheduled();
    assert.equal(sent.length, 2);
    assert.equal(sent[1]!.creditMessages, 4);
    assert.equal(sent[1]!.correlationId, 0, "a credit-only request expects no answer");
    assert.equal(sent[1]!.acks.length, 0);
  });

  it("dropped credit is not sent: a new stream starts with its own grant", () => {
    const { batcher, sent, runScheduled } = harness({ creditThreshold: 1 });
    batcher.grantCredit(5);
    batcher.dropCredit();
    runScheduled();
    assert.equal(sent.length, 0);
  });

  it("rejectAll fails everything pending, sent or not, and whenIdle resolves", async () => {
    const { batcher, runScheduled, state } = harness();
    const sentOne = outcome(batcher.add("ack", owner(), settle(0, 1)));
    runScheduled();
    state.open = false;
    const unsent = outcome(batcher.add("ack", owner(), settle(0, 2)));
    const idle = batcher.whenIdle(10_000);
    batcher.rejectAll(new SluiceError("CLOSED", "the queue consumer is closed"));
    assert.deepEqual(await Promise.all([sentOne, unsent]), ["CLOSED", "CLOSED"]);
    await idle;
    assert.equal(batcher.pendingSettles, 0);
  });

  it("whenIdle gives up after its timeout when the broker never answers", async () => {
    const { batcher, runScheduled } = harness();
    void batcher.add("ack", owner(), settle(0, 1)).catch(() => undefined);
    runScheduled();
    const started = Date.now();
    await batcher.whenIdle(50);
    assert.ok(Date.now() - started >= 45);
    assert.equal(batcher.pendingSettles, 1);
  });

  it("batches 100,000 acks into 100 requests quickly", async () => {
    const sent: QueueRequest[] = [];
    const batcher = new SettleBatcher((request) => (sent.push(request), true));
    const started = process.hrtime.bigint();
    const promises: Promise<void>[] = [];
    for (let offset = 0; offset < 100_000; offset++) {
      promises.push(batcher.add("ack", owner(), { partition: offset & 1, offset, leaseId: offset, delayMs: 0, error: "", extendMs: 0 }));
    }
    assert.equal(sent.length, 100);
    for (const request of sent) batcher.settled({ correlationId: request.correlationId, errors: [] });
    await Promise.all(promises);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    // Generous bound for a shared 2-core box; measured ~60 ms.
    assert.ok(ms < 1500, `100,000 acks took ${ms.toFixed(0)} ms`);
  });
});
