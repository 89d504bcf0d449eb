/**
 * Opens a partition's segments at start-up and repairs what needs repairing.
 *
 * Clean start: indexes are loaded and sanity-checked (a missing or inconsistent one is rebuilt
 * from batch headers), and the last segment's tail is walked from its last index entry to find
 * the next offset. If that walk finds damage despite the clean-shutdown marker, the segment is
 * treated as after a crash.
 *
 * After a crash (`recover`): every segment from the one holding the recovery point to the end
 * is scanned with full validation (length, magic, CRC32C, dense offsets); the first bad batch
 * and everything after it (including later segments) is dropped, the indexes of the scanned
 * segments are rebuilt, and one warning says exactly what went.
 */
import fs from "node:fs";
import type { Logger } from "../../../common/src/logger.js";
import { baseOffsetOf, batchSizeAt } from "../../../common/src/batch/layout.js";
import { highestClaimedOffset, scanBatches, type ScanResult } from "./batch-scanner.js";
import { OffsetIndex } from "./offset-index.js";
import { Segment } from "./segment.js";
import { listSegmentFiles, removeSegmentFiles, segmentFileName, segmentFilePath } from "./segment-files.js";
import { fsyncDirectory, readFully, type StorageIo } from "./storage-io.js";
import { TimeIndex } from "./time-index.js";

export interface LoadSegmentsOptions {
  dir: string;
  topic: string;
  partition: number;
  indexIntervalBytes: number;
  logger: Logger;
  /** Unclean shutdown: validate everything from the segment holding `recoveryPoint`. */
  recover: boolean;
  recoveryPoint: number;
  io: StorageIo;
}

/** The partition's segments in offset order, never empty, all committed. */
export function loadSegments(options: LoadSegmentsOptions): Segment[] {
  const { dir, logger, topic, partition } = options;
  const files = listSegmentFiles(dir);
  for (const [baseOffset, kinds] of files) {
    if (kinds.has("log")) continue;
    logger.warn({ topic, partition, baseOffset }, "removing index files that have no segment");
    removeSegmentFiles(dir, baseOffset);
    files.delete(baseOffset);
  }
  const bases = [...files.keys()];
  if (bases.length === 0) return [Segment.create(dir, 0)];

  let firstToVerify = bases.length;
  if (options.recover) {
    const holding = bases.findLastIndex((base) => base <= options.recoveryPoint);
    firstToVerify = Math.max(0, holding);
  }
  const segments: Segment[] = [];
  let previousTimeMs = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < bases.length; i++) {
    const base = bases[i]!;
    const expected = segments.length === 0 ? base : segments[segments.length - 1]!.nextOffset;
    if (base !== expected) {
      const reason = `segment ${segmentFileName(base, "log")} starts at offset ${base}, but the log before it ends at ${expected}`;
      dropSegments(options, bases.slice(i), { reason, fromOffset: expected, bytesInTruncatedSegment: 0 });
      break;
    }
    if (i < firstToVerify) {
      const segment = openClean(options, base, i + 1 < bases.length ? bases[i + 1]! : null, previousTimeMs);
      if (segment) {
        segments.push(segment);
        previousTimeMs = Math.max(previousTimeMs, segment.newestAppendTimeMs);
        continue;
      }
      firstToVerify = i;
    }
    const verified = verifySegment(options, base, previousTimeMs);
    segments.push(verified.segment);
    previousTimeMs = Math.max(previousTimeMs, verified.segment.newestAppendTimeMs);
    if (verified.problem !== null) {
      dropSegments(options, bases.slice(i + 1), {
        reason: `${segmentFileName(base, "log")} ${verified.problem}`,
        fromOffset: verified.segment.nextOffset,
        bytesInTruncatedSegment: verified.droppedBytes,
        highestInTruncatedSegment: verified.highestDroppedOffset,
      });
      break;
    }
  }
  if (options.recover) {
    logger.info(
      { topic, partition, verifiedFrom: segmentFileName(bases[Math.min(firstToVerify, bases.length - 1)]!, "log"), logEndOffset: segments[segments.length - 1]!.nextOffset },
      "partition recovered after unclean shutdown",
    );
  }
  return segments;
}

