/**
 * Client-side decoder of Kafka RecordBatch v2: walks batches laid end to end (as a fetch
 * returns them from the log) and yields their records. Header layout: layout.ts; record
 * layout: builder.ts.
 *
 * What is checked, so malformed input gives a CorruptBatchError and never a crash, a
 * wrong answer or an endless loop:
 *   - per batch: length field, magic, record count vs lastOffsetDelta, CRC32C
 *     (batchProblem in layout.ts), and a supported codec;
 *   - per record: every length and varint stays inside its record, the record inside its
 *     batch, and the fields fill the record exactly;
 *   - the batch holds exactly recordCount records, no more bytes and no fewer records.
 * A batch whose length field reaches past the end of `data` is a trailing partial batch
 * (fetches are cut at a byte limit, not at a batch boundary) and is ignored, as Kafka
 * consumers do. Batches that end before `fromOffset` are checked, then skipped undecoded.
 *
 * Records point into the input (or into the decompressed block): key and value are
 * `subarray` views, no copies. Records without headers share one frozen empty object.
 */
import { CorruptBatchError } from "../errors.js";
import { decompressRecords } from "./compression.js";
import {
  BASE_OFFSET_AT,
  BASE_TIMESTAMP_AT,
  BATCH_HEADER_BYTES,
  CONTROL_BIT,
  LOG_OVERHEAD_BYTES,
  MAX_TIMESTAMP_AT,
  RECORDS_AT,
  TIMESTAMP_TYPE_BIT,
  attributesOf,
  batchProblem,
  batchSizeAt,
  lastOffsetDeltaOf,
  recordCountOf,
} from "./layout.js";
import { ByteCursor } from "./varint.js";

export interface DecodedRecord {
  offset: number;
  /** ms since the epoch: creation time, or the log-append time for batches marked so. */
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  /**
   * Header values by key. Kafka allows repeated keys: the last one wins. A null header
   * value (Sluice never writes one; other Kafka clients may) reads as an empty Buffer.
   */
  headers: Record<string, Buffer>;
}

const NO_HEADERS: Record<string, Buffer> = Object.freeze({}) as Record<string, Buffer>;
const EMPTY_BUFFER = Buffer.alloc(0);
const TWO_POW_32 = 0x100000000;
/** attributes, timestampDelta, offsetDelta, keyLength, valueLength, headerCount: 1 byte each at least. */
const MIN_RECORD_BODY_BYTES = 6;
/** A header takes at least its key length and value length varints. */
const MIN_HEADER_BYTES = 2;

function readInt64(buf: Buffer, at: number): number {
  return buf.readInt32BE(at) * TWO_POW_32 + buf.readUInt32BE(at + 4);
}

/**
 * Calls `visit` for every record with offset >= fromOffset in the batches of `data`, in
 * order; returns how many records it visited. Throws CorruptBatchError on malformed data.
 */
export function forEachRecord(data: Buffer, fromOffset: number, visit: (record: DecodedRecord) => void): number {
  let visited = 0;
  let at = 0;
  while (data.length - at >= LOG_OVERHEAD_BYTES) {
    const size = batchSizeAt(data, at);
    if (size < BATCH_HEADER_BYTES) {
      throw new CorruptBatchError(
        `corrupt record batch at byte ${at}: length field ${size - LOG_OVERHEAD_BYTES} is smaller than the ${BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES}-byte header`,
      );
    }
    if (size > data.length - at) break; // trailing partial batch
    visited += visitBatch(data, at, size, fromOffset, visit);
    at += size;
  }
  return visited;
}

/** The records with offset >= fromOffset in the batches of `data`, in order. */
export function decodeRecords(data: Buffer, fromOffset = 0): DecodedRecord[] {
  const records: DecodedRecord[] = [];
  forEachRecord(data, fromOffset, (record) => {
    records.push(record);
  });
  return records;
}

