/**
 * Group state: records appended to the `%groups` partitions this broker hosts, materialised
 * in LMDB (`<dataDir>/groups`) and in memory.
 *
 * The log is the truth (it is what replication copies and failover keeps); LMDB is a cache
 * that spares a full replay at start. Each LMDB entry is `{ p: partition, v: value }`, and
 * `\u0001applied\u0000<p>` holds the last log offset applied for partition p, written in
 * the same transaction as the entries. `load()` replays the log past that offset; when the
 * cache cannot be trusted (behind the log start after compaction, or ahead of the log end
 * after the log lost a tail) it drops the partition's entries and replays the whole log.
 *
 * Compaction: a log that grew well past its live state gets a snapshot — every live key
 * written again — and the segments wholly below the snapshot's first offset are deleted.
 * Replaying what is left (a prefix remnant, the snapshot, later records) gives the same view.
 */
import { open, type RootDatabase } from "lmdb";
import { join } from "node:path";
import { encodeBatch, type RecordInput } from "../../../common/src/batch/builder.js";
import { forEachRecord } from "../../../common/src/batch/reader.js";
import { InternalError } from "../../../common/src/errors.js";
import type { PartitionLog } from "../storage/partition-log.js";

export interface StateWrite {
  key: string;
  /** null deletes the key. */
  value: object | null;
}

interface Entry {
  p: number;
  v: unknown;
}

const APPLIED_PREFIX = "\u0001applied\u0000";
/** Written first in a snapshot; carries no state. */
const SNAPSHOT_MARKER_KEY = "\u0001snapshot";
const REPLAY_READ_BYTES = 1024 * 1024;
const SNAPSHOT_BATCH_BYTES = 1024 * 1024;
/** Compact once the log holds at least this much ... */
export const DEFAULT_COMPACT_MIN_BYTES = 16 * 1024 * 1024;
/** ... and this many times the live state's size. */
export const DEFAULT_COMPACT_RATIO = 4;

export class GroupStateStore {
  private readonly cache = new Map<string, Entry>();
  private readonly logs = new Map<number, PartitionLog>();
  /** Per-partition chain: appends reach the log and the view in one order. */
  private readonly chains = new Map<number, Promise<unknown>>();
  /** Set while a compaction snapshots a partition: new writes wait, so none lands below the snapshot unseen. */
  private readonly gates = new Map<number, Promise<void>>();

  private constructor(private readonly db: RootDatabase<Entry | number, string>) {}

  static open(dataDir: string): GroupStateStore {
    return new GroupStateStore(open<Entry | number, string>({ path: join(dataDir, "groups"), compression: false }));
  }

  async load(partition: number, log: PartitionLog): Promise<{ replayedRecords: number; fromOffset: number }> {
    return this.chain(partition, async () => {
      this.logs.set(partition, log);
      let applied = this.appliedOffset(partition);
      if (applied + 1 < log.logStartOffset || applied >= log.logEndOffset) {
        await this.dropPartition(partition);
        applied = log.logStartOffset - 1;
      }
      for (const { key, value } of this.db.getRange({})) {
        if (typeof value === "object" && value !== null && (value as Entry).p === partition) this.cache.set(key, value as Entry);
      }
      const fromOffset = applied + 1;
      let replayedRecords = 0;
      let offset = fromOffset;
      while (offset < log.logEndOffset) {
        const { records, nextOffset } = log.read(offset, REPLAY_READ_BYTES);
        const writes: StateWrite[] = [];
        let last = offset - 1;
        forEachRecord(records, offset, (record) => {
          last = record.offset;
          const key = record.key?.toString("utf8");
          if (key === undefined || key.startsWith("\u0001")) return;
          writes.push({ key, value: record.value === null ? null : (JSON.parse(record.value.toString("utf8")) as object) });
        });
        if (nextOffset <= offset) break;
        await this.apply(partition, writes, Math.max(last, nextOffset - 1));
        replayedRecords += writes.length;
        offset = nextOffset;
      }
      return { replayedRecords, fromOffset };
    });
  }

  /**
   * Appends the writes as one batch; resolves once appended (durable per the flush policy)
   * and applied. Appends start at once, so concurrent writes share the log's group commit;
   * only applying them is chained, in append order.
   */
  write(partition: number, writes: readonly StateWrite[]): Promise<void> {
    if (writes.length === 0) return Promise.resolve();
    const gate = this.gates.get(partition);
    if (gate !== undefined) return gate.then(() => this.write(partition, writes));
    const log = this.logs.get(partition);
    if (log === undefined) return Promise.reject(new InternalError(`group state partition ${partition} is not loaded`));
    const records: RecordInput[] = writes.map((w) => ({ key: w.key, value: w.value === null ? null : JSON.stringify(w.value) }));
    const appended = log.append(encodeBatch(records));
    return this.chain(partition, async () => {
      const result = await appended;
      await this.apply(partition, writes, result.baseOffset + writes.length - 1);
    });
  }

