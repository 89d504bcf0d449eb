/**
 * Checks a span of batches a slave received from its master before appending it as is: the
 * master stamped them (base offset, partition leader epoch), so the slave must not restamp,
 * only make sure the bytes are whole, intact and continue its log exactly.
 */
import {
  LEADER_EPOCH_AT,
  baseOffsetOf,
  batchProblem,
  batchSizeAt,
  lastOffsetDeltaOf,
} from "../../../common/src/batch/layout.js";
import { CorruptBatchError, InvalidArgumentError } from "../../../common/src/errors.js";

export interface ReplicatedBatch {
  /** Byte position of the batch in the span. */
  at: number;
  size: number;
  baseOffset: number;
  lastOffset: number;
  leaderEpoch: number;
}

/**
 * The batches of `records`, in order. Throws InvalidArgumentError when the span is empty or
 * does not start at `nextOffset` or leaves a gap, CorruptBatchError when a batch is torn, has a
 * length field that disagrees with the bytes, or fails its CRC32C.
 */
export function parseReplicatedBatches(records: Buffer, nextOffset: number, partitionName: string): ReplicatedBatch[] {
  if (records.length === 0) throw new InvalidArgumentError(`replicated data for ${partitionName} holds no batch`);
  const batches: ReplicatedBatch[] = [];
  let expected = nextOffset;
  for (let at = 0; at < records.length; ) {
    const problem = batchProblem(records, at, records.length - at);
    if (problem !== null) {
      throw new CorruptBatchError(`replicated batch at byte ${at} of ${records.length} for ${partitionName} is invalid: ${problem}`);
    }
    const baseOffset = baseOffsetOf(records, at);
    if (baseOffset !== expected) {
      const where = at === 0 ? `starts at offset ${baseOffset}, but the log end of ${partitionName} is ${expected}` : `has a batch at offset ${baseOffset} where ${expected} should follow`;
      throw new InvalidArgumentError(`replicated data ${where}; the slave must resynchronise from its log end`);
    }
    const size = batchSizeAt(records, at);
    const lastOffset = baseOffset + lastOffsetDeltaOf(records, at);
    batches.push({ at, size, baseOffset, lastOffset, leaderEpoch: records.readInt32BE(at + LEADER_EPOCH_AT) });
    expected = lastOffset + 1;
    at += size;
  }
  return batches;
}
