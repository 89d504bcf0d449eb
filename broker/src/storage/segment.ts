/**
 * One segment of a partition's log: the `.log` file of whole batches plus its two indexes
 * (see offset-index.ts and time-index.ts for their layouts).
 *
 *   <baseOffset>.log: batches back to back, exactly as received and stamped (RecordBatch v2,
 *   common/src/batch/layout.ts), base offsets dense: each batch starts at the offset after
 *   the previous batch's last one, the first at the segment's base offset.
 *
 * Bytes reach the file before they become visible: `appendRun` writes, `commit` publishes up
 * to what was written. A failed group is undone with `rollbackTo(mark)`. File descriptors stay
 * open for the segment's life.
 */
import fs from "node:fs";
import { baseOffsetOf, batchSizeAt, lastOffsetDeltaOf } from "../../../common/src/batch/layout.js";
import { walkBatchHeaders } from "./batch-scanner.js";
import { OffsetIndex } from "./offset-index.js";
import { segmentFileName, segmentFilePath, removeSegmentFiles } from "./segment-files.js";
import { readFully, writeFully, type StorageIo } from "./storage-io.js";
import { TimeIndex } from "./time-index.js";

/** A stamped batch on its way to disk. */
export interface PendingBatch {
  batch: Buffer;
  baseOffset: number;
  lastOffset: number;
  appendTimeMs: number;
}

/** Where a segment stood before a group was written, to undo the group. */
export interface SegmentMark {
  writtenBytes: number;
  nextOffset: number;
  offsetEntries: number;
  timeEntries: number;
  bytesSinceIndexEntry: number;
}

export interface SegmentState {
  dir: string;
  baseOffset: number;
  logFd: number;
  offsetIndex: OffsetIndex;
  timeIndex: TimeIndex;
  sizeBytes: number;
  nextOffset: number;
  /** Some append times were rebuilt from client timestamps after a crash (see retention). */
  appendTimesEstimated?: boolean;
}

/** baseOffset int64 + batchLength int32: all a read needs to hop from batch to batch. */
const HOP_HEADER_BYTES = 12;

/** Read positions remembered per segment: enough for many consumers of one partition. */
const MAX_READ_ENDS = 64;

export class Segment {
  readonly dir: string;
  readonly baseOffset: number;
  readonly offsetIndex: OffsetIndex;
  readonly timeIndex: TimeIndex;
  private readonly logFd: number;
  /** Bytes in the file, including a group being written. */
  private writtenBytes: number;
  /** Bytes readers may see. */
  private committedBytes: number;
  private writtenNextOffset: number;
  private committedNextOffset: number;
  private bytesSinceIndexEntry: number;
  private writeGeneration = 0;
  private syncedGeneration = 0;
  private closed = false;
  private readonly hopHeader = Buffer.allocUnsafe(HOP_HEADER_BYTES);
  /**
   * Where recent reads and group commits stopped (next offset → file position). A consumer
   * reads on from where its last read ended, and a high watermark lands where some replica's
   * log ended, so this turns such a lookup into one header read instead of an index lookup
   * plus a walk over every small batch since the index entry.
   */
  private readonly readEnds = new Map<number, number>();

  readonly appendTimesEstimated: boolean;

  constructor(state: SegmentState) {
    this.appendTimesEstimated = state.appendTimesEstimated ?? false;
    this.dir = state.dir;
    this.baseOffset = state.baseOffset;
    this.logFd = state.logFd;
    this.offsetIndex = state.offsetIndex;
    this.timeIndex = state.timeIndex;
    this.writtenBytes = this.committedBytes = state.sizeBytes;
    this.writtenNextOffset = this.committedNextOffset = state.nextOffset;
    const lastIndexed = this.offsetIndex.count === 0 ? 0 : this.offsetIndex.positionAt(this.offsetIndex.count - 1);
    this.bytesSinceIndexEntry = state.sizeBytes - lastIndexed;
  }

  /** A new, empty segment; refuses to overwrite an existing log file. */
  static create(dir: string, baseOffset: number): Segment {
    const logFd = fs.openSync(segmentFilePath(dir, baseOffset, "log"), "wx+", 0o644);
    let offsetIndex: OffsetIndex | undefined;
    try {
      fs.rmSync(segmentFilePath(dir, baseOffset, "index"), { force: true });
      fs.rmSync(segmentFilePath(dir, baseOffset, "timeindex"), { force: true });
      offsetIndex = OffsetIndex.open(segmentFilePath(dir, baseOffset, "index")).index;
      const timeIndex = TimeIndex.open(segmentFilePath(dir, baseOffset, "timeindex")).index;
      return new Segment({ dir, baseOffset, logFd, offsetIndex, timeIndex, sizeBytes: 0, nextOffset: baseOffset });
    } catch (err) {
      // Leave nothing behind: a stray empty .log would make every later roll to this base
      // offset fail with EEXIST.
      offsetIndex?.close();
      fs.closeSync(logFd);
      removeSegmentFiles(dir, baseOffset);
      throw err;
    }
  }

  get name(): string {
    return segmentFileName(this.baseOffset, "log");
  }

