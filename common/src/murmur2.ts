/**
 * MurmurHash2 exactly as Kafka's Java client computes it (`Utils.murmur2`), so a keyed
 * message lands on the same partition number it would with a Kafka producer:
 *
 *   partition = (murmur2(utf8(key)) & 0x7fffffff) % partitionCount
 *
 * The hash: seed 0x9747b28c, m = 0x5bd1e995, r = 24; h = seed ^ length; each little-endian
 * 4-byte chunk k: k *= m; k ^= k >>> r; k *= m; h *= m; h ^= k; the 1–3 trailing bytes are
 * xored in (byte 2 << 16, byte 1 << 8, byte 0) then h *= m; finally h ^= h >>> 13;
 * h *= m; h ^= h >>> 15. All arithmetic is 32-bit (Math.imul), and the result is a signed
 * int32 like Java's.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/** Kafka's murmur2 of `data[0..length)`, as a signed 32-bit integer. */
export function murmur2(data: Uint8Array, length: number = data.length): number {
  let h = SEED ^ length;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  const tail = length & 3;
  if (tail !== 0) {
    if (tail === 3) h ^= data[whole + 2]! << 16;
    if (tail >= 2) h ^= data[whole + 1]! << 8;
    h ^= data[whole]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Keys up to this many UTF-8 bytes are hashed from a reused scratch buffer, without allocating. */
const SCRATCH_BYTES = 4096;
const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);

/** Kafka's murmur2 of a key given as a string (hashed as UTF-8) or bytes. */
export function murmur2Key(key: string | Uint8Array): number {
  if (typeof key !== "string") return murmur2(key);
  // Up to 3 UTF-8 bytes per UTF-16 unit: a string this short always fits the scratch.
  if (key.length * 3 <= SCRATCH_BYTES) return murmur2(scratch, scratch.write(key, 0, "utf8"));
  return murmur2(Buffer.from(key, "utf8"));
}

/** The partition Kafka's default partitioner picks for `key`. */
export function keyHashPartition(key: string | Uint8Array, partitionCount: number): number {
  return (murmur2Key(key) & 0x7fffffff) % partitionCount;
}
