/**
 * Ingress flow control: decides, for each produce request, whether it passes now, waits, or
 * is refused, under every rule whose scope matches it (R20–R22).
 *
 * - Rules are keyed by (scope, limiter). A request is measured in the unit of each rule: its
 *   messages, its batch bytes, or one in-flight request (concurrency).
 * - All-or-nothing: every rate rule is probed first; if any would hold the request longer
 *   than its `maxQueueMs` the request is refused (THROTTLED, with the scope, the reason and a
 *   retry-after) and no limiter is charged. Otherwise every rate rule is charged and the
 *   request waits for the longest of their waits, then takes a slot of every concurrency rule
 *   (FIFO, again bounded by `maxQueueMs`).
 * - Waiting is the broker holding the request: the answer comes later, the producer is paced,
 *   and nothing fails while it stays within the limits (Kafka and Redpanda delay too).
 * - A scope limits only what it names: a topic's rule never slows another topic, a client's
 *   never another client. Only produce is metered here; fetch, replication and group-state
 *   writes never pass through it.
 *
 * The hot path with no matching rule is one map lookup.
 */
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { ThrottledError, UnknownFlowRuleError } from "../../../common/src/errors.js";
import {
  DEFAULT_MAX_QUEUE_MS,
  describeFlowLimit,
  flowRuleKey,
  flowRuleUnit,
  parseFlowScope,
  type FlowRule,
  type FlowScope,
} from "../../../common/src/flow/rules.js";
import { ConcurrencyLimit } from "./concurrency.js";
import { LeakyBucket } from "./leaky-bucket.js";
import type { RateLimiter } from "./rate-limiter.js";
import { TokenBucket } from "./token-bucket.js";
import { WarmUp } from "./warm-up.js";

/** What flow control needs to know about a produce request. */
export interface FlowRequest {
  readonly topic: string;
  readonly clientId: string;
  readonly messages: number;
  readonly bytes: number;
}

/** A request let through (now or later). `release` must be called once its append settled. */
export interface FlowTicket {
  /** True when the request may go on at once: no wait and every concurrency slot taken. */
  readonly immediate: boolean;
  /** Resolves when the request may go on; rejects with a ThrottledError. Undefined when immediate. */
  readonly ready: Promise<void> | undefined;
  /** Frees the concurrency slots the request holds or waits for. Safe to call more than once. */
  release(): void;
}

export type FlowRuleSource = "config" | "runtime";

/** A rule as `flow list` shows it. */
export interface FlowRuleStatus extends FlowRule {
  readonly source: FlowRuleSource;
  readonly state: { available?: number; queued: number; inFlight?: number };
}

/** Observes decisions for metrics. */
export interface FlowObserver {
  decided(rule: FlowRule, result: "admitted" | "delayed" | "refused", bytes: number): void;
  held(waitMs: number): void;
}

export type Schedule = (run: () => void, delayMs: number) => () => void;

export interface FlowControllerOptions {
  readonly clock?: Clock;
  /** Timer for waits; tests pass a fake one. @defaultValue setTimeout */
  readonly schedule?: Schedule;
  readonly observer?: FlowObserver;
}

/**
 * A refused request is told to come back no sooner than this. Besides not inviting a retry
 * storm, it keeps a partition's order: batches a producer pipelined before it heard of the
 * refusal still arrive inside this window and are refused behind it (see produce.ts).
 */
export const MIN_RETRY_AFTER_MS = 100;
/**
 * Waits shorter than this are not held: a timer cannot wait less than 1 ms, and a limiter
 * without burst (warm-up, leaky bucket) books requests arriving together microseconds apart,
 * which would otherwise each be held a whole millisecond. The limiter has booked them anyway.
 */
export const MIN_HOLD_MS = 1;
/** Matched rule lists kept per (topic, client); the cache starts over past this. */
const MAX_MATCH_CACHE_ENTRIES = 10_000;

const OPEN_TICKET: FlowTicket = { immediate: true, ready: undefined, release: () => undefined };

interface SlotWaiter {
  grant(): void;
  cancelTimer: () => void;
}

