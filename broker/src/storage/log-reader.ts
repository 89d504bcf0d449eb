/**
 * The read side of one partition log: how far each reader may go, and reading there.
 *
 * Consumers read up to the high watermark, the end of what every replica that counts holds;
 * replication reads up to the log end. Unless the log is `replicated`, the high watermark is
 * the log end. While replicated it moves only when the master publishes one (the log raises
 * `replicatedHighWatermark`), and only truncation lowers it (`restartAt`).
 *
 * A bounded read stops at the start of the batch holding its limit. Finding that batch means
 * a walk through the segment, so the reader remembers where the last limit was and walks on
 * from there when the watermark rises, rather than from an index entry every time.
 */
import { OffsetOutOfRangeError } from "../../../common/src/errors.js";
import { segmentIndexFor } from "./log-truncation.js";
import type { Segment } from "./segment.js";

export interface ReadResult {
  /** Whole batches, byte for byte as stored; empty at the end of what the read may see. */
  records: Buffer;
  /** The offset to read next: after the last batch returned (the offset read, when none). */
  nextOffset: number;
  logStartOffset: number;
  logEndOffset: number;
  /** End of what consumers may read (equals logEndOffset unless the log is replicated). */
  highWatermark: number;
}

/** How far a read may go: consumers stop at the high watermark, replication at the log end. */
export type ReadLimit = "highWatermark" | "logEnd";

const EMPTY = Buffer.alloc(0);

export class LogReader {
  /** Whether the high watermark is published by the master rather than following the log end. */
  replicated = false;
  /** The high watermark while replicated (otherwise the log end is). */
  replicatedHighWatermark = 0;
  /**
   * Where the last bounded read found its limit: the start of the batch holding it. The next
   * limit (a higher watermark) is found by walking on from here, not from an index entry.
   */
  private limitSegment: Segment | null = null;
  private limitOffset = -1;
  private limitPosition = 0;

  constructor(
    /** The log's live segment list. */
    private readonly segments: Segment[],
    private readonly topic: string,
    private readonly partition: number,
  ) {}

  /** The high watermark of a log that ends at `logEndOffset`. */
  highWatermarkAt(logEndOffset: number): number {
    return this.replicated ? this.replicatedHighWatermark : logEndOffset;
  }

  /** See `PartitionLog.read`; `logEndOffset` is where the written log ends now. */
  read(offset: number, maxBytes: number, upTo: ReadLimit, logEndOffset: number): ReadResult {
    const logStartOffset = this.segments[0]!.baseOffset;
    const highWatermark = this.replicated ? this.replicatedHighWatermark : logEndOffset;
    if (!Number.isSafeInteger(offset) || offset < logStartOffset || offset > logEndOffset) {
      throw new OffsetOutOfRangeError(this.topic, this.partition, offset, logStartOffset, logEndOffset);
    }
    const limit = upTo === "logEnd" ? logEndOffset : highWatermark;
    if (offset >= limit) return { records: EMPTY, nextOffset: offset, logStartOffset, logEndOffset, highWatermark };
    const segment = this.segments[segmentIndexFor(this.segments, offset)]!;
    const { position, size } = segment.locate(offset);
    if (limit >= segment.nextOffset) {
      const { records, nextOffset } = segment.read(position, size, maxBytes);
      return { records, nextOffset, logStartOffset, logEndOffset, highWatermark };
    }
    // The limit falls inside this segment: stop at the start of the batch holding it.
    const endPosition = this.positionOfLimit(segment, limit);
    if (endPosition <= position) return { records: EMPTY, nextOffset: offset, logStartOffset, logEndOffset, highWatermark };
    const { records, nextOffset } = segment.read(position, size, maxBytes, endPosition);
    return { records, nextOffset, logStartOffset, logEndOffset, highWatermark };
  }

  /** See `PartitionLog.offsetForTimestamp`. */
  offsetForTimestamp(timestampMs: number): { offset: number; timestampMs: number } | null {
    // Append times are monotonic across segments, so the first segment whose newest append is
    // late enough holds the answer.
    let low = 0;
    let high = this.segments.length - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      if (this.segments[mid]!.newestAppendTimeMs >= timestampMs) {
        found = mid;
        high = mid - 1;
      } else {
        low = mid + 1;
      }
    }
    return found < 0 ? null : this.segments[found]!.offsetAtOrAfterTime(timestampMs);
  }

  /** After a truncation or reset to `offset` (`fresh`: nothing below it either). */
  restartAt(offset: number, fresh: boolean): void {
    this.replicatedHighWatermark = fresh ? offset : Math.min(this.replicatedHighWatermark, offset);
    this.limitSegment = null;
  }

  /** Start position of the batch holding `limit` (in `segment`), walking on from the last one. */
  private positionOfLimit(segment: Segment, limit: number): number {
    if (this.limitSegment === segment) {
      if (this.limitOffset === limit) return this.limitPosition;
      if (this.limitOffset < limit) {
        this.limitPosition = segment.locate(limit, this.limitPosition).position;
        this.limitOffset = limit;
        return this.limitPosition;
      }
    }
    this.limitPosition = segment.locate(limit).position;
    this.limitSegment = segment;
    this.limitOffset = limit;
    return this.limitPosition;
  }
}
