import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { UnknownFlowRuleError } from "../../common/src/errors.js";
import { parseFlowRule } from "../../common/src/flow/rules.js";
import { FlowController, MIN_RETRY_AFTER_MS } from "../../broker/src/flow/flow-controller.js";
import {
  assertImmediate,
  assertThrottled,
  harness,
  OPEN_TICKET,
  refusal,
  request,
  START_MS,
  state,
  stateOf,
} from "./flow-fixtures.js";

// Rate rules, rule changes and the held-bytes budget. Concurrency rules, the order of the
// slot and rate stages, and cancel() are in flow-controller-concurrency.test.ts.

describe("FlowController: which rules apply", () => {
  it("with no rule at all every request gets the shared immediate ticket", () => {
    const { flow } = harness([]);
    const ticket = flow.admit(request({ messages: 1_000_000, bytes: 1 << 30 }));
    assert.equal(ticket, OPEN_TICKET);
    assert.equal(ticket.immediate, true);
    assert.equal(ticket.ready, undefined);
    ticket.release();
    ticket.release();
    ticket.cancel();
    assert.equal(flow.size, 0);
    assert.deepEqual(flow.list(), []);
  });

  it("a topic rule never touches another topic: no charge, shared immediate ticket", () => {
    const { flow } = harness([{ scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 0 }]);
    assert.equal(flow.admit(request({ topic: "payments", messages: 1_000 })), OPEN_TICKET);
    assert.equal(flow.admit(request({ topic: "orders-archive", messages: 1_000 })), OPEN_TICKET);
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 10, "another topic charged the orders bucket");
    // The rule does apply to its own topic: 10 pass, the 11th would wait and maxQueueMs 0 refuses it.
    assert.equal(flow.admit(request({ messages: 10 })).immediate, true);
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 0);
    refusal(flow, request({ messages: 1 }));
    assert.equal(flow.admit(request({ topic: "payments", messages: 1 })), OPEN_TICKET);
  });

  it("a topic glob matches names with dots and dashes, and only those", () => {
    const { flow } = harness([{ scope: "topic:orders.*", limiter: "token-bucket", messagesPerSecond: 1, burst: 1, maxQueueMs: 0 }]);
    assert.equal(flow.admit(request({ topic: "ordersX1" })), OPEN_TICKET, "the '.' of the glob is literal");
    flow.admit(request({ topic: "orders.eu-west" }));
    refusal(flow, request({ topic: "orders.us" }));
  });

  it("a client glob matches client ids ('*' any run, '?' exactly one character) and shares one limiter", () => {
    const { flow } = harness([
      { scope: "client:loader-*", limiter: "token-bucket", messagesPerSecond: 5, burst: 5, maxQueueMs: 0 },
      { scope: "client:batch-?", limiter: "leaky-bucket", messagesPerSecond: 1, maxQueueMs: 0 },
    ]);
    assert.equal(flow.admit(request({ clientId: "web-1", messages: 100 })), OPEN_TICKET);
    assert.equal(flow.admit(request({ clientId: "loader-1", messages: 5 })).immediate, true);
    const error = refusal(flow, request({ clientId: "loader-east-2", messages: 1 }));
    assert.match(error.message, /client:loader-\* token-bucket/);
    // `?` is one character: batch-10 is not matched, batch-1 and batch-2 share the pacer.
    assert.equal(flow.admit(request({ clientId: "batch-10", messages: 1 })), OPEN_TICKET);
    flow.admit(request({ clientId: "batch-1", messages: 1 }));
    refusal(flow, request({ clientId: "batch-2", messages: 1 }));
  });

  it("the broker scope matches every topic and client", () => {
    const { flow } = harness([{ scope: "broker", limiter: "token-bucket", messagesPerSecond: 3, burst: 3, maxQueueMs: 0 }]);
    flow.admit(request({ topic: "a", clientId: "x" }));
    flow.admit(request({ topic: "b", clientId: "y" }));
    flow.admit(request({ topic: "c", clientId: "" }));
    const error = refusal(flow, request({ topic: "d", clientId: "z" }));
    assert.match(error.message, /^throttled by broker token-bucket/);
  });

  it("a request measured in bytes is charged its batch bytes, in messages its message count", () => {
    const { flow } = harness([
      { scope: "broker", limiter: "token-bucket", bytesPerSecond: 1000, burst: 1000, maxQueueMs: 0 },
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 100, burst: 100, maxQueueMs: 0 },
    ]);
    flow.admit(request({ messages: 7, bytes: 300 }));
    assert.equal(state(flow, "broker", "token-bucket").available, 700);
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 93);
  });
});

