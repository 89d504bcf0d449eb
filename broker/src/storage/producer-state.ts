/**
 * Idempotent-producer state of one partition (Kafka's ProducerStateManager, without
 * transactions): per producer id, its epoch and its 5 most recent batches, read from batch
 * headers only (producerId, producerEpoch, baseSequence, lastOffsetDelta in
 * common/src/batch/layout.ts; records are never decoded).
 *
 * Rules for a batch of an idempotent producer (producerId ≥ 0), as Kafka applies them:
 * - an epoch older than the one recorded → ProducerFencedError (a zombie instance);
 * - a newer epoch starts sequence tracking afresh: its first batch must have sequence 0;
 * - same epoch: a (firstSeq, lastSeq) equal to one of the 5 remembered batches is a retry of
 *   it, answered with that batch's offsets; firstSeq = last lastSeq + 1 (wrapping to 0 after
 *   2^31 − 1) is the next batch; anything else → OutOfOrderSequenceError.
 * - a producer id never seen is accepted with any sequence: after a restart only the newest
 *   segments are scanned, so a producer idle for longer than they span is forgotten (as Kafka
 *   expires producer ids).
 *
 * The log records each batch when it assigns offsets, before the bytes are written, so two
 * batches of one producer in flight together are checked against each other. Until a group is
 * written, each change keeps the entry it replaced (entries are immutable), so a failed group
 * is undone exactly.
 */
import {
  BASE_SEQUENCE_AT,
  LAST_OFFSET_DELTA_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
} from "../../../common/src/batch/layout.js";
import { OutOfOrderSequenceError, ProducerFencedError } from "../../../common/src/errors.js";

/** Batches remembered per producer: a producer has at most this many requests in flight. */
export const PRODUCER_BATCHES_REMEMBERED = 5;
const MAX_SEQUENCE = 0x7fffffff;
const TWO_POW_32 = 4294967296;

export interface ProducerBatch {
  firstSeq: number;
  lastSeq: number;
  baseOffset: number;
  lastOffset: number;
  /** -1 when unknown (an entry rebuilt from a segment whose append times were estimated). */
  appendTimeMs: number;
}

export interface ProducerEntry {
  readonly producerEpoch: number;
  /** Oldest first; only batches of `producerEpoch`. */
  readonly batches: readonly ProducerBatch[];
}

/** What an undo needs: the entry a change replaced (undefined: the producer was unknown). */
interface UndoStep {
  producerId: number;
  previous: ProducerEntry | undefined;
  baseOffset: number;
}

/** The producer id of the batch at `at`, or -1 when it is not idempotent; no BigInt. */
export function producerIdOf(batch: Buffer, at = 0): number {
  const high = batch.readInt32BE(at + PRODUCER_ID_AT);
  if (high < 0) return -1;
  return high * TWO_POW_32 + batch.readUInt32BE(at + PRODUCER_ID_AT + 4);
}

/** The sequence number of the batch's last record, wrapping after 2^31 − 1 as clients do. */
export function lastSequenceOf(firstSeq: number, lastOffsetDelta: number): number {
  return firstSeq > MAX_SEQUENCE - lastOffsetDelta ? lastOffsetDelta - (MAX_SEQUENCE - firstSeq) - 1 : firstSeq + lastOffsetDelta;
}

function nextSequence(lastSeq: number): number {
  return lastSeq === MAX_SEQUENCE ? 0 : lastSeq + 1;
}

export class ProducerStateTable {
  private readonly producers = new Map<number, ProducerEntry>();
  private undo: UndoStep[] = [];

  constructor(
    /** "topic/partition", for error messages. */
    private readonly partitionName: string,
  ) {}

  get size(): number {
    return this.producers.size;
  }

  entry(producerId: number): ProducerEntry | undefined {
    return this.producers.get(producerId);
  }

