/**
 * The commit log of one partition: an append-only sequence of record batches with dense
 * offsets, split into segments (segment.ts), with one writer and group commit.
 *
 * Appends: `append` assigns offsets synchronously in call order and stamps the batch; batches
 * queued in the same tick are written together (group-writer.ts) and, under `sync`, covered by
 * one fdatasync. While a group is being synced, new appends queue up and form the next group.
 * A promise resolves only once its bytes are in the file (and synced under `sync`); only then
 * do readers see them and "append" is emitted (with the new logEndOffset), so long-polls wake.
 *
 * Failures: a failed group is undone on disk, the next offset rolls back to the group's start,
 * and the group plus everything queued after it is rejected (StorageFullError on ENOSPC,
 * StorageError otherwise). The log keeps accepting appends afterwards.
 */
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { BATCH_HEADER_BYTES, batchSizeAt, lastOffsetDeltaOf, stampBatch } from "../../../common/src/batch/layout.js";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import {
  ClosedError,
  CorruptBatchError,
  InvalidArgumentError,
  OffsetOutOfRangeError,
  StorageError,
  StorageFullError,
  type SluiceError,
} from "../../../common/src/errors.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import { validatePartitionConfig, type PartitionConfig } from "./config.js";
import { RollbackFailedError, writeGroup } from "./group-writer.js";
import type { Segment, PendingBatch } from "./segment.js";
import { DELETING_DIR_SUFFIX } from "./logs-dir.js";
import { loadSegments } from "./segment-loader.js";
import { fsyncDirectory, nodeStorageIo, type StorageIo } from "./storage-io.js";

// The settings live in config.ts; re-exported so callers can take the whole log API from here.
export { DEFAULT_PARTITION_CONFIG, type FlushPolicy, type PartitionConfig } from "./config.js";

/** Kafka's "no partition leader epoch": stamped when the caller names none. */
export const NO_LEADER_EPOCH = -1;

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  logAppendTimeMs: number;
  logStartOffset: number;
}

export interface ReadResult {
  /** Whole batches, byte for byte as stored; empty at the end of the log. */
  records: Buffer;
  /** The offset to read next: after the last batch returned. */
  nextOffset: number;
  logStartOffset: number;
  logEndOffset: number;
}

export interface PartitionLogOptions {
  /** This partition's own directory (LogManager uses `<dataDir>/logs/<topic>-<partition>`). */
  dir: string;
  topic: string;
  partition: number;
  config: PartitionConfig;
  clock?: Clock;
  logger?: Logger;
  /** The previous shutdown was unclean: validate everything past `recoveryPoint`. */
  recover: boolean;
  /** Offset below which everything was flushed (from the recovery-point checkpoint). @defaultValue 0 */
  recoveryPoint?: number;
  /** Seam for the write path's file operations (tests inject failures and count fsyncs). */
  io?: StorageIo;
}

interface QueuedAppend extends PendingBatch {
  resolve: (result: AppendResult) => void;
  reject: (error: Error) => void;
}

const EMPTY = Buffer.alloc(0);

export class PartitionLog extends EventEmitter {
  readonly topic: string;
  readonly partition: number;
  readonly dir: string;
  private currentConfig: PartitionConfig;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly io: StorageIo;
  private readonly segments: Segment[];
  private nextOffsetToAssign: number;
  private committedEndOffset: number;
  private recoveryPoint: number;
  private lastAppendTimeMs: number;
  private queue: QueuedAppend[] = [];
  private writing = false;
  private writeScheduled = false;
  private idleWaiters: (() => void)[] = [];
  private directoryDirty = false;
  /** Set when a failed append could not be undone: the files need a restart's recovery. */
  private failure: StorageError | null = null;
  private closing: Promise<void> | null = null;
  private closed = false;