class RuleState {
  readonly key: string;
  readonly scope: FlowScope;
  readonly unit: "messages" | "bytes" | "requests";
  readonly rate: RateLimiter | undefined;
  readonly slots: ConcurrencyLimit<SlotWaiter> | undefined;
  /** Requests a rate rule is holding (concurrency rules count their queue themselves). */
  held = 0;

  constructor(
    readonly rule: FlowRule,
    readonly source: FlowRuleSource,
  ) {
    this.key = flowRuleKey(rule);
    this.scope = parseFlowScope(rule.scope);
    this.unit = flowRuleUnit(rule);
    const ratePerSecond = rule.messagesPerSecond ?? rule.bytesPerSecond ?? 0;
    switch (rule.limiter) {
      case "token-bucket":
        this.rate = new TokenBucket({ ratePerSecond, burst: rule.burst! });
        break;
      case "leaky-bucket":
        this.rate = new LeakyBucket({ ratePerSecond });
        break;
      case "warm-up":
        this.rate = new WarmUp({ ratePerSecond, warmUpMs: rule.warmUpMs!, coldFactor: rule.coldFactor! });
        break;
      case "concurrency":
        this.slots = new ConcurrencyLimit<SlotWaiter>({ maxInFlight: rule.maxInFlight! });
        break;
    }
  }

  get maxQueueMs(): number {
    return this.rule.maxQueueMs ?? DEFAULT_MAX_QUEUE_MS;
  }

  cost(request: FlowRequest): number {
    return this.unit === "messages" ? request.messages : this.unit === "bytes" ? request.bytes : 1;
  }

  matches(request: FlowRequest): boolean {
    const scope = this.scope;
    if (scope.kind === "broker") return true;
    return scope.matches(scope.kind === "topic" ? request.topic : request.clientId);
  }

  /** Why this rule holds requests back, for the refusal message. */
  reason(): string {
    switch (this.rule.limiter) {
      case "token-bucket":
        return "bucket empty";
      case "leaky-bucket":
        return "queue full";
      case "warm-up":
        return "warming up or at its rate";
      case "concurrency":
        return `${this.slots!.inFlight} requests in flight`;
    }
  }
}

export class FlowController {
  private readonly rules = new Map<string, RuleState>();
  private readonly matchCache = new Map<string, RuleState[]>();
  private readonly clock: Clock;
  private readonly schedule: Schedule;
  private readonly observer: FlowObserver | undefined;

  constructor(rules: readonly { rule: FlowRule; source: FlowRuleSource }[] = [], options: FlowControllerOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.schedule =
      options.schedule ??
      ((run, delayMs) => {
        const timer = setTimeout(run, delayMs);
        return () => clearTimeout(timer);
      });
    this.observer = options.observer;
    for (const { rule, source } of rules) this.rules.set(flowRuleKey(rule), new RuleState(rule, source));
  }

  /** Adds or replaces the rule of its (scope, limiter); the replaced limiter starts afresh. */
  set(rule: FlowRule, source: FlowRuleSource = "runtime"): void {
    this.rules.set(flowRuleKey(rule), new RuleState(rule, source));
    this.matchCache.clear();
  }

  /** The rule of a (scope, limiter) pair; UNKNOWN_FLOW_RULE when there is none. */
  require(scope: string, limiter: string): FlowRule {
    const state = this.rules.get(flowRuleKey({ scope, limiter }));
    if (state === undefined) {
      const known = [...this.rules.values()].map((r) => `${r.rule.scope} ${r.rule.limiter}`);
      throw new UnknownFlowRuleError(
        `no flow rule for scope ${scope} with limiter ${limiter}; rules here: ${known.length === 0 ? "none" : known.join(", ")}`,
      );
    }
    return state.rule;
  }

  /** Removes a rule; UNKNOWN_FLOW_RULE when there is none for the pair. */
  delete(scope: string, limiter: string): FlowRule {
    const rule = this.require(scope, limiter);
    this.rules.delete(flowRuleKey(rule));
    this.matchCache.clear();
    return rule;
  }

