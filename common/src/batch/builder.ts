/**
 * Client-side encoder of Kafka RecordBatch v2 (magic 2). The batch header is described in
 * layout.ts; this file writes the records that follow it. One record:
 *
 *   field            encoding                 notes
 *   ---------------  -----------------------  ------------------------------------------
 *   length           varint                   bytes of the record after this field
 *   attributes       int8                     always 0 (unused by Kafka since v2)
 *   timestampDelta   varlong                  timestamp - baseTimestamp (may be negative)
 *   offsetDelta      varint                   index of the record in the batch
 *   keyLength        varint                   -1 = null key
 *   key              keyLength bytes
 *   valueLength      varint                   -1 = null value
 *   value            valueLength bytes
 *   headerCount      varint
 *   headers          headerCount times:
 *     keyLength      varint
 *     key            keyLength bytes (UTF-8)
 *     valueLength    varint                   -1 = null value
 *     value          valueLength bytes
 *
 * All varints are ZigZag (see varint.ts). Example: key "k", value "v", no headers, first
 * record of its batch: 10 00 00 00 02 6B 02 76 00 (length 8 -> zigzag 16 = 0x10).
 *
 * Speed: records are written straight into one growable buffer as they are appended. The
 * sizes of a record's fields are computed first so its length prefix is written once, in
 * front, with no per-record arrays or concatenation; build() copies (or compresses) the
 * written bytes into a buffer the caller owns and keeps the working buffer for reuse.
 */
import { crc32c } from "@node-rs/crc32";
import { InvalidArgumentError } from "../errors.js";
import { codecFromName, compressRecords, type CompressionName } from "./compression.js";
import {
  ATTRIBUTES_AT,
  BASE_OFFSET_AT,
  BASE_SEQUENCE_AT,
  BASE_TIMESTAMP_AT,
  BATCH_LENGTH_AT,
  CRC_AT,
  CRC_COVERED_FROM,
  Compression,
  LAST_OFFSET_DELTA_AT,
  LEADER_EPOCH_AT,
  LOG_OVERHEAD_BYTES,
  MAGIC_AT,
  MAGIC_V2,
  MAX_TIMESTAMP_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  RECORDS_AT,
  RECORD_COUNT_AT,
} from "./layout.js";
import { sizeOfVarint, sizeOfVarlong, writeVarint, writeVarlong } from "./varint.js";

/** Keys, values and header values: strings are written as UTF-8. */
export type Bytes = Buffer | string;

export interface RecordInput {
  key?: Bytes | null;
  value: Bytes | null;
  headers?: Record<string, Bytes>;
  /** Creation time in ms since the epoch; when set it wins over the append time. */
  timestamp?: number;
}

export interface BatchOptions {
  /** @defaultValue "none" */
  compression?: CompressionName;
  /** Idempotent producer id; @defaultValue -1 (not idempotent) */
  producerId?: number;
  /** @defaultValue -1 */
  producerEpoch?: number;
  /** Sequence number of the first record; @defaultValue -1 */
  baseSequence?: number;
}

export interface RecordBatchBuilderOptions extends BatchOptions {
  /** Starting size of the working buffer; it doubles when full. @defaultValue 64 KiB */
  initialCapacityBytes?: number;
}

export const DEFAULT_INITIAL_CAPACITY_BYTES = 64 * 1024;
/** Written by clients; the broker stamps the real epoch at append. */
export const CLIENT_LEADER_EPOCH = 0;
/** producerId / producerEpoch / baseSequence of a batch from a non-idempotent producer. */
export const NO_PRODUCER_ID = -1;
export const NO_PRODUCER_EPOCH = -1;
export const NO_SEQUENCE = -1;
/**
 * Latest accepted timestamp (year ~37,600): keeps every timestamp delta exactly
 * representable as a JavaScript number.
 */
export const MAX_TIMESTAMP_MS = 2 ** 50;

const TWO_POW_32 = 0x100000000;
/** Strings up to this many UTF-16 units are written with a byte loop when ASCII. */
const SHORT_STRING_CHARS = 32;

interface ParsedBatchOptions {
  codec: Compression;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  initialCapacityBytes: number;
}

function parseBatchOptions(options: RecordBatchBuilderOptions): ParsedBatchOptions {
  const producerId = options.producerId ?? NO_PRODUCER_ID;
  const producerEpoch = options.producerEpoch ?? NO_PRODUCER_EPOCH;
  const baseSequence = options.baseSequence ?? NO_SEQUENCE;
  const initialCapacityBytes = options.initialCapacityBytes ?? DEFAULT_INITIAL_CAPACITY_BYTES;
  if (!Number.isSafeInteger(producerId) || producerId < -1) {
    throw new InvalidArgumentError(`producerId must be an integer >= -1 (-1 = not idempotent), got ${producerId}`);
  }
  if (!Number.isInteger(producerEpoch) || producerEpoch < -1 || producerEpoch > 0x7fff) {
    throw new InvalidArgumentError(`producerEpoch must be an int16 >= -1, got ${producerEpoch}`);
  }
  if (!Number.isInteger(baseSequence) || baseSequence < -1 || baseSequence > 0x7fffffff) {
    throw new InvalidArgumentError(`baseSequence must be an int32 >= -1, got ${baseSequence}`);
  }
  if (!Number.isSafeInteger(initialCapacityBytes) || initialCapacityBytes < 1) {
    throw new InvalidArgumentError(`initialCapacityBytes must be a positive integer, got ${initialCapacityBytes}`);
  }
  return {
    codec: codecFromName(options.compression ?? "none"),
    producerId,
    producerEpoch,
    baseSequence,
    initialCapacityBytes: Math.max(initialCapacityBytes, RECORDS_AT),
  };
}

