/**
 * The write path of one partition log: offset assignment and the single writer with group
 * commit behind `PartitionLog.append` and `appendReplicated` (the log checks that it is open
 * and not fenced, then hands the batch here).
 *
 * Appends: `append` assigns offsets synchronously in call order and stamps the batch; batches
 * queued in the same tick are written together (group-writer.ts) and, under `sync`, covered by
 * one fdatasync. While a group is being synced, new appends queue up and form the next group.
 * A promise resolves only once its bytes are in the file (and synced under `sync`); the log is
 * told just before (`committed`: readers may see the bytes) and just after (`published`: its
 * events fire, so long-polls wake).
 *
 * Failures: a failed group is undone on disk, the next offset rolls back to the group's start,
 * and the group plus everything queued after it is rejected (StorageFullError on ENOSPC,
 * StorageError otherwise). The log keeps accepting appends afterwards, unless the undo itself
 * failed: then the files are in an unknown state and the log is `fenced` until a restart.
 *
 * The leader-epoch history and the idempotent-producer table are updated here when offsets
 * are assigned, and taken back when the group holding them fails.
 */
import { BATCH_HEADER_BYTES, batchSizeAt, lastOffsetDeltaOf, stampBatch } from "../../../common/src/batch/layout.js";
import type { Clock } from "../../../common/src/clock.js";
import { CorruptBatchError, SluiceError, StorageError, StorageFullError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { PartitionConfig } from "./config.js";
import { RollbackFailedError, writeGroup } from "./group-writer.js";
import type { LeaderEpochCache } from "./leader-epochs.js";
import type { ProducerStateTable } from "./producer-state.js";
import { parseReplicatedBatches } from "./replicated-batches.js";
import type { PendingBatch, Segment } from "./segment.js";
import type { StorageIo } from "./storage-io.js";

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  logAppendTimeMs: number;
  logStartOffset: number;
}

interface QueuedAppend extends PendingBatch {
  resolve: (result: AppendResult) => void;
  reject: (error: Error) => void;
}

/** What the writer needs from the log it writes for: the files, the history, and three hooks. */
export interface LogWriterOptions {
  dir: string;
  topic: string;
  partition: number;
  /** The log's live segment list (group-writer.ts appends rolled segments to it). */
  segments: Segment[];
  io: StorageIo;
  clock: Clock;
  logger: Logger;
  epochs: LeaderEpochCache;
  producers: ProducerStateTable;
  /** The settings in force when a group is written (they can change between groups). */
  config: () => PartitionConfig;
  /** The next offset to assign (the log end when the log opens). */
  nextOffset: number;
  /** The newest append time in the log, so that append times never go back. */
  lastAppendTimeMs: number;
  /** The group ending before `endOffset` is in the file; `rolled`: new segment files exist. */
  committed: (endOffset: number, rolled: boolean) => void;
  /** Called after the group's appends were resolved: tell listeners. */
  published: (endOffset: number) => void;
  /** Each batch of a written group, when it is committed: for append-to-delivery timing. */
  appended?: (baseOffset: number, lastOffset: number, appendTimeMs: number) => void;
  /** A failed group could not be undone: refuse writes until a restart recovers the files. */
  fenced: (error: StorageError) => void;
}

const ignoreResult = (): void => {};

export class LogWriter {
  private readonly options: LogWriterOptions;
  private readonly clock: Clock;
  private readonly segments: Segment[];
  private readonly epochs: LeaderEpochCache;
  private readonly producers: ProducerStateTable;
  private nextOffsetToAssign: number;
  private lastAppendTimeMs: number;
  private queue: QueuedAppend[] = [];
  private writing = false;
  private writeScheduled = false;
  private idleWaiters: (() => void)[] = [];

  constructor(options: LogWriterOptions) {
    this.options = options;
    this.clock = options.clock;
    this.segments = options.segments;
    this.epochs = options.epochs;
    this.producers = options.producers;
    this.nextOffsetToAssign = options.nextOffset;
    this.lastAppendTimeMs = options.lastAppendTimeMs;
  }

  /** The offset the next append gets (appends still being written included). */
  get nextOffset(): number {
    return this.nextOffsetToAssign;
  }

