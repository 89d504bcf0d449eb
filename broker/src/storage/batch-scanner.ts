/**
 * Walks the batches of a segment file from a position, reading in large chunks, and stops at
 * the first one that is not a whole, valid batch with the next dense offset. Recovery runs it
 * with `verifyCrc` (every byte checked); index rebuilds and the clean-start tail walk run it
 * on headers only. Records are never decoded.
 */
import { crc32c } from "@node-rs/crc32";
import {
  BATCH_HEADER_BYTES,
  CRC_AT,
  CRC_COVERED_FROM,
  MAGIC_AT,
  MAGIC_V2,
  baseOffsetOf,
  batchProblem,
  batchSizeAt,
  lastOffsetDeltaOf,
  maxTimestampOf,
  recordCountOf,
} from "../../../common/src/batch/layout.js";
import { StorageError } from "../../../common/src/errors.js";
import { readFully } from "./storage-io.js";

/** Large enough that a scan costs few syscalls, small enough to allocate per scan. */
const SCAN_CHUNK_BYTES = 1024 * 1024;
/** Header walks skip the records: a smaller chunk wastes less on large batches. */
const HEADER_WALK_CHUNK_BYTES = 64 * 1024;
const MAX_RELATIVE_OFFSET = 0x7fffffff;

export interface ScannedBatch {
  position: number;
  size: number;
  baseOffset: number;
  lastOffset: number;
  maxTimestampMs: number;
}

export interface ScanOptions {
  fd: number;
  fileSize: number;
  fromPosition: number;
  /** The base offset the first batch must have; each next one continues densely. */
  expectedBaseOffset: number;
  /** Relative offsets must fit the indexes' int32. */
  segmentBaseOffset: number;
  /** Check each batch's CRC32C too, not only its header. */
  verifyCrc: boolean;
  onBatch?: (batch: ScannedBatch) => void;
}

export interface ScanResult {
  /** Position just past the last good batch. */
  endPosition: number;
  /** Offset after the last good batch (the expected base offset when there were none). */
  nextOffset: number;
  /** Why scanning stopped before the end of the file, or null when it reached it cleanly. */
  problem: string | null;
}

export function scanBatches(options: ScanOptions): ScanResult {
  const { fd, fileSize, segmentBaseOffset, verifyCrc, onBatch } = options;
  const reader = new ChunkReader(fd, fileSize, options.fromPosition);
  let position = options.fromPosition;
  let expected = options.expectedBaseOffset;
  const stop = (problem: string): ScanResult => ({ endPosition: position, nextOffset: expected, problem: `at position ${position}: ${problem}` });

  while (position < fileSize) {
    const available = fileSize - position;
    if (available < BATCH_HEADER_BYTES) return stop(`only ${available} bytes left, less than a batch header`);
    let at = reader.ensure(position, BATCH_HEADER_BYTES);
    const size = batchSizeAt(reader.buffer, at);
    if (size < BATCH_HEADER_BYTES) return stop(`length field ${size} is smaller than a batch header`);
    if (size > available) return stop(`truncated batch: length field says ${size} bytes, ${available} present`);

    let problem: string | null;
    if (verifyCrc && size <= reader.chunkBytes) {
      at = reader.ensure(position, size);
      problem = batchProblem(reader.buffer, at, size);
    } else {
      problem = headerProblem(reader.buffer, at);
      if (problem === null && verifyCrc) problem = reader.crcProblem(position, size, reader.buffer.readUInt32BE(at + CRC_AT));
      if (problem === null) at = reader.ensure(position, BATCH_HEADER_BYTES);
    }
    if (problem !== null) return stop(problem);

    const baseOffset = baseOffsetOf(reader.buffer, at);
    if (baseOffset !== expected) return stop(`batch has base offset ${baseOffset}, expected ${expected} (offsets must be dense)`);
    const lastOffset = baseOffset + lastOffsetDeltaOf(reader.buffer, at);
    if (lastOffset - segmentBaseOffset > MAX_RELATIVE_OFFSET) return stop(`offset ${lastOffset} is too far from the segment base ${segmentBaseOffset}`);

    onBatch?.({ position, size, baseOffset, lastOffset, maxTimestampMs: maxTimestampOf(reader.buffer, at) });
    position += size;
    expected = lastOffset + 1;
  }
  return { endPosition: position, nextOffset: expected, problem: null };
}

