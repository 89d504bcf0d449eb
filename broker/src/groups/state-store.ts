/**
 * Group state: records appended to the `%groups` partitions this broker hosts (keys, values
 * and record format in state-keys.ts), materialised in memory and in LMDB (state-cache.ts).
 *
 * The log is the truth — it is what replication copies and failover keeps; LMDB is a cache
 * that spares a full replay at start. `load()` trusts LMDB's applied mark only when the log
 * still holds the batch it names: a mark below the log start (compaction deleted what it
 * needed), past the log end (the log lost a tail) or on a different batch (the log was
 * truncated and rewritten after a failover) drops the partition's rows and replays the log.
 *
 * Writes: `write()` appends at once, so concurrent writes share the log's group commit;
 * applying them to memory is chained in append order, and LMDB follows in the same order,
 * many writes per transaction. A write whose append fails changes nothing.
 *
 * Compaction: when the log has grown well past its live state, new writes are held, the
 * writes already appended are applied, every live key is appended again (a snapshot, ending
 * with a marker record), held writes are released behind it, and once LMDB's mark is past
 * the snapshot the segments wholly below its first offset are deleted. Replaying any suffix
 * of the log that starts at or below the snapshot gives the same view — whatever precedes
 * the snapshot only sets keys the snapshot restates or that are deleted before it — so a
 * crash at any point (snapshot partly written, segments partly deleted, LMDB behind) is
 * harmless.
 */
import { BATCH_HEADER_BYTES } from "../../../common/src/batch/layout.js";
import { forEachRecord } from "../../../common/src/batch/reader.js";
import { ClosedError, InternalError, InvalidArgumentError, NotCoordinatorError, StorageError } from "../../../common/src/errors.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import type { AppendResult, PartitionLog } from "../storage/partition-log.js";
import { StateCache, markMatchesLog, markOfBatch, markOfLastBatch, type CacheWriter } from "./state-cache.js";
import {
  SNAPSHOT_MARKER_KEY,
  decodeStateChange,
  encodeSnapshot,
  encodeStateWrites,
  parseKey,
  stateRecordBytes,
  type StateChange,
  type StateValue,
  type StateWrite,
} from "./state-keys.js";

// Callers take the write type from the store they write to.
export type { StateWrite };

export interface GroupStateStoreOptions {
  /** @defaultValue silentLogger */
  logger?: Logger;
  /**
   * How a batch reaches the log. The broker passes its master path (fence, epoch stamp, wait
   * for the replication requirement), so group state acknowledged to a client survives
   * failover like any acknowledged message. @defaultValue `log.append(batch)`
   */
  append?: (log: PartitionLog, batch: Buffer) => Promise<AppendResult>;
}

export interface CompactionOptions {
  /** Leave logs at or below this size alone. @defaultValue 16 MiB */
  minBytes?: number;
  /** Compact only a log larger than this many times its live state. @defaultValue 4 */
  ratio?: number;
}

export interface CompactionResult {
  compacted: boolean;
  bytesFreed: number;
}

export const DEFAULT_COMPACTION_MIN_BYTES = 16 * 1024 * 1024;
export const DEFAULT_COMPACTION_RATIO = 4;
/** Log bytes read per replay step (one LMDB transaction each). */
const REPLAY_READ_BYTES = 1024 * 1024;

interface Entry {
  value: StateValue;
  sizeBytes: number;
}

