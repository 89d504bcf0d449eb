/**
 * The commit log of one partition: an append-only sequence of record batches with dense
 * offsets, split into segments (segment.ts), with one writer and group commit.
 *
 * This class is the log's face and keeps its lifecycle, durability and housekeeping; the
 * work is done by three collaborators that share its segment list:
 * - log-writer.ts, the write path: offsets are assigned synchronously in call order, batches
 *   queued in the same tick are written (and, under `sync`, fdatasynced) as one group, and a
 *   promise resolves only once its bytes are in the file. Only then do readers see them and
 *   "append" is emitted (with the new high watermark), so long-polls wake. A failed group is
 *   rolled back and rejected with everything queued after it; the log keeps accepting appends.
 * - log-reader.ts, the read side: how far consumers (high watermark) and replication (log end)
 *   may read, and reading there.
 * - segment-deletion.ts: retention and snapshot-driven deletion of old segments.
 *
 * Replication: a slave appends its master's batches as they are (`appendReplicated`), and cuts
 * a divergent tail (`truncateTo`) or starts over (`resetTo`). Two events: "logEnd" (new
 * logEndOffset) after every written group, "append" (new high watermark) when consumer-readable
 * data grows. Unless `setReplicated(true)`, the high watermark is the log end and both fire
 * together, as before replication existed. "truncated" (new log end) after truncateTo/resetTo.
 *
 * Beside the segments the log keeps its leader-epoch history (leader-epochs.ts, a small file)
 * and its idempotent-producer table (producer-state.ts, memory only), both rebuilt from batch
 * headers when needed and both updated when offsets are assigned.
 */
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { AppendTimes } from "./append-times.js";
import { ClosedError, InvalidArgumentError, StorageError } from "../../../common/src/errors.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import { validatePartitionConfig, type PartitionConfig } from "./config.js";
import type { LeaderEpochCache } from "./leader-epochs.js";
import { loadHistory, rebuildFromHeaders } from "./log-history.js";
import { LogReader, type ReadLimit, type ReadResult } from "./log-reader.js";
import { replaceSegments, truncateSegments } from "./log-truncation.js";
import { LogWriter, type AppendResult } from "./log-writer.js";
import { DELETING_DIR_SUFFIX } from "./logs-dir.js";
import type { ProducerStateTable } from "./producer-state.js";
import { deleteOldestSegments, totalSizeBytes, type DeletedSegments } from "./segment-deletion.js";
import type { Segment } from "./segment.js";
import { loadSegments } from "./segment-loader.js";
import { fsyncDirectory, nodeStorageIo, type StorageIo } from "./storage-io.js";

// The settings live in config.ts, the result types beside the code that produces them;
// re-exported so callers can take the whole log API from here.
export { DEFAULT_PARTITION_CONFIG, type FlushPolicy, type PartitionConfig } from "./config.js";
export type { AppendResult } from "./log-writer.js";
export type { ReadLimit, ReadResult } from "./log-reader.js";

/** Kafka's "no partition leader epoch": stamped when the caller names none. */
export const NO_LEADER_EPOCH = -1;

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

export class PartitionLog extends EventEmitter {
  readonly topic: string;
  readonly partition: number;
  readonly dir: string;
  private currentConfig: PartitionConfig;
  private readonly logger: Logger;
  private readonly io: StorageIo;
  private readonly segments: Segment[];
  private readonly writer: LogWriter;
  private readonly reader: LogReader;
  private committedEndOffset: number;
  private recoveryPoint: number;
  private directoryDirty = false;
  /** Set when a failed append could not be undone: the files need a restart's recovery. */
  private failure: StorageError | null = null;
  private closing: Promise<void> | null = null;
  private closed = false;
  private readonly epochs: LeaderEpochCache;
  private readonly producers: ProducerStateTable;
  private readonly afterRewrite: (() => Promise<void>) | undefined;
  /** Bumped by truncateTo/resetTo: a flush that straddles one must not raise the recovery point. */
  private rewrites = 0;
  /** Append times of the newest batches, for append-to-delivery timing. */
  private readonly appendTimes = new AppendTimes();
  private readonly clock: Clock;

