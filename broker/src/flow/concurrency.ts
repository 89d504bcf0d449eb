/**
 * In-flight concurrency limit (R22): at most `maxInFlight` requests of a scope are being
 * handled at once; the rest wait in line. A pure FIFO semaphore — it holds waiters of any
 * type (the controller's pending admissions) but never wakes, times or refuses them itself.
 *
 * Two rules keep it fair:
 * - **No barging.** tryAcquire succeeds only when nobody waits, so a newcomer cannot take
 *   a slot ahead of a request that has been queued longer. (With the hand-off below, waiters
 *   exist only while every slot is taken; the check states the rule rather than rely on it.)
 * - **Hand-off.** release() with waiters gives the freed slot straight to the first of them
 *   (inFlight does not drop), so no newcomer can slip in between release and wake-up.
 * A waiter that gives up (the caller's maxQueueMs expired) is taken out with remove().
 */
import { InvalidArgumentError } from "../../../common/src/errors.js";

export interface ConcurrencyLimitOptions {
  /** Most requests in flight at once. Integer, >= 1. */
  maxInFlight: number;
}

export class ConcurrencyLimit<T> {
  readonly maxInFlight: number;
  private inFlightCount = 0;
  // A Set keeps insertion order and removes a timed-out waiter in O(1).
  private readonly waiters = new Set<T>();

  constructor(options: ConcurrencyLimitOptions) {
    if (!Number.isInteger(options.maxInFlight) || options.maxInFlight < 1) {
      throw new InvalidArgumentError(`ConcurrencyLimit: maxInFlight must be an integer >= 1, got ${options.maxInFlight}`);
    }
    this.maxInFlight = options.maxInFlight;
  }

  /** Requests holding a slot (including those just handed one by release). */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.waiters.size;
  }

  /** Takes a slot if one is free and nobody waits for it. */
  tryAcquire(): boolean {
    if (this.waiters.size > 0 || this.inFlightCount >= this.maxInFlight) return false;
    this.inFlightCount += 1;
    return true;
  }

  /**
   * Puts a waiter at the back of the line, after tryAcquire() said no. Refused when a slot is
   * free and nobody waits (nothing would ever wake it) and for a waiter already in line.
   */
  enqueue(waiter: T): void {
    if (this.waiters.size === 0 && this.inFlightCount < this.maxInFlight) {
      throw new InvalidArgumentError("ConcurrencyLimit: a slot is free; call tryAcquire() before enqueue()");
    }
    if (this.waiters.has(waiter)) throw new InvalidArgumentError("ConcurrencyLimit: this waiter is already queued");
    this.waiters.add(waiter);
  }

  /**
   * Frees the caller's slot. With waiters, the slot goes to the first of them, which is
   * returned so the caller can wake it; otherwise returns undefined.
   */
  release(): T | undefined {
    if (this.inFlightCount === 0) throw new InvalidArgumentError("ConcurrencyLimit: release() without a slot held");
    for (const first of this.waiters) {
      this.waiters.delete(first);
      return first;
    }
    this.inFlightCount -= 1;
    return undefined;
  }

  /** Takes a waiter out of line (it gave up); false if it was not waiting (already handed a slot). */
  remove(waiter: T): boolean {
    return this.waiters.delete(waiter);
  }
}