/**
 * Best effort, for the warning recovery logs: the highest last offset that plausible-looking
 * headers claim in [from, fileSize), or null when nothing there looks like a batch.
 */
export function highestClaimedOffset(fd: number, from: number, fileSize: number): number | null {
  const reader = new ChunkReader(fd, fileSize, from);
  let highest: number | null = null;
  for (let position = from; fileSize - position >= BATCH_HEADER_BYTES; ) {
    const at = reader.ensure(position, BATCH_HEADER_BYTES);
    const size = batchSizeAt(reader.buffer, at);
    if (size < BATCH_HEADER_BYTES || headerProblem(reader.buffer, at) !== null) break;
    const last = baseOffsetOf(reader.buffer, at) + lastOffsetDeltaOf(reader.buffer, at);
    if (!Number.isSafeInteger(last) || last < 0) break;
    highest = highest === null ? last : Math.max(highest, last);
    position += size;
  }
  return highest;
}

/**
 * Calls `visit` with the 61-byte header of every batch in [from, end) of a file already known
 * to hold whole batches (a loaded segment), for rebuilding state kept beside the log (leader
 * epochs, producer state). `header` is a reused buffer: read what you need before returning.
 */
export function walkBatchHeaders(fd: number, from: number, end: number, visit: (header: Buffer, at: number, position: number) => void): void {
  const reader = new ChunkReader(fd, end, from, HEADER_WALK_CHUNK_BYTES);
  for (let position = from; position < end; ) {
    if (end - position < BATCH_HEADER_BYTES) throw walkError(`only ${end - position} bytes at position ${position}, less than a batch header`);
    const at = reader.ensure(position, BATCH_HEADER_BYTES);
    const size = batchSizeAt(reader.buffer, at);
    if (size < BATCH_HEADER_BYTES) throw walkError(`length field ${size} at position ${position} is smaller than a batch header`);
    visit(reader.buffer, at, position);
    position += size;
  }
}

/** A loaded segment that no longer holds whole batches: its file changed under the broker. */
function walkError(problem: string): StorageError {
  return new StorageError(`segment changed on disk after it was loaded: ${problem}; restart the broker to recover it`, { retriable: false });
}

/** Header checks that need no more than the 61 header bytes. */
function headerProblem(buf: Buffer, at: number): string | null {
  const magic = buf.readInt8(at + MAGIC_AT);
  if (magic !== MAGIC_V2) return `magic byte is ${magic}, expected ${MAGIC_V2}`;
  const count = recordCountOf(buf, at);
  if (count <= 0) return `record count ${count} must be positive`;
  if (lastOffsetDeltaOf(buf, at) !== count - 1) return `lastOffsetDelta ${lastOffsetDeltaOf(buf, at)} does not match record count ${count}`;
  return null;
}

/** Sequential reads through one reusable chunk buffer. */
class ChunkReader {
  readonly buffer: Buffer;
  readonly chunkBytes: number;
  private start = 0;
  private length = 0;

  constructor(
    private readonly fd: number,
    private readonly fileSize: number,
    from: number,
    chunkBytes = SCAN_CHUNK_BYTES,
  ) {
    // No bigger than what is left to read: recovery scans the short tail of many partitions.
    this.chunkBytes = Math.max(BATCH_HEADER_BYTES, Math.min(chunkBytes, fileSize - from));
    this.buffer = Buffer.allocUnsafe(this.chunkBytes);
  }

  /** Makes [position, position + length) resident (length ≤ chunk) and returns where it is. */
  ensure(position: number, length: number): number {
    if (position < this.start || position + length > this.start + this.length) {
      const want = Math.min(this.chunkBytes, this.fileSize - position);
      this.length = readFully(this.fd, this.buffer, 0, want, position);
      this.start = position;
      if (this.length < length) throw new StorageError(`file shrank while scanning: wanted ${length} bytes at ${position}`);
    }
    return position - this.start;
  }

  /** CRC32C of a batch too big for one chunk, computed in chunk-sized pieces. */
  crcProblem(position: number, size: number, stored: number): string | null {
    let crc = 0;
    for (let from = position + CRC_COVERED_FROM; from < position + size; ) {
      const piece = Math.min(this.chunkBytes, position + size - from);
      const at = this.ensure(from, piece);
      crc = crc32c(this.buffer.subarray(at, at + piece), crc);
      from += piece;
    }
    const actual = crc >>> 0;
    return actual === stored ? null : `CRC32C mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`;
  }
}