  private constructor(options: PartitionLogOptions, config: PartitionConfig, segments: Segment[]) {
    super();
    this.setMaxListeners(0); // every waiting long-poll listens for "append"
    this.topic = options.topic;
    this.partition = options.partition;
    this.dir = options.dir;
    this.currentConfig = config;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.io = options.io ?? nodeStorageIo;
    this.segments = segments;
    this.committedEndOffset = this.nextOffsetToAssign = segments[segments.length - 1]!.nextOffset;
    // Everything loaded was either cleanly closed or validated and fsynced by recovery.
    this.recoveryPoint = this.committedEndOffset;
    this.lastAppendTimeMs = segments.reduce((newest, segment) => Math.max(newest, segment.newestAppendTimeMs), Number.NEGATIVE_INFINITY);
  }

  static async open(options: PartitionLogOptions): Promise<PartitionLog> {
    const config = validatePartitionConfig(options.config);
    fs.mkdirSync(options.dir, { recursive: true });
    const segments = loadSegments({
      dir: options.dir,
      topic: options.topic,
      partition: options.partition,
      indexIntervalBytes: config.indexIntervalBytes,
      logger: options.logger ?? silentLogger,
      recover: options.recover,
      recoveryPoint: options.recoveryPoint ?? 0,
      io: options.io ?? nodeStorageIo,
    });
    fsyncDirectory(options.dir);
    return new PartitionLog(options, config, segments);
  }

  /** The settings in force (validated, frozen). */
  get config(): PartitionConfig {
    return this.currentConfig;
  }

  get logStartOffset(): number {
    return this.segments[0]!.baseOffset;
  }

  /** The next offset to be written; everything below it (from logStartOffset) is readable. */
  get logEndOffset(): number {
    return this.committedEndOffset;
  }

  /** Everything below this offset is on disk with its indexes: the recovery point. */
  get flushedOffset(): number {
    return this.recoveryPoint;
  }

