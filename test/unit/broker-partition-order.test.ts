import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../common/src/clock.js";
import { InvalidArgumentError, NotLeaderError, SluiceError, ThrottledError } from "../../common/src/errors.js";
import { parseFlowRule } from "../../common/src/flow/rules.js";
import { FlowController, MIN_RETRY_AFTER_MS, type FlowTicket, type Schedule } from "../../broker/src/flow/flow-controller.js";
import { PartitionOrder } from "../../broker/src/grpc/partition-order.js";
import { flush, stateOf } from "./flow-fixtures.js";

/** A ticket the test settles by hand, standing in for one flow control holds. */
function heldTicket(): FlowTicket & { admit(): void; refuse(error: unknown): void } {
  let admit!: () => void;
  let refuse!: (error: unknown) => void;
  const ready = new Promise<void>((resolve, reject) => {
    admit = resolve;
    refuse = reject;
  });
  ready.catch(() => undefined); // as the controller does: the caller may never look
  return { immediate: false, ready, release: () => undefined, cancel: () => undefined, admit, refuse };
}

const IMMEDIATE: FlowTicket = { immediate: true, ready: undefined, release: () => undefined, cancel: () => undefined };

const P0 = "orders\u00000";
const P1 = "orders\u00001";

function throttled(retryAfterMs?: number): ThrottledError {
  return new ThrottledError("throttled by topic:orders token-bucket", retryAfterMs === undefined ? undefined : { retryAfterMs });
}

describe("PartitionOrder: keeping a partition's batches in order", () => {
  it("an immediate ticket with nothing waiting ahead goes on at once", () => {
    const order = new PartitionOrder(() => 0);
    assert.equal(order.after(P0, IMMEDIATE), undefined);
    assert.equal(order.after(P0, IMMEDIATE), undefined, "an immediate batch left a tail behind");
  });

  it("a held ticket with nothing ahead waits for its own ticket only", async () => {
    const order = new PartitionOrder(() => 0);
    const a = heldTicket();
    const ready = order.after(P0, a);
    assert.equal((await stateOf(ready)).state, "pending");
    a.admit();
    assert.equal((await stateOf(ready)).state, "resolved");
    assert.equal(order.after(P0, IMMEDIATE), undefined, "the tail was not cleared once the held batch went on");
  });

  it("a later immediate batch waits behind a held one of its partition, not of another partition", async () => {
    const order = new PartitionOrder(() => 0);
    const a = heldTicket();
    const aReady = order.after(P0, a);
    const bReady = order.after(P0, IMMEDIATE);
    assert.ok(bReady !== undefined, "the immediate batch overtook a held batch of its partition");
    assert.equal(order.after(P1, IMMEDIATE), undefined, "a held batch of partition 0 held partition 1");
    assert.equal(order.after("payments\u00000", IMMEDIATE), undefined);
    assert.equal((await stateOf(bReady)).state, "pending");

    // As produce.ts does: each batch appends when its promise resolves, in arrival order.
    const appended: string[] = [];
    void aReady!.then(() => appended.push("a"));
    void bReady.then(() => appended.push("b"));
    a.admit();
    await flush();
    assert.deepEqual(appended, ["a", "b"]);
    assert.equal(order.after(P0, IMMEDIATE), undefined, "the tail was not cleared");
  });

  it("a later held batch whose own ticket is ready first still waits for the earlier one", async () => {
    const order = new PartitionOrder(() => 0);
    const a = heldTicket();
    const b = heldTicket();
    const c = heldTicket();
    const aReady = order.after(P0, a);
    const bReady = order.after(P0, b);
    const cReady = order.after(P0, c);
    const appended: string[] = [];
    void aReady!.then(() => appended.push("a"));
    void bReady!.then(() => appended.push("b"));
    void cReady!.then(() => appended.push("c"));
    c.admit();
    b.admit();
    await flush();
    assert.deepEqual(appended, []);
    assert.equal((await stateOf(cReady)).state, "pending");
    a.admit();
    await flush();
    assert.deepEqual(appended, ["a", "b", "c"]);
  });

  it("a batch waits for its own ticket even when everything ahead went on", async () => {
    const order = new PartitionOrder(() => 0);
    const a = heldTicket();
    const b = heldTicket();
    order.after(P0, a);
    const bReady = order.after(P0, b);
    a.admit();
    assert.equal((await stateOf(bReady)).state, "pending");
    b.admit();
    assert.equal((await stateOf(bReady)).state, "resolved");
  });

  it("when an earlier batch is refused, every later waiting batch of its partition is refused with its error", async () => {
    const order = new PartitionOrder(() => 0);
    const a = heldTicket();
    const b = heldTicket();
    const aReady = order.after(P0, a);
    const bReady = order.after(P0, IMMEDIATE);
    const cReady = order.after(P0, b);
    const other = heldTicket();
    const otherReady = order.after(P1, other);
    const refusal = throttled(300);
    a.refuse(refusal);
    for (const ready of [aReady, bReady, cReady]) {
      const settled = await stateOf(ready);
      assert.equal(settled.state, "rejected");
      assert.equal(settled.error, refusal);
    }
    assert.equal((await stateOf(otherReady)).state, "pending", "another partition's batch was refused");
    other.admit();
    assert.equal((await stateOf(otherReady)).state, "resolved");
    assert.equal(order.after(P0, IMMEDIATE), undefined, "a refused tail was kept");
  });

  it("a later batch refused on its own ticket does not refuse the earlier one", async () => {
    const order = new PartitionOrder(() => 0);
    const a = heldTicket();
    const b = heldTicket();
    const aReady = order.after(P0, a);
    const bReady = order.after(P0, b);
    b.refuse(throttled(100));
    assert.equal((await stateOf(bReady)).state, "rejected");
    assert.equal((await stateOf(aReady)).state, "pending");
    a.admit();
    assert.equal((await stateOf(aReady)).state, "resolved");
  });
});

