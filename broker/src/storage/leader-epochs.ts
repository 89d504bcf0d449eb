/**
 * The leader-epoch history of one partition (Kafka's leader-epoch-checkpoint): for each epoch
 * under which this log received data, the first offset written under it. Replication compares
 * two histories to find where a returning former master's log diverged (divergence.ts).
 *
 * File `<partition dir>/leader-epochs`, text, replaced atomically (temp file, fsync, rename,
 * fsync of the directory) whenever the history changes, which is rare (once per epoch):
 *
 *   sluice-leader-epochs 1          header: format name and version
 *   <epoch> <startOffset>\n         one line per entry, epochs and start offsets ascending
 *
 * Epoch -1 is a real value here: batches written before epochs existed (or by a broker that is
 * not replicated) carry -1, and two replicas holding the same such data must agree on it.
 *
 * Ordering on disk: an entry is written before the data it describes (the log calls `assign`
 * before queueing the batch), and truncation cuts the log before the history, so after a
 * crash the file never lacks an entry for data that is in the log; entries past the log end
 * are dropped when the log opens. A missing or unreadable file is rebuilt from batch headers.
 */
import fs from "node:fs";
import path from "node:path";
import { InternalError, InvalidArgumentError } from "../../../common/src/errors.js";
import { fsyncDirectory, writeFileDurably } from "./storage-io.js";

export const LEADER_EPOCHS_FILE = "leader-epochs";
const HEADER = "sluice-leader-epochs 1";
/** The smallest epoch a batch can carry: Kafka's "no leader epoch". */
const NO_EPOCH = -1;

export interface EpochEntry {
  readonly epoch: number;
  /** First offset written under `epoch` in this partition. */
  readonly startOffset: number;
}

export class LeaderEpochCache {
  private list: EpochEntry[];
  /** The newest epoch, or -Infinity when empty, so that any epoch ≥ -1 counts as newer. */
  private newest: number;

  private constructor(
    readonly file: string,
    entries: EpochEntry[],
  ) {
    this.list = entries;
    this.newest = entries.length === 0 ? Number.NEGATIVE_INFINITY : entries[entries.length - 1]!.epoch;
  }

