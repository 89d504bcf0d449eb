/**
 * Ingress flow control: decides, for each produce request, whether it passes now, waits, or
 * is refused, under every rule whose scope matches it (R20–R22).
 *
 * - Rules are keyed by (scope, limiter). A request is measured in the unit of each rule: its
 *   messages, its batch bytes, or one in-flight request (concurrency).
 * - Order (ticket.ts): a slot of every concurrency rule first (FIFO, bounded by the rule's
 *   `maxQueueMs`), then every rate rule probed at once; if any would hold the request past its
 *   `maxQueueMs` (counted from arrival) the request is refused (THROTTLED, with the scope, the
 *   reason and a retry-after) and no rate rule is charged. Otherwise all are charged and the
 *   request waits for the longest of their waits. A request given up later hands it all back.
 * - Waiting is the broker holding the request: the answer comes later, the producer is paced,
 *   and nothing fails while it stays within the limits (Kafka and Redpanda delay too).
 * - A scope limits only what it names: a topic's rule never slows another topic, a client's
 *   never another client. Only produce is metered here; fetch, replication and group-state
 *   writes never pass through it.
 *
 * The hot path with no matching rule is one map lookup.
 */
import { monotonicClock, type Clock } from "../../../common/src/clock.js";
import { ThrottledError, UnknownFlowRuleError, type SluiceError } from "../../../common/src/errors.js";
import { describeFlowLimit, flowRuleKey, type FlowRule } from "../../../common/src/flow/rules.js";
import { DEFAULT_MAX_HELD_PRODUCE_BYTES } from "../options.js";
import { RuleState, type FlowRequest, type FlowRuleSource } from "./rule-state.js";
import { Ticket, type FlowTicket, type TicketHost } from "./ticket.js";

export type { FlowRequest, FlowRuleSource } from "./rule-state.js";
export type { FlowTicket } from "./ticket.js";
export { MIN_HOLD_MS } from "./ticket.js";

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
  /** Monotonic time: a wall-clock step would make every limiter refuse or let through a flood. @defaultValue monotonicClock */
  readonly clock?: Clock;
  /** Timer for waits; tests pass a fake one. @defaultValue setTimeout */
  readonly schedule?: Schedule;
  readonly observer?: FlowObserver;
  /**
   * Batch bytes the broker may hold at once for all streams. Past it a request that would be
   * held is refused (THROTTLED) instead: held batches are memory a throttled producer makes
   * the broker keep. @defaultValue DEFAULT_MAX_HELD_PRODUCE_BYTES
   */
  readonly maxHeldBytes?: number;
}

/**
 * A refused request is told to come back no sooner than this. Besides not inviting a retry
 * storm, it keeps a partition's order: batches a producer pipelined before it heard of the
 * refusal still arrive inside this window and are refused behind it (see partition-order.ts).
 */
export const MIN_RETRY_AFTER_MS = 100;
/** Matched rule lists kept per (topic, client); the cache starts over past this. */
const MAX_MATCH_CACHE_ENTRIES = 10_000;

const OPEN_TICKET: FlowTicket = { immediate: true, ready: undefined, release: () => undefined, cancel: () => undefined };

export class FlowController {
  private readonly rules = new Map<string, RuleState>();
  /** Per (topic, client): the matching rate rules and concurrency rules. */
  private readonly matchCache = new Map<string, { rated: RuleState[]; concurrency: RuleState[] }>();
  private readonly clock: Clock;
  private readonly observer: FlowObserver | undefined;
  private readonly maxHeldBytes: number;
  private heldBytesNow = 0;
  private readonly host: TicketHost;

  constructor(rules: readonly { rule: FlowRule; source: FlowRuleSource }[] = [], options: FlowControllerOptions = {}) {
    this.clock = options.clock ?? monotonicClock;
    const schedule: Schedule =
      options.schedule ??
      ((run, delayMs) => {
        const timer = setTimeout(run, delayMs);
        return () => clearTimeout(timer);
      });
    this.observer = options.observer;
    this.maxHeldBytes = options.maxHeldBytes ?? DEFAULT_MAX_HELD_PRODUCE_BYTES;
    this.host = {
      now: () => this.clock.now(),
      schedule,
      decided: (state, result, bytes) => this.observer?.decided(state.rule, result, bytes),
      held: (waitMs) => this.observer?.held(waitMs),
      refusal: (state, request, waitMs) => this.refusal(state, request, waitMs),
    };
    for (const { rule, source } of rules) this.rules.set(flowRuleKey(rule), new RuleState(rule, source));
  }

