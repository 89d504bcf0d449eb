/**
 * Compression of the records section of a batch.
 *
 * With a codec set in the attributes (bits 0-2), everything after recordCount (byte 61)
 * is one compressed block; the 61-byte header, recordCount included, stays plain so the
 * broker can validate and index a batch without decompressing it:
 *
 *   [ header: bytes 0..60, recordCount at 57 ][ gzip( record 0 | record 1 | ... ) ]
 *
 * Sluice writes and reads gzip (codec 1). Snappy, LZ4 and zstd batches (Kafka clients can
 * send them) are refused with a CorruptBatchError naming the codec, rather than handed
 * to a consumer as garbage.
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { CorruptBatchError, InvalidArgumentError } from "../errors.js";
import { COMPRESSION_MASK, Compression } from "./layout.js";

/** Codecs a producer can choose. */
export type CompressionName = "none" | "gzip";

/**
 * Upper bound on a decompressed records section. A corrupt or hostile gzip block must not
 * inflate into an allocation that takes the process down; real batches are a few MiB.
 */
export const MAX_DECOMPRESSED_RECORDS_BYTES = 512 * 1024 * 1024;

const CODEC_NAMES: readonly string[] = ["none", "gzip", "snappy", "lz4", "zstd"];

/** The codec bits for a producer's `compression` option. */
export function codecFromName(name: CompressionName): Compression {
  if (name === "none") return Compression.None;
  if (name === "gzip") return Compression.Gzip;
  throw new InvalidArgumentError(`compression "${String(name)}" is not supported; use "none" or "gzip"`);
}

/** A readable name for the codec bits of `attributes` ("gzip", "zstd", "codec 6"). */
export function codecNameOf(attributes: number): string {
  const codec = attributes & COMPRESSION_MASK;
  return CODEC_NAMES[codec] ?? `codec ${codec}`;
}

/** Compresses a plain records section with the given codec. */
export function compressRecords(codec: Compression, records: Buffer): Buffer {
  if (codec === Compression.Gzip) return gzipSync(records);
  if (codec === Compression.None) return records;
  throw new InvalidArgumentError(`compression ${codecNameOf(codec)} is not supported; use "none" or "gzip"`);
}

/**
 * The plain records section of a batch whose attributes are `attributes`: `section` itself
 * when uncompressed, else a new buffer. Throws CorruptBatchError for an unsupported codec
 * or a block that does not decompress.
 */
export function decompressRecords(attributes: number, section: Buffer): Buffer {
  const codec = attributes & COMPRESSION_MASK;
  if (codec === Compression.None) return section;
  if (codec !== Compression.Gzip) {
    throw new CorruptBatchError(
      `record batch is compressed with ${codecNameOf(attributes)}, which Sluice does not support; ` +
        `configure the producer with compression "none" or "gzip"`,
    );
  }
  try {
    return gunzipSync(section, { maxOutputLength: MAX_DECOMPRESSED_RECORDS_BYTES });
  } catch (err) {
    throw new CorruptBatchError(`corrupt record batch: gzip records section does not decompress (${(err as Error).message})`, {
      cause: err,
    });
  }
}