describe("PartitionOrder.wouldWait: whether a batch will be held (its bytes count toward the held budget)", () => {
  it("a held ticket, or any ticket behind a held batch of its partition, would wait; nothing else", async () => {
    const order = new PartitionOrder(() => 0);
    assert.equal(order.wouldWait(P0, IMMEDIATE), false);
    const a = heldTicket();
    assert.equal(order.wouldWait(P0, a), true);
    assert.equal(order.wouldWait(P0, IMMEDIATE), false, "asking changed nothing");
    const aReady = order.after(P0, a);
    assert.equal(order.wouldWait(P0, IMMEDIATE), true, "an immediate batch behind a held one is held too");
    assert.equal(order.wouldWait(P1, IMMEDIATE), false, "another partition is not held");
    a.admit();
    assert.equal((await stateOf(aReady)).state, "resolved");
    assert.equal(order.wouldWait(P0, IMMEDIATE), false, "the tail was not cleared");
    const b = heldTicket();
    order.after(P0, b);
    b.refuse(throttled(100));
    await flush();
    assert.equal(order.wouldWait(P0, IMMEDIATE), false, "a refused tail was kept");
  });
});

describe("PartitionOrder: the refusing window", () => {
  it("a THROTTLED refusal makes the partition refuse for its retry-after, counting down", () => {
    let nowMs = 10_000;
    const order = new PartitionOrder(() => nowMs);
    order.checkNotRefusing(P0, "orders", 0);
    order.refused(P0, throttled(300));

    const check = (expectedRetryAfterMs: number): void => {
      assert.throws(
        () => order.checkNotRefusing(P0, "orders", 0),
        (error: unknown) => {
          assert.ok(error instanceof ThrottledError);
          assert.equal(error.code, "THROTTLED");
          assert.equal(error.retriable, true);
          assert.equal(error.retryAfterMs, expectedRetryAfterMs);
          assert.match(error.message, /^orders\/0: an earlier batch on this stream was throttled/);
          assert.ok(error.message.includes(`in ${expectedRetryAfterMs} ms`), error.message);
          return true;
        },
      );
    };
    check(300);
    order.checkNotRefusing(P1, "orders", 1); // another partition is not refused
    nowMs += 250;
    check(50);
    nowMs += 49;
    check(1);
    nowMs += 1;
    order.checkNotRefusing(P0, "orders", 0);
    nowMs -= 100; // a clock step back after the window closed does not reopen it
    order.checkNotRefusing(P0, "orders", 0);
  });

  it("a THROTTLED error without retry-after refuses for the 100 ms floor", () => {
    let nowMs = 0;
    const order = new PartitionOrder(() => nowMs);
    order.refused(P0, throttled());
    assert.throws(() => order.checkNotRefusing(P0, "orders", 0), (error: unknown) => (error as SluiceError).retryAfterMs === MIN_RETRY_AFTER_MS);
    nowMs = MIN_RETRY_AFTER_MS;
    order.checkNotRefusing(P0, "orders", 0);
  });

  it("a shorter refusal inside the window does not shorten it; a longer one extends it", () => {
    let nowMs = 0;
    const order = new PartitionOrder(() => nowMs);
    order.refused(P0, throttled(500));
    nowMs = 100;
    order.refused(P0, throttled(100)); // would end at 200
    assert.throws(() => order.checkNotRefusing(P0, "orders", 0), (error: unknown) => (error as SluiceError).retryAfterMs === 400);
    order.refused(P0, throttled(1000)); // ends at 1100
    nowMs = 600;
    assert.throws(() => order.checkNotRefusing(P0, "orders", 0), (error: unknown) => (error as SluiceError).retryAfterMs === 500);
  });

  it("the window's own refusal, fed back as produce.ts does, neither extends nor shortens it", () => {
    let nowMs = 0;
    const order = new PartitionOrder(() => nowMs);
    order.refused(P0, throttled(300));
    nowMs = 100;
    try {
      order.checkNotRefusing(P0, "orders", 0);
      assert.fail("not refused");
    } catch (error) {
      order.refused(P0, error);
    }
    nowMs = 299;
    assert.throws(() => order.checkNotRefusing(P0, "orders", 0));
    nowMs = 300;
    order.checkNotRefusing(P0, "orders", 0);
  });

  it("errors other than THROTTLED do not open a window", () => {
    const order = new PartitionOrder(() => 0);
    order.refused(P0, new NotLeaderError("not the leader of orders/0"));
    order.refused(P0, new InvalidArgumentError("bad batch"));
    order.refused(P0, new Error("THROTTLED"));
    order.refused(P0, { code: "THROTTLED", retryAfterMs: 1000 });
    order.refused(P0, undefined);
    order.checkNotRefusing(P0, "orders", 0);
  });
});