  list(): FlowRuleStatus[] {
    const now = this.clock.now();
    return [...this.rules.values()].map((state) => {
      const status: FlowRuleStatus["state"] = { queued: state.slots?.queued ?? state.held };
      const available = state.rate?.available(now);
      if (available !== undefined) status.available = Math.floor(available);
      if (state.slots !== undefined) status.inFlight = state.slots.inFlight;
      return { ...state.rule, source: state.source, state: status };
    });
  }

  get size(): number {
    return this.rules.size;
  }

  /**
   * Decides a request: throws ThrottledError (nothing charged) when a limit would hold it
   * past its `maxQueueMs`; otherwise returns the ticket to wait on and release.
   */
  admit(request: FlowRequest): FlowTicket {
    if (this.rules.size === 0) return OPEN_TICKET;
    const matched = this.matching(request);
    if (matched.length === 0) return OPEN_TICKET;

    const now = this.clock.now();
    let waitMs = 0;
    for (const state of matched) {
      if (state.rate === undefined) continue;
      const wait = state.rate.probe(state.cost(request), now);
      if (wait > state.maxQueueMs) throw this.refuse(state, request, wait);
      waitMs = Math.max(waitMs, wait);
    }
    if (waitMs < MIN_HOLD_MS) waitMs = 0;
    const concurrency: RuleState[] = [];
    const delaying: RuleState[] = [];
    for (const state of matched) {
      if (state.rate !== undefined) {
        const held = state.rate.take(state.cost(request), now) >= MIN_HOLD_MS;
        if (held) delaying.push(state);
        this.observer?.decided(state.rule, held ? "delayed" : "admitted", request.bytes);
      } else {
        concurrency.push(state);
      }
    }
    if (waitMs <= 0 && concurrency.length === 0) return OPEN_TICKET;
    return new Ticket(this, delaying, concurrency, waitMs, request, now);
  }

  /** The refusal of `request` by `state`, counted. */
  refuse(state: RuleState, request: FlowRequest, waitMs: number | undefined): ThrottledError {
    this.observer?.decided(state.rule, "refused", request.bytes);
    const rule = state.rule;
    const limit = describeFlowLimit(rule);
    if (waitMs === undefined) {
      // Concurrency: no slot freed in time; when one will is unknown.
      const retryAfterMs = Math.max(MIN_RETRY_AFTER_MS, Math.ceil(state.maxQueueMs / 2));
      return new ThrottledError(
        `throttled by ${rule.scope} ${rule.limiter} (${limit}): ${state.reason()}, no slot freed within maxQueueMs ${state.maxQueueMs}; retry in ${retryAfterMs} ms`,
        { retryAfterMs },
      );
    }
    const retryAfterMs = Math.max(MIN_RETRY_AFTER_MS, Math.ceil(waitMs - state.maxQueueMs));
    return new ThrottledError(
      `throttled by ${rule.scope} ${rule.limiter} (${limit}): ${state.reason()}, this batch would wait ${Math.ceil(waitMs)} ms, more than maxQueueMs ${state.maxQueueMs}; retry in ${retryAfterMs} ms`,
      { retryAfterMs },
    );
  }

  /** @internal */
  nowMs(): number {
    return this.clock.now();
  }

  /** @internal */
  scheduleAfter(run: () => void, delayMs: number): () => void {
    return this.schedule(run, delayMs);
  }

  /** @internal */
  noteHeld(waitMs: number): void {
    this.observer?.held(waitMs);
  }

  /** @internal */
  noteDecision(state: RuleState, result: "admitted" | "delayed", bytes: number): void {
    this.observer?.decided(state.rule, result, bytes);
  }

  private matching(request: FlowRequest): RuleState[] {
    const cacheKey = `${request.topic}\u0000${request.clientId}`;
    let matched = this.matchCache.get(cacheKey);
    if (matched === undefined) {
      if (this.matchCache.size >= MAX_MATCH_CACHE_ENTRIES) this.matchCache.clear();
      matched = [...this.rules.values()].filter((state) => state.matches(request));
      this.matchCache.set(cacheKey, matched);
    }
    return matched;
  }
}

