/**
 * The catch-up throttle: a token bucket over bytes, shared by every replication session of
 * the master, so slaves copying old data never take more than `bytesPerSecond` of its disk
 * and network together. In-sync traffic does not pass through it.
 *
 * The bucket starts empty and holds at most one slice (100 ms) of tokens, so a slave that
 * starts catching up gets the rate from the first byte, not a burst. A chunk may take more
 * tokens than there are (a batch is sent whole); the bucket then goes into debt and the next
 * chunk waits until it is paid back.
 */
import type { Clock } from "../../../common/src/clock.js";

/** How much rate the bucket may bank, and the largest chunk a throttled session reads. */
export const THROTTLE_SLICE_MS = 100;

export class ByteThrottle {
  private tokens = 0;
  private refilledAtMs: number;
  /** Bytes allowed per slice, also the largest chunk a throttled session should read. */
  readonly sliceBytes: number;

  constructor(
    readonly bytesPerSecond: number,
    private readonly clock: Clock,
  ) {
    this.refilledAtMs = clock.now();
    this.sliceBytes = Math.max(1, Math.floor((bytesPerSecond * THROTTLE_SLICE_MS) / 1000));
  }

  /** Milliseconds until the bucket is out of debt (0: send now). */
  delayMs(): number {
    this.refill();
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.bytesPerSecond);
  }

  take(bytes: number): void {
    this.refill();
    this.tokens -= bytes;
  }

  private refill(): void {
    const nowMs = this.clock.now();
    const elapsedMs = Math.max(0, nowMs - this.refilledAtMs);
    this.refilledAtMs = nowMs;
    this.tokens = Math.min(this.sliceBytes, this.tokens + (elapsedMs * this.bytesPerSecond) / 1000);
  }
}