describe("PartitionOrder with the flow controller, as produce.ts drives them", () => {
  /** A fake timer list advanced with the clock, so nothing sleeps. */
  function fakeTime(clock: FakeClock): { schedule: Schedule; advance(ms: number): Promise<void> } {
    let timers: { dueMs: number; run: () => void }[] = [];
    return {
      schedule: (run, delayMs) => {
        const timer = { dueMs: clock.now() + delayMs, run };
        timers.push(timer);
        timers.sort((a, b) => a.dueMs - b.dueMs);
        return () => {
          timers = timers.filter((t) => t !== timer);
        };
      },
      async advance(ms) {
        const targetMs = clock.now() + ms;
        await flush();
        while (timers[0] !== undefined && timers[0].dueMs <= targetMs) {
          const timer = timers.shift()!;
          clock.set(timer.dueMs);
          timer.run();
          await flush();
        }
        clock.set(targetMs);
        await flush();
      },
    };
  }

  /** produce.ts's data handler, reduced to flow control and ordering. */
  function producer(flow: FlowController, order: PartitionOrder, outcomes: string[]) {
    return (name: string, topic: string, partition: number, messages = 1): FlowTicket => {
      const key = `${topic}\u0000${partition}`;
      order.checkNotRefusing(key, topic, partition);
      const ticket = flow.admit({ topic, clientId: "app", messages, bytes: 10 });
      const ready = order.after(key, ticket);
      if (ready === undefined) {
        outcomes.push(`${name} appended`);
        return ticket;
      }
      void ready.then(
        () => {
          outcomes.push(`${name} appended`);
          ticket.release();
        },
        (error: unknown) => {
          ticket.cancel();
          order.refused(key, error);
          outcomes.push(`${name} refused`);
        },
      );
      return ticket;
    };
  }

  it("batches refused for want of a slot, one on its own and one behind it, charge nothing and hold nothing", async () => {
    const clock = new FakeClock(0);
    const time = fakeTime(clock);
    const flow = new FlowController(
      [
        { rule: parseFlowRule({ scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 1, burst: 1, maxQueueMs: 2000 }), source: "config" },
        { rule: parseFlowRule({ scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 150 }), source: "config" },
      ],
      { clock, schedule: time.schedule },
    );
    const order = new PartitionOrder(() => clock.now());
    const outcomes: string[] = [];
    const produce = producer(flow, order, outcomes);
    const holder = produce("x", "payments", 0); // takes the only broker slot until released
    produce("a", "orders", 0); // no slot: queued, refused 150 ms after arrival
    produce("b", "orders", 0); // queued behind a, refused with it
    const status = (limiter: string) => flow.list().find((r) => r.limiter === limiter)!.state;
    assert.deepEqual(status("concurrency"), { queued: 2, inFlight: 1 });
    await time.advance(150);
    assert.deepEqual(outcomes, ["x appended", "a refused", "b refused"]);
    assert.throws(() => produce("c", "orders", 0), ThrottledError, "the partition does not refuse within a's retry-after");
    assert.deepEqual(status("concurrency"), { queued: 0, inFlight: 1 });
    assert.deepEqual(status("token-bucket"), { available: 1, queued: 0 }, "a refused batch took a token");
    holder.release();
    assert.deepEqual(status("concurrency"), { queued: 0, inFlight: 0 });
  });

  it("a batch charged and held behind one refused at its rate stage is given up: its booking refunded, its slot freed", async () => {
    const clock = new FakeClock(0);
    const time = fakeTime(clock);
    const decisions: string[] = [];
    const flow = new FlowController(
      [
        { rule: parseFlowRule({ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 150 }), source: "config" },
        { rule: parseFlowRule({ scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 1000 }), source: "config" },
      ],
      { clock, schedule: time.schedule, observer: { decided: (rule, result) => decisions.push(`${rule.limiter} ${result}`), held: () => undefined } },
    );
    const order = new PartitionOrder(() => clock.now());
    const outcomes: string[] = [];
    const produce = producer(flow, order, outcomes);
    const first = produce("p", "orders", 1); // passes the outlet at 0 with the only slot
    produce("a", "orders", 0, 2);
    produce("b", "orders", 0);
    await time.advance(60);
    // a gets the slot: 60 ms waited + 140 to its pass at 200 > 150, refused. b then gets the
    // slot and is booked at 100 (60 + 40 <= 150), but a was refused ahead of it: b is given up.
    first.release();
    await time.advance(0);
    assert.deepEqual(outcomes, ["p appended", "a refused", "b refused"]);
    assert.deepEqual(decisions.slice(2).sort(), ["concurrency delayed", "concurrency delayed", "leaky-bucket delayed", "leaky-bucket refused"], "a refused, b charged");
    const status = (limiter: string) => flow.list().find((r) => r.limiter === limiter)!.state;
    assert.deepEqual(status("concurrency"), { queued: 0, inFlight: 0 }, "b's slot was not freed");
    assert.deepEqual(status("leaky-bucket"), { queued: 0 });
    // b's outlet time is free again: a batch of another partition passes at 100, not at 200.
    produce("c", "orders", 1);
    await time.advance(39);
    assert.deepEqual(outcomes.slice(3), []);
    await time.advance(1);
    assert.deepEqual(outcomes.slice(3), ["c appended"], "b's booking was not refunded");
    assert.equal(clock.now(), 100);
    assert.deepEqual(status("concurrency"), { queued: 0, inFlight: 0 });
  });
});