  get sizeBytes(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.sizeBytes;
    return total;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  /**
   * Appends one batch (validated by the caller), stamping its base offset and leader epoch in
   * place. Resolves once the bytes are in the file (and fsynced under `sync`).
   */
  append(batch: Buffer, leaderEpoch: number = NO_LEADER_EPOCH): Promise<AppendResult> {
    if (this.closing) return Promise.reject(new ClosedError(`partition log ${this.topic}/${this.partition}`));
    if (this.failure) return Promise.reject(this.failure);
    // The one check kept here: a length field that lies would corrupt every later read.
    if (batch.length < BATCH_HEADER_BYTES || batchSizeAt(batch) !== batch.length) {
      return Promise.reject(new CorruptBatchError(`batch of ${batch.length} bytes has an inconsistent length field; validate batches before appending`));
    }
    const baseOffset = this.nextOffsetToAssign;
    const lastOffset = baseOffset + lastOffsetDeltaOf(batch);
    stampBatch(batch, baseOffset, leaderEpoch);
    this.nextOffsetToAssign = lastOffset + 1;
    // Monotonic even if the clock steps back, so the time index stays sorted.
    const appendTimeMs = Math.max(this.clock.now(), this.lastAppendTimeMs);
    this.lastAppendTimeMs = appendTimeMs;
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ batch, baseOffset, lastOffset, appendTimeMs, resolve, reject });
      this.scheduleWrite();
    });
  }

  /**
   * Whole batches from the one containing `offset`, up to `maxBytes` (but at least one batch),
   * from a single segment; the next read continues where this one stopped.
   */
  read(offset: number, maxBytes: number): ReadResult {
    if (this.closed) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
    const logStartOffset = this.logStartOffset;
    const logEndOffset = this.committedEndOffset;
    if (!Number.isSafeInteger(offset) || offset < logStartOffset || offset > logEndOffset) {
      throw new OffsetOutOfRangeError(this.topic, this.partition, offset, logStartOffset, logEndOffset);
    }
    if (offset === logEndOffset) return { records: EMPTY, nextOffset: offset, logStartOffset, logEndOffset };
    const segment = this.segments[this.segmentIndexFor(offset)]!;
    const { position, size } = segment.locate(offset);
    const { records, nextOffset } = segment.read(position, size, maxBytes);
    return { records, nextOffset, logStartOffset, logEndOffset };
  }

  /** The first offset appended at or after `timestampMs`, with its append time; null if none. */
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

  /** fsyncs data and indexes written so far and advances the recovery point to match. */
  async flush(): Promise<void> {
    if (this.closed) return;
    const target = this.committedEndOffset;
    const rolled = this.directoryDirty;
    this.directoryDirty = false;
    try {
      await Promise.all(this.segments.filter((segment) => segment.isDirty).map((segment) => segment.syncAll(this.io)));
      if (rolled) fsyncDirectory(this.dir);
    } catch (err) {
      this.directoryDirty ||= rolled;
      // Linux reports a writeback error once and then marks the pages clean, so a later fsync
      // would "succeed" over lost data. Fence the partition instead: no more appends, no
      // recovery-point advance; a restart validates everything past the last good flush.
      this.failure ??= new StorageError(
        `partition ${this.topic}/${this.partition} failed to fsync (${(err as Error).message}); it refuses writes until the broker restarts and recovers it`,
        { cause: err, retriable: false },
      );
      throw new StorageError(`could not flush ${this.topic}/${this.partition}: ${(err as Error).message}`, { cause: err });
    }
    if (this.failure) return;
    this.recoveryPoint = Math.max(this.recoveryPoint, target);
  }

  /**
   * Deletes whole segments from the oldest: those whose newest append is older than
   * retentionMs, then those the partition can lose and stay at or above retentionBytes.
   * The active segment and segments with a group in flight are never deleted.
   */
  applyRetention(nowMs: number): number {
    if (this.closed) return 0;
    const { retentionMs, retentionBytes } = this.currentConfig;
    let size = this.sizeBytes;
    let deleted = 0;
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!;
      if (!oldest.isSettled || !this.segments[1]!.isSettled) break;
      const expired = retentionMs > 0 && nowMs - oldest.retentionTimeMs > retentionMs;
      const oversized = retentionBytes > 0 && size - oldest.sizeBytes >= retentionBytes;
      if (!expired && !oversized) break;
      this.segments.shift();
      size -= oldest.sizeBytes;
      oldest.deleteFiles();
      deleted++;
    }
    if (deleted > 0) {
      this.directoryDirty = true;
      this.logger.info({ topic: this.topic, partition: this.partition, segments: deleted, logStartOffset: this.logStartOffset, sizeBytes: size }, "retention deleted segments");
    }
    return deleted;
  }

  /**
   * Deletes the whole segments that lie entirely below `offset`, oldest first, and returns
   * the bytes freed. For a compacted internal topic (`%groups`): it appends a snapshot of its
   * live state starting at `offset`, then drops what the snapshot made redundant. The log
   * then starts at the first remaining segment, which may hold records below `offset`.
   *
   * The log is flushed first: the data that replaces the deleted segments must be on disk
   * before they go, or a machine crash under `interval`/`os` flush could lose both. Deletion
   * itself follows retention's rules and code path: never the active segment, never a
   * segment with a group in flight (deletion stops there), files removed by the segment, the
   * directory fsynced by the next flush (a segment that reappears after a crash only adds
   * history below the snapshot, which replay tolerates).
   */
  async advanceLogStart(offset: number): Promise<number> {
    if (this.closing) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.committedEndOffset) {
      throw new InvalidArgumentError(
        `cannot advance the start of ${this.topic}/${this.partition} to ${offset}: it must lie within the written log (0..${this.committedEndOffset})`,
      );
    }
    if (this.segments.length < 2 || this.segments[1]!.baseOffset > offset) return 0;
    // A fenced log cannot promise that the snapshot reached the disk.
    if (this.failure) throw this.failure;
    await this.flush();
    if (this.failure) throw this.failure;
    if (this.closed) return 0;
    let size = this.sizeBytes;
    let freed = 0;
    let deleted = 0;
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!;
      const next = this.segments[1]!;
      if (!oldest.isSettled || !next.isSettled || next.baseOffset > offset) break;
      this.segments.shift();
      size -= oldest.sizeBytes;
      freed += oldest.sizeBytes;
      oldest.deleteFiles();
      deleted++;
    }
    if (deleted > 0) {
      this.directoryDirty = true;
      this.logger.info(
        { topic: this.topic, partition: this.partition, segments: deleted, logStartOffset: this.logStartOffset, sizeBytes: size },
        "log start advanced: deleted segments below a snapshot",
      );
    }
    return freed;
  }

  updateConfig(config: PartitionConfig): void {
    this.currentConfig = validatePartitionConfig(config);
  }

  /** Refuses new appends, writes what is queued, flushes, and closes the files. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.whenIdle();
      try {
        await this.flush();
      } finally {
        this.closed = true;
        for (const segment of this.segments) segment.close();
      }
    })();
    return this.closing;
  }

  /**
   * Closes the log and removes its directory, renaming it first so that a crash mid-way
   * leaves a `~deleting` directory (removed at the next start), never half a partition.
   */
  async delete(): Promise<void> {
    await this.close().catch((err: unknown) => this.logger.warn({ err, topic: this.topic, partition: this.partition }, "flush before delete failed"));
    const doomed = `${this.dir}${DELETING_DIR_SUFFIX}`;
    if (!fs.existsSync(this.dir)) return;
    fs.renameSync(this.dir, doomed);
    fsyncDirectory(path.dirname(this.dir));
    fs.rmSync(doomed, { recursive: true, force: true });
  }

  private segmentIndexFor(offset: number): number {
    let low = 0;
    let high = this.segments.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >>> 1;
      if (this.segments[mid]!.baseOffset <= offset) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  private scheduleWrite(): void {
    if (this.writing || this.writeScheduled) return;
    this.writeScheduled = true;
    // setImmediate rather than a microtask: appends arriving in the same I/O phase join the group.
    setImmediate(() => {
      this.writeScheduled = false;
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue;
        this.queue = [];
        await this.writeOneGroup(group);
      }
    } finally {
      this.writing = false;
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private async writeOneGroup(group: QueuedAppend[]): Promise<void> {
    let touched: Segment[];
    try {
      const outcome = await writeGroup({ dir: this.dir, segments: this.segments, config: this.currentConfig, io: this.io }, group);
      touched = outcome.touched;
      this.directoryDirty ||= outcome.rolled;
    } catch (err) {
      this.failGroup(group, err);
      return;
    }
    for (const segment of touched) segment.commit();
    this.committedEndOffset = group[group.length - 1]!.lastOffset + 1;
    const logStartOffset = this.logStartOffset;
    for (const pending of group) {
      pending.resolve({ baseOffset: pending.baseOffset, lastOffset: pending.lastOffset, logAppendTimeMs: pending.appendTimeMs, logStartOffset });
    }
    try {
      this.emit("append", this.committedEndOffset);
    } catch (err) {
      // A listener's bug must not stall the writer.
      this.logger.error({ err, topic: this.topic, partition: this.partition }, "an append listener threw");
    }
  }

  private failGroup(group: QueuedAppend[], err: unknown): void {
    const fromOffset = group[0]!.baseOffset;
    const queuedAfter = this.queue;
    this.queue = [];
    this.nextOffsetToAssign = fromOffset;
    let error: SluiceError;
    if (err instanceof RollbackFailedError) {
      this.failure = new StorageError(
        `${this.topic}/${this.partition}: ${err.message}; restart the broker so log recovery repairs the partition`,
        { cause: err, retriable: false },
      );
      error = this.failure;
    } else {
      error = this.storageErrorFor(err);
    }
    this.logger.error(
      { err, topic: this.topic, partition: this.partition, fromOffset, rejectedBatches: group.length + queuedAfter.length },
      "append failed; the group was rolled back",
    );
    for (const pending of group) pending.reject(error);
    for (const pending of queuedAfter) pending.reject(error);
  }

  private storageErrorFor(err: unknown): SluiceError {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code === "ENOSPC" || code === "EDQUOT") {
      return new StorageFullError(
        `the disk is full: could not append to ${this.topic}/${this.partition}; free space or lower retention, then retry`,
        { cause: err },
      );
    }
    return new StorageError(`could not append to ${this.topic}/${this.partition}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }

  private whenIdle(): Promise<void> {
    if (!this.writing && !this.writeScheduled && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
