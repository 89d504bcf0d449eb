import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ShuttingDownError } from "../../common/src/errors.js";
import { MIN_RETRY_AFTER_MS, type FlowTicket } from "../../broker/src/flow/flow-controller.js";
import { WarmUp } from "../../broker/src/flow/warm-up.js";
import { assertImmediate, assertThrottled, harness, OPEN_TICKET, request, state, stateOf, type Harness } from "./flow-fixtures.js";

// Concurrency rules, the order of the two stages (a slot of every concurrency rule first, then
// every rate rule charged at once), and what a request given up (cancel) hands back.

describe("FlowController: concurrency", () => {
  const rule = { scope: "broker", limiter: "concurrency", maxInFlight: 2, maxQueueMs: 500 };

  it("takes free slots at once (immediate ticket) and gives them back on release()", () => {
    const { flow, observer } = harness([rule]);
    const a = flow.admit(request({ bytes: 10 }));
    const b = flow.admit(request({ bytes: 20 }));
    for (const ticket of [a, b]) {
      assert.equal(ticket.immediate, true);
      assert.equal(ticket.ready, undefined);
      assert.notEqual(ticket, OPEN_TICKET, "a slot holder must be released, so it cannot be the shared ticket");
    }
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 2 });
    assert.deepEqual(observer.take(), [
      { scope: "broker", limiter: "concurrency", result: "admitted", bytes: 10 },
      { scope: "broker", limiter: "concurrency", result: "admitted", bytes: 20 },
    ]);
    a.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 });
    a.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 }, "a second release() freed another slot");
    b.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("a full rule queues requests FIFO and hands each freed slot to the first waiter", async () => {
    const { flow, observer } = harness([rule]);
    const a = flow.admit(request());
    const b = flow.admit(request());
    const c = flow.admit(request({ bytes: 3 }));
    const d = flow.admit(request({ bytes: 4 }));
    assert.equal(c.immediate, false);
    assert.equal(d.immediate, false);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 2, inFlight: 2 });
    observer.take();
    assert.equal((await stateOf(c.ready)).state, "pending");

    b.release();
    assert.equal((await stateOf(c.ready)).state, "resolved");
    assert.equal((await stateOf(d.ready)).state, "pending");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 1, inFlight: 2 }, "the slot was handed over, not freed");
    assert.deepEqual(observer.take(), [{ scope: "broker", limiter: "concurrency", result: "delayed", bytes: 3 }]);

    b.release(); // twice: harmless, d stays queued
    assert.equal((await stateOf(d.ready)).state, "pending");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 1, inFlight: 2 });

    a.release();
    assert.equal((await stateOf(d.ready)).state, "resolved");
    c.release();
    d.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("a newcomer does not take a slot ahead of a waiter", async () => {
    const { flow } = harness([{ ...rule, maxInFlight: 1 }]);
    const a = flow.admit(request());
    const b = flow.admit(request());
    a.release();
    const c = flow.admit(request());
    assert.equal(c.immediate, false, "c barged past b");
    assert.equal((await stateOf(b.ready)).state, "resolved");
    b.release();
    assert.equal((await stateOf(c.ready)).state, "resolved");
    c.release();
  });

  it("a waiter still queued maxQueueMs after its arrival is refused with THROTTLED and leaves the queue", async () => {
    const { flow, scheduler, observer } = harness([rule]);
    const holders = [flow.admit(request()), flow.admit(request())];
    await scheduler.advance(100);
    const late = flow.admit(request({ bytes: 7 }));
    observer.take();
    await scheduler.advance(499);
    assert.equal((await stateOf(late.ready)).state, "pending");
    await scheduler.advance(1);
    const settled = await stateOf(late.ready);
    assert.equal(settled.state, "rejected");
    assertThrottled(settled.error, 250, "throttled by broker concurrency (2 in flight)", "every slot taken, none freed within maxQueueMs 500", "retry in 250 ms");
    assert.deepEqual(observer.take(), [{ scope: "broker", limiter: "concurrency", result: "refused", bytes: 7 }]);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 2 });
    // The refused waiter is out of line: a freed slot is simply freed.
    holders[0]!.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 });
    late.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 }, "releasing the refused ticket freed a slot it never held");
    holders[1]!.release();
  });

  it("a waiter granted a slot before its deadline is not refused later", async () => {
    const { flow, scheduler } = harness([rule]);
    const a = flow.admit(request());
    flow.admit(request());
    const c = flow.admit(request());
    await scheduler.advance(200);
    a.release();
    assert.equal((await stateOf(c.ready)).state, "resolved");
    assert.equal(scheduler.pending, 0, "the deadline timer was not cancelled");
    await scheduler.advance(1000);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 2 });
  });

  it("release() of a waiting ticket takes it out of the queue; the next slot goes to the one behind it", async () => {
    const { flow, scheduler } = harness([rule]);
    const a = flow.admit(request());
    flow.admit(request());
    const c = flow.admit(request());
    const d = flow.admit(request());
    c.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 1, inFlight: 2 });
    assert.equal(scheduler.pending, 1, "the released waiter's deadline timer was not cancelled");
    a.release();
    assert.equal((await stateOf(d.ready)).state, "resolved");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 2 });
    c.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 2 });
  });

  it("cancel(reason) of a waiting ticket takes it out of the queue and rejects its ready with the reason", async () => {
    const { flow, scheduler } = harness([{ ...rule, maxInFlight: 1 }]);
    const a = flow.admit(request());
    const b = flow.admit(request());
    const c = flow.admit(request());
    const reason = new ShuttingDownError();
    b.cancel(reason);
    const settled = await stateOf(b.ready);
    assert.equal(settled.state, "rejected");
    assert.equal(settled.error, reason);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 1, inFlight: 1 });
    assert.equal(scheduler.pending, 1, "the cancelled waiter's deadline timer was not cancelled");
    a.release();
    assert.equal((await stateOf(c.ready)).state, "resolved");
    c.release();
    b.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("a slot handed to a ticket cancelled before it went on passes to the next waiter; the cancelled one never goes on", async () => {
    // At stream close produce.ts cancels every held ticket of the stream in a row. Cancelling a
    // (its slot held through its rate wait) hands the slot to b, which is cancelled next, before
    // its continuation has run. b must neither go on nor keep a slot.
    const { flow, scheduler } = harness([
      { ...rule, maxInFlight: 1 },
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 500 },
    ]);
    assertImmediate(flow.admit(request({ messages: 10 })), "empties the bucket").release();
    const a = flow.admit(request()); // slot, then 100 ms for a token
    const b = flow.admit(request()); // waits for a's slot
    await scheduler.advance(0);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 1, inFlight: 1 });
    const reason = new ShuttingDownError();
    a.cancel(reason); // hands the slot to b ...
    b.cancel(reason); // ... which is given up before its continuation ran
    for (const ticket of [a, b]) {
      const settled = await stateOf(ticket.ready);
      assert.equal(settled.state, "rejected", "a cancelled ticket went on");
      assert.equal(settled.error, reason);
    }
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 }, "the cancelled ticket took a slot again");
    assert.deepEqual(state(flow, "topic:orders", "token-bucket"), { available: 0, queued: 0 }, "a cancelled ticket was charged");
    await scheduler.advance(1000);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 }, "a slot leaked");
    assert.equal(scheduler.pending, 0);
    // The same hand-off through release(): a slot given to a ticket released at once goes on to the next.
    const c = assertImmediate(flow.admit(request()));
    const d = flow.admit(request());
    const e = flow.admit(request());
    c.release();
    d.release();
    assert.equal((await stateOf(e.ready)).state, "resolved");
    assert.equal((await stateOf(d.ready)).state, "rejected");
    e.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("a request under two concurrency rules takes a slot of each, and waits for the full one", async () => {
    const { flow } = harness([
      { scope: "broker", limiter: "concurrency", maxInFlight: 3, maxQueueMs: 500 },
      { scope: "topic:orders", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 500 },
    ]);
    const a = flow.admit(request());
    assert.equal(a.immediate, true);
    const b = flow.admit(request());
    assert.equal(b.immediate, false);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 2 }, "b holds its broker slot while it waits for the topic's");
    assert.deepEqual(state(flow, "topic:orders", "concurrency"), { queued: 1, inFlight: 1 });
    const other = flow.admit(request({ topic: "payments" }));
    assert.equal(other.immediate, true);
    a.release();
    assert.equal((await stateOf(b.ready)).state, "resolved");
    b.release();
    other.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
    assert.deepEqual(state(flow, "topic:orders", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("the slot comes first, then the rate wait: a request waiting for a slot is not charged yet", async () => {
    const { flow, scheduler, observer } = harness([
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 1, maxQueueMs: 1000 },
      { scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 300 },
    ]);
    const t0 = scheduler.clock.now();
    const a = assertImmediate(flow.admit(request()));
    const b = flow.admit(request());
    assert.equal(b.immediate, false);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 1, inFlight: 1 });
    assert.deepEqual(state(flow, "topic:orders", "token-bucket"), { available: 0, queued: 0 }, "b was charged before it had its slot");
    observer.take();
    // At t0 + 50 b gets a's slot; the bucket holds half a token, so b then waits 50 ms for the rest.
    await scheduler.advance(50);
    a.release();
    await scheduler.advance(0);
    assert.deepEqual(observer.take(), [
      { scope: "broker", limiter: "concurrency", result: "delayed", bytes: 100 },
      { scope: "topic:orders", limiter: "token-bucket", result: "delayed", bytes: 100 },
    ]);
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 1);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 }, "b holds its slot while it waits for its rate");
    await scheduler.advance(49);
    assert.equal((await stateOf(b.ready)).state, "pending");
    await scheduler.advance(1);
    assert.equal((await stateOf(b.ready)).state, "resolved");
    assert.equal(scheduler.clock.now() - t0, 100);
    assert.deepEqual(observer.heldMs, [50], "the held time reported is the rate wait");
    b.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 0, "release() after the request went on gave its token back");
  });

  it("a rate rule's maxQueueMs counts from arrival: slot wait + rate wait over it refuses, charging nothing, and the slot goes on", async () => {
    const { flow, scheduler } = harness([
      { scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 150 },
      { scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 1000 },
    ]);
    const t0 = scheduler.clock.now();
    const a = assertImmediate(flow.admit(request())); // passes the outlet at t0
    const b = flow.admit(request({ messages: 2 }));
    const c = flow.admit(request());
    await scheduler.advance(60);
    a.release();
    // b: 60 ms for the slot + 140 ms to t0 + 200 = 200 > 150: refused. c: 60 + 40 = 100: held.
    const settled = await stateOf(b.ready);
    assert.equal(settled.state, "rejected");
    assertThrottled(settled.error, MIN_RETRY_AFTER_MS, "topic:orders leaky-bucket", "would wait 200 ms, more than maxQueueMs 150");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 }, "b's slot did not go to c");
    await scheduler.advance(39);
    assert.equal((await stateOf(c.ready)).state, "pending");
    await scheduler.advance(1);
    assert.equal((await stateOf(c.ready)).state, "resolved", "b's refusal booked outlet time");
    assert.equal(scheduler.clock.now() - t0, 100);
    c.release();
    b.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("a full concurrency rule with maxQueueMs 0 refuses at once, without queueing", async () => {
    const { flow } = harness([{ scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 0 }]);
    const holder = flow.admit(request());
    assert.equal(holder.immediate, true);
    const refused = flow.admit(request());
    const settled = await stateOf(refused.ready);
    assert.equal(settled.state, "rejected", "no time passed, yet the request is not refused");
    assertThrottled(settled.error, MIN_RETRY_AFTER_MS, "throttled by broker concurrency (1 in flight): every slot taken, none freed within maxQueueMs 0; retry in 100 ms");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 });
  });
});

