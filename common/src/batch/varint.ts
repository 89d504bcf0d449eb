/**
 * Variable-length integers as Kafka writes them inside a RecordBatch v2 (the protobuf
 * encoding with ZigZag for signed values).
 *
 *   unsigned varint: 7 bits per byte, least significant group first; the high bit (0x80)
 *                    of a byte says "another byte follows".
 *                    300 = 0b1_0010_1100 -> 0xAC 0x02
 *   zigzag:          maps signed to unsigned so small magnitudes stay short:
 *                    0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3, ... (n << 1) ^ (n >> 31)
 *   varint:          zigzag of an int32, at most 5 bytes (the 5th carries only 4 bits)
 *   varlong:         zigzag of an int64, at most 10 bytes
 *
 * Numbers in JavaScript are exact only up to 2^53, so varlongs are written and read for
 * safe integers; a varlong that decodes past 2^53 is reported as corrupt instead of being
 * silently rounded. Every value that appears in records (timestamp deltas of real clocks,
 * lengths, offset deltas) is far inside that range.
 *
 * Writers take the buffer and a position and return the position after the value; the
 * caller has already made room (sizes are computed first, then bytes are written). The
 * reader is a cursor bounded by `end`, so a length or varint can never read past the
 * region it was given.
 */
import { CorruptBatchError } from "../errors.js";

/** Largest magnitude written with the 32-bit fast path of the varlong writer. */
const INT30_LIMIT = 0x40000000;
const MAX_VARLONG_BYTES = 10;
const TWO_POW_28 = 0x10000000;
/** readString remembers up to this many strings of at most this many bytes. */
const MAX_KNOWN_STRINGS = 16;
const MAX_KNOWN_STRING_BYTES = 64;

/** ZigZag of an int32, as an unsigned 32-bit number. */
export function zigzag32(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0;
}

/** Bytes of the unsigned varint for `value` (0 <= value < 2^32). */
export function sizeOfUnsignedVarint(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  return 5;
}

/** Bytes of the zigzag varint for an int32. */
export function sizeOfVarint(value: number): number {
  return sizeOfUnsignedVarint(zigzag32(value));
}

/** Bytes of the zigzag varlong for a safe integer. */
export function sizeOfVarlong(value: number): number {
  if (value >= -INT30_LIMIT && value < INT30_LIMIT) return sizeOfUnsignedVarint(zigzag32(value));
  let unsigned = value >= 0 ? value * 2 : -value * 2 - 1;
  let bytes = 1;
  while (unsigned >= 0x80) {
    unsigned = Math.floor(unsigned / 0x80);
    bytes++;
  }
  return bytes;
}

/** Writes an unsigned varint (0 <= value < 2^32); returns the position after it. */
export function writeUnsignedVarint(buf: Buffer, pos: number, value: number): number {
  while (value > 0x7f) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos++] = value;
  return pos;
}

/** Writes a zigzag varint for an int32; returns the position after it. */
export function writeVarint(buf: Buffer, pos: number, value: number): number {
  return writeUnsignedVarint(buf, pos, zigzag32(value));
}

/** Writes a zigzag varlong for a safe integer; returns the position after it. */
export function writeVarlong(buf: Buffer, pos: number, value: number): number {
  if (value >= -INT30_LIMIT && value < INT30_LIMIT) return writeUnsignedVarint(buf, pos, zigzag32(value));
  // Past 30 bits the shifts of 32-bit arithmetic would wrap: use exact float division.
  let unsigned = value >= 0 ? value * 2 : -value * 2 - 1;
  while (unsigned >= 0x80) {
    buf[pos++] = (unsigned % 0x80) | 0x80;
    unsigned = Math.floor(unsigned / 0x80);
  }
  buf[pos++] = unsigned;
  return pos;
}

/**
 * Reads varints and byte ranges from `buf[pos, end)`. One cursor is reused for every
 * record of a batch (the decoder moves `pos` and narrows `end` to the current record),
 * so reading allocates nothing but the returned views.
 */
export class ByteCursor {
  buf: Buffer;
  pos: number;
  end: number;
  /** Strings read so far (views into `buf`) and their decoded text, for readString. */
  private readonly knownBytes: Buffer[] = [];
  private readonly knownStrings: string[] = [];

  constructor(buf: Buffer, pos: number, end: number) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  readInt8(what: string): number {
    if (this.pos >= this.end) throw this.truncated(what);
    const byte = this.buf[this.pos++]!;
    return byte > 0x7f ? byte - 0x100 : byte;
  }

