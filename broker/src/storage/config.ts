/**
 * Per-partition settings of the commit log, with their defaults and the one check that
 * validates them. Topic configuration (LMDB, admin API) produces these; the log never
 * second-guesses them after `validatePartitionConfig` has accepted them.
 */
import { InvalidConfigError } from "../../../common/src/errors.js";

/**
 * When appended bytes are forced to disk (Redis AOF's three choices):
 * - `sync`: fsync before the append is acknowledged; survives a machine crash.
 * - `interval`: the LogManager fsyncs every partition every `flushIntervalMs` (1 s); a machine
 *   crash loses at most that window, a process crash loses nothing (the page cache survives).
 * - `os`: never fsynced explicitly until close; the kernel writes back when it likes.
 */
export type FlushPolicy = "sync" | "interval" | "os";

export const FLUSH_POLICIES: readonly FlushPolicy[] = ["sync", "interval", "os"];

export interface PartitionConfig {
  /** A segment is rolled when the next batch would take it past this size. @defaultValue 256 MiB */
  segmentBytes: number;
  /** One offset-index entry per this many bytes of log. @defaultValue 4096 */
  indexIntervalBytes: number;
  /** Segments whose newest append is older than this are deleted; 0 keeps them forever. @defaultValue 7 days */
  retentionMs: number;
  /** Oldest segments are deleted while the partition stays at or above this size; 0 = unlimited. @defaultValue 0 */
  retentionBytes: number;
  /** @defaultValue "interval" */
  flush: FlushPolicy;
}

export const DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024;
export const DEFAULT_INDEX_INTERVAL_BYTES = 4096;
export const DEFAULT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
export const DEFAULT_RETENTION_BYTES = 0;
export const DEFAULT_FLUSH_POLICY: FlushPolicy = "interval";

export const DEFAULT_PARTITION_CONFIG: PartitionConfig = Object.freeze({
  segmentBytes: DEFAULT_SEGMENT_BYTES,
  indexIntervalBytes: DEFAULT_INDEX_INTERVAL_BYTES,
  retentionMs: DEFAULT_RETENTION_MS,
  retentionBytes: DEFAULT_RETENTION_BYTES,
  flush: DEFAULT_FLUSH_POLICY,
});

/** Index entries hold file positions as int32, so a segment cannot grow past this. */
export const MAX_SEGMENT_BYTES = 0x7fffffff;
/** Small enough for tests that roll often; a segment always holds at least one batch anyway. */
export const MIN_SEGMENT_BYTES = 64;

/** Throws InvalidConfigError explaining the first bad field; returns a frozen copy. */
export function validatePartitionConfig(config: PartitionConfig): PartitionConfig {
  const integerIn = (name: keyof PartitionConfig, min: number, max: number): void => {
    const value = config[name];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidConfigError(`${name} must be an integer between ${min} and ${max}, got ${String(value)}`);
    }
  };
  integerIn("segmentBytes", MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
  integerIn("indexIntervalBytes", 0, MAX_SEGMENT_BYTES);
  integerIn("retentionMs", 0, Number.MAX_SAFE_INTEGER);
  integerIn("retentionBytes", 0, Number.MAX_SAFE_INTEGER);
  if (!FLUSH_POLICIES.includes(config.flush)) {
    throw new InvalidConfigError(`flush must be one of ${FLUSH_POLICIES.join(", ")}, got ${String(config.flush)}`);
  }
  return Object.freeze({
    segmentBytes: config.segmentBytes,
    indexIntervalBytes: config.indexIntervalBytes,
    retentionMs: config.retentionMs,
    retentionBytes: config.retentionBytes,
    flush: config.flush,
  });
}
