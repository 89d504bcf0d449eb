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
 *
 * Replication: a slave appends its master's batches as they are (`appendReplicated`), and cuts
 * a divergent tail (`truncateTo`) or starts over (`resetTo`). Consumers read up to the high
 * watermark, the end of what every replica that counts holds; replication reads up to the log
 * end. Two events: "logEnd" (new logEndOffset) after every written group, "append" (new high
 * watermark) when consumer-readable data grows. Unless `setReplicated(true)`, the high
 * watermark is the log end and both fire together, as before replication existed.
 *
 * Beside the segments the log keeps its leader-epoch history (leader-epochs.ts, a small file)
 * and its idempotent-producer table (producer-state.ts, memory only), both rebuilt from batch
 * headers when needed and both updated when offsets are assigned.
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
  SluiceError,
} from "../../../common/src/errors.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import { validatePartitionConfig, type PartitionConfig } from "./config.js";
import { RollbackFailedError, writeGroup } from "./group-writer.js";
import type { Segment, PendingBatch } from "./segment.js";
import type { LeaderEpochCache } from "./leader-epochs.js";
import { loadHistory, rebuildFromHeaders } from "./log-history.js";
import { replaceSegments, segmentIndexFor, truncateSegments } from "./log-truncation.js";
import { DELETING_DIR_SUFFIX } from "./logs-dir.js";
import type { ProducerStateTable } from "./producer-state.js";
import { parseReplicatedBatches } from "./replicated-batches.js";
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
  /**
   * Called after `truncateTo`/`resetTo` lowered the recovery point, before they resolve: the
   * LogManager rewrites its checkpoint, so that a crash soon after does not trust a stale one.
   */
  afterRewrite?: () => Promise<void>;
}

interface QueuedAppend extends PendingBatch {
  resolve: (result: AppendResult) => void;
  reject: (error: Error) => void;
}