describe("FlowController: all-or-nothing refusal", () => {
  const rules = [
    { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 500 },
    { scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 1000, maxQueueMs: 200 },
  ];

  it("one rule over its maxQueueMs refuses the request with THROTTLED and charges neither limiter", async () => {
    const { flow, scheduler, observer } = harness(rules);
    const t0 = scheduler.clock.now();
    // t0: 10 messages empty the bucket; 100 bytes pass the idle pacer at once (its last pass is now t0).
    assertImmediate(flow.admit(request({ messages: 10, bytes: 100 })));
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 0);
    observer.take();

    // The bucket (probed first) would hold 1 message 100 ms: within its 500. The pacer would
    // hold 500 bytes 500 ms: over its 200. Refused, retry after 500 - 200 = 300 ms.
    const error = refusal(flow, request({ messages: 1, bytes: 500 }));
    assertThrottled(error, 300, "broker", "leaky-bucket", "1000 bytes/s", "queue full", "would wait 500 ms", "maxQueueMs 200", "retry in 300 ms");
    assert.match(error.message, /^throttled by broker leaky-bucket \(1000 bytes\/s\): queue full, /);
    assert.deepEqual(observer.take(), [{ scope: "broker", limiter: "leaky-bucket", result: "refused", bytes: 500 }], "a rule was reported for a refused request");

    // Neither was charged. The bucket: a charge would have left it at -1 now and at 0 in 100 ms.
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 0);
    // The pacer: 100 bytes of another topic (the pacer alone) pass 100 ms after t0, not 600.
    const other = flow.admit(request({ topic: "payments", messages: 1, bytes: 100 }));
    assert.equal(other.immediate, false);
    await scheduler.advance(99);
    assert.equal((await stateOf(other.ready)).state, "pending");
    await scheduler.advance(1);
    assert.equal((await stateOf(other.ready)).state, "resolved");
    assert.equal(scheduler.clock.now() - t0, 100);
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 1, "the refused request took a token");
  });

  it("a refusal by the second rule leaves the first rule's tokens untouched even when it would pass at once", () => {
    const { flow } = harness(rules);
    // Bucket 10 → 7; the pacer passes 300 bytes now (last pass t0).
    assertImmediate(flow.admit(request({ messages: 3, bytes: 300 })));
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 7);
    // The bucket lets 5 messages through at once; the pacer would hold 250 bytes 250 ms > 200.
    const error = refusal(flow, request({ messages: 5, bytes: 250 }));
    assertThrottled(error, MIN_RETRY_AFTER_MS, "broker leaky-bucket", "would wait 250 ms", "retry in 100 ms");
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 7, "the bucket was charged for a refused request");
  });

  it("retryAfterMs is ceil(wait - maxQueueMs) when that exceeds the 100 ms floor, else the floor", () => {
    const { flow } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 3, maxQueueMs: 100 }]);
    assert.equal(flow.admit(request()).immediate, true);
    // Next would wait 333.33 ms: 233.33 over maxQueueMs → 234 (rounded up).
    const over = refusal(flow, request());
    assertThrottled(over, 234, "topic:orders leaky-bucket (3 messages/s)", "would wait 334 ms", "maxQueueMs 100");
    const { flow: small } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 8, maxQueueMs: 100 }]);
    small.admit(request());
    // 125 ms wait, 25 over: the floor of 100 ms applies.
    assertThrottled(refusal(small, request()), MIN_RETRY_AFTER_MS, "would wait 125 ms", "retry in 100 ms");
  });

  it("the message names scope, limiter, limit and reason for every rate limiter", () => {
    const { flow } = harness([
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 50_000, burst: 100_000, maxQueueMs: 0 },
      { scope: "topic:logs", limiter: "warm-up", bytesPerSecond: 1000, warmUpMs: 10_000, maxQueueMs: 0 },
    ]);
    flow.admit(request({ messages: 100_000 }));
    assert.match(refusal(flow, request({ messages: 1 })).message, /^throttled by topic:orders token-bucket \(50000 messages\/s, burst 100000\): bucket empty, /);
    // A cold warm-up limiter passes the first request now and books the next a cold interval later.
    assertImmediate(flow.admit(request({ topic: "logs", bytes: 1 })));
    const error = refusal(flow, request({ topic: "logs", bytes: 1 }));
    assert.match(error.message, /^throttled by topic:logs warm-up \(1000 bytes\/s, warm-up 10000 ms x3\): warming up or at its rate, /);
  });
});

