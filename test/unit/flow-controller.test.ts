import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../common/src/clock.js";
import { SluiceError, ThrottledError, UnknownFlowRuleError } from "../../common/src/errors.js";
import { parseFlowRule, type FlowRule } from "../../common/src/flow/rules.js";
import {
  FlowController,
  MIN_RETRY_AFTER_MS,
  type FlowObserver,
  type FlowRequest,
  type FlowRuleSource,
  type FlowTicket,
  type Schedule,
} from "../../broker/src/flow/flow-controller.js";

// No test sleeps: the controller reads a FakeClock and waits through a fake scheduler whose
// timers fire, in due order, only when the test advances it (together with the clock).

/** Lets every pending promise callback run (setImmediate comes after the microtask queue). */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface FakeTimer {
  readonly dueMs: number;
  readonly sequence: number;
  readonly run: () => void;
}

class FakeScheduler {
  private timers: FakeTimer[] = [];
  private nextSequence = 0;

  constructor(readonly clock: FakeClock) {}

  readonly schedule: Schedule = (run, delayMs) => {
    const timer: FakeTimer = { dueMs: this.clock.now() + Math.max(0, delayMs), sequence: this.nextSequence++, run };
    this.timers.push(timer);
    // Due order, then creation order for timers due at the same time (as setTimeout does).
    this.timers.sort((a, b) => a.dueMs - b.dueMs || a.sequence - b.sequence);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  };

  /** Timers not yet fired nor cancelled. */
  get pending(): number {
    return this.timers.length;
  }

  /** Moves the clock by `ms`, firing each timer at its own due time and letting its callbacks settle. */
  async advance(ms: number): Promise<void> {
    const targetMs = this.clock.now() + ms;
    await flush();
    for (;;) {
      const next = this.timers[0];
      if (next === undefined || next.dueMs > targetMs) break;
      this.timers.shift();
      this.clock.set(Math.max(this.clock.now(), next.dueMs));
      next.run();
      await flush();
    }
    this.clock.set(targetMs);
    await flush();
  }
}

type PromiseState = "pending" | "resolved" | "rejected";

/** The state of a promise once pending callbacks ran; records the rejection reason. */
async function stateOf(promise: Promise<unknown> | undefined): Promise<{ state: PromiseState; error?: unknown }> {
  assert.ok(promise !== undefined, "the ticket has no ready promise");
  const seen: { state: PromiseState; error?: unknown } = { state: "pending" };
  promise.then(
    () => (seen.state = "resolved"),
    (error: unknown) => {
      seen.state = "rejected";
      seen.error = error;
    },
  );
  await flush();
  return seen;
}

interface Decision {
  scope: string;
  limiter: string;
  result: "admitted" | "delayed" | "refused";
  bytes: number;
}

class RecordingObserver implements FlowObserver {
  readonly decisions: Decision[] = [];
  readonly heldMs: number[] = [];
  decided(rule: FlowRule, result: "admitted" | "delayed" | "refused", bytes: number): void {
    this.decisions.push({ scope: rule.scope, limiter: rule.limiter, result, bytes });
  }
  held(waitMs: number): void {
    this.heldMs.push(waitMs);
  }
  take(): Decision[] {
    return this.decisions.splice(0);
  }
}

interface Harness {
  clock: FakeClock;
  scheduler: FakeScheduler;
  observer: RecordingObserver;
  flow: FlowController;
}

/** A controller over normalised rules (parseFlowRule fills the defaults, as the broker does). */
function harness(rules: readonly unknown[], source: FlowRuleSource = "config", startMs = 1_000_000): Harness {
  const clock = new FakeClock(startMs);
  const scheduler = new FakeScheduler(clock);
  const observer = new RecordingObserver();
  const flow = new FlowController(
    rules.map((rule, i) => ({ rule: parseFlowRule(rule, `flow[${i}]`), source })),
    { clock, schedule: scheduler.schedule, observer },
  );
  return { clock, scheduler, observer, flow };
}

function request(fields: Partial<FlowRequest> = {}): FlowRequest {
  return { topic: "orders", clientId: "app-1", messages: 1, bytes: 100, ...fields };
}

/** The shared ticket the controller hands out when no rule holds a request. */
const OPEN_TICKET: FlowTicket = new FlowController().admit(request());

