/**
 * When the batches of the last APPEND_TIMES_WINDOW_MS of a partition were appended, in memory,
 * so delivery can be timed against append (the end-to-end latency histogram) without touching
 * the time index or decoding a batch.
 *
 * Entries are (last offset, append time ms), in offset order. A batch appended less than
 * APPEND_TIMES_SLOT_MS after the newest entry's time joins that entry (its last offset grows),
 * so a batch's age is read at most one slot too high, and a partition keeps at most
 * window / slot entries however fast it is written. Entries older than the window are dropped:
 * every partition keeps the same span of time, and a delivery of anything older (a consumer
 * catching up, or batches appended before the broker started) is lag, not latency — it has no
 * time here, and the caller counts it apart.
 *
 * Memory: two plain arrays holding only the entries of the window (none on a partition that
 * took no write in it); at most 2 × 15,000 numbers per partition at a batch every 2 ms.
 */
export const APPEND_TIMES_WINDOW_MS = 30_000;
export const APPEND_TIMES_SLOT_MS = 2;

export class AppendTimes {
  private lastOffsets: number[] = [];
  private times: number[] = [];
  /** Index of the oldest live entry: entries before it were dropped (compacted now and then). */
  private head = 0;
  /**
   * Offsets below this have no time here: appended before the first record (recovered from
   * disk) or in an entry since dropped.
   */
  private firstOffset = Number.POSITIVE_INFINITY;

  constructor(
    private readonly windowMs = APPEND_TIMES_WINDOW_MS,
    private readonly slotMs = APPEND_TIMES_SLOT_MS,
  ) {}

  /** Records that the batch [baseOffset, lastOffset] was appended at `timeMs`. */
  record(baseOffset: number, lastOffset: number, timeMs: number): void {
    this.dropOlderThan(timeMs - this.windowMs);
    const newest = this.lastOffsets.length - 1;
    if (newest < this.head) {
      this.firstOffset = baseOffset;
    } else {
      if (lastOffset <= this.lastOffsets[newest]!) return;
      if (timeMs - this.times[newest]! < this.slotMs) {
        this.lastOffsets[newest] = lastOffset;
        return;
      }
    }
    this.lastOffsets.push(lastOffset);
    this.times.push(timeMs);
  }

  /**
   * When the batch ending at `lastOffset` was appended (the start of its slot), or undefined
   * when it is older than the window (or was never recorded here).
   */
  appendTimeOf(lastOffset: number, nowMs: number): number | undefined {
    this.dropOlderThan(nowMs - this.windowMs);
    const end = this.lastOffsets.length;
    if (end === this.head || lastOffset < this.firstOffset) return undefined;
    // The first entry whose last offset is ≥ lastOffset covers it.
    let low = this.head;
    let high = end;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.lastOffsets[mid]! < lastOffset) low = mid + 1;
      else high = mid;
    }
    return low === end ? undefined : this.times[low];
  }

  /** Forgets everything (the log was truncated or reset: offsets may be reused). */
  clear(): void {
    this.lastOffsets = [];
    this.times = [];
    this.head = 0;
    this.firstOffset = Number.POSITIVE_INFINITY;
  }

  private dropOlderThan(cutoffMs: number): void {
    const end = this.lastOffsets.length;
    while (this.head < end && this.times[this.head]! < cutoffMs) {
      this.firstOffset = this.lastOffsets[this.head]! + 1;
      this.head++;
    }
    if (this.head === end && end > 0) {
      this.lastOffsets = [];
      this.times = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > end) {
      // Compact once the dropped prefix is most of the arrays: amortised O(1) per entry.
      this.lastOffsets = this.lastOffsets.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }
}