describe("FlowController: holding a request", () => {
  const rules = [
    { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 1000 },
    { scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 1000, maxQueueMs: 1000 },
  ];

  it("the wait is the longest of the rules' waits; ready resolves exactly then; list() counts it while held", async () => {
    const { flow, scheduler, observer } = harness(rules);
    const t0 = scheduler.clock.now();
    const first = flow.admit(request({ messages: 10, bytes: 100 }));
    assertImmediate(first, "no wait and no concurrency rule: the request goes on at once");
    assert.notEqual(first, OPEN_TICKET, "a matched request gets a ticket of its own (cancel() must refund it)");
    assert.deepEqual(observer.take(), [
      { scope: "topic:orders", limiter: "token-bucket", result: "admitted", bytes: 100 },
      { scope: "broker", limiter: "leaky-bucket", result: "admitted", bytes: 100 },
    ]);

    // Bucket: 3 tokens at 10/s = 300 ms. Pacer: booked 100 ms ahead → 100 ms. The longest wins.
    const held = flow.admit(request({ messages: 3, bytes: 100 }));
    assert.equal(held.immediate, false);
    assert.deepEqual(observer.take(), [
      { scope: "topic:orders", limiter: "token-bucket", result: "delayed", bytes: 100 },
      { scope: "broker", limiter: "leaky-bucket", result: "delayed", bytes: 100 },
    ]);
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 1);
    assert.equal(state(flow, "broker", "leaky-bucket").queued, 1);
    assert.equal(scheduler.pending, 1);

    await scheduler.advance(299);
    assert.equal((await stateOf(held.ready)).state, "pending");
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 1);
    assert.deepEqual(observer.heldMs, []);
    await scheduler.advance(1);
    assert.equal((await stateOf(held.ready)).state, "resolved");
    assert.equal(scheduler.clock.now() - t0, 300);
    assert.deepEqual(observer.heldMs, [300]);
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 0);
    assert.equal(state(flow, "broker", "leaky-bucket").queued, 0);
    held.release();
    held.release();
  });

  it("only a rule that holds the request counts it as queued and reports it delayed", async () => {
    const { flow, scheduler, observer } = harness(rules);
    flow.admit(request({ messages: 10, bytes: 1 }));
    await scheduler.advance(50); // the pacer is idle again; the bucket refilled half a token
    observer.take();
    const held = flow.admit(request({ messages: 1, bytes: 1 }));
    assert.deepEqual(observer.take(), [
      { scope: "topic:orders", limiter: "token-bucket", result: "delayed", bytes: 1 },
      { scope: "broker", limiter: "leaky-bucket", result: "admitted", bytes: 1 },
    ]);
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 1);
    assert.equal(state(flow, "broker", "leaky-bucket").queued, 0);
    await scheduler.advance(49);
    assert.equal((await stateOf(held.ready)).state, "pending");
    await scheduler.advance(1);
    assert.equal((await stateOf(held.ready)).state, "resolved");
    assert.deepEqual(observer.heldMs, [50]);
  });

  it("requests held one behind another are released in arrival order at their own times", async () => {
    const { flow, scheduler } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 1000 }]);
    const order: string[] = [];
    flow.admit(request());
    const tickets = ["b", "c", "d"].map((name) => {
      const ticket = flow.admit(request());
      void ticket.ready!.then(() => order.push(`${name}@${scheduler.clock.now() - START_MS}`));
      return ticket;
    });
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 3);
    await scheduler.advance(1000);
    assert.deepEqual(order, ["b@100", "c@200", "d@300"]);
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 0);
    for (const ticket of tickets) ticket.release();
  });

  it("a wait under 1 ms is not held (a timer cannot wait less): the request goes on at once, counted admitted", () => {
    // A leaky bucket at 10 M messages/s books requests arriving together 0.1 us apart.
    const { flow, observer } = harness([{ scope: "broker", limiter: "leaky-bucket", messagesPerSecond: 10_000_000 }]);
    assert.equal(flow.admit(request()).immediate, true);
    const next = flow.admit(request());
    assert.equal(next.immediate, true);
    assert.equal(next.ready, undefined);
    assert.deepEqual(observer.take().map((d) => d.result), ["admitted", "admitted"]);
    assert.equal(state(flow, "broker", "leaky-bucket").queued, 0);
  });

  it("release() of a ticket still in its rate wait gives it up: ready rejects, not queued, its booking given back", async () => {
    // produce.ts gives up a held ticket whose batch was refused because an earlier batch of its
    // partition was (PartitionOrder): the batch never runs, so it must cost nothing.
    const { flow, scheduler, observer } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 1000 }]);
    const t0 = scheduler.clock.now();
    assertImmediate(flow.admit(request()));
    const held = flow.admit(request()); // booked at t0 + 100
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 1);
    held.release();
    assert.equal((await stateOf(held.ready)).state, "rejected", "a given-up ticket's ready must never resolve");
    assert.equal(scheduler.pending, 0, "the released ticket's timer was not cancelled");
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 0, "list() (and sluice_flow_queued_requests) still counts a released ticket");
    // Its outlet slot is free again: the next request passes at t0 + 100, not t0 + 200.
    const next = flow.admit(request());
    await scheduler.advance(100);
    assert.equal((await stateOf(next.ready)).state, "resolved");
    assert.equal(scheduler.clock.now() - t0, 100);
    assert.deepEqual(observer.heldMs, [100], "only the request that went on counts as held");
    held.release();
    held.cancel();
  });
});

