/**
 * The segment-level half of `PartitionLog.truncateTo` and `resetTo`: cutting a partition's
 * segments back to an offset, or replacing them all with one empty segment. The log updates
 * its own offsets, watermark, epoch history and producer state afterwards.
 *
 * Crash safety comes from the order of the steps: later segments are deleted highest first
 * (a crash leaves a shorter log that still starts where it did and has no gap), then the log
 * file of the segment holding the offset is cut and fsynced, then its indexes (a crash before
 * that leaves index entries past the log end, which the next open detects and rebuilds).
 */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { Segment } from "./segment.js";
import { fsyncDirectory, type StorageIo } from "./storage-io.js";

/**
 * Drops everything at and after `offset` from `segments` (the live list, shortened in place).
 * `offset` must lie in [logStartOffset, logEndOffset] on a batch boundary; a segment starting
 * exactly at `offset` goes whole, unless it is the first (it is then emptied).
 */
export function truncateSegments(segments: Segment[], dir: string, offset: number, io: StorageIo, partitionName: string): void {
  const logStartOffset = segments[0]!.baseOffset;
  const logEndOffset = segments[segments.length - 1]!.nextOffset;
  if (!Number.isSafeInteger(offset) || offset < logStartOffset || offset > logEndOffset) {
    throw new InvalidArgumentError(
      `cannot truncate ${partitionName} to offset ${offset}: it must lie within the log (${logStartOffset}..${logEndOffset}); reset the partition instead`,
    );
  }
  if (offset === logEndOffset) return;
  const holding = segmentIndexFor(segments, offset);
  const segment = segments[holding]!;
  const position = segment.batchStartPosition(offset);
  if (position === null) {
    throw new InvalidArgumentError(`cannot truncate ${partitionName} to offset ${offset}: it lies inside a batch; truncate at a batch boundary`);
  }
  const keep = position === 0 && holding > 0 ? holding : holding + 1;
  for (let i = segments.length - 1; i >= keep; i--) {
    segments[i]!.deleteFiles();
    segments.length = i;
  }
  if (keep === holding + 1) segment.truncateTo(offset, position, io);
  fsyncDirectory(dir);
}

/**
 * Deletes every segment (highest first) and starts one empty segment at `offset`. A crash
 * part-way leaves a prefix of the old log, or an empty directory (which opens as an empty log
 * at 0): either way a log that opens, and that the master resets again.
 */
export function replaceSegments(segments: Segment[], dir: string, offset: number, partitionName: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new InvalidArgumentError(`cannot reset ${partitionName} to offset ${offset}: it must be a non-negative integer`);
  }
  for (let i = segments.length - 1; i >= 0; i--) segments[i]!.deleteFiles();
  // The list keeps the (closed) old segments until the new one exists: never an empty list.
  const fresh = Segment.create(dir, offset);
  segments.splice(0, segments.length, fresh);
  fsyncDirectory(dir);
}

/** Index of the segment holding `offset` (the last whose base offset is ≤ it). */
export function segmentIndexFor(segments: readonly Segment[], offset: number): number {
  let low = 0;
  let high = segments.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >>> 1;
    if (segments[mid]!.baseOffset <= offset) low = mid;
    else high = mid - 1;
  }
  return low;
}
