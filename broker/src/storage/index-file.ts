/**
 * A file of fixed-size entries mirrored in memory: what the offset index and the time index
 * have in common. Lookups use the in-memory copy; the file is only appended to, truncated on a
 * failed append, or rewritten whole after a rebuild.
 *
 * Entries are added in memory first (`push`) and reach the file with `persist`, one write per
 * group commit, so an index costs no extra syscall per batch.
 */
import fs from "node:fs";
import { readFully, writeFully, type StorageIo } from "./storage-io.js";

const INITIAL_CAPACITY_ENTRIES = 64;

export abstract class IndexFile {
  private entries: Buffer;
  private entryCount: number;
  /** Entries known to be in the file; the rest exist only in memory until `persist`. */
  private persistedCount: number;
  private closed = false;
  /** Set when a persist failed part-way: the file may hold bytes past persistedCount. */
  private fileMayHoldTornTail = false;

  protected constructor(
    readonly path: string,
    private readonly fd: number,
    protected readonly entryBytes: number,
    content: Buffer,
  ) {
    this.entryCount = Math.floor(content.length / entryBytes);
    this.persistedCount = this.entryCount;
    this.entries = Buffer.alloc(Math.max(INITIAL_CAPACITY_ENTRIES, this.entryCount) * entryBytes);
    content.copy(this.entries, 0, 0, this.entryCount * entryBytes);
  }

  /**
   * Opens (creating if missing) an index file and reads it whole. `problem` says why the
   * content cannot be trusted as is (a torn entry); subclasses check the rest.
   */
  protected static openFile(path: string, entryBytes: number): { fd: number; content: Buffer; existed: boolean; problem: string | null } {
    const existed = fs.existsSync(path);
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    const size = fs.fstatSync(fd).size;
    const content = Buffer.allocUnsafe(size);
    readFully(fd, content, 0, size, 0);
    const problem = size % entryBytes === 0 ? null : `size ${size} is not a multiple of ${entryBytes}-byte entries`;
    return { fd, content, existed, problem };
  }

  get count(): number {
    return this.entryCount;
  }

  /** Bytes of entry `i`, for the subclass's field accessors. */
  protected entryAt(i: number): number {
    return i * this.entryBytes;
  }

  /**
   * Index of the last entry whose key (`keyAt(i)`, ascending with i) is ≤ `key`, or -1: the
   * binary search both indexes run on their relative offsets.
   */
  protected lastAtOrBelow(keyAt: (i: number) => number, key: number): number {
    let low = 0;
    let high = this.count - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      if (keyAt(mid) <= key) {
        found = mid;
        low = mid + 1;
      } else {
        high = mid - 1;
      }
    }
    return found;
  }

  protected get view(): Buffer {
    return this.entries;
  }

  /** Reserves room for one more entry and returns where to encode it. */
  protected pushSlot(): number {
    const needed = (this.entryCount + 1) * this.entryBytes;
    if (needed > this.entries.length) {
      const grown = Buffer.alloc(this.entries.length * 2);
      this.entries.copy(grown, 0, 0, this.entryCount * this.entryBytes);
      this.entries = grown;
    }
    return this.entryCount++ * this.entryBytes;
  }

  /** Appends the entries pushed since the last call to the file, in one write. */
  persist(io: StorageIo): void {
    if (this.persistedCount === this.entryCount) return;
    const from = this.persistedCount * this.entryBytes;
    try {
      writeFully(io, this.fd, [this.entries.subarray(from, this.entryCount * this.entryBytes)], from);
    } catch (err) {
      this.fileMayHoldTornTail = true;
      throw err;
    }
    this.persistedCount = this.entryCount;
  }

  /** Forgets entries from `count` on, in memory and in the file. */
  truncateTo(count: number, io: StorageIo): void {
    if (count < this.persistedCount || this.fileMayHoldTornTail) {
      const keep = Math.min(this.persistedCount, count);
      io.ftruncate(this.fd, keep * this.entryBytes);
      this.persistedCount = keep;
      this.fileMayHoldTornTail = false;
    }
    this.entryCount = Math.min(this.entryCount, count);
  }

  /** Drops every entry in memory; the file is untouched until `rewrite`. */
  reset(): void {
    this.entryCount = 0;
  }

  /** Replaces the file's content with the in-memory entries (after a rebuild) and syncs it. */
  rewrite(io: StorageIo): void {
    io.ftruncate(this.fd, 0);
    this.persistedCount = 0;
    this.persist(io);
    fs.fdatasyncSync(this.fd);
  }

  /** fdatasync now, blocking: for the rare operations (truncation) that must finish in order. */
  syncNow(): void {
    if (!this.closed) fs.fdatasyncSync(this.fd);
  }

  sync(io: StorageIo): Promise<void> {
    return this.closed ? Promise.resolve() : io.fdatasync(this.fd);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}