describe("FlowController: maxQueueMs 0 refuses instead of delaying", () => {
  it("a leaky bucket with maxQueueMs 0 refuses anything that would wait, and passes once the outlet is free", async () => {
    const { flow, scheduler } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10 }]);
    assert.equal(flow.ruleFor("topic:orders", "leaky-bucket").maxQueueMs, 500, "the parser's default");
    const { flow: direct, scheduler: directScheduler } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 0 }]);
    assertImmediate(direct.admit(request()));
    assertThrottled(refusal(direct, request()), MIN_RETRY_AFTER_MS, "would wait 100 ms, more than maxQueueMs 0");
    await directScheduler.advance(99);
    refusal(direct, request());
    await directScheduler.advance(1);
    assertImmediate(direct.admit(request()));
    assert.equal(directScheduler.pending, 0, "nothing is ever held");
    // With the default 500 ms the same second request is held instead.
    flow.admit(request());
    const held = flow.admit(request());
    assert.equal(held.immediate, false);
    await scheduler.advance(100);
    assert.equal((await stateOf(held.ready)).state, "resolved");
  });

  it("a token bucket with maxQueueMs 0 passes a burst, then refuses", () => {
    const { flow } = harness([{ scope: "broker", limiter: "token-bucket", messagesPerSecond: 10, burst: 3, maxQueueMs: 0 }]);
    for (let i = 0; i < 3; i++) assertImmediate(flow.admit(request()));
    assertThrottled(refusal(flow, request()), MIN_RETRY_AFTER_MS, "bucket empty");
  });
});

