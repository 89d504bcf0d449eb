/**
 * The file operations of the write path, behind a small seam so tests can count fsyncs and
 * make a write fail part-way (a full disk cannot be conjured on demand). Opening, reading and
 * recovery use `node:fs` directly: they have nothing a test needs to fake.
 */
import fs from "node:fs";
import path from "node:path";

export interface StorageIo {
  /** Positional gather write; may write fewer bytes than asked (a short write), or throw. */
  writev(fd: number, buffers: readonly Buffer[], position: number): number;
  /** Positional write of one buffer; may write fewer bytes than asked, or throw. */
  write(fd: number, buffer: Buffer, position: number): number;
  /** Forces the file's data (not its metadata unless needed to read it back) to disk. */
  fdatasync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): void;
}

export const nodeStorageIo: StorageIo = {
  writev: (fd, buffers, position) => fs.writevSync(fd, buffers as Buffer[], position),
  write: (fd, buffer, position) => fs.writeSync(fd, buffer, 0, buffer.length, position),
  fdatasync: (fd) =>
    new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))),
  ftruncate: (fd, length) => fs.ftruncateSync(fd, length),
};

/**
 * Writes all of `buffers` at `position`, continuing after short writes. A write that makes
 * no progress, or throws, leaves the partly written bytes for the caller to truncate.
 */
export function writeFully(io: StorageIo, fd: number, buffers: readonly Buffer[], position: number): number {
  let total = 0;
  for (const buffer of buffers) total += buffer.length;
  let done = 0;
  while (done < total) {
    const written = io.writev(fd, done === 0 ? buffers : remainingAfter(buffers, done), position + done);
    if (written <= 0) {
      throw Object.assign(new Error(`write made no progress at file position ${position + done}`), { code: "EIO" });
    }
    done += written;
  }
  return total;
}

function remainingAfter(buffers: readonly Buffer[], skip: number): Buffer[] {
  const rest: Buffer[] = [];
  let toSkip = skip;
  for (const buffer of buffers) {
    if (toSkip >= buffer.length) {
      toSkip -= buffer.length;
      continue;
    }
    rest.push(toSkip > 0 ? buffer.subarray(toSkip) : buffer);
    toSkip = 0;
  }
  return rest;
}

/** Reads exactly `length` bytes at `position` unless the file ends first; returns bytes read. */
export function readFully(fd: number, into: Buffer, offsetInBuffer: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, into, offsetInBuffer + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Makes a file creation, rename or deletion in `dir` durable. Needed on top of fsyncing the
 * file itself: a new segment whose directory entry is lost in a machine crash is lost whole.
 */
export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replaces a small file whole, crash-safely: written to `<file>.tmp`, fsynced, renamed over
 * `file`, and the directory fsynced, so a crash leaves either the old or the new content.
 */
export function writeFileDurably(file: string, content: string): void {
  const temporary = `${file}.tmp`;
  const fd = fs.openSync(temporary, "w", 0o644);
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
  fsyncDirectory(path.dirname(file));
}
