/**
 * The last N heartbeat inter-arrival times of one broker, with their mean and variance kept
 * in O(1) per heartbeat: a ring buffer plus a running sum and sum of squares. Intervals are
 * whole milliseconds, so with N ≤ 10 000 the sums stay exact integers far below 2^53 and the
 * subtraction of an evicted sample never drifts.
 */
export class ArrivalWindow {
  private readonly samples: number[];
  private next = 0;
  private count = 0;
  private sum = 0;
  private sumOfSquares = 0;

  constructor(readonly capacity: number) {
    this.samples = new Array<number>(capacity).fill(0);
  }

  /** Adds one inter-arrival time, evicting the oldest once the window is full. */
  add(intervalMs: number): void {
    if (this.count === this.capacity) {
      const evicted = this.samples[this.next] ?? 0;
      this.sum -= evicted;
      this.sumOfSquares -= evicted * evicted;
    } else {
      this.count++;
    }
    this.samples[this.next] = intervalMs;
    this.sum += intervalMs;
    this.sumOfSquares += intervalMs * intervalMs;
    this.next = (this.next + 1) % this.capacity;
  }

  get size(): number {
    return this.count;
  }

  get meanMs(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  /** Population variance, ms²; 0 for fewer than two samples. */
  get varianceMs2(): number {
    if (this.count < 2) return 0;
    const mean = this.meanMs;
    // E[x²] − mean² can dip a hair below zero through rounding when every sample is equal.
    return Math.max(0, this.sumOfSquares / this.count - mean * mean);
  }

  get standardDeviationMs(): number {
    return Math.sqrt(this.varianceMs2);
  }
}