describe("FlowController: a refused request changes nothing", () => {
  // The reviewer's E1: a token bucket (1000/s, burst 1000) and one broker slot with maxQueueMs 100;
  // a leaky bucket and a warm-up on the same topic show that no rate rule is touched.
  const rules = [
    { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 1000, burst: 1000, maxQueueMs: 500 },
    { scope: "topic:orders", limiter: "leaky-bucket", bytesPerSecond: 100_000, maxQueueMs: 500 },
    { scope: "topic:orders", limiter: "warm-up", messagesPerSecond: 1000, warmUpMs: 1000, maxQueueMs: 500 },
    { scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 100 },
  ];

  it("a request refused for want of a slot leaves every rate rule as it was (E1)", async () => {
    const refused = harness(rules);
    const twin = harness(rules); // sees the same requests but the refused one
    const holders = [refused, twin].map((h) => assertImmediate(h.flow.admit(request({ messages: 10, bytes: 1000 }))));
    assert.equal(state(refused.flow, "topic:orders", "token-bucket").available, 990);
    const big = refused.flow.admit(request({ messages: 900, bytes: 90_000 }));
    assert.equal(big.immediate, false);
    assert.deepEqual(refused.flow.list(), twin.flow.list().map((r) => (r.limiter === "concurrency" ? { ...r, state: { queued: 1, inFlight: 1 } } : r)));
    assert.equal(state(refused.flow, "topic:orders", "token-bucket").available, 990, "charged before it had its slot");
    for (const h of [refused, twin]) await h.scheduler.advance(100);
    const settled = await stateOf(big.ready);
    assert.equal(settled.state, "rejected");
    assertThrottled(settled.error, MIN_RETRY_AFTER_MS, "throttled by broker concurrency (1 in flight): every slot taken, none freed within maxQueueMs 100");
    big.release();
    big.cancel();
    assert.deepEqual(refused.flow.list(), twin.flow.list(), "the refusal left a trace in some rule");
    assert.equal(state(refused.flow, "topic:orders", "token-bucket").available, 1000, "the bucket refilled as if the request never came");
    // The next request is held exactly as long in both (the leaky bucket and the warm-up agree too).
    const heldMs = async (h: Harness, holder: FlowTicket): Promise<number[]> => {
      holder.release();
      const next = h.flow.admit(request({ messages: 1000, bytes: 20_000 }));
      await h.scheduler.advance(1000);
      assert.equal((await stateOf(next.ready ?? Promise.resolve())).state, "resolved");
      next.release();
      return h.observer.heldMs;
    };
    assert.deepEqual(await heldMs(refused, holders[0]!), await heldMs(twin, holders[1]!));
  });
});