  /**
   * The remembered batch this one repeats, null when it is new (or not idempotent); throws
   * ProducerFencedError or OutOfOrderSequenceError when it must be refused.
   */
  check(batch: Buffer, at = 0): ProducerBatch | null {
    const producerId = producerIdOf(batch, at);
    if (producerId < 0) return null;
    const entry = this.producers.get(producerId);
    if (entry === undefined) return null;
    const epoch = batch.readInt16BE(at + PRODUCER_EPOCH_AT);
    const firstSeq = batch.readInt32BE(at + BASE_SEQUENCE_AT);
    if (epoch < entry.producerEpoch) {
      throw new ProducerFencedError(
        `producer ${producerId} sent epoch ${epoch} to ${this.partitionName}, which has seen epoch ${entry.producerEpoch}: a newer instance of this producer took over; close this one`,
      );
    }
    if (epoch > entry.producerEpoch) {
      if (firstSeq === 0) return null;
      throw new OutOfOrderSequenceError(
        `producer ${producerId} started epoch ${epoch} on ${this.partitionName} with sequence ${firstSeq}, expected sequence 0 (a new epoch starts at 0)`,
      );
    }
    const lastSeq = lastSequenceOf(firstSeq, batch.readInt32BE(at + LAST_OFFSET_DELTA_AT));
    for (const remembered of entry.batches) {
      if (remembered.firstSeq === firstSeq && remembered.lastSeq === lastSeq) return remembered;
    }
    const newest = entry.batches[entry.batches.length - 1];
    const expected = newest === undefined ? 0 : nextSequence(newest.lastSeq);
    if (firstSeq === expected) return null;
    throw new OutOfOrderSequenceError(
      `producer ${producerId} (epoch ${epoch}) sent sequence ${firstSeq} to ${this.partitionName}, expected sequence ${expected}: a batch before it was lost; the producer must restart its sequence`,
    );
  }

  /**
   * Records an appended batch (skipped at once when it is not idempotent). `undoable`: keep
   * what it replaced until `settleBelow` passes its offset, so `undoFrom` can restore it.
   */
  record(batch: Buffer, at: number, baseOffset: number, lastOffset: number, appendTimeMs: number, undoable: boolean): void {
    const producerId = producerIdOf(batch, at);
    if (producerId < 0) return;
    const epoch = batch.readInt16BE(at + PRODUCER_EPOCH_AT);
    const firstSeq = batch.readInt32BE(at + BASE_SEQUENCE_AT);
    const lastSeq = lastSequenceOf(firstSeq, batch.readInt32BE(at + LAST_OFFSET_DELTA_AT));
    const previous = this.producers.get(producerId);
    const kept = previous === undefined || previous.producerEpoch !== epoch ? [] : previous.batches.slice(-(PRODUCER_BATCHES_REMEMBERED - 1));
    kept.push({ firstSeq, lastSeq, baseOffset, lastOffset, appendTimeMs });
    this.producers.set(producerId, { producerEpoch: epoch, batches: kept });
    if (undoable) this.undo.push({ producerId, previous, baseOffset });
  }

  /** Batches below `offset` are on disk: their undo information is no longer needed. */
  settleBelow(offset: number): void {
    if (this.undo.length === 0) return;
    let settled = 0;
    while (settled < this.undo.length && this.undo[settled]!.baseOffset < offset) settled++;
    if (settled === this.undo.length) this.undo = [];
    else if (settled > 0) this.undo.splice(0, settled);
  }

  /** Undoes every recorded batch at or after `offset` (a failed group and what followed it). */
  undoFrom(offset: number): void {
    while (this.undo.length > 0 && this.undo[this.undo.length - 1]!.baseOffset >= offset) {
      const step = this.undo.pop()!;
      if (step.previous === undefined) this.producers.delete(step.producerId);
      else this.producers.set(step.producerId, step.previous);
    }
  }

  clear(): void {
    this.producers.clear();
    this.undo = [];
  }
}