function state(flow: FlowController, scope: string, limiter: string): { available?: number; queued: number; inFlight?: number } {
  const rule = flow.list().find((r) => r.scope === scope && r.limiter === limiter);
  assert.ok(rule !== undefined, `no rule ${scope} ${limiter} in list()`);
  return rule.state;
}

function assertThrottled(error: unknown, retryAfterMs: number, ...phrases: string[]): void {
  assert.ok(error instanceof ThrottledError, `expected a ThrottledError, got ${String(error)}`);
  assert.ok(error instanceof SluiceError);
  assert.equal(error.code, "THROTTLED");
  assert.equal(error.retriable, true);
  assert.equal(error.retryAfterMs, retryAfterMs);
  for (const phrase of phrases) assert.ok(error.message.includes(phrase), `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(phrase)}`);
}

function refusal(flow: FlowController, req: FlowRequest): ThrottledError {
  try {
    flow.admit(req);
  } catch (error) {
    assert.ok(error instanceof ThrottledError, `expected a ThrottledError, got ${String(error)}`);
    return error;
  }
  assert.fail(`admit(${JSON.stringify(req)}) was not refused`);
}

describe("FlowController: which rules apply", () => {
  it("with no rule at all every request gets the shared immediate ticket", () => {
    const { flow } = harness([]);
    const ticket = flow.admit(request({ messages: 1_000_000, bytes: 1 << 30 }));
    assert.equal(ticket, OPEN_TICKET);
    assert.equal(ticket.immediate, true);
    assert.equal(ticket.ready, undefined);
    ticket.release();
    ticket.release();
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
    assert.equal(flow.admit(request({ messages: 10, bytes: 100 })), OPEN_TICKET);
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
    assert.equal(flow.admit(request({ messages: 3, bytes: 300 })), OPEN_TICKET);
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
    assert.equal(flow.admit(request({ topic: "logs", bytes: 1 })), OPEN_TICKET);
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
    assert.equal(first, OPEN_TICKET, "no wait and no concurrency rule: the shared ticket");
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
      void ticket.ready!.then(() => order.push(`${name}@${scheduler.clock.now() - 1_000_000}`));
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

  it("release() of a ticket still in its rate wait stops counting it as queued", async () => {
    // produce.ts releases a held ticket whose batch was refused because an earlier batch of its
    // partition was (PartitionOrder): the ticket is released before its rate wait is over.
    const { flow, scheduler } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 1000 }]);
    flow.admit(request());
    const held = flow.admit(request());
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 1);
    held.release();
    await scheduler.advance(1000);
    assert.equal(scheduler.pending, 0, "the released ticket's timer was not cancelled");
    assert.equal(state(flow, "topic:orders", "leaky-bucket").queued, 0, "list() (and sluice_flow_queued_requests) still counts a released ticket");
  });
});