  get<T>(key: string): T | undefined {
    return this.cache.get(key)?.v as T | undefined;
  }

  /** Every live key starting with `prefix`, sorted by key. */
  scan<T>(prefix: string): Array<[string, T]> {
    const out: Array<[string, T]> = [];
    for (const [key, entry] of this.cache) if (key.startsWith(prefix)) out.push([key, entry.v as T]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** Forgets a partition's in-memory view (its LMDB entries stay, as the cache of the log). */
  unload(partition: number): void {
    this.logs.delete(partition);
    for (const [key, entry] of this.cache) if (entry.p === partition) this.cache.delete(key);
  }

  async compact(
    partition: number,
    options: { minBytes?: number; ratio?: number } = {},
  ): Promise<{ compacted: boolean; bytesFreed: number }> {
    const minBytes = options.minBytes ?? DEFAULT_COMPACT_MIN_BYTES;
    const ratio = options.ratio ?? DEFAULT_COMPACT_RATIO;
    if (this.gates.has(partition)) return { compacted: false, bytesFreed: 0 };
    let open!: () => void;
    this.gates.set(partition, new Promise<void>((resolve) => (open = resolve)));
    // The step runs after every write issued so far is applied; later ones wait at the gate.
    return this.chain(partition, async () => {
      const log = this.logs.get(partition);
      if (log === undefined) return { compacted: false, bytesFreed: 0 };
      const live: RecordInput[] = [];
      let liveBytes = 0;
      for (const [key, entry] of this.cache) {
        if (entry.p !== partition) continue;
        const value = JSON.stringify(entry.v);
        live.push({ key, value });
        liveBytes += key.length + value.length + 16;
      }
      if (log.sizeBytes < minBytes || log.sizeBytes < ratio * liveBytes) return { compacted: false, bytesFreed: 0 };
      const marker = await log.append(encodeBatch([{ key: SNAPSHOT_MARKER_KEY, value: String(Date.now()) }]));
      let last = marker.baseOffset;
      for (let i = 0; i < live.length; ) {
        const batch: RecordInput[] = [];
        let bytes = 0;
        while (i < live.length && (batch.length === 0 || bytes < SNAPSHOT_BATCH_BYTES)) {
          const record = live[i++]!;
          bytes += (record.key as string).length + (record.value as string).length;
          batch.push(record);
        }
        const result = await log.append(encodeBatch(batch));
        last = result.baseOffset + batch.length - 1;
      }
      this.db.putSync(APPLIED_PREFIX + partition, last);
      const bytesFreed = log.advanceLogStart(marker.baseOffset);
      return { compacted: true, bytesFreed };
    }).finally(() => {
      this.gates.delete(partition);
      open();
    });
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.chains.values()]);
    await this.db.close();
  }

  private appliedOffset(partition: number): number {
    const value = this.db.get(APPLIED_PREFIX + partition);
    return typeof value === "number" ? value : -1;
  }

  private async apply(partition: number, writes: readonly StateWrite[], lastOffset: number): Promise<void> {
    for (const w of writes) {
      if (w.value === null) this.cache.delete(w.key);
      else this.cache.set(w.key, { p: partition, v: w.value });
    }
    // Not awaited by callers beyond this point: LMDB is the cache, the log already has it.
    // lmdb commits transactions in the order they were started.
    void this.db
      .transaction(() => {
        for (const w of writes) {
          if (w.value === null) this.db.remove(w.key);
          else this.db.put(w.key, { p: partition, v: w.value });
        }
        this.db.put(APPLIED_PREFIX + partition, lastOffset);
      })
      .catch(() => undefined);
  }

  private async dropPartition(partition: number): Promise<void> {
    for (const [key, entry] of this.cache) if (entry.p === partition) this.cache.delete(key);
    await this.db.transaction(() => {
      for (const { key, value } of this.db.getRange({})) {
        if (typeof value === "object" && value !== null && (value as Entry).p === partition) this.db.remove(key);
      }
      this.db.remove(APPLIED_PREFIX + partition);
    });
  }

  private chain<T>(partition: number, step: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(partition) ?? Promise.resolve();
    const next = previous.then(step, step);
    const settled = next.catch(() => undefined);
    this.chains.set(partition, settled);
    void settled.then(() => {
      if (this.chains.get(partition) === settled) this.chains.delete(partition);
    });
    return next;
  }
}