  /**
   * Reads `<dir>/leader-epochs`. `problem` says why the history must be rebuilt from the log
   * (missing file: data from before this feature; unreadable: a damaged file); the cache is
   * then empty.
   */
  static load(dir: string): { cache: LeaderEpochCache; problem: string | null } {
    const file = path.join(dir, LEADER_EPOCHS_FILE);
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (err) {
      const problem = (err as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : `unreadable: ${(err as Error).message}`;
      return { cache: new LeaderEpochCache(file, []), problem };
    }
    const parsed = parseEntries(text);
    if (typeof parsed === "string") return { cache: new LeaderEpochCache(file, []), problem: `unreadable: ${parsed}` };
    return { cache: new LeaderEpochCache(file, parsed), problem: null };
  }

  /** The newest epoch, -1 when empty. */
  get latestEpoch(): number {
    return this.list.length === 0 ? NO_EPOCH : this.newest;
  }

  get isEmpty(): boolean {
    return this.list.length === 0;
  }

  /** A copy of the entries, ascending. */
  entries(): EpochEntry[] {
    return this.list.slice();
  }

  /** Whether `assign(epoch, …)` would add an entry: the append path's cheap test. */
  isNewer(epoch: number): boolean {
    return epoch > this.newest;
  }

  /**
   * Records that `epoch` starts at `startOffset`; ignored unless the epoch is newer than the
   * latest (any epoch ≥ -1 is newer than an empty history). An entry at the same start offset
   * as the last one replaces it: that epoch never received data (a master deposed before its
   * first append). A lower start offset is a bug in the caller. Returns whether it changed.
   */
  assign(epoch: number, startOffset: number): boolean {
    if (!Number.isSafeInteger(epoch) || epoch < NO_EPOCH || !Number.isSafeInteger(startOffset) || startOffset < 0) {
      throw new InvalidArgumentError(`leader epoch entry (${epoch}, ${startOffset}) is invalid: epoch must be ≥ -1 and the start offset ≥ 0`);
    }
    if (!this.isNewer(epoch)) return false;
    const last = this.list[this.list.length - 1];
    if (last !== undefined && startOffset < last.startOffset) {
      throw new InternalError(
        `leader epoch ${epoch} cannot start at offset ${startOffset}: epoch ${last.epoch} already starts at ${last.startOffset} in ${this.file}`,
      );
    }
    const next = last !== undefined && startOffset === last.startOffset ? this.list.slice(0, -1) : this.list.slice();
    next.push({ epoch, startOffset });
    this.replace(next);
    return true;
  }

  /**
   * Kafka's end offset for `epoch`: the start of the first entry with a larger epoch, or
   * `logEndOffset` when `epoch` is the latest; -1 when the history does not know the epoch
   * (older than the first entry, newer than the latest, or an empty history).
   */
  endOffsetFor(epoch: number, logEndOffset: number): number {
    return epochEndOffset(this.list, epoch, logEndOffset);
  }

  /** Drops the entries starting at or after `offset` (the log was truncated there). */
  truncateFrom(offset: number): void {
    let keep = this.list.length;
    while (keep > 0 && this.list[keep - 1]!.startOffset >= offset) keep--;
    if (keep < this.list.length) this.replace(this.list.slice(0, keep));
  }

  /**
   * The log now starts at `offset` (retention): entries wholly below it go, and the oldest
   * remaining epoch is moved to start there, so "truncate everything" lands on the log start.
   */
  truncateBefore(offset: number): void {
    let first = 0;
    while (first + 1 < this.list.length && this.list[first + 1]!.startOffset <= offset) first++;
    const head = this.list[first];
    if (head === undefined || (first === 0 && head.startOffset >= offset)) return;
    const next = this.list.slice(first);
    next[0] = { epoch: head.epoch, startOffset: Math.max(head.startOffset, offset) };
    this.replace(next);
  }

  clear(): void {
    if (this.list.length > 0 || !fs.existsSync(this.file)) this.replace([]);
  }

  /** Sets the whole history at once (after a rebuild from batch headers) and writes it. */
  replaceAll(entries: readonly EpochEntry[]): void {
    const problem = orderProblem(entries);
    if (problem !== null) throw new InternalError(`rebuilt leader epochs are out of order: ${problem}`);
    this.replace(entries.slice());
  }

  /**
   * Removes the file (durably) so that, if a crash interrupts what comes next, the next open
   * rebuilds the history from whatever segments remain. The memory copy is kept.
   */
  removeFile(): void {
    fs.rmSync(this.file, { force: true });
    fsyncDirectory(path.dirname(this.file));
  }

  /** Writes first, then switches the memory copy: a failed write leaves both as they were. */
  private replace(entries: EpochEntry[]): void {
    writeFileDurably(this.file, formatEntries(entries));
    this.list = entries;
    this.newest = entries.length === 0 ? Number.NEGATIVE_INFINITY : entries[entries.length - 1]!.epoch;
  }
}

/** `endOffsetFor` over a plain list; shared with divergence.ts. */
export function epochEndOffset(entries: readonly EpochEntry[], epoch: number, logEndOffset: number): number {
  if (entries.length === 0 || epoch < entries[0]!.epoch) return -1;
  const latest = entries[entries.length - 1]!.epoch;
  if (epoch === latest) return logEndOffset;
  if (epoch > latest) return -1;
  for (const entry of entries) {
    if (entry.epoch > epoch) return entry.startOffset;
  }
  return -1;
}

function formatEntries(entries: readonly EpochEntry[]): string {
  let text = `${HEADER}\n`;
  for (const { epoch, startOffset } of entries) text += `${epoch} ${startOffset}\n`;
  return text;
}

/** The entries of a file's text, or why it cannot be trusted. */
function parseEntries(text: string): EpochEntry[] | string {
  const lines = text.split("\n");
  if (lines[0] !== HEADER) return `first line is not "${HEADER}"`;
  if (lines[lines.length - 1] !== "") return "the last line is incomplete";
  const entries: EpochEntry[] = [];
  for (let i = 1; i < lines.length - 1; i++) {
    const match = /^(-?\d+) (\d+)$/.exec(lines[i]!);
    const epoch = match ? Number(match[1]) : Number.NaN;
    const startOffset = match ? Number(match[2]) : Number.NaN;
    if (!Number.isSafeInteger(epoch) || epoch < NO_EPOCH || !Number.isSafeInteger(startOffset)) return `line ${i + 1} is not "<epoch> <startOffset>"`;
    entries.push({ epoch, startOffset });
  }
  return orderProblem(entries) ?? entries;
}

function orderProblem(entries: readonly EpochEntry[]): string | null {
  for (let i = 1; i < entries.length; i++) {
    const before = entries[i - 1]!;
    const entry = entries[i]!;
    if (entry.epoch <= before.epoch || entry.startOffset <= before.startOffset) {
      return `entry (${entry.epoch}, ${entry.startOffset}) does not follow (${before.epoch}, ${before.startOffset})`;
    }
  }
  return null;
}

