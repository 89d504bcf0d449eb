/**
 * When the newest batches of a partition were appended, in memory, so delivery can be timed
 * against append (the end-to-end latency histogram) without touching the time index or
 * decoding a batch.
 *
 * Entries are (last offset, append time ms), in offset order. Batches appended within the same
 * millisecond share one entry (its last offset grows), so a hot partition keeps at least
 * CAPACITY milliseconds of history, a quiet one CAPACITY batches. Older offsets have no
 * entry: reading them is catching up, not latency, and lag_seconds covers it.
 *
 * Memory: two plain arrays that grow to CAPACITY entries only on partitions that take writes
 * (about 64 KiB at most per partition); then they wrap around as a ring.
 */
export const APPEND_TIMES_CAPACITY = 4096;

export class AppendTimes {
  private readonly lastOffsets: number[] = [];
  private readonly times: number[] = [];
  /** Index of the oldest entry once the arrays are full (a ring from then on). */
  private head = 0;
  /**
   * Offsets below this have no time here: appended before the first record (recovered from
   * disk) or in an entry since overwritten.
   */
  private firstOffset = Number.POSITIVE_INFINITY;

  constructor(private readonly capacity = APPEND_TIMES_CAPACITY) {}

  /** Records that the batch [baseOffset, lastOffset] was appended at `timeMs`. */
  record(baseOffset: number, lastOffset: number, timeMs: number): void {
    const size = this.lastOffsets.length;
    if (size === 0) this.firstOffset = baseOffset;
    if (size > 0) {
      const newest = this.newestIndex();
      if (lastOffset <= this.lastOffsets[newest]!) return;
      if (this.times[newest] === timeMs) {
        this.lastOffsets[newest] = lastOffset;
        return;
      }
    }
    if (size < this.capacity) {
      this.lastOffsets.push(lastOffset);
      this.times.push(timeMs);
      return;
    }
    this.firstOffset = this.lastOffsets[this.head]! + 1;
    this.lastOffsets[this.head] = lastOffset;
    this.times[this.head] = timeMs;
    this.head = (this.head + 1) % this.capacity;
  }

  /**
   * When the batch ending at `lastOffset` was appended, or undefined when it is older than
   * what is kept (or was never recorded here).
   */
  appendTimeOf(lastOffset: number): number | undefined {
    const size = this.lastOffsets.length;
    if (size === 0 || lastOffset < this.firstOffset) return undefined;
    // The first entry whose last offset is ≥ lastOffset covers it.
    let low = 0;
    let high = size;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.lastOffsets[this.at(mid)]! < lastOffset) low = mid + 1;
      else high = mid;
    }
    if (low === size) return undefined;
    return this.times[this.at(low)];
  }

  /** Forgets everything (the log was truncated or reset: offsets may be reused). */
  clear(): void {
    this.lastOffsets.length = 0;
    this.times.length = 0;
    this.head = 0;
    this.firstOffset = Number.POSITIVE_INFINITY;
  }

  /** Physical index of the i-th oldest entry. */
  private at(i: number): number {
    return (this.head + i) % this.lastOffsets.length;
  }

  private newestIndex(): number {
    return this.at(this.lastOffsets.length - 1);
  }
}
