/**
 * Finds the records of leased offsets in queue deliveries.
 *
 * The broker never resends, on one stream, the stored batch it sent last for a partition
 * (groups.proto, QueueDelivery): a producer's batch holds thousands of records while a
 * delivery leases a credit's worth, so the batch crosses the wire once instead of once per
 * delivery. This keeps, per partition, the last stored batch received (decoded once), and
 * finds leases in it or in the delivery's own batches. A new stream starts empty (`clear()`),
 * as the broker's memory of what it sent is per stream too.
 */
import { BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, baseOffsetOf, batchSizeAt, forEachRecord, lastOffsetDeltaOf, type DecodedRecord } from "../../../common/src/batch/index.js";
import { CorruptBatchError } from "../../../common/src/errors.js";
import type { QueueLease } from "../../../proto/gen/sluice/v1/groups.js";

interface StoredBatch {
  readonly baseOffset: number;
  readonly lastOffset: number;
  readonly bytes: Buffer;
  /** Decoded on the first lease that needs it, once. Offset order (dense unless compacted). */
  records?: DecodedRecord[];
}

export class LeasedRecords {
  /** The last stored batch received per partition. */
  private readonly last = new Map<number, StoredBatch>();

  /**
   * Calls `found` for each lease (sorted by offset) whose record is in the partition's last
   * batch or in `data`, in offset order; returns how many were found. Throws CorruptBatchError
   * for a malformed batch.
   */
  match(partition: number, data: Buffer, leases: readonly QueueLease[], found: (record: DecodedRecord, lease: QueueLease) => void): number {
    const batches: StoredBatch[] = [];
    let newest: StoredBatch | undefined;
    for (let at = 0; data.length - at >= LOG_OVERHEAD_BYTES; ) {
      const size = batchSizeAt(data, at);
      if (size < BATCH_HEADER_BYTES) {
        throw new CorruptBatchError(`corrupt record batch at byte ${at} of a queue delivery: length field ${size - LOG_OVERHEAD_BYTES} is too small`);
      }
      if (size > data.length - at) break; // trailing partial batch
      const baseOffset = baseOffsetOf(data, at);
      newest = { baseOffset, lastOffset: baseOffset + lastOffsetDeltaOf(data, at), bytes: data.subarray(at, at + size) };
      batches.push(newest);
      at += size;
    }
    // Searched after the delivery's own batches, which win if both hold an offset.
    const kept = this.last.get(partition);
    if (kept !== undefined) batches.push(kept);
    let count = 0;
    for (const lease of leases) {
      const batch = batches.find((b) => lease.offset >= b.baseOffset && lease.offset <= b.lastOffset);
      const record = batch === undefined ? undefined : recordAt(decoded(batch), lease.offset - batch.baseOffset, lease.offset);
      if (record !== undefined) {
        found(record, lease);
        count++;
      }
    }
    if (newest !== undefined) this.last.set(partition, newest);
    return count;
  }

  /** Forgets every batch (a new stream, or the consumer closed). */
  clear(): void {
    this.last.clear();
  }
}

function decoded(batch: StoredBatch): DecodedRecord[] {
  if (batch.records === undefined) {
    const records: DecodedRecord[] = [];
    // forEachRecord checks the CRC and the layout before decoding.
    forEachRecord(batch.bytes, 0, (record) => {
      records.push(record);
    });
    batch.records = records;
  }
  return batch.records;
}

/** The record with `offset`: at `index` when offsets are dense, else found by binary search. */
function recordAt(records: readonly DecodedRecord[], index: number, offset: number): DecodedRecord | undefined {
  const direct = records[index];
  if (direct !== undefined && direct.offset === offset) return direct;
  let low = 0;
  let high = records.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const candidate = records[middle]!;
    if (candidate.offset === offset) return candidate;
    if (candidate.offset < offset) low = middle + 1;
    else high = middle - 1;
  }
  return undefined;
}
