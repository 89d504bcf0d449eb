/**
 * Warm-up (R22): after a quiet period the allowed rate ramps up to `ratePerSecond` over
 * `warmUpMs` instead of jumping to it, so a cold system (empty page cache, cold JIT, idle
 * consumers) is not hit with the full rate at once. This is the model of Guava's
 * SmoothWarmingUp, redone in milliseconds.
 *
 * The limiter keeps "stored permits": they grow while the limiter is idle and are spent
 * first when traffic comes back. A stored permit is *expensive* (slow) when many are stored
 * and cheap when few are, so a rested limiter is a cold one. With intervals in ms/permit:
 *   stable    = 1000 / rate                     interval at full rate
 *   cold      = stable · coldFactor             interval when fully rested
 *   threshold = 0.5 · warmUpMs / stable         stored permits below which the interval is stable
 *   max       = threshold + 2 · warmUpMs / (stable + cold)
 *   slope     = (cold − stable) / (max − threshold)
 *   coolDown  = warmUpMs / max                  idle ms that store one permit
 * The interval for the permit at stored level s is stable for s <= threshold, and
 * stable + (s − threshold) · slope above it (a line from stable up to cold at s = max).
 * Spending permits from s down to s − k costs the area under that line; the trapezoid from
 * max down to threshold has area (stable + cold) / 2 · (max − threshold) = warmUpMs, so
 * under saturation the interval goes from cold to stable in exactly warmUpMs. An idle period
 * of warmUpMs stores `max` permits again (coolDown · max = warmUpMs): fully cold.
 *
 * Like Guava, a request passes at `nextFree` and its cost pushes `nextFree` on for the
 * *next* request ("pay later"): a lone request after idle is not delayed, its successors are.
 * It starts cold (stored = max).
 */
import { DEFAULT_COLD_FACTOR } from "../../../common/src/flow/rules.js";
import { UndoableLimiter, requireFiniteAbove, requireFiniteAtLeast, requireRequest, type RateLimiter } from "./rate-limiter.js";

export interface WarmUpOptions {
  /** The stable rate once warm, messages or bytes per second. Finite, > 0. */
  ratePerSecond: number;
  /** How long saturation takes to bring a cold limiter to the stable rate. Finite, >= 1. */
  warmUpMs: number;
  /** A cold limiter runs at rate / coldFactor. Finite, > 1. @defaultValue DEFAULT_COLD_FACTOR */
  coldFactor?: number;
}

interface WarmUpPlan {
  passAtMs: number;
  storedAfter: number;
  nextFreeAfterMs: number;
}

export class WarmUp extends UndoableLimiter<{ storedPermits: number; nextFreeMs: number }> implements RateLimiter {
  readonly ratePerSecond: number;
  readonly warmUpMs: number;
  readonly coldFactor: number;
  readonly stableIntervalMs: number;
  readonly coldIntervalMs: number;
  private readonly thresholdPermits: number;
  private readonly maxPermits: number;
  private readonly slopeMsPerPermit: number;
  private readonly coolDownMsPerPermit: number;
  private storedPermits: number;
  /** When the next request may pass; -Infinity = never used (idle since forever). */
  private nextFreeMs = Number.NEGATIVE_INFINITY;
  /** Refused requests showed demand until here: time before it is not idle (see noteRefused). */
  private demandUntilMs = Number.NEGATIVE_INFINITY;

  constructor(options: WarmUpOptions) {
    super();
    this.ratePerSecond = requireFiniteAbove("WarmUp", "ratePerSecond", options.ratePerSecond, 0);
    this.warmUpMs = requireFiniteAtLeast("WarmUp", "warmUpMs", options.warmUpMs, 1);
    this.coldFactor = requireFiniteAbove("WarmUp", "coldFactor", options.coldFactor ?? DEFAULT_COLD_FACTOR, 1);
    this.stableIntervalMs = 1000 / this.ratePerSecond;
    this.coldIntervalMs = this.stableIntervalMs * this.coldFactor;
    this.thresholdPermits = (0.5 * this.warmUpMs) / this.stableIntervalMs;
    this.maxPermits = this.thresholdPermits + (2 * this.warmUpMs) / (this.stableIntervalMs + this.coldIntervalMs);
    this.slopeMsPerPermit = (this.coldIntervalMs - this.stableIntervalMs) / (this.maxPermits - this.thresholdPermits);
    this.coolDownMsPerPermit = this.warmUpMs / this.maxPermits;
    this.storedPermits = this.maxPermits;
  }