describe("FlowController: changing rules", () => {
  const bucket = { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 1, burst: 2, maxQueueMs: 0 };

  it("set() of a rule equal to the one in force keeps its state (re-applied rules hand out no fresh burst)", () => {
    const { flow } = harness([bucket]);
    assertImmediate(flow.admit(request({ messages: 2 })));
    refusal(flow, request());
    flow.set(parseFlowRule(bucket), "config");
    assert.equal(flow.size, 1);
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 0, "re-applying the same rule refilled the bucket");
    refusal(flow, request());
    // The same rule from another source: the state stays, the source is updated.
    flow.set(parseFlowRule(bucket));
    assert.equal(flow.list()[0]!.source, "runtime", "set() defaults to a runtime rule");
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 0);
    refusal(flow, request());
  });

  it("set() of a changed rule starts a fresh limiter", () => {
    const { flow } = harness([bucket]);
    flow.admit(request({ messages: 2 }));
    flow.set(parseFlowRule({ ...bucket, burst: 5 }));
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 5);
    assert.equal(flow.ruleFor("topic:orders", "token-bucket").burst, 5);
    assertImmediate(flow.admit(request({ messages: 5 })));
    refusal(flow, request());
  });

  it("set() of an equal warm-up rule keeps a warm limiter warm; a changed one starts cold", async () => {
    // 100 messages/s, warm-up 1000 ms, cold factor 3: stable 10 ms, 100 stored permits when cold.
    const warmUp = { scope: "topic:orders", limiter: "warm-up", messagesPerSecond: 100, warmUpMs: 1000, maxQueueMs: 5000 };
    const { flow, scheduler, observer } = harness([warmUp]);
    assert.equal(state(flow, "topic:orders", "warm-up").available, 100, "starts cold");
    // One batch of 100 spends every stored permit (1500 ms booked): the limiter is warm.
    assertImmediate(flow.admit(request({ messages: 100 })));
    await scheduler.advance(1500);
    assert.equal(state(flow, "topic:orders", "warm-up").available, 0);
    flow.set(parseFlowRule(warmUp));
    assert.equal(state(flow, "topic:orders", "warm-up").available, 0, "re-applying the same rule cooled the limiter");
    assertImmediate(flow.admit(request()));
    flow.admit(request());
    await scheduler.advance(100);
    assert.deepEqual(observer.heldMs, [10], "a warm limiter spaces requests at the stable 10 ms");
    flow.set(parseFlowRule({ ...warmUp, maxQueueMs: 4000 }));
    assert.equal(state(flow, "topic:orders", "warm-up").available, 100, "a changed rule starts cold");
  });

  it("set() of an equal concurrency rule keeps its slots; a changed one starts empty and old holders give back to the old one", () => {
    const rule = { scope: "broker", limiter: "concurrency", maxInFlight: 2, maxQueueMs: 0 };
    const { flow } = harness([rule]);
    const a = assertImmediate(flow.admit(request()));
    const b = assertImmediate(flow.admit(request()));
    flow.set(parseFlowRule(rule));
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 2 }, "re-applying the rule forgot the requests in flight");
    flow.set(parseFlowRule({ ...rule, maxInFlight: 3 }));
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
    const c = assertImmediate(flow.admit(request()));
    a.release();
    b.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 }, "an old holder freed a slot of the new limiter");
    c.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("set() applies a new rule to the next request of a topic already seen (match cache cleared)", () => {
    const { flow } = harness([{ scope: "topic:other", limiter: "token-bucket", messagesPerSecond: 1, burst: 1, maxQueueMs: 0 }]);
    assert.equal(flow.admit(request({ messages: 50 })), OPEN_TICKET);
    flow.set(parseFlowRule(bucket));
    flow.admit(request({ messages: 2 }));
    refusal(flow, request());
    // A broker rule added later applies to the same (topic, client) too.
    flow.set(parseFlowRule({ scope: "broker", limiter: "token-bucket", messagesPerSecond: 1, burst: 1, maxQueueMs: 0 }));
    flow.admit(request({ topic: "payments" }));
    refusal(flow, request({ topic: "payments" }));
  });

  it("delete() removes a rule at once (match cache cleared) and returns it", () => {
    const { flow } = harness([bucket, { scope: "topic:payments", limiter: "leaky-bucket", messagesPerSecond: 1 }]);
    flow.admit(request({ messages: 2 }));
    refusal(flow, request());
    const deleted = flow.delete("topic:orders", "token-bucket");
    assert.deepEqual(deleted, parseFlowRule(bucket));
    assert.equal(flow.size, 1);
    assert.equal(flow.admit(request({ messages: 100 })), OPEN_TICKET, "the deleted rule still applies to a topic seen before");
  });

  it("delete() and ruleFor() of an unknown pair throw UnknownFlowRuleError naming the rules present", () => {
    const { flow } = harness([bucket, { scope: "broker", limiter: "concurrency", maxInFlight: 4 }]);
    assert.deepEqual(flow.ruleFor("broker", "concurrency"), parseFlowRule({ scope: "broker", limiter: "concurrency", maxInFlight: 4 }));
    for (const call of [() => flow.delete("topic:orders", "leaky-bucket"), () => flow.ruleFor("topic:order", "token-bucket")]) {
      assert.throws(call, (error: unknown) => {
        assert.ok(error instanceof UnknownFlowRuleError);
        assert.equal(error.code, "UNKNOWN_FLOW_RULE");
        assert.match(error.message, /rules here: topic:orders token-bucket, broker concurrency$/);
        return true;
      });
    }
    assert.equal(flow.size, 2, "a failed delete removed something");
    const { flow: empty } = harness([]);
    assert.throws(() => empty.delete("broker", "token-bucket"), /no flow rule for scope broker with limiter token-bucket; rules here: none/);
  });

  it("list() shows every rule with its source and state", () => {
    const { flow } = harness([
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10 },
      { scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 1000 },
    ]);
    flow.set(parseFlowRule({ scope: "client:loader-*", limiter: "concurrency", maxInFlight: 3 }));
    flow.admit(request({ messages: 3, bytes: 1 }));
    assert.deepEqual(flow.list(), [
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 10, maxQueueMs: 500, source: "config", state: { available: 7, queued: 0 } },
      { scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 1000, maxQueueMs: 500, source: "config", state: { queued: 0 } },
      { scope: "client:loader-*", limiter: "concurrency", maxQueueMs: 500, maxInFlight: 3, source: "runtime", state: { queued: 0, inFlight: 0 } },
    ]);
  });
});