  private constructor(options: PartitionLogOptions, config: PartitionConfig, segments: Segment[], epochs: LeaderEpochCache, producers: ProducerStateTable) {
    super();
    this.setMaxListeners(0); // every waiting long-poll listens for "append"
    this.topic = options.topic;
    this.partition = options.partition;
    this.dir = options.dir;
    this.currentConfig = config;
    this.logger = options.logger ?? silentLogger;
    this.io = options.io ?? nodeStorageIo;
    this.segments = segments;
    this.epochs = epochs;
    this.producers = producers;
    this.afterRewrite = options.afterRewrite;
    this.committedEndOffset = segments[segments.length - 1]!.nextOffset;
    // Everything loaded was either cleanly closed or validated and fsynced by recovery.
    this.recoveryPoint = this.committedEndOffset;
    this.reader = new LogReader(segments, this.topic, this.partition);
    this.clock = options.clock ?? systemClock;
    this.writer = new LogWriter({
      dir: this.dir,
      topic: this.topic,
      partition: this.partition,
      segments,
      io: this.io,
      clock: this.clock,
      logger: this.logger,
      epochs,
      producers,
      config: () => this.currentConfig,
      nextOffset: this.committedEndOffset,
      lastAppendTimeMs: segments.reduce((newest, segment) => Math.max(newest, segment.newestAppendTimeMs), Number.NEGATIVE_INFINITY),
      committed: (endOffset, rolled) => {
        this.directoryDirty ||= rolled;
        this.committedEndOffset = endOffset;
      },
      appended: (baseOffset, lastOffset, appendTimeMs) => this.appendTimes.record(baseOffset, lastOffset, appendTimeMs),
      published: (endOffset) => {
        this.emitSafely("logEnd", endOffset);
        if (!this.reader.replicated) this.emitSafely("append", endOffset);
      },
      fenced: (error) => {
        this.failure = error;
      },
    });
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
    return this.reader.highWatermarkAt(this.committedEndOffset);
  }

  get isReplicated(): boolean {
    return this.reader.replicated;
  }

  /** The leader-epoch history (read it; the log keeps it up to date). */
  get leaderEpochs(): LeaderEpochCache {
    return this.epochs;
  }

  /**
   * Off (the default): the high watermark is the log end. On: it moves only through
   * `setHighWatermark`, starting at `startHighWatermark` (clamped to the log; default the log
   * end). Turning it off publishes everything written.
   */
  setReplicated(on: boolean, startHighWatermark: number = this.committedEndOffset): void {
    const reader = this.reader;
    if (on === reader.replicated) return;
    if (on) {
      // A broker that opens its logs cannot know how much of them was replicated (the high
      // watermark is not checkpointed), so it may start lower, e.g. at the log start: the
      // master's tracker or the master's next message raises it to what is truly covered.
      // Must be a batch boundary: the log start and the log end are.
      reader.replicatedHighWatermark = Math.min(Math.max(startHighWatermark, this.logStartOffset), this.committedEndOffset);
      reader.replicated = true;
      return;
    }
    const before = reader.replicatedHighWatermark;
    reader.replicated = false;
    if (this.committedEndOffset > before) this.emitSafely("append", this.committedEndOffset);
  }

  /**
   * Raises the high watermark (replicated mode only; otherwise it follows the log end) to
   * `offset`, clamped to the log end, and emits "append" when it moved. Never lowers it:
   * only truncation does. `offset` should be a batch boundary (a replica's log end is one).
   */
  setHighWatermark(offset: number): void {
    if (!Number.isSafeInteger(offset)) throw new InvalidArgumentError(`high watermark must be an integer offset, got ${offset}`);
    const reader = this.reader;
    if (!reader.replicated) return;
    const clamped = Math.min(offset, this.committedEndOffset);
    if (clamped <= reader.replicatedHighWatermark) return;
    reader.replicatedHighWatermark = clamped;
    this.emitSafely("append", clamped);
  }

