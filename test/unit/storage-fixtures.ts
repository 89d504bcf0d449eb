/**
 * Helpers for the commit-log tests: valid record batches without a record codec (the log never
 * decodes records, so any record bytes will do), temp directories, a logger that keeps what it
 * logs, and StorageIo wrappers that count fsyncs or fail writes on demand.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino, type Logger } from "pino";
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  LOG_OVERHEAD_BYTES,
  computeBatchCrc,
} from "../../common/src/batch/layout.js";
import { DEFAULT_PARTITION_CONFIG, type PartitionConfig } from "../../broker/src/storage/config.js";
import { nodeStorageIo, type StorageIo } from "../../broker/src/storage/storage-io.js";

export interface BatchSpec {
  /** Records the batch claims to hold. @defaultValue 1 */
  records?: number;
  /** Bytes of record payload after the header. @defaultValue 32 */
  payloadBytes?: number;
  /** base and max timestamp. @defaultValue 1_700_000_000_000 */
  timestampMs?: number;
  /** Seeds the payload pattern so batches differ. @defaultValue 0 */
  seed?: number;
}

/** A RecordBatch v2 with a correct header and CRC32C; the records are opaque bytes. */
export function makeBatch(spec: BatchSpec = {}): Buffer {
  const records = spec.records ?? 1;
  const payloadBytes = spec.payloadBytes ?? 32;
  const timestampMs = spec.timestampMs ?? 1_700_000_000_000;
  const seed = spec.seed ?? 0;
  const batch = Buffer.alloc(BATCH_HEADER_BYTES + payloadBytes);
  batch.writeBigInt64BE(0n, 0); // baseOffset: stamped by the log
  batch.writeInt32BE(batch.length - LOG_OVERHEAD_BYTES, BATCH_LENGTH_AT);
  batch.writeInt32BE(-1, 12); // partitionLeaderEpoch: stamped by the log
  batch.writeInt8(2, 16); // magic
  batch.writeInt16BE(0, 21); // attributes: no compression, create time
  batch.writeInt32BE(records - 1, 23); // lastOffsetDelta
  batch.writeBigInt64BE(BigInt(timestampMs), 27); // baseTimestamp
  batch.writeBigInt64BE(BigInt(timestampMs), 35); // maxTimestamp
  batch.writeBigInt64BE(-1n, 43); // producerId
  batch.writeInt16BE(-1, 51); // producerEpoch
  batch.writeInt32BE(-1, 53); // baseSequence
  batch.writeInt32BE(records, 57); // recordCount
  for (let i = 0; i < payloadBytes; i++) batch[BATCH_HEADER_BYTES + i] = (seed * 31 + i * 7) & 0xff;
  batch.writeUInt32BE(computeBatchCrc(batch), 17);
  return batch;
}

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-"));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function testConfig(overrides: Partial<PartitionConfig> = {}): PartitionConfig {
  return { ...DEFAULT_PARTITION_CONFIG, ...overrides };
}

/** A pino logger at warn level whose lines are kept, parsed, for assertions. */
export function capturingLogger(): { logger: Logger; lines: { level: number; msg: string; [key: string]: unknown }[] } {
  const lines: { level: number; msg: string; [key: string]: unknown }[] = [];
  const logger = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/** Counts fdatasync calls; can hold them open until released, to observe in-flight groups. */
export class CountingIo implements StorageIo {
  fdatasyncs = 0;
  writevs = 0;
  private held: (() => void)[] = [];
  holdSyncs = false;

  writev(fd: number, buffers: readonly Buffer[], position: number): number {
    this.writevs++;
    return nodeStorageIo.writev(fd, buffers, position);
  }
  write(fd: number, buffer: Buffer, position: number): number {
    return nodeStorageIo.write(fd, buffer, position);
  }
  async fdatasync(fd: number): Promise<void> {
    this.fdatasyncs++;
    if (this.holdSyncs) await new Promise<void>((resolve) => this.held.push(resolve));
    return nodeStorageIo.fdatasync(fd);
  }
  ftruncate(fd: number, length: number): void {
    nodeStorageIo.ftruncate(fd, length);
  }
  get heldSyncs(): number {
    return this.held.length;
  }
  releaseSyncs(): void {
    this.holdSyncs = false;
    for (const release of this.held.splice(0)) release();
  }
}

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected by the test`), { code });
}

/**
 * Fails writes on demand the way a filling disk does: the armed gather write stores only part
 * of its bytes (a short write) and the next write throws ENOSPC.
 */
export class FailingIo implements StorageIo {
  private failing: { partialBytes: number; code: string; skipWrites: number } | null = null;
  private failSyncWith: string | null = null;
  truncations = 0;

  /**
   * After `afterWrites` more successful log writes, the next one stores `partialBytes` and the
   * write after it throws `code` (ENOSPC by default). Fails once, then writes work again.
   */
  failNextWrite(partialBytes: number, options: { afterWrites?: number; code?: string } = {}): void {
    this.failing = { partialBytes, code: options.code ?? "ENOSPC", skipWrites: options.afterWrites ?? 0 };
  }
  failNextSync(code = "EIO"): void {
    this.failSyncWith = code;
  }

  writev(fd: number, buffers: readonly Buffer[], position: number): number {
    const failing = this.failing;
    if (!failing) return nodeStorageIo.writev(fd, buffers, position);
    if (failing.skipWrites > 0) {
      failing.skipWrites--;
      return nodeStorageIo.writev(fd, buffers, position);
    }
    if (failing.partialBytes > 0) {
      const whole = Buffer.concat(buffers as Buffer[]);
      const partial = Math.min(failing.partialBytes, whole.length - 1);
      failing.partialBytes = 0;
      return nodeStorageIo.write(fd, whole.subarray(0, partial), position);
    }
    this.failing = null;
    throw errnoError(failing.code);
  }
  write(fd: number, buffer: Buffer, position: number): number {
    return nodeStorageIo.write(fd, buffer, position);
  }
  async fdatasync(fd: number): Promise<void> {
    const code = this.failSyncWith;
    this.failSyncWith = null;
    if (code) {
      // A disk reports EIO after trying for a while; appends keep arriving meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 20));
      throw errnoError(code);
    }
    return nodeStorageIo.fdatasync(fd);
  }
  ftruncate(fd: number, length: number): void {
    this.truncations++;
    nodeStorageIo.ftruncate(fd, length);
  }
}

/** Bytes of a whole file, or null when it does not exist. */
export function fileBytes(file: string): Buffer | null {
  return fs.existsSync(file) ? fs.readFileSync(file) : null;
}

/** Reads every batch from `from` to the end of the log, as the broker's fetch would. */
export function readAll(log: { read(offset: number, maxBytes: number): { records: Buffer; nextOffset: number }; logEndOffset: number }, from: number, maxBytes = 1024 * 1024): Buffer {
  const parts: Buffer[] = [];
  let offset = from;
  while (offset < log.logEndOffset) {
    const { records, nextOffset } = log.read(offset, maxBytes);
    parts.push(records);
    offset = nextOffset;
  }
  return Buffer.concat(parts);
}

/** Waits until `predicate` holds, polling; fails after `timeoutMs`. */
export async function eventually(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