const EMPTY = Buffer.alloc(0);
const ignoreResult = (): void => {};

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
  private readonly epochs: LeaderEpochCache;
  private readonly producers: ProducerStateTable;
  private readonly afterRewrite: (() => Promise<void>) | undefined;
  private replicated = false;
  /** The high watermark while replicated (otherwise the log end is). */
  private replicatedHighWatermark = 0;
  /** Bumped by truncateTo/resetTo: a flush that straddles one must not raise the recovery point. */
  private rewrites = 0;
  /**
   * Where the last bounded read found its limit: the start of the batch holding it. The next
   * limit (a higher watermark) is found by walking on from here, not from an index entry.
   */
  private limitSegment: Segment | null = null;
  private limitOffset = -1;
  private limitPosition = 0;

  private constructor(options: PartitionLogOptions, config: PartitionConfig, segments: Segment[], epochs: LeaderEpochCache, producers: ProducerStateTable) {
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
    this.epochs = epochs;
    this.producers = producers;
    this.afterRewrite = options.afterRewrite;
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
    try {
      fsyncDirectory(options.dir);
      const partitionName = `${options.topic}/${options.partition}`;
      const { epochs, producers } = loadHistory({ ...options, logger: options.logger ?? silentLogger }, segments, partitionName);
      return new PartitionLog(options, config, segments, epochs, producers);
    } catch (err) {
      for (const segment of segments) segment.close();
      throw err;
    }
  }

  /** The settings in force (validated, frozen). */
  get config(): PartitionConfig {
    return this.currentConfig;
  }

  get logStartOffset(): number {
    return this.segments[0]!.baseOffset;
  }

  /** The next offset to be written: everything below it (from logStartOffset) is in the file. */
  get logEndOffset(): number {
    return this.committedEndOffset;
  }

  /**
   * The end of what consumers may read: the log end, or, once replicated, what the master
   * published with `setHighWatermark`. Always ≤ logEndOffset.
   */
  get highWatermark(): number {
    return this.replicated ? this.replicatedHighWatermark : this.committedEndOffset;
  }

  get isReplicated(): boolean {
    return this.replicated;
  }

  /** The leader-epoch history (read it; the log keeps it up to date). */
  get leaderEpochs(): LeaderEpochCache {
    return this.epochs;
  }

  /**
   * Off (the default): the high watermark is the log end. On: it moves only through
   * `setHighWatermark`, starting where it is now (the current log end). Turning it off
   * publishes everything written.
   */
  setReplicated(on: boolean): void {
    if (on === this.replicated) return;
    if (on) {
      this.replicatedHighWatermark = this.committedEndOffset;
      this.replicated = true;
      return;
    }
    const before = this.replicatedHighWatermark;
    this.replicated = false;
    if (this.committedEndOffset > before) this.emitSafely("append", this.committedEndOffset);
  }

  /**
   * Raises the high watermark (replicated mode only; otherwise it follows the log end) to
   * `offset`, clamped to the log end, and emits "append" when it moved. Never lowers it:
   * only truncation does. `offset` should be a batch boundary (a replica's log end is one).
   */
  setHighWatermark(offset: number): void {
    if (!Number.isSafeInteger(offset)) throw new InvalidArgumentError(`high watermark must be an integer offset, got ${offset}`);
    if (!this.replicated) return;
    const clamped = Math.min(offset, this.committedEndOffset);
    if (clamped <= this.replicatedHighWatermark) return;
    this.replicatedHighWatermark = clamped;
    this.emitSafely("append", clamped);
  }

  /**
   * Records that this broker now writes under `epoch` (it became master): the epoch starts at
   * the current log end. Older or equal epochs are ignored.
   */
  assignEpoch(epoch: number): void {
    if (this.closing) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
    const problem = this.assignEpochAt(epoch, this.nextOffsetToAssign);
    if (problem) throw problem;
  }

  /**
   * Whether an idempotent producer's batch may be appended, checked against the batches already
   * appended (including those still being written): null = append it; an AppendResult = it
   * repeats a batch already in the log, answer with these offsets and do not append it.
   * Throws ProducerFencedError or OutOfOrderSequenceError. Non-idempotent batches: null.
   */
  checkProducer(batch: Buffer): AppendResult | null {
    const duplicate = this.producers.check(batch);
    if (duplicate === null) return null;
    return { baseOffset: duplicate.baseOffset, lastOffset: duplicate.lastOffset, logAppendTimeMs: duplicate.appendTimeMs, logStartOffset: this.logStartOffset };
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
    // The history reaches the disk before the data it describes (see leader-epochs.ts).
    if (this.epochs.isNewer(leaderEpoch)) {
      const problem = this.assignEpochAt(leaderEpoch, baseOffset);
      if (problem) return Promise.reject(problem);
    }
    const lastOffset = baseOffset + lastOffsetDeltaOf(batch);
    stampBatch(batch, baseOffset, leaderEpoch);
    this.nextOffsetToAssign = lastOffset + 1;
    // Monotonic even if the clock steps back, so the time index stays sorted.
    const appendTimeMs = Math.max(this.clock.now(), this.lastAppendTimeMs);
    this.lastAppendTimeMs = appendTimeMs;
    this.producers.record(batch, 0, baseOffset, lastOffset, appendTimeMs, true);
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ batch, baseOffset, lastOffset, appendTimeMs, resolve, reject });
      this.scheduleWrite();
    });
  }

  /**
   * Appends whole batches a master already stamped (base offsets continuing this log exactly,
   * leader epochs set), without restamping: replicas stay byte-identical. Each batch's length
   * and CRC32C are checked; the first must start at the log end (InvalidArgumentError naming
   * both offsets otherwise). Same writer, group commit and flush policy as `append`; resolves
   * with the whole span (baseOffset of the first batch, lastOffset of the last).
   */
  appendReplicated(records: Buffer): Promise<AppendResult> {
    if (this.closing) return Promise.reject(new ClosedError(`partition log ${this.topic}/${this.partition}`));
    if (this.failure) return Promise.reject(this.failure);
    let batches;
    try {
      batches = parseReplicatedBatches(records, this.nextOffsetToAssign, `${this.topic}/${this.partition}`);
    } catch (err) {
      return Promise.reject(err);
    }
    const firstOffset = batches[0]!.baseOffset;
    for (const batch of batches) {
      if (!this.epochs.isNewer(batch.leaderEpoch)) continue;
      const problem = this.assignEpochAt(batch.leaderEpoch, batch.baseOffset);
      if (problem) {
        this.forgetEpochsFrom(firstOffset);
        return Promise.reject(problem);
      }
    }
    const appendTimeMs = Math.max(this.clock.now(), this.lastAppendTimeMs);
    this.lastAppendTimeMs = appendTimeMs;
    const last = batches.length - 1;
    this.nextOffsetToAssign = batches[last]!.lastOffset + 1;
    return new Promise<AppendResult>((resolve, reject) => {
      // The span is queued in one go, so it is always written (or failed) in one group.
      const resolveSpan = (result: AppendResult): void => resolve({ ...result, baseOffset: firstOffset });
      for (let i = 0; i <= last; i++) {
        const { at, size, baseOffset, lastOffset } = batches[i]!;
        this.producers.record(records, at, baseOffset, lastOffset, appendTimeMs, true);
        this.queue.push({ batch: records.subarray(at, at + size), baseOffset, lastOffset, appendTimeMs, resolve: i === last ? resolveSpan : ignoreResult, reject });
      }
      this.scheduleWrite();
    });
  }

  /**
   * Whole batches from the one containing `offset`, up to `maxBytes` (but at least one batch),
   * from a single segment; the next read continues where this one stopped. Consumers read up
   * to the high watermark: at or past it the records are empty (nextOffset = offset), and a
   * batch is returned only when it lies wholly below it. Replication reads to the log end.
   */
  read(offset: number, maxBytes: number, upTo: ReadLimit = "highWatermark"): ReadResult {
    if (this.closed) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
    const logStartOffset = this.logStartOffset;
    const logEndOffset = this.committedEndOffset;
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
    const rewrites = this.rewrites;
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
    if (this.failure || rewrites !== this.rewrites) return;
    this.recoveryPoint = Math.max(this.recoveryPoint, target);
  }

  /**
   * Deletes whole segments from the oldest: those whose newest append is older than
   * retentionMs, then those the partition can lose and stay at or above retentionBytes.
   * The active segment and segments with a group in flight are never deleted, nor, while
   * replicated, a segment holding data at or above the high watermark.
   */
  applyRetention(nowMs: number): number {
    if (this.closed) return 0;
    const { retentionMs, retentionBytes } = this.currentConfig;
    let size = this.sizeBytes;
    let deleted = 0;
    while (this.segments.length > 1) {
      const oldest = this.segments[0]!;
      if (!oldest.isSettled || !this.segments[1]!.isSettled) break;
      if (this.replicated && this.segments[1]!.baseOffset > this.replicatedHighWatermark) break;
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
      this.trimEpochsToLogStart();
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
      this.trimEpochsToLogStart();
      this.logger.info(
        { topic: this.topic, partition: this.partition, segments: deleted, logStartOffset: this.logStartOffset, sizeBytes: size },
        "log start advanced: deleted segments below a snapshot",
      );
    }
    return freed;
  }

  /**
   * Drops everything at and after `offset` (a divergent tail, before following a master):
   * waits for the writer to finish what is queued, then cuts segments and indexes (fsynced),
   * and lowers the log end, high watermark and recovery point to `offset`; the epoch history
   * loses the entries from `offset` on and the producer table is rebuilt. `offset` must be a
   * batch boundary in [logStartOffset, logEndOffset] (InvalidArgumentError otherwise).
   * Emits "truncated" with the new log end.
   */
  async truncateTo(offset: number): Promise<void> {
    await this.waitForQuietWriter();
    if (offset === this.committedEndOffset) return;
    this.rewriteSegments(() => {
      truncateSegments(this.segments, this.dir, offset, this.io, `${this.topic}/${this.partition}`);
      this.restartAt(offset, false);
      this.epochs.truncateFrom(offset);
    });
    rebuildFromHeaders(this.segments, { epochs: false, producers: this.producers });
    this.logger.warn({ topic: this.topic, partition: this.partition, logEndOffset: offset }, "truncated the log (divergent tail)");
    this.emitSafely("truncated", offset);
    await this.afterRewrite?.();
  }

  /**
   * Deletes every segment and starts empty at `offset` (a full resync: the master's log starts
   * past this one's end). The epoch history and the producer table start empty. Emits
   * "truncated" with the new log end.
   */
  async resetTo(offset: number): Promise<void> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new InvalidArgumentError(`cannot reset ${this.topic}/${this.partition} to offset ${offset}: it must be a non-negative integer`);
    }
    await this.waitForQuietWriter();
    this.rewriteSegments(() => {
      // Without the file, a crash part-way makes the next open rebuild the history from
      // whatever segments remain, so it cannot describe data that is gone (or miss any).
      this.epochs.removeFile();
      replaceSegments(this.segments, this.dir, offset, `${this.topic}/${this.partition}`);
      this.restartAt(offset, true);
      this.epochs.clear();
    });
    this.producers.clear();
    this.logger.warn({ topic: this.topic, partition: this.partition, logStartOffset: offset }, "reset the log: every segment deleted");
    this.emitSafely("truncated", offset);
    await this.afterRewrite?.();
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

  /** Adds an epoch entry; returns the error to reject with (null when it worked). */
  private assignEpochAt(epoch: number, startOffset: number): SluiceError | null {
    try {
      this.epochs.assign(epoch, startOffset);
      return null;
    } catch (err) {
      if (err instanceof SluiceError) return err;
      return new StorageError(`could not record leader epoch ${epoch} of ${this.topic}/${this.partition}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Drops epoch entries of appends that never happened; a failed write leaves an entry at the next offset to write, which is harmless. */
  private forgetEpochsFrom(offset: number): void {
    try {
      this.epochs.truncateFrom(offset);
    } catch (err) {
      this.logger.error({ err, topic: this.topic, partition: this.partition, offset }, "could not rewrite the leader-epoch file");
    }
  }

  private trimEpochsToLogStart(): void {
    try {
      this.epochs.truncateBefore(this.logStartOffset);
    } catch (err) {
      this.logger.error({ err, topic: this.topic, partition: this.partition }, "could not rewrite the leader-epoch file after deleting segments");
    }
  }

  /** Waits until nothing is queued or being written; refuses while closing or fenced. */
  private async waitForQuietWriter(): Promise<void> {
    for (;;) {
      if (this.closing) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
      if (this.failure) throw this.failure;
      if (!this.writing && !this.writeScheduled && this.queue.length === 0) return;
      await this.whenIdle();
    }
  }

  /** Runs a truncation or reset of the files; a failure part-way fences the log until a restart recovers it. */
  private rewriteSegments(rewrite: () => void): void {
    try {
      rewrite();
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw err;
      this.failure = new StorageError(
        `${this.topic}/${this.partition}: truncating the log failed part-way (${(err as Error).message}); restart the broker so log recovery repairs the partition`,
        { cause: err, retriable: false },
      );
      throw this.failure;
    }
  }

  /** Offsets after a truncation or reset (`fresh`: nothing below `offset` either). */
  private restartAt(offset: number, fresh: boolean): void {
    this.committedEndOffset = this.nextOffsetToAssign = offset;
    this.replicatedHighWatermark = fresh ? offset : Math.min(this.replicatedHighWatermark, offset);
    this.recoveryPoint = fresh ? offset : Math.min(this.recoveryPoint, offset);
    this.rewrites++;
    this.limitSegment = null;
  }

  private emitSafely(event: "append" | "logEnd" | "truncated", offset: number): void {
    try {
      this.emit(event, offset);
    } catch (err) {
      // A listener's bug must not stall the writer.
      this.logger.error({ err, topic: this.topic, partition: this.partition, event }, "a log listener threw");
    }
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
    this.producers.settleBelow(this.committedEndOffset);
    const logStartOffset = this.logStartOffset;
    for (const pending of group) {
      pending.resolve({ baseOffset: pending.baseOffset, lastOffset: pending.lastOffset, logAppendTimeMs: pending.appendTimeMs, logStartOffset });
    }
    this.emitSafely("logEnd", this.committedEndOffset);
    if (!this.replicated) this.emitSafely("append", this.committedEndOffset);
  }

  private failGroup(group: QueuedAppend[], err: unknown): void {
    const fromOffset = group[0]!.baseOffset;
    const queuedAfter = this.queue;
    this.queue = [];
    this.nextOffsetToAssign = fromOffset;
    this.producers.undoFrom(fromOffset);
    this.forgetEpochsFrom(fromOffset);
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