  probe(cost: number, nowMs: number): number {
    requireRequest("WarmUp", cost, nowMs);
    return this.plan(cost, nowMs).passAtMs - nowMs;
  }

  take(cost: number, nowMs: number): number {
    requireRequest("WarmUp", cost, nowMs);
    const plan = this.plan(cost, nowMs);
    this.booked();
    this.storedPermits = plan.storedAfter;
    this.nextFreeMs = plan.nextFreeAfterMs;
    return plan.passAtMs - nowMs;
  }

  protected snapshot(): { storedPermits: number; nextFreeMs: number } {
    return { storedPermits: this.storedPermits, nextFreeMs: this.nextFreeMs };
  }

  protected restore(state: { storedPermits: number; nextFreeMs: number }): void {
    this.storedPermits = state.storedPermits;
    this.nextFreeMs = state.nextFreeMs;
  }


  /**
   * Refused demand is not idle time: without this, a rule that refuses at once
   * (`maxQueueMs: 0`) would bank the gaps between admitted requests as stored permits and
   * stay cold for ever under a load at exactly its rate. A refusal counts as demand for one
   * stable interval past it.
   */
  noteRefused(nowMs: number): void {
    this.demandUntilMs = Math.max(this.demandUntilMs, nowMs + this.stableIntervalMs);
  }

  /** Stored permits now: `maxPermits` when fully cold, 0 after long saturation. */
  available(nowMs: number): number {
    return this.resync(nowMs).storedPermits;
  }

  /** The one computation behind probe and take, so the two can never disagree. */
  private plan(cost: number, nowMs: number): WarmUpPlan {
    const { storedPermits, nextFreeMs } = this.resync(nowMs);
    const fromStored = Math.min(cost, storedPermits);
    const fresh = cost - fromStored;
    const bookedMs = this.storedPermitsCostMs(storedPermits, fromStored) + fresh * this.stableIntervalMs;
    return { passAtMs: nextFreeMs, storedAfter: storedPermits - fromStored, nextFreeAfterMs: nextFreeMs + bookedMs };
  }

  /** Idle time since nextFree turns into stored permits (capped at max); nextFree catches up to now. */
  private resync(nowMs: number): { storedPermits: number; nextFreeMs: number } {
    if (nowMs <= this.nextFreeMs) return { storedPermits: this.storedPermits, nextFreeMs: this.nextFreeMs };
    if (this.nextFreeMs === Number.NEGATIVE_INFINITY) return { storedPermits: this.maxPermits, nextFreeMs: nowMs };
    const idleFromMs = Math.max(this.nextFreeMs, this.demandUntilMs);
    const gained = Math.max(0, nowMs - idleFromMs) / this.coolDownMsPerPermit;
    return { storedPermits: Math.min(this.maxPermits, this.storedPermits + gained), nextFreeMs: nowMs };
  }

  /**
   * Time to spend `permits` stored permits starting from level `stored`: the area under the
   * interval line between stored − permits and stored (a trapezoid above the threshold,
   * a rectangle of stable intervals below it).
   */
  private storedPermitsCostMs(stored: number, permits: number): number {
    let costMs = 0;
    let remaining = permits;
    const aboveThreshold = stored - this.thresholdPermits;
    if (aboveThreshold > 0) {
      const takenAbove = Math.min(aboveThreshold, remaining);
      const intervalAtTop = this.intervalAbove(aboveThreshold);
      const intervalAtBottom = this.intervalAbove(aboveThreshold - takenAbove);
      costMs = (takenAbove * (intervalAtTop + intervalAtBottom)) / 2;
      remaining -= takenAbove;
    }
    return costMs + remaining * this.stableIntervalMs;
  }

  /** The interval for a permit `permitsAboveThreshold` above the threshold. */
  private intervalAbove(permitsAboveThreshold: number): number {
    return this.stableIntervalMs + permitsAboveThreshold * this.slopeMsPerPermit;
  }
}