/** Byte length of a key, value or header value; -1 for null. */
function lengthOf(bytes: Bytes | null | undefined, what: string): number {
  if (bytes === null || bytes === undefined) return -1;
  if (typeof bytes === "string") return bytes.length === 0 ? 0 : Buffer.byteLength(bytes);
  if (bytes instanceof Uint8Array) return bytes.length;
  throw new InvalidArgumentError(`record ${what} must be a Buffer, a string or null, got ${typeof bytes}`);
}

/** Writes `bytes` (known to be `length` bytes long) at `pos`; returns the position after. */
function writeBytes(buf: Buffer, pos: number, bytes: Bytes, length: number): number {
  if (typeof bytes === "string") {
    if (length !== bytes.length) {
      buf.write(bytes, pos, length, "utf8");
    } else if (length > SHORT_STRING_CHARS) {
      // ASCII (UTF-8 length equals UTF-16 length only then) is its own latin1 encoding,
      // which Node writes about twice as fast as utf8.
      buf.write(bytes, pos, length, "latin1");
    } else {
      // Short ASCII: a loop beats the native call.
      for (let i = 0; i < length; i++) buf[pos + i] = bytes.charCodeAt(i);
    }
  } else {
    buf.set(bytes, pos);
  }
  return pos + length;
}

/** Writes a nullable field: length varint then bytes. */
function writeField(buf: Buffer, pos: number, bytes: Bytes | null | undefined, length: number): number {
  pos = writeVarint(buf, pos, length);
  return length < 0 ? pos : writeBytes(buf, pos, bytes as Bytes, length);
}