  /** Nothing queued, scheduled or being written. */
  get isIdle(): boolean {
    return !this.writing && !this.writeScheduled && this.queue.length === 0;
  }

  /** See `PartitionLog.append`: stamps the batch and queues it for the next group. */
  append(batch: Buffer, leaderEpoch: number): Promise<AppendResult> {
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

  /** See `PartitionLog.appendReplicated`: queues a master's batches as they are. */
  appendReplicated(records: Buffer): Promise<AppendResult> {
    let batches;
    try {
      batches = parseReplicatedBatches(records, this.nextOffsetToAssign, `${this.options.topic}/${this.options.partition}`);
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

  /** Starts `epoch` at the next offset to assign; returns the error to throw (null when it worked). */
  assignEpoch(epoch: number): SluiceError | null {
    return this.assignEpochAt(epoch, this.nextOffsetToAssign);
  }

  /** After a truncation or reset (the writer must be idle): the next append gets `offset`. */
  restartAt(offset: number): void {
    this.nextOffsetToAssign = offset;
  }

  /** Resolves once nothing is queued or being written (at once if that is already so). */
  whenIdle(): Promise<void> {
    if (this.isIdle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Adds an epoch entry; returns the error to reject with (null when it worked). */
  private assignEpochAt(epoch: number, startOffset: number): SluiceError | null {
    try {
      this.epochs.assign(epoch, startOffset);
      return null;
    } catch (err) {
      if (err instanceof SluiceError) return err;
      return new StorageError(`could not record leader epoch ${epoch} of ${this.options.topic}/${this.options.partition}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Drops epoch entries of appends that never happened; a failed write leaves an entry at the next offset to write, which is harmless. */
  private forgetEpochsFrom(offset: number): void {
    try {
      this.epochs.truncateFrom(offset);
    } catch (err) {
      this.options.logger.error({ err, topic: this.options.topic, partition: this.options.partition, offset }, "could not rewrite the leader-epoch file");
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
    const { dir, segments, io } = this.options;
    let touched: Segment[];
    let rolled: boolean;
    try {
      const outcome = await writeGroup({ dir, segments, config: this.options.config(), io }, group);
      touched = outcome.touched;
      rolled = outcome.rolled;
    } catch (err) {
      this.failGroup(group, err);
      return;
    }
    for (const segment of touched) segment.commit();
    const endOffset = group[group.length - 1]!.lastOffset + 1;
    this.options.committed(endOffset, rolled);
    this.producers.settleBelow(endOffset);
    const logStartOffset = segments[0]!.baseOffset;
    for (const pending of group) {
      this.options.appended?.(pending.baseOffset, pending.lastOffset, pending.appendTimeMs);
      pending.resolve({ baseOffset: pending.baseOffset, lastOffset: pending.lastOffset, logAppendTimeMs: pending.appendTimeMs, logStartOffset });
    }
    this.options.published(endOffset);
  }

  private failGroup(group: QueuedAppend[], err: unknown): void {
    const { topic, partition } = this.options;
    const fromOffset = group[0]!.baseOffset;
    const queuedAfter = this.queue;
    this.queue = [];
    this.nextOffsetToAssign = fromOffset;
    this.producers.undoFrom(fromOffset);
    this.forgetEpochsFrom(fromOffset);
    let error: SluiceError;
    if (err instanceof RollbackFailedError) {
      const fence = new StorageError(`${topic}/${partition}: ${err.message}; restart the broker so log recovery repairs the partition`, {
        cause: err,
        retriable: false,
      });
      this.options.fenced(fence);
      error = fence;
    } else {
      error = this.storageErrorFor(err);
    }
    this.options.logger.error(
      { err, topic, partition, fromOffset, rejectedBatches: group.length + queuedAfter.length },
      "append failed; the group was rolled back",
    );
    for (const pending of group) pending.reject(error);
    for (const pending of queuedAfter) pending.reject(error);
  }

  private storageErrorFor(err: unknown): SluiceError {
    const { topic, partition } = this.options;
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code === "ENOSPC" || code === "EDQUOT") {
      return new StorageFullError(`the disk is full: could not append to ${topic}/${partition}; free space or lower retention, then retry`, { cause: err });
    }
    return new StorageError(`could not append to ${topic}/${partition}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}
