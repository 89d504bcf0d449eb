/**
 * Log-append time index of one segment (`<baseOffset>.timeindex`). The log-append time lives
 * only here, never in the batch (whose CRC the broker must not disturb).
 *
 *   entry (12 bytes, big-endian), entries in increasing time and offset order:
 *     0  8  appendTimeMs    int64  when the broker appended the batch (ms since the epoch)
 *     8  4  relativeOffset  int32  that batch's base offset minus the segment's base offset
 *
 * An entry is written whenever a batch's append time is greater than the last entry's, so
 * the first entry at or after a time T names exactly the first batch appended at or after T.
 * Append times are kept monotonic by the log, so entries stay sorted even if the clock steps
 * back. After a crash, entries for batches past the recovery point are rebuilt from each
 * batch's maxTimestamp (kept monotonic), the only time the batch itself carries.
 */
import { IndexFile } from "./index-file.js";

export const TIME_INDEX_ENTRY_BYTES = 12;
const APPEND_TIME_AT = 0;
const RELATIVE_OFFSET_AT = 8;

export class TimeIndex extends IndexFile {
  private constructor(path: string, fd: number, content: Buffer) {
    super(path, fd, TIME_INDEX_ENTRY_BYTES, content);
  }

  /** Opens the index; `problem` is set when its content is structurally unusable. */
  static open(path: string): { index: TimeIndex; existed: boolean; problem: string | null } {
    const { fd, content, existed, problem } = IndexFile.openFile(path, TIME_INDEX_ENTRY_BYTES);
    const index = new TimeIndex(path, fd, content);
    return { index, existed, problem: problem ?? index.orderProblem() };
  }

  timeAt(i: number): number {
    return Number(this.view.readBigInt64BE(this.entryAt(i) + APPEND_TIME_AT));
  }

  /** relativeOffsetAt as a value, made once: the read path searches with it on every lookup. */
  private readonly relativeOffsetKey = (i: number): number => this.relativeOffsetAt(i);

  relativeOffsetAt(i: number): number {
    return this.view.readInt32BE(this.entryAt(i) + RELATIVE_OFFSET_AT);
  }

  /** The newest append time in this segment, or -Infinity when it holds nothing. */
  get lastTimeMs(): number {
    return this.count === 0 ? Number.NEGATIVE_INFINITY : this.timeAt(this.count - 1);
  }

  get lastRelativeOffset(): number {
    return this.count === 0 ? -1 : this.relativeOffsetAt(this.count - 1);
  }

  /** Adds an entry if `appendTimeMs` is newer than the last one; returns whether it did. */
  maybePush(appendTimeMs: number, relativeOffset: number): boolean {
    if (appendTimeMs <= this.lastTimeMs) return false;
    const at = this.pushSlot();
    this.view.writeBigInt64BE(BigInt(appendTimeMs), at + APPEND_TIME_AT);
    this.view.writeInt32BE(relativeOffset, at + RELATIVE_OFFSET_AT);
    return true;
  }

  /** Index of the first entry whose time is ≥ `timestampMs`, or -1. */
  firstAtOrAfter(timestampMs: number): number {
    let low = 0;
    let high = this.count - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      if (this.timeAt(mid) >= timestampMs) {
        found = mid;
        high = mid - 1;
      } else {
        low = mid + 1;
      }
    }
    return found;
  }

  /** Index of the last entry whose relative offset is ≤ `relativeOffset`, or -1. */
  lastAtOrBelowOffset(relativeOffset: number): number {
    return this.lastAtOrBelow(this.relativeOffsetKey, relativeOffset);
  }

  /** The entries as plain pairs, for recovery to keep the trustworthy ones while rebuilding. */
  snapshot(): { appendTimeMs: number; relativeOffset: number }[] {
    const out: { appendTimeMs: number; relativeOffset: number }[] = [];
    for (let i = 0; i < this.count; i++) out.push({ appendTimeMs: this.timeAt(i), relativeOffset: this.relativeOffsetAt(i) });
    return out;
  }

  private orderProblem(): string | null {
    let previousTime = Number.NEGATIVE_INFINITY;
    let previousOffset = -1;
    for (let i = 0; i < this.count; i++) {
      const time = this.timeAt(i);
      const offset = this.relativeOffsetAt(i);
      if (time <= previousTime || offset <= previousOffset) {
        return `entry ${i} (time ${time}, offset +${offset}) does not follow (time ${previousTime}, offset +${previousOffset})`;
      }
      previousTime = time;
      previousOffset = offset;
    }
    return null;
  }
}