function visitBatch(data: Buffer, at: number, size: number, fromOffset: number, visit: (record: DecodedRecord) => void): number {
  const baseOffset = readInt64(data, at + BASE_OFFSET_AT);
  // Checked before the fromOffset skip: a flipped bit in lastOffsetDelta must not turn a
  // corrupt batch into a skipped one. Only the first batch of a fetch is usually skipped.
  const problem = batchProblem(data, at, size);
  if (problem !== null) {
    throw new CorruptBatchError(`corrupt record batch at byte ${at} (base offset ${baseOffset}): ${problem}`);
  }
  if (baseOffset + lastOffsetDeltaOf(data, at) < fromOffset) return 0;
  const attributes = attributesOf(data, at);
  // Control batches carry transaction markers, not application records.
  if ((attributes & CONTROL_BIT) !== 0) return 0;
  const recordCount = recordCountOf(data, at);
  const baseTimestamp = readInt64(data, at + BASE_TIMESTAMP_AT);
  const logAppendTime = (attributes & TIMESTAMP_TYPE_BIT) !== 0 ? readInt64(data, at + MAX_TIMESTAMP_AT) : null;
  try {
    const section = decompressRecords(attributes, data.subarray(at + RECORDS_AT, at + size));
    return visitRecords(section, recordCount, baseOffset, baseTimestamp, logAppendTime, fromOffset, visit);
  } catch (err) {
    if (err instanceof CorruptBatchError) {
      err.message = `${err.message} (batch at byte ${at}, base offset ${baseOffset})`;
    }
    throw err;
  }
}

function visitRecords(
  section: Buffer,
  recordCount: number,
  baseOffset: number,
  baseTimestamp: number,
  logAppendTime: number | null,
  fromOffset: number,
  visit: (record: DecodedRecord) => void,
): number {
  const sectionEnd = section.length;
  const cursor = new ByteCursor(section, 0, sectionEnd);
  let visited = 0;
  for (let index = 0; index < recordCount; index++) {
    if (cursor.pos >= sectionEnd) {
      throw new CorruptBatchError(`corrupt record batch: record count is ${recordCount} but the data holds only ${index} records`);
    }
    cursor.end = sectionEnd;
    const length = cursor.readVarint("record length");
    const recordEnd = cursor.pos + length;
    if (length < MIN_RECORD_BODY_BYTES || recordEnd > sectionEnd) {
      throw new CorruptBatchError(
        `corrupt record batch: record ${index} has length ${length}, outside ${MIN_RECORD_BODY_BYTES}..${sectionEnd - cursor.pos}`,
      );
    }
    cursor.end = recordEnd;
    cursor.pos++; // record attributes: unused since v2
    const timestampDelta = cursor.readVarlong("timestamp delta");
    const offsetDelta = cursor.readVarint("offset delta");
    const key = cursor.readNullableBytes("key");
    const value = cursor.readNullableBytes("value");
    const headerCount = cursor.readVarint("header count");
    const headers = headerCount === 0 ? NO_HEADERS : readHeaders(cursor, headerCount);
    if (cursor.pos !== recordEnd) {
      throw new CorruptBatchError(
        `corrupt record batch: record ${index} has length ${length} but its fields end ${recordEnd - cursor.pos} bytes early`,
      );
    }
    const offset = baseOffset + offsetDelta;
    if (offset >= fromOffset) {
      visit({ offset, timestamp: logAppendTime ?? baseTimestamp + timestampDelta, key, value, headers });
      visited++;
    }
  }
  if (cursor.pos !== sectionEnd) {
    throw new CorruptBatchError(
      `corrupt record batch: ${sectionEnd - cursor.pos} bytes follow the last of its ${recordCount} records`,
    );
  }
  return visited;
}

function readHeaders(cursor: ByteCursor, headerCount: number): Record<string, Buffer> {
  if (headerCount < 0 || headerCount * MIN_HEADER_BYTES > cursor.end - cursor.pos) {
    throw new CorruptBatchError(`corrupt record batch: header count ${headerCount} does not fit in its record`);
  }
  const headers: Record<string, Buffer> = {};
  for (let i = 0; i < headerCount; i++) {
    const name = cursor.readString("header key");
    const value = cursor.readNullableBytes("header value") ?? EMPTY_BUFFER;
    if (name === "__proto__") {
      // A plain assignment would replace the object's prototype instead of adding a key.
      Object.defineProperty(headers, name, { value, enumerable: true, writable: true, configurable: true });
    } else {
      headers[name] = value;
    }
  }
  return headers;
}
