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
  /** Identifies the latest take (0 before any), for refund. */
  readonly lastBooking: number;
  /**
   * Gives back what take `booking` booked, because that request will never run (refused
   * behind an earlier batch, its stream gone). Exact when it is the latest booking still on
   * record; otherwise nothing is given back, which never lets more through than the rate.
   * Cancel the latest first to get them all back.
   */
  refund(booking: number): void;
  /**
   * A request was refused at `nowMs`: there was demand, so the time up to now was not idle.
   * Only a limiter that credits idle time (warm-up cools down while idle) needs to know.
   */
  noteRefused(nowMs: number): void;
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

/** How many recent bookings a limiter can undo (refund), newest first. */
export const UNDO_DEPTH = 64;

/**
 * What the three rate limiters share for refunds: the state before each of their recent
 * bookings, so the latest one can be undone exactly.
 */
export abstract class UndoableLimiter<S> {
  private readonly undo: { booking: number; before: S }[] = [];
  private latest = 0;

  get lastBooking(): number {
    return this.latest;
  }

  refund(booking: number): void {
    const top = this.undo[this.undo.length - 1];
    if (top === undefined || top.booking !== booking) return;
    this.undo.pop();
    this.restore(top.before);
  }

  /** Call in `take`, before the state changes: records what a refund would restore. */
  protected booked(): void {
    this.latest++;
    this.undo.push({ booking: this.latest, before: this.snapshot() });
    if (this.undo.length > UNDO_DEPTH) this.undo.shift();
  }

  protected abstract snapshot(): S;
  protected abstract restore(state: S): void;
}
