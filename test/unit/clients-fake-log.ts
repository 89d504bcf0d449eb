/**
 * The partition log of the SDK tests' fake brokers (clients-fake-cluster.ts, clients-fake-group.ts):
 * whole batches stamped with offsets, and an idempotent producer's rules as a real broker
 * applies them — the last 5 batches per producer recognised as retries, a sequence gap refused
 * (OUT_OF_ORDER_SEQUENCE), an older epoch refused (PRODUCER_FENCED).
 */
import {
  BASE_SEQUENCE_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  lastOffsetDeltaOf,
  recordCountOf,
  stampBatch,
  validateBatch,
} from "../../common/src/batch/index.js";
import { OffsetOutOfRangeError, OutOfOrderSequenceError, ProducerFencedError } from "../../common/src/errors.js";

const SEQUENCE_MODULUS = 2 ** 31;
/** Batches per producer and partition a broker remembers to recognise retries. */
const REMEMBERED_BATCHES = 5;

/** The producer fields of a batch header (producerId -1: not idempotent). */
export interface ProducerHeader {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

export function producerHeader(batch: Buffer): ProducerHeader {
  return {
    producerId: Number(batch.readBigInt64BE(PRODUCER_ID_AT)),
    producerEpoch: batch.readInt16BE(PRODUCER_EPOCH_AT),
    baseSequence: batch.readInt32BE(BASE_SEQUENCE_AT),
    recordCount: recordCountOf(batch),
  };
}

export interface StoredBatch {
  baseOffset: number;
  lastOffset: number;
  bytes: Buffer;
}

interface ProducerState {
  epoch: number;
  lastSequence: number;
  recent: { baseSequence: number; recordCount: number; baseOffset: number }[];
}

export class FakeLog {
  readonly batches: StoredBatch[] = [];
  startOffset = 0;
  endOffset = 0;
  private readonly producers = new Map<number, ProducerState>();

  /** `leaderEpoch`: stamped into every batch, as a master of that epoch would. */
  constructor(private readonly leaderEpoch = 0) {}

  /** Appends a batch, or recognises an idempotent retry of one held (its first offset, not appended again). */
  append(batch: Buffer): { baseOffset: number; duplicate: boolean } {
    const bytes = Buffer.from(batch);
    validateBatch(bytes, 64 * 1024 * 1024);
    const { producerId, producerEpoch, baseSequence, recordCount } = producerHeader(bytes);
    let state = producerId >= 0 ? this.producers.get(producerId) : undefined;
    if (state !== undefined) {
      if (producerEpoch < state.epoch) throw new ProducerFencedError(`producer ${producerId} epoch ${producerEpoch} is older than ${state.epoch}`);
      if (producerEpoch === state.epoch) {
        const held = state.recent.find((r) => r.baseSequence === baseSequence && r.recordCount === recordCount);
        if (held !== undefined) return { baseOffset: held.baseOffset, duplicate: true };
        const expected = (state.lastSequence + 1) % SEQUENCE_MODULUS;
        if (baseSequence !== expected) throw new OutOfOrderSequenceError(`producer ${producerId}: sequence ${baseSequence}, expected ${expected}`);
      } else if (baseSequence !== 0) {
        throw new OutOfOrderSequenceError(`producer ${producerId}: new epoch ${producerEpoch} must start at sequence 0, got ${baseSequence}`);
      }
    }
    const baseOffset = this.endOffset;
    stampBatch(bytes, baseOffset, this.leaderEpoch);
    const lastOffset = baseOffset + lastOffsetDeltaOf(bytes);
    this.batches.push({ baseOffset, lastOffset, bytes });
    this.endOffset = lastOffset + 1;
    if (producerId >= 0) {
      if (state === undefined || state.epoch !== producerEpoch) {
        state = { epoch: producerEpoch, lastSequence: -1, recent: [] };
        this.producers.set(producerId, state);
      }
      state.lastSequence = (baseSequence + recordCount - 1) % SEQUENCE_MODULUS;
      state.recent.push({ baseSequence, recordCount, baseOffset });
      if (state.recent.length > REMEMBERED_BATCHES) state.recent.shift();
    }
    return { baseOffset, duplicate: false };
  }

  /** Whole batches from the one holding `offset`, at least one, up to `maxBytes`. */
  read(offset: number, maxBytes: number): { records: Buffer; nextOffset: number } {
    if (offset < this.startOffset || offset > this.endOffset) {
      throw new OffsetOutOfRangeError("fake", 0, offset, this.startOffset, this.endOffset);
    }
    const parts: Buffer[] = [];
    let size = 0;
    let nextOffset = offset;
    for (const batch of this.batches) {
      if (batch.lastOffset < offset) continue;
      if (parts.length > 0 && size + batch.bytes.length > maxBytes) break;
      parts.push(batch.bytes);
      size += batch.bytes.length;
      nextOffset = batch.lastOffset + 1;
    }
    return { records: Buffer.concat(parts), nextOffset };
  }
}