  /** Committed bytes: what readers see and retention counts. */
  get sizeBytes(): number {
    return this.committedBytes;
  }

  /** Offset after the last committed batch. */
  get nextOffset(): number {
    return this.committedNextOffset;
  }

  /** Bytes written, committed or not: what the roll decision counts. */
  get bytesWritten(): number {
    return this.writtenBytes;
  }

  /**
   * The newest append time retention can trust. Rebuilt entries come from client-set
   * timestamps, which may be far in the past (a backfill); the file's modification time is
   * never earlier than the real last append, so it stops retention deleting fresh data.
   */
  get retentionTimeMs(): number {
    if (!this.appendTimesEstimated) return this.newestAppendTimeMs;
    return Math.max(this.newestAppendTimeMs, fs.fstatSync(this.logFd).mtimeMs);
  }

  get newestAppendTimeMs(): number {
    return this.timeIndex.lastTimeMs;
  }

  get isDirty(): boolean {
    return this.writeGeneration !== this.syncedGeneration;
  }

  /** True when everything written is committed (no group of this segment is in flight). */
  get isSettled(): boolean {
    return this.writtenBytes === this.committedBytes;
  }

  mark(): SegmentMark {
    return {
      writtenBytes: this.writtenBytes,
      nextOffset: this.writtenNextOffset,
      offsetEntries: this.offsetIndex.count,
      timeEntries: this.timeIndex.count,
      bytesSinceIndexEntry: this.bytesSinceIndexEntry,
    };
  }

  /**
   * Writes consecutive batches at the end of the file with one gather write, then their index
   * entries with one write per index. Throws on any failure; the caller rolls back to its mark.
   */
  appendRun(run: readonly PendingBatch[], indexIntervalBytes: number, io: StorageIo): void {
    const written = writeFully(io, this.logFd, run.map((pending) => pending.batch), this.writtenBytes);
    let position = this.writtenBytes;
    for (const pending of run) {
      const relativeOffset = pending.baseOffset - this.baseOffset;
      if (this.bytesSinceIndexEntry >= indexIntervalBytes) {
        this.offsetIndex.push(relativeOffset, position);
        this.bytesSinceIndexEntry = 0;
      }
      this.timeIndex.maybePush(pending.appendTimeMs, relativeOffset);
      this.bytesSinceIndexEntry += pending.batch.length;
      position += pending.batch.length;
    }
    this.writtenBytes += written;
    this.writtenNextOffset = run[run.length - 1]!.lastOffset + 1;
    this.writeGeneration++;
    this.offsetIndex.persist(io);
    this.timeIndex.persist(io);
  }

  /** Undoes everything written since `mark`, in the files and in memory. */
  rollbackTo(mark: SegmentMark, io: StorageIo): void {
    io.ftruncate(this.logFd, mark.writtenBytes);
    this.offsetIndex.truncateTo(mark.offsetEntries, io);
    this.timeIndex.truncateTo(mark.timeEntries, io);
    this.writtenBytes = mark.writtenBytes;
    this.writtenNextOffset = mark.nextOffset;
    this.bytesSinceIndexEntry = mark.bytesSinceIndexEntry;
    this.readEnds.clear();
  }

  /** Makes everything written visible to readers. */
  commit(): void {
    if (this.committedBytes === this.writtenBytes) return;
    this.committedBytes = this.writtenBytes;
    this.committedNextOffset = this.writtenNextOffset;
    // A replica's log end after this group is where high watermarks will land: finding that
    // position later (a bounded read) then costs one lookup, not a walk.
    this.rememberReadEnd(this.committedNextOffset, this.committedBytes);
  }

  /**
   * Position and size of the committed batch containing `offset`: the index gives the floor
   * entry, then 12-byte headers are walked until the next batch starts past `offset`.
   */
  locate(offset: number, walkFrom = 0): { position: number; size: number } {
    const known = this.readEnds.get(offset);
    if (known !== undefined && known < this.committedBytes) return { position: known, size: this.readHop(known).size };
    // `walkFrom` (a batch start at or below `offset`, e.g. where the previous high watermark
    // was found) saves walking from the index entry when it is closer.
    let position = Math.max(this.offsetIndex.floor(offset - this.baseOffset).position, walkFrom);
    let size = this.readHop(position).size;
    for (;;) {
      const next = position + size;
      if (next >= this.committedBytes) break;
      const hop = this.readHop(next);
      if (hop.baseOffset > offset) break;
      position = next;
      size = hop.size;
    }
    return { position, size };
  }

  /**
   * Whole batches from `position` with one read: up to `maxBytes`, but always the first batch
   * (`firstBatchBytes`) even when it alone is larger, and never past `endPosition` (a batch
   * boundary: where the high watermark lies, for consumers).
   */
  read(position: number, firstBatchBytes: number, maxBytes: number, endPosition = this.committedBytes): { records: Buffer; nextOffset: number } {
    const want = Math.min(endPosition - position, Math.max(maxBytes, firstBatchBytes));
    const buffer = Buffer.allocUnsafe(want);
    const got = readFully(this.logFd, buffer, 0, want, position);
    let end = 0;
    let lastBatchAt = 0;
    while (end + HOP_HEADER_BYTES <= got) {
      const size = batchSizeAt(buffer, end);
      if (end + size > got) break;
      lastBatchAt = end;
      end += size;
    }
    const nextOffset = baseOffsetOf(buffer, lastBatchAt) + lastOffsetDeltaOf(buffer, lastBatchAt) + 1;
    this.rememberReadEnd(nextOffset, position + end);
    return { records: buffer.subarray(0, end), nextOffset };
  }