/**
 * A request that waits: first the longest rate wait, then a slot of each concurrency rule
 * in turn, each within that rule's `maxQueueMs` counted from the request's arrival.
 */
class Ticket implements FlowTicket {
  readonly immediate: boolean;
  readonly ready: Promise<void> | undefined;
  /** Concurrency rules whose slot this request holds. */
  private readonly holding: RuleState[] = [];
  private released = false;
  private cancelWait: (() => void) | undefined;
  private waitingFor: { state: RuleState; waiter: SlotWaiter } | undefined;

  constructor(
    private readonly controller: FlowController,
    /** Rate rules that hold the request (their wait is above zero). */
    private readonly delaying: readonly RuleState[],
    private readonly concurrency: readonly RuleState[],
    waitMs: number,
    private readonly request: FlowRequest,
    private readonly arrivedAtMs: number,
  ) {
    if (waitMs <= 0 && this.takeFreeSlots(0)) {
      this.immediate = true;
      this.ready = undefined;
      return;
    }
    this.immediate = false;
    this.ready = this.wait(waitMs);
    // The caller may give up on the ticket before it is ready (an earlier batch refused).
    this.ready.catch(() => undefined);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.cancelWait?.();
    if (this.waitingFor !== undefined) {
      const { state, waiter } = this.waitingFor;
      waiter.cancelTimer();
      state.slots!.remove(waiter);
      this.waitingFor = undefined;
    }
    for (const state of this.holding.splice(0)) this.handBack(state);
  }

  /** Takes slots without waiting, starting at concurrency rule `from`; false at the first full one. */
  private takeFreeSlots(from: number): boolean {
    for (let i = from; i < this.concurrency.length; i++) {
      const state = this.concurrency[i]!;
      if (!state.slots!.tryAcquire()) return false;
      this.holding.push(state);
      this.controller.noteDecision(state, "admitted", this.request.bytes);
    }
    return true;
  }

  private async wait(waitMs: number): Promise<void> {
    if (waitMs > 0) {
      for (const state of this.delaying) state.held++;
      try {
        await new Promise<void>((resolve, reject) => {
          const cancelTimer = this.controller.scheduleAfter(resolve, waitMs);
          // Released while waiting (an earlier batch of its partition was refused): the wait
          // ends here, so `held` is given back below and `ready` settles.
          this.cancelWait = () => {
            cancelTimer();
            reject(new ThrottledError("the request was given up while flow control held it"));
          };
        });
      } finally {
        this.cancelWait = undefined;
        for (const state of this.delaying) state.held--;
      }
      this.controller.noteHeld(waitMs);
    }
    for (let i = this.holding.length; i < this.concurrency.length; i++) {
      if (this.released) return;
      const state = this.concurrency[i]!;
      if (state.slots!.tryAcquire()) {
        this.holding.push(state);
        this.controller.noteDecision(state, "admitted", this.request.bytes);
        continue;
      }
      await this.waitForSlot(state);
    }
  }

  private waitForSlot(state: RuleState): Promise<void> {
    const remainingMs = this.arrivedAtMs + state.maxQueueMs - this.controller.nowMs();
    if (remainingMs <= 0) {
      this.release();
      return Promise.reject(this.controller.refuse(state, this.request, undefined));
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: SlotWaiter = {
        grant: () => {
          this.waitingFor = undefined;
          this.holding.push(state);
          this.controller.noteDecision(state, "delayed", this.request.bytes);
          resolve();
        },
        cancelTimer: () => undefined,
      };
      waiter.cancelTimer = this.controller.scheduleAfter(() => {
        if (!state.slots!.remove(waiter)) return;
        this.waitingFor = undefined;
        const error = this.controller.refuse(state, this.request, undefined);
        this.release();
        reject(error);
      }, remainingMs);
      state.slots!.enqueue(waiter);
      this.waitingFor = { state, waiter };
    });
  }

  /** Gives a slot back: to the first waiter, or free. */
  private handBack(state: RuleState): void {
    const next = state.slots!.release();
    if (next !== undefined) {
      next.cancelTimer();
      next.grant();
    }
  }
}