describe("FlowController: the broker-wide budget of held bytes", () => {
  it("reserveHeld/releaseHeld count held bytes; past the budget a reservation is refused, the first one always passes", () => {
    const { flow } = harness([], "config", { maxHeldBytes: 1000 });
    assert.equal(flow.heldBytes, 0);
    // A batch larger than the whole budget is still held when nothing else is: else it could never pass.
    assert.equal(flow.reserveHeld(5000), true);
    assert.equal(flow.heldBytes, 5000);
    assert.equal(flow.reserveHeld(1), false);
    assert.equal(flow.heldBytes, 5000, "a refused reservation was counted");
    flow.releaseHeld(5000);
    assert.equal(flow.heldBytes, 0);
    assert.equal(flow.reserveHeld(600), true);
    assert.equal(flow.reserveHeld(400), true, "exactly the budget is within it");
    assert.equal(flow.reserveHeld(1), false);
    flow.releaseHeld(400);
    assert.equal(flow.reserveHeld(401), false);
    assert.equal(flow.reserveHeld(400), true);
    flow.releaseHeld(400);
    flow.releaseHeld(600);
    assert.equal(flow.heldBytes, 0);
  });

  it("the default budget is 256 MiB (268435456 bytes); its refusal is THROTTLED, retry after 100 ms, naming maxHeldProduceBytes", () => {
    const { flow } = harness([]);
    assert.equal(flow.reserveHeld(1), true);
    assert.equal(flow.reserveHeld(256 * 1024 * 1024 - 1), true);
    assert.equal(flow.reserveHeld(1), false);
    assert.equal(MIN_RETRY_AFTER_MS, 100);
    assertThrottled(flow.heldBudgetRefusal(), 100, "268435456", "maxHeldProduceBytes", "retry in 100 ms");
  });
});

describe("FlowController: warm-up with maxQueueMs 0 (direct reject)", () => {
  it("offered exactly its rate, it reaches >= 90 % of the rate after 2 x warmUpMs: refused demand is not idle time", () => {
    const { flow, clock } = harness([{ scope: "topic:orders", limiter: "warm-up", messagesPerSecond: 1000, warmUpMs: 1000, maxQueueMs: 0 }]);
    const admittedPerSecond = [0, 0, 0];
    // One request every 1 ms (the rate); a refused one is dropped, not resent.
    for (let t = 0; t < 3000; t++) {
      clock.set(START_MS + t);
      try {
        assertImmediate(flow.admit(request()));
        admittedPerSecond[Math.floor(t / 1000)]! += 1;
      } catch (error) {
        assertThrottled(error, MIN_RETRY_AFTER_MS, "topic:orders warm-up");
      }
    }
    assert.ok(admittedPerSecond[0]! < 900, `the limiter did not start cold: ${admittedPerSecond.join(", ")} per second`);
    assert.ok(admittedPerSecond[2]! >= 900, `admitted per second: ${admittedPerSecond.join(", ")}; the third second should reach 900 of 1000`);
  });
});

describe("FlowController: time that moves between calls", () => {
  it("with maxQueueMs 0 a request that would not wait passes, though the clock moved while it was decided", () => {
    // A real clock advances between reads (microseconds): that is not waiting.
    let nowMs = 1_000;
    const ticking = { now: () => (nowMs += 0.001) };
    const flow = new FlowController([{ rule: parseFlowRule({ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 1, maxQueueMs: 0 }), source: "config" }], {
      clock: ticking,
    });
    assert.equal(flow.admit({ topic: "orders", clientId: "a", messages: 1, bytes: 10 }).immediate, true);
    assert.throws(() => flow.admit({ topic: "orders", clientId: "a", messages: 1, bytes: 10 }), /queue full/);
  });
});
