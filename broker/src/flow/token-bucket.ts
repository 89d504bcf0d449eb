/**
 * Token bucket (R20): a bucket of `burst` tokens refilled at `ratePerSecond`, starting full.
 * Bursts up to `burst` pass at once; after that, one token every 1000 / rate ms.
 *
 * Two choices beyond the textbook bucket:
 * - **Debt for oversized requests.** A request waits only until the bucket holds
 *   `min(cost, burst)` and then takes its whole `cost`. A produce batch is never split, so a
 *   batch larger than the burst could otherwise never pass; instead it passes when the
 *   bucket is full and leaves it negative, and the requests after it wait the debt off.
 *   The long-run rate stays exact: every token taken is a token refilled.
 * - **FIFO booking.** A delayed request is booked at once: the state records the level the
 *   bucket will have right after that request passes, at its pass time, which may lie in
 *   the future. A later request starts from there, so a small request cannot overtake a big
 *   one that is already waiting (that would starve big batches and reorder a producer).
 *
 * The level as a function of time is therefore
 *   t >= stateMs: min(burst, tokens + (t − stateMs)·rate/1000)
 *   t <  stateMs: tokens − (stateMs − t)·rate/1000   (the bucket is booked into the future)
 */
import { UndoableLimiter, requireFiniteAbove, requireFiniteAtLeast, requireRequest, type RateLimiter } from "./rate-limiter.js";

export interface TokenBucketOptions {
  /** Tokens (messages or bytes) added per second. Finite, > 0. */
  ratePerSecond: number;
  /** Capacity: the most that passes at once after an idle period. Finite, >= 1. */
  burst: number;
}

interface TokenBucketPlan {
  passAtMs: number;
  /** The level right after the request passes, at `passAtMs`. */
  tokensAfter: number;
}

export class TokenBucket extends UndoableLimiter<{ tokens: number; stateMs: number }> implements RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  /** Level of the bucket at `stateMs`, right after the last booked request; negative = debt. */
  private tokens: number;
  /** Pass time of the last booked request; -Infinity = full since forever. */
  private stateMs = Number.NEGATIVE_INFINITY;

  constructor(options: TokenBucketOptions) {
    super();
    this.ratePerSecond = requireFiniteAbove("TokenBucket", "ratePerSecond", options.ratePerSecond, 0);
    this.burst = requireFiniteAtLeast("TokenBucket", "burst", options.burst, 1);
    this.tokens = this.burst;
  }

  probe(cost: number, nowMs: number): number {
    requireRequest("TokenBucket", cost, nowMs);
    return this.plan(cost, nowMs).passAtMs - nowMs;
  }

  take(cost: number, nowMs: number): number {
    requireRequest("TokenBucket", cost, nowMs);
    const plan = this.plan(cost, nowMs);
    this.booked();
    this.tokens = plan.tokensAfter;
    this.stateMs = plan.passAtMs;
    return plan.passAtMs - nowMs;
  }

  protected snapshot(): { tokens: number; stateMs: number } {
    return { tokens: this.tokens, stateMs: this.stateMs };
  }

  protected restore(state: { tokens: number; stateMs: number }): void {
    this.tokens = state.tokens;
    this.stateMs = state.stateMs;
  }


  /** Idle time only refills up to the burst, whatever the demand: nothing to note. */
  noteRefused(): void {}

  /** The level now: may be negative (debt, or requests booked into the future). */
  available(nowMs: number): number {
    return this.levelAt(nowMs);
  }

  /** The one computation behind probe and take, so the two can never disagree. */
  private plan(cost: number, nowMs: number): TokenBucketPlan {
    // FIFO: nobody passes before the last booked request.
    const startMs = Math.max(nowMs, this.stateMs);
    const tokensAtStart = this.levelAt(startMs);
    // A zero cost books nothing; it only keeps its place in the line.
    if (cost === 0) return { passAtMs: startMs, tokensAfter: tokensAtStart };
    const neededTokens = Math.min(cost, this.burst);
    if (tokensAtStart >= neededTokens) return { passAtMs: startMs, tokensAfter: tokensAtStart - cost };
    // Wait until the refill reaches exactly `neededTokens` (never capped: neededTokens <= burst).
    const refillMs = this.msToRefill(neededTokens - tokensAtStart);
    return { passAtMs: startMs + refillMs, tokensAfter: neededTokens - cost };
  }

  private levelAt(atMs: number): number {
    if (atMs < this.stateMs) return this.tokens - this.tokensRefilledIn(this.stateMs - atMs);
    if (this.stateMs === Number.NEGATIVE_INFINITY) return this.burst;
    return Math.min(this.burst, this.tokens + this.tokensRefilledIn(atMs - this.stateMs));
  }

  // Multiply before dividing: with whole-number rates and times the results stay exact
  // (10/s over 100 ms is exactly 1 token), where a precomputed 0.01 tokens/ms would not be.
  private tokensRefilledIn(elapsedMs: number): number {
    return (elapsedMs * this.ratePerSecond) / 1000;
  }

  private msToRefill(tokens: number): number {
    return (tokens * 1000) / this.ratePerSecond;
  }
}