describe("FlowController: cancel() gives back what a request booked", () => {
  it("token bucket: a held request's tokens come back and its slot goes to the next waiter", async () => {
    const { flow, scheduler } = harness([
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 5000 },
      { scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 5000 },
    ]);
    const a = assertImmediate(flow.admit(request({ messages: 8 })));
    const b = flow.admit(request({ messages: 5 }));
    const c = flow.admit(request({ messages: 1 }));
    a.release(); // b gets the slot, takes 2 tokens and waits 300 ms for 3 more
    await scheduler.advance(0);
    assert.deepEqual(state(flow, "topic:orders", "token-bucket"), { available: -3, queued: 1 });
    await scheduler.advance(100);
    const reason = new ShuttingDownError();
    b.cancel(reason);
    const settled = await stateOf(b.ready);
    assert.equal(settled.state, "rejected");
    assert.equal(settled.error, reason);
    // Without b: 2 tokens at t0, plus 1 refilled in 100 ms; c, handed b's slot, takes 1 of those 3 at once.
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 }, "b's slot did not go to c");
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 3 - 1, "b's 5 tokens did not come back");
    assert.equal((await stateOf(c.ready)).state, "resolved", "c (1 token of 3) is held behind the pass time b booked");
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 0);
    c.release();
    b.release();
    b.cancel();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 2, "a second cancel() or release() refunded again");
  });

  it("token bucket: a refund never fills the bucket above its burst", async () => {
    const { flow, scheduler } = harness([{ scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 0 }]);
    const a = assertImmediate(flow.admit(request({ messages: 8 })));
    await scheduler.advance(1000); // full again
    assertImmediate(flow.admit(request({ messages: 1 })));
    a.cancel(); // given up behind an earlier batch, say: 8 back at most, and never past 10
    const available = state(flow, "topic:orders", "token-bucket").available!;
    assert.ok(available >= 9 && available <= 10, `available ${available}`);
    await scheduler.advance(1000);
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 10);
    assertImmediate(flow.admit(request({ messages: 10 })));
    assert.throws(() => flow.admit(request({ messages: 1 })), /bucket empty/);
  });

  it("leaky bucket: cancelling the last booked request moves the next pass back by its cost", async () => {
    const { flow, scheduler, observer } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 1000 }]);
    assertImmediate(flow.admit(request())); // t0
    const b = flow.admit(request()); // t0 + 100
    const c = flow.admit(request({ messages: 3 })); // t0 + 200, occupies until t0 + 500
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 2);
    c.cancel();
    assert.equal((await stateOf(c.ready)).state, "rejected");
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 1);
    const d = flow.admit(request()); // t0 + 200 again, not t0 + 500
    await scheduler.advance(1000);
    for (const ticket of [b, d]) assert.equal((await stateOf(ticket.ready)).state, "resolved");
    assert.deepEqual(observer.heldMs, [100, 200]);
  });

  it("warm-up: cancelling a held request restores the limiter as if it had never been booked", async () => {
    const rule = { scope: "topic:orders", limiter: "warm-up", messagesPerSecond: 100, warmUpMs: 1000, maxQueueMs: 5000 };
    const { flow, scheduler, observer } = harness([rule]);
    const t0 = scheduler.clock.now();
    // A bare limiter that never sees b tells when the next request should pass.
    const model = new WarmUp({ ratePerSecond: 100, warmUpMs: 1000, coldFactor: 3 });
    assertImmediate(flow.admit(request()));
    model.take(1, t0);
    const b = flow.admit(request({ messages: 5 }));
    const neverBookedMs = model.probe(1, t0);
    b.cancel();
    assert.equal((await stateOf(b.ready)).state, "rejected");
    assert.equal(state(flow, "topic:orders", "warm-up").queued, 0);
    const next = flow.admit(request());
    await scheduler.advance(5000);
    assert.equal((await stateOf(next.ready)).state, "resolved");
    assert.equal(observer.heldMs.length, 1);
    assert.ok(Math.abs(observer.heldMs[0]! - neverBookedMs) < 1e-9, `held ${observer.heldMs[0]} ms, expected ${neverBookedMs}`);
  });

  it("release() after the request went on frees its slot and keeps its charge; before, it is cancel()", async () => {
    const { flow, scheduler } = harness([
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 5000 },
      { scope: "broker", limiter: "concurrency", maxInFlight: 2, maxQueueMs: 5000 },
    ]);
    const a = assertImmediate(flow.admit(request({ messages: 8 })));
    a.release();
    assert.deepEqual(state(flow, "topic:orders", "token-bucket"), { available: 2, queued: 0 }, "release() of a request that ran refunded it");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
    const b = flow.admit(request({ messages: 5 })); // waits 300 ms for 3 tokens
    assert.equal(b.immediate, false);
    await scheduler.advance(100);
    b.release();
    assert.equal((await stateOf(b.ready)).state, "rejected", "a ticket released before it went on still went on");
    assert.equal(scheduler.pending, 0);
    assert.deepEqual(state(flow, "topic:orders", "token-bucket"), { available: 3, queued: 0 });
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
    const c = flow.admit(request({ messages: 5 })); // and it is held: it went on after 200 ms
    await scheduler.advance(200);
    assert.equal((await stateOf(c.ready)).state, "resolved");
    c.release();
    c.cancel();
    assert.deepEqual(state(flow, "topic:orders", "token-bucket"), { available: 0, queued: 0 }, "cancel() after release() refunded");
  });
});