  private rememberReadEnd(nextOffset: number, position: number): void {
    if (this.readEnds.size >= MAX_READ_ENDS) this.readEnds.delete(this.readEnds.keys().next().value as number);
    this.readEnds.set(nextOffset, position);
  }

  /**
   * Where the committed batch starting exactly at `offset` lies, or null when `offset` falls
   * inside a batch. `offset` must lie in [baseOffset, nextOffset].
   */
  batchStartPosition(offset: number): number | null {
    if (offset === this.baseOffset) return 0;
    if (offset === this.committedNextOffset) return this.committedBytes;
    const { position } = this.locate(offset);
    return this.readHop(position).baseOffset === offset ? position : null;
  }

  /**
   * Cuts the segment at `position`, the start of the batch at `offset` (see
   * batchStartPosition): the log file first, then both indexes, each fsynced. A crash in
   * between leaves index entries past the log's end, which the next open detects and rebuilds.
   */
  truncateTo(offset: number, position: number, io: StorageIo): void {
    const relativeOffset = offset - this.baseOffset;
    io.ftruncate(this.logFd, position);
    fs.fdatasyncSync(this.logFd);
    let offsetEntries = this.offsetIndex.count;
    while (offsetEntries > 0 && this.offsetIndex.relativeOffsetAt(offsetEntries - 1) >= relativeOffset) offsetEntries--;
    this.offsetIndex.truncateTo(offsetEntries, io);
    let timeEntries = this.timeIndex.count;
    while (timeEntries > 0 && this.timeIndex.relativeOffsetAt(timeEntries - 1) >= relativeOffset) timeEntries--;
    this.timeIndex.truncateTo(timeEntries, io);
    this.offsetIndex.syncNow();
    this.timeIndex.syncNow();
    this.writtenBytes = this.committedBytes = position;
    this.writtenNextOffset = this.committedNextOffset = offset;
    this.bytesSinceIndexEntry = position - (offsetEntries === 0 ? 0 : this.offsetIndex.positionAt(offsetEntries - 1));
    this.syncedGeneration = this.writeGeneration;
    this.readEnds.clear();
  }

  /** Visits the header of every committed batch, oldest first (see walkBatchHeaders). */
  forEachBatchHeader(visit: (header: Buffer, at: number, position: number) => void): void {
    walkBatchHeaders(this.logFd, 0, this.committedBytes, visit);
  }

  /**
   * When the batch at `offset` was appended, from the time index: an entry is written whenever
   * the append time grows, so the last entry at or below a batch holds its time. -1 when the
   * times were estimated after a crash (they are then client timestamps).
   */
  appendTimeOf(offset: number): number {
    if (this.appendTimesEstimated) return -1;
    const i = this.timeIndex.lastAtOrBelowOffset(offset - this.baseOffset);
    return i < 0 ? -1 : this.timeIndex.timeAt(i);
  }

  /** First committed offset appended at or after `timestampMs`, per the time index. */
  offsetAtOrAfterTime(timestampMs: number): { offset: number; timestampMs: number } | null {
    const i = this.timeIndex.firstAtOrAfter(timestampMs);
    if (i < 0) return null;
    const offset = this.baseOffset + this.timeIndex.relativeOffsetAt(i);
    return offset < this.committedNextOffset ? { offset, timestampMs: this.timeIndex.timeAt(i) } : null;
  }

  /** fdatasync of the log file only: what an acknowledgement under `sync` needs. */
  async syncLog(io: StorageIo): Promise<void> {
    if (!this.closed) await io.fdatasync(this.logFd);
  }

  /** fdatasync of the log and both indexes: what advancing the recovery point needs. */
  async syncAll(io: StorageIo): Promise<void> {
    const generation = this.writeGeneration;
    try {
      await Promise.all([this.syncLog(io), this.offsetIndex.sync(io), this.timeIndex.sync(io)]);
    } catch (err) {
      if (this.closed) return; // deleted by retention meanwhile: nothing left to make durable
      throw err;
    }
    this.syncedGeneration = Math.max(this.syncedGeneration, generation);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.logFd);
    this.offsetIndex.close();
    this.timeIndex.close();
  }

  /** Closes and removes the segment's three files. */
  deleteFiles(): void {
    this.close();
    removeSegmentFiles(this.dir, this.baseOffset);
  }

  private readHop(position: number): { baseOffset: number; size: number } {
    readFully(this.logFd, this.hopHeader, 0, HOP_HEADER_BYTES, position);
    return { baseOffset: baseOffsetOf(this.hopHeader), size: batchSizeAt(this.hopHeader) };
  }
}
