/**
 * One flow rule as the broker runs it: the rule, its parsed scope, and its limiter's state
 * (a rate limiter, or a concurrency limit with its queue of waiting requests).
 */
import {
  DEFAULT_MAX_QUEUE_MS,
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

export type FlowRuleSource = "config" | "runtime";

/** A request waiting for a concurrency slot. */
export interface SlotWaiter {
  grant(): void;
  cancelTimer(): void;
}

export class RuleState {
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
    // Rules reach here through parseFlowRule, which fills every default the limiters need.
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
        return "every slot taken";
    }
  }
}