  /** A zigzag varint (int32). */
  readVarint(what: string): number {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    if (pos >= end) throw this.truncated(what);
    let byte = buf[pos++]!;
    let raw = byte & 0x7f;
    let shift = 7;
    while (byte > 0x7f) {
      if (pos >= end) throw this.truncated(what);
      byte = buf[pos++]!;
      if (shift === 28) {
        // The 5th byte holds bits 28..31; anything above would not fit an int32.
        if (byte > 0x0f) throw new CorruptBatchError(`corrupt record batch: ${what} is a varint longer than 32 bits at byte ${pos - 1}`);
        raw |= byte << 28;
        break;
      }
      raw |= (byte & 0x7f) << shift;
      shift += 7;
    }
    this.pos = pos;
    return (raw >>> 1) ^ -(raw & 1);
  }

  /** A zigzag varlong (int64) whose value is a safe integer. */
  readVarlong(what: string): number {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    if (pos >= end) throw this.truncated(what);
    let byte = buf[pos++]!;
    if (byte < 0x80) {
      this.pos = pos;
      return (byte >>> 1) ^ -(byte & 1);
    }
    // Up to 28 bits in 32-bit integer arithmetic, then exact float arithmetic.
    let unsigned = byte & 0x7f;
    let bytes = 1;
    let scale = 0x80;
    for (;;) {
      if (pos >= end) throw this.truncated(what);
      if (bytes === MAX_VARLONG_BYTES) {
        throw new CorruptBatchError(`corrupt record batch: ${what} is a varlong longer than ${MAX_VARLONG_BYTES} bytes at byte ${pos}`);
      }
      byte = buf[pos++]!;
      bytes++;
      unsigned = scale < TWO_POW_28 ? unsigned | ((byte & 0x7f) * scale) : unsigned + (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
    }
    if (unsigned > Number.MAX_SAFE_INTEGER) {
      throw new CorruptBatchError(`corrupt record batch: ${what} varlong at byte ${this.pos} exceeds 2^53`);
    }
    this.pos = pos;
    return unsigned % 2 === 0 ? unsigned / 2 : -(unsigned + 1) / 2;
  }

  /** A view of the next `length` bytes (no copy). */
  take(length: number, what: string): Buffer {
    const start = this.pos;
    const stop = start + length;
    if (stop > this.end) throw this.pastEnd(length, what);
    this.pos = stop;
    return this.buf.subarray(start, stop);
  }

  /** A length-prefixed byte range (length varint, -1 = null), as a view. */
  readNullableBytes(what: string): Buffer | null {
    const length = this.readVarint(what);
    if (length >= 0) return this.take(length, what);
    if (length === -1) return null;
    throw new CorruptBatchError(`corrupt record batch: ${what} has length ${length} at byte ${this.pos}; only -1 (null) may be negative`);
  }

  /**
   * A length-prefixed UTF-8 string that may not be null. Header keys repeat from record to
   * record, and comparing a few bytes with the strings already read is ~4x cheaper than
   * decoding UTF-8 again, so the cursor remembers the first few short strings it reads.
   */
  readString(what: string): string {
    const length = this.readVarint(what);
    if (length < 0) throw new CorruptBatchError(`corrupt record batch: ${what} has length ${length} at byte ${this.pos}; it may not be null`);
    const buf = this.buf;
    const start = this.pos;
    const stop = start + length;
    if (stop > this.end) throw this.pastEnd(length, what);
    this.pos = stop;
    const known = this.knownBytes;
    search: for (let i = 0; i < known.length; i++) {
      const bytes = known[i]!;
      if (bytes.length !== length) continue;
      for (let j = 0; j < length; j++) if (bytes[j] !== buf[start + j]) continue search;
      return this.knownStrings[i]!;
    }
    const text = buf.toString("utf8", start, stop);
    if (known.length < MAX_KNOWN_STRINGS && length <= MAX_KNOWN_STRING_BYTES) {
      known.push(buf.subarray(start, stop));
      this.knownStrings.push(text);
    }
    return text;
  }

  private pastEnd(length: number, what: string): CorruptBatchError {
    return new CorruptBatchError(
      `corrupt record batch: ${what} of ${length} bytes at byte ${this.pos} runs past the end of its record (${this.end - this.pos} bytes left)`,
    );
  }

  truncated(what: string): CorruptBatchError {
    return new CorruptBatchError(`corrupt record batch: ${what} at byte ${this.pos} is cut off by the end of its record`);
  }
}
