/**
 * Leaky bucket as uniform queueing (R21), after the idea of Sentinel's
 * RateLimiterController: requests leave at an even pace, never in bursts.
 *
 * A request of `cost` occupies costMs = cost · 1000 / rate of the outlet. With the last
 * booked pass at lastPass:
 *   expected = lastPass + costMs
 *   expected <= now → it passes now, and lastPass = now
 *   otherwise       → it waits expected − now, and lastPass = expected (booked in line)
 * So with one pass at t1 and three requests already queued behind it (booked at t1 + T,
 * t1 + 2T, t1 + 3T), the next one's expected pass is t1 + 4T. Idle time is not banked —
 * lastPass jumps to `now` — which is what makes this a pacer rather than a token bucket.
 *
 * The limiter never refuses: the caller compares the wait with the rule's maxQueueMs
 * (probe first, refuse when wait > maxQueueMs, else take). maxQueueMs = 0 gives Sentinel's
 * "direct reject": anything that would have to wait is refused.
 */
import { UndoableLimiter, requireFiniteAbove, requireRequest, type RateLimiter } from "./rate-limiter.js";

export interface LeakyBucketOptions {
  /** Messages or bytes let through per second, evenly spaced. Finite, > 0. */
  ratePerSecond: number;
}

export class LeakyBucket extends UndoableLimiter<number> implements RateLimiter {
  readonly ratePerSecond: number;
  /** Pass time of the last booked request; -Infinity = nothing passed yet. */
  private lastPassMs = Number.NEGATIVE_INFINITY;

  constructor(options: LeakyBucketOptions) {
    super();
    this.ratePerSecond = requireFiniteAbove("LeakyBucket", "ratePerSecond", options.ratePerSecond, 0);
  }

  probe(cost: number, nowMs: number): number {
    requireRequest("LeakyBucket", cost, nowMs);
    return this.passAt(cost, nowMs) - nowMs;
  }

  take(cost: number, nowMs: number): number {
    requireRequest("LeakyBucket", cost, nowMs);
    const passAtMs = this.passAt(cost, nowMs);
    this.booked();
    // A zero cost occupies no outlet time; booking it at `now` would push later requests back.
    if (cost > 0) this.lastPassMs = passAtMs;
    return passAtMs - nowMs;
  }

  protected snapshot(): number {
    return this.lastPassMs;
  }

  protected restore(state: number): void {
    this.lastPassMs = state;
  }

  /** A pacer banks no idle time: nothing to note. */
  noteRefused(): void {}

  /** A pacer holds no tokens. */
  available(): undefined {
    return undefined;
  }

  private passAt(cost: number, nowMs: number): number {
    // A zero cost gives expected = lastPass: it passes no earlier than the last booked request.
    const expectedMs = this.lastPassMs + (cost * 1000) / this.ratePerSecond;
    return expectedMs <= nowMs ? nowMs : expectedMs;
  }
}
