/**
 * The seam shared by the three time-based ingress limiters (token bucket, leaky bucket,
 * warm-up), so the flow controller can treat every rule the same way: probe all of them,
 * refuse if any wait is too long, else take from all of them.
 *
 * Limiters are pure state machines: no timers and no clock. The caller passes the time
 * (`nowMs`, milliseconds on a monotonic scale, fractions allowed), which keeps them exact
 * to test with plain numbers and leaves sleeping and refusing to the caller.
 *
 * Costs are in the rule's unit (messages or bytes). A cost of 0 books nothing, but still
 * passes no earlier than the requests booked before it, so ordering holds.
 */
import { InvalidArgumentError } from "../../../common/src/errors.js";

export interface RateLimiter {
  /** How long a request of `cost` would wait if taken now (ms, >= 0). Changes nothing. */
  probe(cost: number, nowMs: number): number;
  /** Takes the request: returns its wait (same as probe at the same nowMs) and books it. */
  take(cost: number, nowMs: number): number;
  /** For metrics and `flow list`: available tokens (token-bucket, warm-up: stored permits), or undefined. */
  available(nowMs: number): number | undefined;
}

// The guards below catch programming errors: user input is validated by the rule parser
// (common/src/flow/rules.ts) with messages that name the config field. A NaN let through
// here would poison a limiter's state for good, so it is refused at the door.

/** Throws unless `value` is a finite number strictly greater than `bound`. */
export function requireFiniteAbove(owner: string, field: string, value: number, bound: number): number {
  if (!Number.isFinite(value) || value <= bound) {
    throw new InvalidArgumentError(`${owner}: ${field} must be a finite number > ${bound}, got ${value}`);
  }
  return value;
}

/** Throws unless `value` is a finite number greater than or equal to `min`. */
export function requireFiniteAtLeast(owner: string, field: string, value: number, min: number): number {
  if (!Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(`${owner}: ${field} must be a finite number >= ${min}, got ${value}`);
  }
  return value;
}

/** Throws unless the cost is finite and >= 0 and the time is finite. */
export function requireRequest(owner: string, cost: number, nowMs: number): void {
  if (!Number.isFinite(cost) || cost < 0) {
    throw new InvalidArgumentError(`${owner}: cost must be a finite number >= 0, got ${cost}`);
  }
  if (!Number.isFinite(nowMs)) {
    throw new InvalidArgumentError(`${owner}: nowMs must be a finite number, got ${nowMs}`);
  }
}