  /**
   * Records that this broker now writes under `epoch` (it became master): the epoch starts at
   * the current log end. Older or equal epochs are ignored.
   */
  assignEpoch(epoch: number): void {
    if (this.closing) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
    const problem = this.writer.assignEpoch(epoch);
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

  /**
   * Milliseconds since the batch ending at `lastOffset` was appended here, when that was within
   * the last 30 s (see AppendTimes); undefined for older ones.
   */
  appendAgeMs(lastOffset: number): number | undefined {
    const nowMs = this.clock.now();
    const appendedAtMs = this.appendTimes.appendTimeOf(lastOffset, nowMs);
    return appendedAtMs === undefined ? undefined : Math.max(0, nowMs - appendedAtMs);
  }

  /** Everything below this offset is on disk with its indexes: the recovery point. */
  get flushedOffset(): number {
    return this.recoveryPoint;
  }

  get sizeBytes(): number {
    return totalSizeBytes(this.segments);
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
    return this.writer.append(batch, leaderEpoch);
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
    return this.writer.appendReplicated(records);
  }

  /**
   * Whole batches from the one containing `offset`, up to `maxBytes` (but at least one batch),
   * from a single segment; the next read continues where this one stopped. Consumers read up
   * to the high watermark: at or past it the records are empty (nextOffset = offset), and a
   * batch is returned only when it lies wholly below it. Replication reads to the log end.
   */
  read(offset: number, maxBytes: number, upTo: ReadLimit = "highWatermark"): ReadResult {
    if (this.closed) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
    return this.reader.read(offset, maxBytes, upTo, this.committedEndOffset);
  }

  /** The first offset appended at or after `timestampMs`, with its append time; null if none. */
  offsetForTimestamp(timestampMs: number): { offset: number; timestampMs: number } | null {
    return this.reader.offsetForTimestamp(timestampMs);
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
    const reader = this.reader;
    const deleted = deleteOldestSegments(this.segments, (oldest, next, sizeBytes) => {
      if (reader.replicated && next.baseOffset > reader.replicatedHighWatermark) return false;
      const expired = retentionMs > 0 && nowMs - oldest.retentionTimeMs > retentionMs;
      const oversized = retentionBytes > 0 && sizeBytes - oldest.sizeBytes >= retentionBytes;
      return expired || oversized;
    });
    this.afterDeletingSegments(deleted, "retention deleted segments");
    return deleted.count;
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
    const deleted = deleteOldestSegments(this.segments, (_oldest, next) => next.baseOffset <= offset);
    this.afterDeletingSegments(deleted, "log start advanced: deleted segments below a snapshot");
    return deleted.freedBytes;
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
      await this.writer.whenIdle();
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

  /** Marks the directory for the next flush and drops the epoch entries below the new log start. */
  private afterDeletingSegments(deleted: DeletedSegments, message: string): void {
    if (deleted.count === 0) return;
    this.directoryDirty = true;
    try {
      this.epochs.truncateBefore(this.logStartOffset);
    } catch (err) {
      this.logger.error({ err, topic: this.topic, partition: this.partition }, "could not rewrite the leader-epoch file after deleting segments");
    }
    this.logger.info(
      { topic: this.topic, partition: this.partition, segments: deleted.count, logStartOffset: this.logStartOffset, sizeBytes: deleted.sizeBytes },
      message,
    );
  }

  /** Waits until nothing is queued or being written; refuses while closing or fenced. */
  private async waitForQuietWriter(): Promise<void> {
    for (;;) {
      if (this.closing) throw new ClosedError(`partition log ${this.topic}/${this.partition}`);
      if (this.failure) throw this.failure;
      if (this.writer.isIdle) return;
      await this.writer.whenIdle();
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
    this.committedEndOffset = offset;
    this.appendTimes.clear();
    this.writer.restartAt(offset);
    this.reader.restartAt(offset, fresh);
    this.recoveryPoint = fresh ? offset : Math.min(this.recoveryPoint, offset);
    this.rewrites++;
  }

  private emitSafely(event: "append" | "logEnd" | "truncated", offset: number): void {
    try {
      this.emit(event, offset);
    } catch (err) {
      // A listener's bug must not stall the writer.
      this.logger.error({ err, topic: this.topic, partition: this.partition, event }, "a log listener threw");
    }
  }
}