  /**
   * Adds or replaces the rule of its (scope, limiter). Setting a rule equal to the one in
   * force changes nothing (automation re-applying its rules must not hand out fresh bursts or
   * cool a warm limiter); a changed rule starts with a fresh limiter, and requests already
   * holding a slot of a replaced concurrency rule give it back to the old one.
   */
  set(rule: FlowRule, source: FlowRuleSource = "runtime"): void {
    const key = flowRuleKey(rule);
    const current = this.rules.get(key);
    if (current !== undefined && sameRule(current.rule, rule)) {
      if (current.source !== source) this.rules.set(key, Object.assign(current, { source }));
      return;
    }
    this.rules.set(key, new RuleState(rule, source));
    this.matchCache.clear();
  }

  /** The rule of a (scope, limiter) pair; UNKNOWN_FLOW_RULE when there is none. */
  ruleFor(scope: string, limiter: string): FlowRule {
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
    const rule = this.ruleFor(scope, limiter);
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

  /** Batch bytes held now (requests waiting for their limits), broker-wide. */
  get heldBytes(): number {
    return this.heldBytesNow;
  }

  /**
   * Decides a request: throws ThrottledError (nothing charged) when a limit would hold it
   * past its `maxQueueMs`; otherwise returns the ticket to wait on, then release or cancel.
   */
  admit(request: FlowRequest): FlowTicket {
    if (this.rules.size === 0) return OPEN_TICKET;
    const { rated, concurrency } = this.matching(request);
    if (rated.length === 0 && concurrency.length === 0) return OPEN_TICKET;
    return new Ticket(this.host, request, rated, concurrency);
  }

  /**
   * Counts `bytes` as held until `releaseHeld`; false (nothing counted) when that would pass
   * the broker-wide budget — the caller then cancels the ticket and refuses the request.
   */
  reserveHeld(bytes: number): boolean {
    if (this.heldBytesNow + bytes > this.maxHeldBytes && this.heldBytesNow > 0) return false;
    this.heldBytesNow += bytes;
    return true;
  }

  releaseHeld(bytes: number): void {
    this.heldBytesNow -= bytes;
  }

  /** The refusal sent when the held budget is used up. */
  heldBudgetRefusal(): ThrottledError {
    return new ThrottledError(
      `throttled: this broker already holds ${this.heldBytesNow} bytes of batches waiting for their flow limits, its budget (maxHeldProduceBytes ${this.maxHeldBytes}); retry in ${MIN_RETRY_AFTER_MS} ms`,
      { retryAfterMs: MIN_RETRY_AFTER_MS },
    );
  }

  /** The refusal of `request` by `state`, counted. */
  private refusal(state: RuleState, request: FlowRequest, waitMs: number | undefined): SluiceError {
    this.observer?.decided(state.rule, "refused", request.bytes);
    const rule = state.rule;
    const limit = describeFlowLimit(rule);
    if (waitMs === undefined) {
      // Concurrency: no slot freed in time; when one will is unknown.
      const retryAfterMs = Math.max(MIN_RETRY_AFTER_MS, Math.ceil(state.maxQueueMs / 2));
      return new ThrottledError(
        `throttled by ${rule.scope} ${rule.limiter} (${limit}): ${state.reason()}, none freed within maxQueueMs ${state.maxQueueMs}; retry in ${retryAfterMs} ms`,
        { retryAfterMs },
      );
    }
    const retryAfterMs = Math.max(MIN_RETRY_AFTER_MS, Math.ceil(waitMs - state.maxQueueMs));
    return new ThrottledError(
      `throttled by ${rule.scope} ${rule.limiter} (${limit}): ${state.reason()}, this batch would wait ${Math.ceil(waitMs)} ms, more than maxQueueMs ${state.maxQueueMs}; retry in ${retryAfterMs} ms`,
      { retryAfterMs },
    );
  }

  private matching(request: FlowRequest): { rated: RuleState[]; concurrency: RuleState[] } {
    const cacheKey = `${request.topic}\u0000${request.clientId}`;
    let matched = this.matchCache.get(cacheKey);
    if (matched === undefined) {
      if (this.matchCache.size >= MAX_MATCH_CACHE_ENTRIES) this.matchCache.clear();
      const all = [...this.rules.values()].filter((state) => state.matches(request));
      matched = { rated: all.filter((s) => s.rate !== undefined), concurrency: all.filter((s) => s.slots !== undefined) };
      this.matchCache.set(cacheKey, matched);
    }
    return matched;
  }
}

function sameRule(a: FlowRule, b: FlowRule): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof FlowRule>;
  for (const key of keys) if (a[key] !== b[key]) return false;
  return true;
}