/** Opens a segment trusting its bytes; null when its tail turns out to be damaged. */
function openClean(options: LoadSegmentsOptions, base: number, nextBase: number | null, previousTimeMs: number): Segment | null {
  const { dir, logger, topic, partition } = options;
  const logFd = fs.openSync(segmentFilePath(dir, base, "log"), "r+");
  const size = fs.fstatSync(logFd).size;
  const offsetOpen = OffsetIndex.open(segmentFilePath(dir, base, "index"));
  const timeOpen = TimeIndex.open(segmentFilePath(dir, base, "timeindex"));
  const offsetIndex = offsetOpen.index;
  const timeIndex = timeOpen.index;
  const giveUp = (problem: string): null => {
    logger.warn({ topic, partition, segment: segmentFileName(base, "log"), problem }, "segment damaged despite a clean shutdown; validating it as after a crash");
    fs.closeSync(logFd);
    offsetIndex.close();
    timeIndex.close();
    return null;
  };

  const offsetProblem = !offsetOpen.existed ? "missing" : offsetOpen.problem ?? offsetIndexProblem(offsetIndex, logFd, size, base);
  let nextOffset = nextBase;
  if (offsetProblem !== null) {
    logger.warn({ topic, partition, segment: segmentFileName(base, "index"), problem: offsetProblem }, "rebuilding offset index");
    const rebuilt = rebuildIndexes(options, { logFd, size, base, offsetIndex, previousTimeMs, verifyCrc: false });
    if (rebuilt.problem !== null) return giveUp(rebuilt.problem);
    nextOffset = rebuilt.nextOffset;
  } else if (nextBase === null) {
    const from = offsetIndex.count === 0 ? { relativeOffset: 0, position: 0 } : offsetIndex.floor(Number.MAX_SAFE_INTEGER);
    const walk = scanBatches({ fd: logFd, fileSize: size, fromPosition: from.position, expectedBaseOffset: base + from.relativeOffset, segmentBaseOffset: base, verifyCrc: false });
    if (walk.problem !== null) return giveUp(walk.problem);
    nextOffset = walk.nextOffset;
  }

  const timeProblem = !timeOpen.existed ? "missing" : timeOpen.problem ?? timeIndexProblem(timeIndex, base, nextOffset!);
  let appendTimesEstimated = false;
  if (timeProblem !== null) {
    logger.warn({ topic, partition, segment: segmentFileName(base, "timeindex"), problem: timeProblem }, "rebuilding time index from batch maxTimestamps");
    const target: RebuildTarget = { logFd, size, base, timeIndex, previousTimeMs, verifyCrc: false };
    const rebuilt = rebuildIndexes(options, target);
    if (rebuilt.problem !== null) return giveUp(rebuilt.problem);
    appendTimesEstimated = target.estimatedTimes === true;
  }
  return new Segment({ dir, baseOffset: base, logFd, offsetIndex, timeIndex, sizeBytes: size, nextOffset: nextOffset!, appendTimesEstimated });
}

/** Full validation of one segment; truncates it at the first bad batch and rebuilds its indexes. */
function verifySegment(
  options: LoadSegmentsOptions,
  base: number,
  previousTimeMs: number,
): { segment: Segment; problem: string | null; droppedBytes: number; highestDroppedOffset: number | null } {
  const { dir } = options;
  const logFd = fs.openSync(segmentFilePath(dir, base, "log"), "r+");
  const size = fs.fstatSync(logFd).size;
  const offsetIndex = OffsetIndex.open(segmentFilePath(dir, base, "index")).index;
  const timeOpen = TimeIndex.open(segmentFilePath(dir, base, "timeindex"));
  // Entries below the recovery point were fsynced by a flush and are the real append times.
  const trustedTimes = timeOpen.problem === null ? timeOpen.index.snapshot() : [];
  const target: RebuildTarget = {
    logFd, size, base, offsetIndex, timeIndex: timeOpen.index, previousTimeMs, verifyCrc: true,
    trustedTimes, trustedBelowOffset: options.recoveryPoint,
  };
  const result = rebuildIndexes(options, target);
  let highestDroppedOffset: number | null = null;
  if (result.problem !== null) {
    highestDroppedOffset = highestClaimedOffset(logFd, result.endPosition, size);
    fs.ftruncateSync(logFd, result.endPosition);
  }
  fs.fdatasyncSync(logFd);
  const segment = new Segment({
    dir, baseOffset: base, logFd, offsetIndex, timeIndex: timeOpen.index, sizeBytes: result.endPosition, nextOffset: result.nextOffset,
    appendTimesEstimated: target.estimatedTimes === true,
  });
  return { segment, problem: result.problem, droppedBytes: size - result.endPosition, highestDroppedOffset };
}

interface RebuildTarget {
  logFd: number;
  size: number;
  base: number;
  offsetIndex?: OffsetIndex;
  timeIndex?: TimeIndex;
  previousTimeMs: number;
  verifyCrc: boolean;
  /** Old time-index entries to keep for batches below `trustedBelowOffset`, where they match. */
  trustedTimes?: { appendTimeMs: number; relativeOffset: number }[];
  trustedBelowOffset?: number;
  /** Set by the rebuild when some append time had to be estimated from a batch timestamp. */
  estimatedTimes?: boolean;
}