interface HeldWrite {
  batch: Buffer;
  changes: StateChange[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface PartitionView {
  readonly partition: number;
  readonly log: PartitionLog;
  readonly entries: Map<string, Entry>;
  /** Approximate bytes a snapshot of `entries` takes. */
  liveBytes: number;
  /** Tail of the chain that applies appended batches to memory in append order; never rejects. */
  applyTail: Promise<void>;
  /** Follows memory into LMDB, in the same order. */
  readonly cache: CacheWriter;
  /** Writes waiting while a compaction captures the state; null when none runs. */
  held: HeldWrite[] | null;
  compaction: Promise<CompactionResult> | null;
  unloaded: boolean;
}

const ignore = (): void => undefined;

export class GroupStateStore {
  private readonly views = new Map<number, PartitionView>();
  private readonly loading = new Set<number>();
  /** Applies still running for partitions unloaded since: a new load waits for them. */
  private readonly draining = new Map<number, Promise<unknown>>();
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly cache: StateCache,
    private readonly logger: Logger,
    private readonly appendTo: (log: PartitionLog, batch: Buffer) => Promise<AppendResult>,
  ) {}

  /** Opens the LMDB environment at `<dataDir>/groups`. */
  static open(dataDir: string, options: GroupStateStoreOptions = {}): GroupStateStore {
    return new GroupStateStore(StateCache.open(dataDir), options.logger ?? silentLogger, options.append ?? ((log, batch) => log.append(batch)));
  }

  /**
   * Attaches the local log of one `%groups` partition and replays the records past what LMDB
   * has applied — all of them when LMDB's mark does not match the log (see the file comment).
   */
  async load(partition: number, log: PartitionLog): Promise<{ replayedRecords: number; fromOffset: number }> {
    if (this.closing) throw new ClosedError("group state store");
    if (this.views.has(partition) || this.loading.has(partition)) {
      throw new InternalError(`group state partition ${partition} is already loaded; unload it first`);
    }
    this.loading.add(partition);
    try {
      await this.draining.get(partition);
      const view: PartitionView = {
        partition, log, entries: new Map(), liveBytes: 0, applyTail: Promise.resolve(),
        cache: this.cache.writer(partition, this.logger), held: null, compaction: null, unloaded: false,
      };
      const mark = this.cache.readMark(partition);
      const rows = mark !== undefined && markMatchesLog(mark, log) ? this.cache.readRows(partition) : undefined;
      let fromOffset: number;
      if (rows !== undefined) {
        this.applyToMemory(view, rows);
        fromOffset = mark!.offset + 1;
      } else {
        if (mark !== undefined) {
          const { logStartOffset, logEndOffset } = log;
          this.logger.warn({ partition, applied: mark.offset, logStartOffset, logEndOffset }, "LMDB group state does not match the log; rebuilding it from the log");
        }
        await this.cache.drop(partition);
        fromOffset = log.logStartOffset;
      }
      const replayedRecords = await this.replay(view, fromOffset);
      if (this.closing) throw new ClosedError("group state store");
      this.views.set(partition, view);
      return { replayedRecords, fromOffset };
    } finally {
      this.loading.delete(partition);
    }
  }

  /**
   * Appends the writes as one batch; resolves once it is in the log (durable per the flush
   * policy) and applied to memory, with its LMDB transaction queued (unload and close wait
   * for those). Writes to one partition apply in call order.
   */
  write(partition: number, writes: readonly StateWrite[]): Promise<void> {
    if (this.closing) return Promise.reject(new ClosedError("group state store"));
    const view = this.views.get(partition);
    if (view === undefined) return Promise.reject(this.notLoaded(partition));
    if (writes.length === 0) return Promise.resolve();
    let encoded: { batch: Buffer; changes: StateChange[] };
    try {
      encoded = encodeStateWrites(writes);
    } catch (err) {
      return Promise.reject(err);
    }
    const held = view.held;
    if (held !== null) return new Promise((resolve, reject) => held.push({ ...encoded, resolve, reject }));
    return this.appendAndApply(view, encoded.batch, encoded.changes);
  }

  /** The value of `key` in a loaded partition. Shared with the store: treat it as read-only. */
  get<T>(key: string): T | undefined {
    for (const view of this.views.values()) {
      const entry = view.entries.get(key);
      if (entry !== undefined) return entry.value as T;
    }
    return undefined;
  }

  /** Every key of the loaded partitions that starts with `prefix`, sorted by key. */
  scan<T>(prefix: string): Array<[string, T]> {
    const out: Array<[string, T]> = [];
    for (const view of this.views.values()) {
      for (const [key, entry] of view.entries) if (key.startsWith(prefix)) out.push([key, entry.value as T]);
    }
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** Drops a partition's view (no longer hosted here); its LMDB rows stay, as the cache of its log. */
  unload(partition: number): void {
    const view = this.views.get(partition);
    if (view === undefined) return;
    view.unloaded = true;
    this.views.delete(partition);
    // Writes already appended still reach LMDB, in order, before a new load reads it.
    const drained = this.settled(view);
    this.draining.set(partition, drained);
    void drained.then(() => {
      if (this.draining.get(partition) === drained) this.draining.delete(partition);
    });
  }

  /**
   * Snapshots the partition's live state into its log and deletes the segments below the
   * snapshot, when the log holds more than `minBytes` and more than `ratio` times the live
   * state (and more than one segment: the active one is never deleted).
   */
  compact(partition: number, options: CompactionOptions = {}): Promise<CompactionResult> {
    const minBytes = options.minBytes ?? DEFAULT_COMPACTION_MIN_BYTES;
    const ratio = options.ratio ?? DEFAULT_COMPACTION_RATIO;
    if (!Number.isSafeInteger(minBytes) || minBytes < 0) return Promise.reject(new InvalidArgumentError(`minBytes must be a non-negative integer, got ${minBytes}`));
    if (!Number.isFinite(ratio) || ratio < 1) return Promise.reject(new InvalidArgumentError(`ratio must be a number >= 1, got ${ratio}`));
    const view = this.views.get(partition);
    if (view === undefined || this.closing) return Promise.resolve({ compacted: false, bytesFreed: 0 });
    if (view.compaction !== null) return view.compaction;
    const { log } = view;
    if (log.segmentCount < 2 || log.sizeBytes <= minBytes || log.sizeBytes <= ratio * view.liveBytes) {
      return Promise.resolve({ compacted: false, bytesFreed: 0 });
    }
    const compaction = this.runCompaction(view).finally(() => {
      view.compaction = null;
    });
    view.compaction = compaction;
    return compaction;
  }

  /** Waits for writes and compactions in progress, then closes LMDB. Logs stay open (their owner closes them). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const views = [...this.views.values()];
      await Promise.all([...views.map((view) => this.settled(view)), ...this.draining.values()]);
      this.views.clear();
      await this.cache.close();
    })();
    return this.closing;
  }

  /** Resolves once the view's compaction, applies and LMDB writes in progress are over. */
  private async settled(view: PartitionView): Promise<void> {
    // A compaction releases held writes, which extend the apply chain: wait until it stays put.
    for (let tail = view.applyTail; ; tail = view.applyTail) {
      await Promise.allSettled([view.compaction, tail]);
      if (view.compaction === null && tail === view.applyTail) break;
    }
    await view.cache.idle();
  }

  private appendAndApply(view: PartitionView, batch: Buffer, changes: readonly StateChange[]): Promise<void> {
    // Offsets are assigned now, in call order; the apply chain follows the same order.
    const appended = this.appendTo(view.log, batch);
    appended.catch(ignore); // handled in the chain; this stops an early rejection counting as unhandled
    // LMDB is not waited for: it is a cache of the log, and its writes of many appends then
    // share a transaction. unload() and close() wait for them.
    const applied = view.applyTail.then(async () => {
      const result = await appended;
      this.applyToMemory(view, changes);
      void view.cache.write(changes, markOfBatch(batch, result.lastOffset));
    });
    view.applyTail = applied.catch(ignore);
    return applied;
  }

  private applyToMemory(view: PartitionView, changes: readonly StateChange[]): void {
    for (const { key, text, value } of changes) {
      const previous = view.entries.get(key);
      if (previous !== undefined) view.liveBytes -= previous.sizeBytes;
      if (text === null || value === null) {
        view.entries.delete(key);
      } else {
        const sizeBytes = stateRecordBytes(key, text);
        view.entries.set(key, { value, sizeBytes });
        view.liveBytes += sizeBytes;
      }
    }
  }

  private async replay(view: PartitionView, fromOffset: number): Promise<number> {
    const { log, partition } = view;
    let replayed = 0;
    let skipped = 0;
    let offset = fromOffset;
    while (offset < log.logEndOffset) {
      // Group state is the master's own log: replayed to its end, not to the consumers' watermark.
      const { records, nextOffset } = log.read(offset, REPLAY_READ_BYTES, "logEnd");
      if (nextOffset <= offset || records.length < BATCH_HEADER_BYTES) {
        throw new StorageError(`replay of ${log.topic}/${partition} made no progress at offset ${offset}`);
      }
      const changes: StateChange[] = [];
      forEachRecord(records, offset, (record) => {
        const key = record.key?.toString("utf8");
        if (key === SNAPSHOT_MARKER_KEY) return;
        const change = key === undefined || parseKey(key) === undefined ? undefined : decodeStateChange(key, record.value?.toString("utf8") ?? null);
        if (change === undefined) skipped++;
        else changes.push(change);
      });
      this.applyToMemory(view, changes);
      await view.cache.write(changes, markOfLastBatch(records));
      replayed += changes.length;
      offset = nextOffset;
    }
    if (skipped > 0) this.logger.warn({ partition, skipped }, "group state replay skipped records that are not group state");
    return replayed;
  }

  private async runCompaction(view: PartitionView): Promise<CompactionResult> {
    const held: HeldWrite[] = [];
    view.held = held;
    let snapshot: { startOffset: Promise<number>; applied: Promise<void> } | undefined;
    try {
      // Everything appended before the hold is applied, so memory is the log's state up to
      // its end, and nothing can land between that state and the snapshot restating it.
      await view.applyTail;
      if (!view.unloaded && !this.closing) snapshot = this.appendSnapshot(view);
    } finally {
      view.held = null;
      for (const write of held) {
        if (view.unloaded) write.reject(this.notLoaded(view.partition));
        else this.appendAndApply(view, write.batch, write.changes).then(write.resolve, write.reject);
      }
    }
    if (snapshot === undefined) return { compacted: false, bytesFreed: 0 };
    const startOffset = await snapshot.startOffset;
    // The LMDB mark moves past the snapshot before the segments below it go.
    await snapshot.applied;
    const sizeBefore = view.log.sizeBytes;
    const bytesFreed = await view.log.advanceLogStart(startOffset);
    this.logger.info(
      { partition: view.partition, snapshotOffset: startOffset, keys: view.entries.size, bytesFreed, sizeBytes: sizeBefore - bytesFreed },
      "group state log compacted",
    );
    return { compacted: true, bytesFreed };
  }

  /** Appends every live key, then the marker; all appends are issued synchronously. */
  private appendSnapshot(view: PartitionView): { startOffset: Promise<number>; applied: Promise<void> } {
    const live = Array.from(view.entries, ([key, entry]): [string, StateValue] => [key, entry.value]);
    const batches = encodeSnapshot(live, Date.now());
    const appends: Promise<AppendResult>[] = batches.map((batch) => this.appendTo(view.log, batch));
    for (const appended of appends) appended.catch(ignore);
    const last = batches[batches.length - 1]!;
    // A snapshot restates memory: applying it only moves LMDB's mark past it.
    const applied = view.applyTail.then(async () => {
      const results = await Promise.all(appends);
      return { committed: view.cache.write([], markOfBatch(last, results[results.length - 1]!.lastOffset)) };
    });
    view.applyTail = applied.then(ignore, ignore);
    return { startOffset: appends[0]!.then((result) => result.baseOffset), applied: applied.then(({ committed }) => committed) };
  }

  private notLoaded(partition: number): NotCoordinatorError {
    return new NotCoordinatorError(`group state partition ${partition} is not loaded on this broker; find the group's coordinator again`);
  }
}
