/**
 * Deleting whole segments from the oldest end of a partition log, the one code path behind
 * retention (`PartitionLog.applyRetention`) and a compacted topic's snapshot
 * (`PartitionLog.advanceLogStart`); each supplies only its own rule for the next segment.
 *
 * Rules both share: the active segment is never deleted (at least one segment stays), nor a
 * segment with a group in flight, nor one whose successor has a group in flight (deletion
 * stops there, so the log start never jumps over an unsettled write). Files are removed by the
 * segment; the caller marks the directory for the next flush's fsync.
 */
import type { Segment } from "./segment.js";

export interface DeletedSegments {
  /** How many segments were deleted. */
  count: number;
  freedBytes: number;
  /** The log's size after the deletion. */
  sizeBytes: number;
}

/** The bytes of every segment in the list. */
export function totalSizeBytes(segments: readonly Segment[]): number {
  let total = 0;
  for (const segment of segments) total += segment.sizeBytes;
  return total;
}

/**
 * Deletes the oldest segment while `mayDelete(oldest, next, sizeBytes)` allows it
 * (`sizeBytes`: the log's size with `oldest` still in it) and the shared rules do.
 */
export function deleteOldestSegments(
  segments: Segment[],
  mayDelete: (oldest: Segment, next: Segment, sizeBytes: number) => boolean,
): DeletedSegments {
  let sizeBytes = totalSizeBytes(segments);
  let freedBytes = 0;
  let count = 0;
  while (segments.length > 1) {
    const oldest = segments[0]!;
    const next = segments[1]!;
    if (!oldest.isSettled || !next.isSettled || !mayDelete(oldest, next, sizeBytes)) break;
    segments.shift();
    sizeBytes -= oldest.sizeBytes;
    freedBytes += oldest.sizeBytes;
    oldest.deleteFiles();
    count++;
  }
  return { count, freedBytes, sizeBytes };
}