/** Rebuilds the given indexes from one scan of the segment, for the batches that pass it. */
function rebuildIndexes(options: LoadSegmentsOptions, target: RebuildTarget): ScanResult {
  const { base, offsetIndex, timeIndex } = target;
  const trusted = target.trustedTimes ?? [];
  const trustedBelow = target.trustedBelowOffset ?? Number.NEGATIVE_INFINITY;
  offsetIndex?.reset();
  timeIndex?.reset();
  let bytesSinceIndexEntry = 0;
  let lastTimeMs = target.previousTimeMs;
  let next = 0;
  let trusting = trusted.length > 0;
  const result = scanBatches({
    fd: target.logFd, fileSize: target.size, fromPosition: 0, expectedBaseOffset: base, segmentBaseOffset: base,
    verifyCrc: target.verifyCrc,
    onBatch: (batch) => {
      const relativeOffset = batch.baseOffset - base;
      if (offsetIndex) {
        if (bytesSinceIndexEntry >= options.indexIntervalBytes) {
          offsetIndex.push(relativeOffset, batch.position);
          bytesSinceIndexEntry = 0;
        }
        bytesSinceIndexEntry += batch.size;
      }
      if (!timeIndex) return;
      if (trusting && batch.baseOffset < trustedBelow) {
        const old = trusted[next];
        if (old && old.relativeOffset === relativeOffset && old.appendTimeMs > lastTimeMs) {
          timeIndex.maybePush(old.appendTimeMs, relativeOffset);
          lastTimeMs = old.appendTimeMs;
          next++;
          return;
        }
        // No entry for a later batch of the same millisecond is expected; anything else breaks trust.
        if (old && old.relativeOffset > relativeOffset && timeIndex.count > 0) return;
        trusting = false;
      }
      target.estimatedTimes = true;
      lastTimeMs = Math.max(lastTimeMs, batch.maxTimestampMs);
      timeIndex.maybePush(lastTimeMs, relativeOffset);
    },
  });
  offsetIndex?.rewrite(options.io);
  timeIndex?.rewrite(options.io);
  return result;
}

/** Why a loaded offset index does not fit its log, or null. */
function offsetIndexProblem(index: OffsetIndex, logFd: number, size: number, base: number): string | null {
  if (index.count === 0) return null;
  const position = index.positionAt(index.count - 1);
  const expected = base + index.relativeOffsetAt(index.count - 1);
  if (position + 12 > size) return `last entry points at position ${position}, past the log's ${size} bytes`;
  const header = Buffer.allocUnsafe(12);
  readFully(logFd, header, 0, 12, position);
  if (baseOffsetOf(header) !== expected) return `last entry says offset ${expected} is at ${position}, the log has ${baseOffsetOf(header)} there`;
  if (position + batchSizeAt(header) > size) return `last entry points at a batch that runs past the end of the log`;
  return null;
}

/** Why a loaded time index does not fit a segment holding [base, nextOffset), or null. */
function timeIndexProblem(index: TimeIndex, base: number, nextOffset: number): string | null {
  if (nextOffset === base) return index.count === 0 ? null : "entries for an empty segment";
  // The first batch of a segment always gets an entry: its append time beats "no entry yet".
  if (index.count === 0 || index.relativeOffsetAt(0) !== 0) return "no entry for the segment's first batch";
  if (base + index.lastRelativeOffset >= nextOffset) return `last entry names offset ${base + index.lastRelativeOffset}, past the segment's end ${nextOffset}`;
  return null;
}

interface DropDetails {
  reason: string;
  fromOffset: number;
  bytesInTruncatedSegment: number;
  highestInTruncatedSegment?: number | null;
}

/** Deletes whole segments after a truncation point and logs one line about everything lost. */
function dropSegments(options: LoadSegmentsOptions, bases: number[], details: DropDetails): void {
  const { dir, logger, topic, partition } = options;
  let droppedBytes = details.bytesInTruncatedSegment;
  let highest = details.highestInTruncatedSegment ?? null;
  const droppedSegments: { file: string; bytes: number }[] = [];
  for (const base of bases) {
    const fd = fs.openSync(segmentFilePath(dir, base, "log"), "r");
    const bytes = fs.fstatSync(fd).size;
    const claimed = highestClaimedOffset(fd, 0, bytes);
    fs.closeSync(fd);
    if (claimed !== null) highest = Math.max(highest ?? claimed, claimed);
    droppedBytes += bytes;
    droppedSegments.push({ file: segmentFileName(base, "log"), bytes });
    removeSegmentFiles(dir, base);
  }
  if (bases.length > 0) fsyncDirectory(dir);
  const range = `${details.fromOffset}..${highest !== null && highest >= details.fromOffset ? highest : "?"}`;
  logger.warn(
    { topic, partition, reason: details.reason, droppedFromOffset: details.fromOffset, droppedToOffset: highest, droppedBytes, droppedSegments },
    `recovery dropped offsets ${range} (${droppedBytes} bytes${droppedSegments.length ? `, ${droppedSegments.length} whole segment(s)` : ""}) of ${topic}/${partition}: ${details.reason}`,
  );
}
