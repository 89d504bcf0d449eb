/**
 * Shared by the flow controller tests (flow-controller*.test.ts): a FakeClock with a fake
 * scheduler whose timers fire, in due order, only when the test advances time, a recording
 * observer, and helpers to read a rule's state and a refusal.
 *
 * No test sleeps: the controller reads the FakeClock and waits through the fake scheduler.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../../common/src/clock.js";
import { SluiceError, ThrottledError } from "../../common/src/errors.js";
import { parseFlowRule, type FlowRule } from "../../common/src/flow/rules.js";
import {
  FlowController,
  type FlowControllerOptions,
  type FlowObserver,
  type FlowRequest,
  type FlowRuleSource,
  type FlowTicket,
  type Schedule,
} from "../../broker/src/flow/flow-controller.js";

/** Lets every pending promise callback run (setImmediate comes after the microtask queue). */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface FakeTimer {
  readonly dueMs: number;
  readonly sequence: number;
  readonly run: () => void;
}

export class FakeScheduler {
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

export type PromiseState = "pending" | "resolved" | "rejected";

/** The state of a promise once pending callbacks ran; records the rejection reason. */
export async function stateOf(promise: Promise<unknown> | undefined): Promise<{ state: PromiseState; error?: unknown }> {
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

export interface Decision {
  scope: string;
  limiter: string;
  result: "admitted" | "delayed" | "refused";
  bytes: number;
}

export class RecordingObserver implements FlowObserver {
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

export interface Harness {
  clock: FakeClock;
  scheduler: FakeScheduler;
  observer: RecordingObserver;
  flow: FlowController;
}

export const START_MS = 1_000_000;

/** A controller over normalised rules (parseFlowRule fills the defaults, as the broker does). */
export function harness(
  rules: readonly unknown[],
  source: FlowRuleSource = "config",
  options: Pick<FlowControllerOptions, "maxHeldBytes"> = {},
): Harness {
  const clock = new FakeClock(START_MS);
  const scheduler = new FakeScheduler(clock);
  const observer = new RecordingObserver();
  const flow = new FlowController(
    rules.map((rule, i) => ({ rule: parseFlowRule(rule, `flow[${i}]`), source })),
    { ...options, clock, schedule: scheduler.schedule, observer },
  );
  return { clock, scheduler, observer, flow };
}

export function request(fields: Partial<FlowRequest> = {}): FlowRequest {
  return { topic: "orders", clientId: "app-1", messages: 1, bytes: 100, ...fields };
}

/** The shared ticket the controller hands out when no rule matches a request. */
export const OPEN_TICKET: FlowTicket = new FlowController().admit(request());

/** A ticket that may go on at once (no wait, every slot taken). */
export function assertImmediate(ticket: FlowTicket, message?: string): FlowTicket {
  assert.equal(ticket.immediate, true, message ?? "the ticket is not immediate");
  assert.equal(ticket.ready, undefined, message ?? "an immediate ticket has a ready promise");
  return ticket;
}

export function state(flow: FlowController, scope: string, limiter: string): { available?: number; queued: number; inFlight?: number } {
  const rule = flow.list().find((r) => r.scope === scope && r.limiter === limiter);
  assert.ok(rule !== undefined, `no rule ${scope} ${limiter} in list()`);
  return rule.state;
}

export function assertThrottled(error: unknown, retryAfterMs: number, ...phrases: string[]): void {
  assert.ok(error instanceof ThrottledError, `expected a ThrottledError, got ${String(error)}`);
  assert.ok(error instanceof SluiceError);
  assert.equal(error.code, "THROTTLED");
  assert.equal(error.retriable, true);
  assert.equal(error.retryAfterMs, retryAfterMs);
  for (const phrase of phrases) assert.ok(error.message.includes(phrase), `message ${JSON.stringify(error.message)} lacks ${JSON.stringify(phrase)}`);
}

/** The ThrottledError admit() throws for `req` (fails the test when it is admitted). */
export function refusal(flow: FlowController, req: FlowRequest): ThrottledError {
  try {
    flow.admit(req);
  } catch (error) {
    assert.ok(error instanceof ThrottledError, `expected a ThrottledError, got ${String(error)}`);
    return error;
  }
  assert.fail(`admit(${JSON.stringify(req)}) was not refused`);
}