describe("FlowController: maxQueueMs 0 refuses instead of delaying", () => {
  it("a leaky bucket with maxQueueMs 0 refuses anything that would wait, and passes once the outlet is free", async () => {
    const { flow, scheduler } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10 }]);
    assert.equal(flow.require("topic:orders", "leaky-bucket").maxQueueMs, 500, "the parser's default");
    const { flow: direct, scheduler: directScheduler } = harness([{ scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 10, maxQueueMs: 0 }]);
    assert.equal(direct.admit(request()), OPEN_TICKET);
    assertThrottled(refusal(direct, request()), MIN_RETRY_AFTER_MS, "would wait 100 ms, more than maxQueueMs 0");
    await directScheduler.advance(99);
    refusal(direct, request());
    await directScheduler.advance(1);
    assert.equal(direct.admit(request()), OPEN_TICKET);
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
    for (let i = 0; i < 3; i++) assert.equal(flow.admit(request()), OPEN_TICKET);
    assertThrottled(refusal(flow, request()), MIN_RETRY_AFTER_MS, "bucket empty");
  });

  it("a full concurrency rule with maxQueueMs 0 refuses at once, without queueing", async () => {
    const { flow } = harness([{ scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 0 }]);
    const holder = flow.admit(request());
    assert.equal(holder.immediate, true);
    const refused = flow.admit(request());
    const settled = await stateOf(refused.ready);
    assert.equal(settled.state, "rejected", "no time passed, yet the request is not refused");
    assertThrottled(settled.error, MIN_RETRY_AFTER_MS, "broker concurrency (1 in flight)", "1 requests in flight", "maxQueueMs 0");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 });
  });
});

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
    assertThrottled(settled.error, 250, "throttled by broker concurrency (2 in flight)", "2 requests in flight", "no slot freed within maxQueueMs 500", "retry in 250 ms");
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

  it("a slot handed to a ticket released at once goes on to the next waiter", async () => {
    const { flow } = harness([{ ...rule, maxInFlight: 1 }]);
    const a = flow.admit(request());
    const b = flow.admit(request());
    const c = flow.admit(request());
    a.release(); // hands the slot to b ...
    b.release(); // ... which gives it up before its continuation ran
    assert.equal((await stateOf(c.ready)).state, "resolved");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 });
    c.release();
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

  it("a rate wait comes first, then the slot wait, whose maxQueueMs counts from arrival", async () => {
    const { flow, scheduler, observer } = harness([
      { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 1, maxQueueMs: 1000 },
      { scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 300 },
    ]);
    const a = flow.admit(request());
    assert.equal(a.immediate, true);
    const b = flow.admit(request());
    assert.equal(b.immediate, false);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 }, "b queues for a slot only after its rate wait");
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 1);
    observer.take();
    await scheduler.advance(100);
    assert.deepEqual(observer.heldMs, [100]);
    assert.equal(state(flow, "topic:orders", "token-bucket").queued, 0);
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 1, inFlight: 1 });
    await scheduler.advance(50);
    a.release();
    assert.equal((await stateOf(b.ready)).state, "resolved");
    assert.deepEqual(observer.take(), [{ scope: "broker", limiter: "concurrency", result: "delayed", bytes: 100 }]);

    // c waits 50 ms for the rest of a token, then for b's slot: refused 300 ms after it
    // arrived, not 300 ms after its rate wait ended.
    const arrivedMs = scheduler.clock.now();
    const c = flow.admit(request());
    await scheduler.advance(299);
    assert.equal((await stateOf(c.ready)).state, "pending");
    await scheduler.advance(1);
    const settled = await stateOf(c.ready);
    assert.equal(settled.state, "rejected");
    assert.equal(scheduler.clock.now() - arrivedMs, 300);
    assertThrottled(settled.error, 150, "broker concurrency", "maxQueueMs 300");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 });
    b.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });

  it("a rate wait that already used up the concurrency rule's maxQueueMs is refused when no slot is free", async () => {
    const { flow, scheduler } = harness([
      { scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 5, maxQueueMs: 1000 },
      { scope: "broker", limiter: "concurrency", maxInFlight: 1, maxQueueMs: 100 },
    ]);
    const a = flow.admit(request());
    const b = flow.admit(request()); // 200 ms rate wait, longer than the slot's 100 ms
    await scheduler.advance(200);
    const settled = await stateOf(b.ready);
    assert.equal(settled.state, "rejected");
    assertThrottled(settled.error, MIN_RETRY_AFTER_MS, "broker concurrency");
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 1 });
    a.release();
    assert.deepEqual(state(flow, "broker", "concurrency"), { queued: 0, inFlight: 0 });
  });
});

describe("FlowController: changing rules", () => {
  const bucket = { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 1, burst: 2, maxQueueMs: 0 };

  it("set() replaces the limiter of its key with a fresh one", () => {
    const { flow } = harness([bucket]);
    flow.admit(request({ messages: 2 }));
    refusal(flow, request());
    flow.set(parseFlowRule(bucket));
    assert.equal(flow.size, 1);
    assert.equal(flow.admit(request({ messages: 2 })), OPEN_TICKET, "the replaced limiter kept its state");
    flow.set(parseFlowRule({ ...bucket, burst: 5 }));
    assert.equal(state(flow, "topic:orders", "token-bucket").available, 5);
    assert.equal(flow.require("topic:orders", "token-bucket").burst, 5);
    assert.equal(flow.list()[0]!.source, "runtime", "set() defaults to a runtime rule");
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

  it("delete() and require() of an unknown pair throw UnknownFlowRuleError naming the rules present", () => {
    const { flow } = harness([bucket, { scope: "broker", limiter: "concurrency", maxInFlight: 4 }]);
    assert.deepEqual(flow.require("broker", "concurrency"), parseFlowRule({ scope: "broker", limiter: "concurrency", maxInFlight: 4 }));
    for (const call of [() => flow.delete("topic:orders", "leaky-bucket"), () => flow.require("topic:order", "token-bucket")]) {
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