/** Writes the int64 `value` (a safe integer) big-endian at `at`. */
function writeInt64(buf: Buffer, at: number, value: number): void {
  buf.writeInt32BE(Math.floor(value / TWO_POW_32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

export class RecordBatchBuilder {
  private readonly options: ParsedBatchOptions;
  private buffer: Buffer;
  private position = RECORDS_AT;
  private recordCount = 0;
  private baseTimestampMs = 0;
  private maxTimestampMs = 0;
  /** Scratch for append(): UTF-8 lengths of header names and values, in pairs. */
  private readonly headerLengths: number[] = [];

  constructor(options: RecordBatchBuilderOptions = {}) {
    this.options = parseBatchOptions(options);
    this.buffer = Buffer.allocUnsafe(this.options.initialCapacityBytes);
  }

  /** Records appended since the last build() or reset(). */
  get count(): number {
    return this.recordCount;
  }

  /** Bytes the batch would take, uncompressed, if built now. */
  get sizeBytes(): number {
    return this.position;
  }

  /** Appends one record; `record.timestamp`, when set, wins over `timestampMs`. */
  append(record: RecordInput, timestampMs: number): void {
    const timestamp = record.timestamp ?? timestampMs;
    if (!Number.isSafeInteger(timestamp) || timestamp < 0 || timestamp > MAX_TIMESTAMP_MS) {
      throw new InvalidArgumentError(`record timestamp must be an integer number of ms since the epoch, got ${timestamp}`);
    }
    const timestampDelta = this.recordCount === 0 ? 0 : timestamp - this.baseTimestampMs;
    const offsetDelta = this.recordCount;
    const key = record.key;
    const value = record.value;
    const headers = record.headers;
    const keyLength = lengthOf(key, "key");
    const valueLength = lengthOf(value, "value");

    // 1. sizes, so the length prefix can be written first
    let bodyBytes =
      1 +
      sizeOfVarlong(timestampDelta) +
      sizeOfVarint(offsetDelta) +
      sizeOfVarint(keyLength) +
      (keyLength > 0 ? keyLength : 0) +
      sizeOfVarint(valueLength) +
      (valueLength > 0 ? valueLength : 0);
    let headerCount = 0;
    if (headers !== undefined && headers !== null) {
      // Lengths are kept for the write pass: UTF-8 lengths of strings are not free.
      const lengths = this.headerLengths;
      for (const name in headers) {
        const nameLength = Buffer.byteLength(name);
        const headerLength = lengthOf(headers[name], "header value");
        bodyBytes += sizeOfVarint(nameLength) + nameLength + sizeOfVarint(headerLength) + (headerLength > 0 ? headerLength : 0);
        lengths[2 * headerCount] = nameLength;
        lengths[2 * headerCount + 1] = headerLength;
        headerCount++;
      }
    }
    bodyBytes += sizeOfVarint(headerCount);
    const recordBytes = sizeOfVarint(bodyBytes) + bodyBytes;
    if (this.position + recordBytes > this.buffer.length) this.grow(this.position + recordBytes);

    // Sizing threw for any bad field, so from here on the record is appended whole.
    if (this.recordCount === 0) {
      this.baseTimestampMs = timestamp;
      this.maxTimestampMs = timestamp;
    } else if (timestamp > this.maxTimestampMs) {
      this.maxTimestampMs = timestamp;
    }

    // 2. bytes
    const buf = this.buffer;
    let pos = writeVarint(buf, this.position, bodyBytes);
    buf[pos++] = 0; // attributes
    pos = writeVarlong(buf, pos, timestampDelta);
    pos = writeVarint(buf, pos, offsetDelta);
    pos = writeField(buf, pos, key, keyLength);
    pos = writeField(buf, pos, value, valueLength);
    pos = writeVarint(buf, pos, headerCount);
    if (headerCount > 0) {
      const lengths = this.headerLengths;
      let index = 0;
      for (const name in headers) {
        pos = writeField(buf, pos, name, lengths[index++]!);
        pos = writeField(buf, pos, headers[name], lengths[index++]!);
      }
    }
    this.position = pos;
    this.recordCount++;
  }

  /**
   * The batch as a new Buffer owned by the caller: base offset 0 and leader epoch 0 (the
   * broker stamps both), CRC32C set. Resets the builder for the next batch.
   */
  build(): Buffer {
    if (this.recordCount === 0) {
      throw new InvalidArgumentError("cannot build a record batch with no records; append at least one record first");
    }
    const codec = this.options.codec;
    let batch: Buffer;
    if (codec === Compression.None) {
      batch = Buffer.allocUnsafe(this.position);
      this.buffer.copy(batch, 0, 0, this.position);
    } else {
      const compressed = compressRecords(codec, this.buffer.subarray(RECORDS_AT, this.position));
      batch = Buffer.allocUnsafe(RECORDS_AT + compressed.length);
      compressed.copy(batch, RECORDS_AT);
    }
    this.writeHeader(batch, codec);
    this.reset();
    return batch;
  }

  /** Drops the appended records; the working buffer is kept. */
  reset(): void {
    this.position = RECORDS_AT;
    this.recordCount = 0;
    this.baseTimestampMs = 0;
    this.maxTimestampMs = 0;
  }

  private writeHeader(batch: Buffer, codec: Compression): void {
    const { producerId, producerEpoch, baseSequence } = this.options;
    writeInt64(batch, BASE_OFFSET_AT, 0);
    batch.writeInt32BE(batch.length - LOG_OVERHEAD_BYTES, BATCH_LENGTH_AT);
    batch.writeInt32BE(CLIENT_LEADER_EPOCH, LEADER_EPOCH_AT);
    batch.writeInt8(MAGIC_V2, MAGIC_AT);
    batch.writeInt16BE(codec, ATTRIBUTES_AT); // create-time timestamps, not transactional
    batch.writeInt32BE(this.recordCount - 1, LAST_OFFSET_DELTA_AT);
    writeInt64(batch, BASE_TIMESTAMP_AT, this.baseTimestampMs);
    writeInt64(batch, MAX_TIMESTAMP_AT, this.maxTimestampMs);
    writeInt64(batch, PRODUCER_ID_AT, producerId);
    batch.writeInt16BE(producerEpoch, PRODUCER_EPOCH_AT);
    batch.writeInt32BE(baseSequence, BASE_SEQUENCE_AT);
    batch.writeInt32BE(this.recordCount, RECORD_COUNT_AT);
    batch.writeUInt32BE(crc32c(batch.subarray(CRC_COVERED_FROM)) >>> 0, CRC_AT);
  }

  private grow(neededBytes: number): void {
    let capacity = this.buffer.length * 2;
    while (capacity < neededBytes) capacity *= 2;
    const larger = Buffer.allocUnsafe(capacity);
    this.buffer.copy(larger, 0, 0, this.position);
    this.buffer = larger;
  }
}

/** Encodes `records` as one batch; records without a timestamp get the current time. */
export function encodeBatch(records: readonly RecordInput[], options: BatchOptions = {}): Buffer {
  const now = Date.now();
  // Sized for the values (exact for Buffers and ASCII strings) so one batch rarely regrows.
  let estimatedBytes = RECORDS_AT;
  for (const record of records) estimatedBytes += 24 + (record.value?.length ?? 0) + (record.key?.length ?? 0);
  const builder = new RecordBatchBuilder({ ...options, initialCapacityBytes: estimatedBytes });
  for (const record of records) builder.append(record, now);
  return builder.build();
}
