/**
 * Record batch layout: byte-compatible with Kafka's RecordBatch v2 (magic 2).
 *
 * All integers are big-endian. Offsets below are from the start of the batch.
 *
 *   offset  size  field                    who writes it
 *   ------  ----  -----------------------  -----------------------------------------------
 *        0     8  baseOffset     int64     broker, at append (outside the CRC)
 *        8     4  batchLength    int32     client: bytes that follow this field (total - 12)
 *       12     4  partitionLeaderEpoch     broker, at append (outside the CRC)
 *       16     1  magic          int8 = 2  client
 *       17     4  crc            uint32    client: CRC32C of bytes 21..end
 *       21     2  attributes     int16     client: bits 0-2 compression (0 none, 1 gzip,
 *                                          2 snappy, 3 lz4, 4 zstd), bit 3 timestamp type,
 *                                          bit 4 transactional, bit 5 control
 *       23     4  lastOffsetDelta int32    client: recordCount - 1
 *       27     8  baseTimestamp  int64     client: first record's timestamp (ms)
 *       35     8  maxTimestamp   int64     client: largest record timestamp (ms)
 *       43     8  producerId     int64     client (-1 when not idempotent)
 *       51     2  producerEpoch  int16     client (-1 when not idempotent)
 *       53     4  baseSequence   int32     client (-1 when not idempotent)
 *       57     4  recordCount    int32     client
 *       61     …  records                  client: recordCount records, compressed as one
 *                                          block when the codec bits are set
 *
 * The broker reads only these header fields, checks the CRC, and stamps baseOffset and
 * partitionLeaderEpoch in place; the CRC does not cover them, so it is never recomputed.
 */
import { crc32c } from "@node-rs/crc32";
import { CorruptBatchError, MessageTooLargeError } from "../errors.js";

export const BASE_OFFSET_AT = 0;
export const BATCH_LENGTH_AT = 8;
export const LEADER_EPOCH_AT = 12;
export const MAGIC_AT = 16;
export const CRC_AT = 17;
export const ATTRIBUTES_AT = 21;
export const LAST_OFFSET_DELTA_AT = 23;
export const BASE_TIMESTAMP_AT = 27;
export const MAX_TIMESTAMP_AT = 35;
export const PRODUCER_ID_AT = 43;
export const PRODUCER_EPOCH_AT = 51;
export const BASE_SEQUENCE_AT = 53;
export const RECORD_COUNT_AT = 57;
export const RECORDS_AT = 61;

/** Bytes of header before the records. */
export const BATCH_HEADER_BYTES = RECORDS_AT;
/** baseOffset + batchLength: the part not counted in batchLength. */
export const LOG_OVERHEAD_BYTES = 12;
/** Where the CRC-covered region starts. */
export const CRC_COVERED_FROM = ATTRIBUTES_AT;

export const MAGIC_V2 = 2;

export const COMPRESSION_MASK = 0x07;
export const enum Compression {
  None = 0,
  Gzip = 1,
  Snappy = 2,
  Lz4 = 3,
  Zstd = 4,
}
export const TIMESTAMP_TYPE_BIT = 0x08;
export const TRANSACTIONAL_BIT = 0x10;
export const CONTROL_BIT = 0x20;

/** Total size of the batch starting at `at`, read from its length field. */
export function batchSizeAt(buf: Buffer, at = 0): number {
  return buf.readInt32BE(at + BATCH_LENGTH_AT) + LOG_OVERHEAD_BYTES;
}

export function baseOffsetOf(buf: Buffer, at = 0): number {
  return Number(buf.readBigInt64BE(at + BASE_OFFSET_AT));
}

export function lastOffsetDeltaOf(buf: Buffer, at = 0): number {
  return buf.readInt32BE(at + LAST_OFFSET_DELTA_AT);
}

export function recordCountOf(buf: Buffer, at = 0): number {
  return buf.readInt32BE(at + RECORD_COUNT_AT);
}

export function maxTimestampOf(buf: Buffer, at = 0): number {
  return Number(buf.readBigInt64BE(at + MAX_TIMESTAMP_AT));
}

export function baseTimestampOf(buf: Buffer, at = 0): number {
  return Number(buf.readBigInt64BE(at + BASE_TIMESTAMP_AT));
}

export function attributesOf(buf: Buffer, at = 0): number {
  return buf.readInt16BE(at + ATTRIBUTES_AT);
}

/** The CRC32C of the covered region of the batch at [at, at + size). */
export function computeBatchCrc(buf: Buffer, at = 0, size = batchSizeAt(buf, at)): number {
  return crc32c(buf.subarray(at + CRC_COVERED_FROM, at + size)) >>> 0;
}

/**
 * Checks one batch that should fill `buf` exactly, as a broker does before appending:
 * size, length field, magic, record count and CRC. Throws a typed error; returns the
 * record count. Never decodes records.
 */
export function validateBatch(buf: Buffer, maxBatchBytes: number): number {
  if (buf.length > maxBatchBytes) {
    throw new MessageTooLargeError(
      `batch of ${buf.length} bytes exceeds the limit of ${maxBatchBytes} bytes (maxMessageBytes); send smaller batches`,
    );
  }
  const problem = batchProblem(buf, 0, buf.length);
  if (problem !== null) throw new CorruptBatchError(`invalid record batch: ${problem}`);
  if (buf.length !== batchSizeAt(buf)) {
    throw new CorruptBatchError(
      `invalid record batch: length field says ${batchSizeAt(buf)} bytes but ${buf.length} were sent; send exactly one batch per request`,
    );
  }
  return recordCountOf(buf);
}

/**
 * Why the batch at `at` (with `available` bytes readable from there) is not a whole,
 * valid batch, or null when it is. Used by validation and by log recovery, which stops
 * at the first batch that fails.
 */
export function batchProblem(buf: Buffer, at: number, available: number): string | null {
  if (available < BATCH_HEADER_BYTES) return `only ${available} bytes, less than the ${BATCH_HEADER_BYTES}-byte header`;
  const size = batchSizeAt(buf, at);
  if (size < BATCH_HEADER_BYTES) return `length field ${size - LOG_OVERHEAD_BYTES} is smaller than a header`;
  if (size > available) return `truncated: length field says ${size} bytes, ${available} present`;
  const magic = buf.readInt8(at + MAGIC_AT);
  if (magic !== MAGIC_V2) return `magic byte is ${magic}, expected ${MAGIC_V2}`;
  const count = recordCountOf(buf, at);
  if (count <= 0) return `record count ${count} must be positive`;
  if (lastOffsetDeltaOf(buf, at) !== count - 1) {
    return `lastOffsetDelta ${lastOffsetDeltaOf(buf, at)} does not match record count ${count}`;
  }
  const stored = buf.readUInt32BE(at + CRC_AT);
  const actual = computeBatchCrc(buf, at, size);
  if (stored !== actual) return `CRC32C mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`;
  return null;
}

/** Writes the broker-owned prefix fields in place. The CRC is unaffected. */
export function stampBatch(buf: Buffer, baseOffset: number, leaderEpoch: number, at = 0): void {
  buf.writeBigInt64BE(BigInt(baseOffset), at + BASE_OFFSET_AT);
  buf.writeInt32BE(leaderEpoch, at + LEADER_EPOCH_AT);
}
