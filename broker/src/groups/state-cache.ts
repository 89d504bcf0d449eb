/**
 * The LMDB cache of the group state (`<dataDir>/groups`): what the `%groups` logs hold,
 * applied, so a broker does not replay whole logs at start. Layout (string keys and values):
 *
 *   state\0<partition>\0<record key>  → the record's JSON text
 *   applied\0<partition>              → {"offset": last log offset applied, "batchCrc": CRC32C of that batch}
 *
 * The partition leads the row key so a partition's rows can be read or dropped by range
 * without knowing how groups hash to partitions. Rows and the mark are written in one
 * transaction. The CRC in the mark lets a reader check that the log still holds the batch
 * the mark names — the same log, not one truncated and rewritten after a failover.
 */
import { open, type RootDatabase } from "lmdb";
import { join } from "node:path";
import { BATCH_HEADER_BYTES, CRC_AT, baseOffsetOf, batchSizeAt, lastOffsetDeltaOf } from "../../../common/src/batch/layout.js";
import type { Logger } from "../../../common/src/logger.js";
import type { PartitionLog } from "../storage/partition-log.js";
import { decodeStateChange, type StateChange } from "./state-keys.js";

const ROW_PREFIX = "state\u0000";
const APPLIED_PREFIX = "applied\u0000";

/** The last batch applied: its last offset and its CRC. */
export interface AppliedMark {
  offset: number;
  batchCrc: number;
}

export function markOfBatch(batch: Buffer, lastOffset: number): AppliedMark {
  return { offset: lastOffset, batchCrc: batch.readUInt32BE(CRC_AT) };
}

/** The mark of the last batch in `records` (whole batches, as a log read returns them). */
export function markOfLastBatch(records: Buffer): AppliedMark {
  let at = 0;
  for (let size = batchSizeAt(records, 0); at + size < records.length; size = batchSizeAt(records, at)) at += size;
  return { offset: baseOffsetOf(records, at) + lastOffsetDeltaOf(records, at), batchCrc: records.readUInt32BE(at + CRC_AT) };
}

/** Does the log still hold a batch ending at the mark's offset, with the mark's CRC? */
export function markMatchesLog(mark: AppliedMark, log: PartitionLog): boolean {
  if (mark.offset < log.logStartOffset || mark.offset >= log.logEndOffset) return false;
  const { records } = log.read(mark.offset, 1, "logEnd");
  if (records.length < BATCH_HEADER_BYTES) return false;
  const { offset, batchCrc } = markOfLastBatch(records.subarray(0, batchSizeAt(records)));
  return offset === mark.offset && batchCrc === mark.batchCrc;
}

function rowPrefix(partition: number): string {
  return `${ROW_PREFIX}${partition}\u0000`;
}

function rowRange(partition: number): { start: string; end: string } {
  return { start: rowPrefix(partition), end: `${ROW_PREFIX}${partition}\u0001` };
}

export class StateCache {
  private constructor(private readonly db: RootDatabase<string, string>) {}

  static open(dataDir: string): StateCache {
    return new StateCache(open<string, string>({ path: join(dataDir, "groups"), compression: false, encoding: "string" }));
  }

  readMark(partition: number): AppliedMark | undefined {
    const text = this.db.get(APPLIED_PREFIX + partition);
    if (text === undefined) return undefined;
    try {
      const mark = JSON.parse(text) as Partial<AppliedMark>;
      if (Number.isSafeInteger(mark.offset) && Number.isInteger(mark.batchCrc)) return mark as AppliedMark;
    } catch {
      // an unreadable mark is no mark: the partition is rebuilt from its log
    }
    return undefined;
  }

  /** The partition's rows, in key order; undefined when one is unreadable. */
  readRows(partition: number): StateChange[] | undefined {
    const prefixBytes = rowPrefix(partition).length;
    const changes: StateChange[] = [];
    for (const { key, value } of this.db.getRange(rowRange(partition))) {
      const change = decodeStateChange(key.slice(prefixBytes), value);
      if (change === undefined || change.value === null) return undefined;
      changes.push(change);
    }
    return changes;
  }

  /** Removes the partition's rows and mark. */
  async drop(partition: number): Promise<void> {
    const keys = [...this.db.getKeys(rowRange(partition))];
    await this.db.batch(() => {
      for (const key of keys) void this.db.remove(key);
      void this.db.remove(APPLIED_PREFIX + partition);
    });
  }

  /** The one writer of a partition's rows while it is loaded. */
  writer(partition: number, logger: Logger): CacheWriter {
    return new CacheWriter(this.db, partition, logger);
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/**
 * Writes a partition's changes to LMDB in the order given, one transaction at a time; the
 * changes queued while one commits gather into the next, with the mark of the last batch
 * they came from. If a transaction fails, nothing more is written (a later mark would claim
 * the lost changes): the mark stays behind and the next load replays the log from there.
 */
export class CacheWriter {
  private queued: { changes: StateChange[]; mark: AppliedMark; committed: (() => void)[] } | null = null;
  private writing = false;
  private idleWaiters: (() => void)[] = [];
  private failed = false;

  constructor(
    private readonly db: RootDatabase<string, string>,
    private readonly partition: number,
    private readonly logger: Logger,
  ) {}

  /** Resolves once the changes are committed, or dropped because LMDB failed. */
  write(changes: readonly StateChange[], mark: AppliedMark): Promise<void> {
    if (this.failed) return Promise.resolve();
    return new Promise((resolve) => {
      const queued = (this.queued ??= { changes: [], mark, committed: [] });
      for (const change of changes) queued.changes.push(change);
      queued.mark = mark;
      queued.committed.push(resolve);
      if (!this.writing) void this.drain();
    });
  }

  /** Resolves once everything written so far is committed (or dropped). */
  idle(): Promise<void> {
    return this.writing ? new Promise((resolve) => this.idleWaiters.push(resolve)) : Promise.resolve();
  }

  private async drain(): Promise<void> {
    this.writing = true;
    // The flag drops in the same step that finds the queue empty, so no change is stranded.
    try {
      for (let queued = this.queued; queued !== null; queued = this.queued) {
        this.queued = null;
        if (!this.failed) await this.commit(queued.changes, queued.mark);
        for (const committed of queued.committed) committed();
      }
    } finally {
      this.writing = false;
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private async commit(changes: readonly StateChange[], mark: AppliedMark): Promise<void> {
    const prefix = rowPrefix(this.partition);
    try {
      await this.db.batch(() => {
        for (const { key, text } of changes) {
          if (text === null) void this.db.remove(prefix + key);
          else void this.db.put(prefix + key, text);
        }
        void this.db.put(APPLIED_PREFIX + this.partition, JSON.stringify(mark));
      });
    } catch (err) {
      this.failed = true;
      this.logger.error(
        { err, partition: this.partition, offset: mark.offset },
        "LMDB failed to store group state; the partition is served from its log and memory, and replayed at its next load",
      );
    }
  }
}
