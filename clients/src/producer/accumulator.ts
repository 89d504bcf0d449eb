/**
 * Collects messages into one open batch per partition and seals it when it is full
 * (`maxBatchBytes`) or has waited `lingerMs`. Sealed batches go to `onSealed` in order.
 *
 * Timing costs one timer for the whole producer, not one per batch or message: open
 * batches are listed in the order they opened, so the oldest decides when the timer fires.
 * With `lingerMs: 0` the timer is a setImmediate: everything sent during one tick of the
 * event loop shares a batch, and nothing waits longer than that tick.
 */
import { RecordBatchBuilder, type CompressionName } from "../../../common/src/batch/index.js";
import { ProducerBatch, type SendCall } from "./send-call.js";
import type { ProducerMessage } from "./types.js";

export interface AccumulatorOptions {
  readonly lingerMs: number;
  readonly maxBatchBytes: number;
  readonly compression: CompressionName;
  /** How long a sealed batch may take to be acknowledged, retries included. */
  readonly deliveryTimeoutMs: number;
}

/** Bytes a record adds besides its key and value: length, attributes, deltas, header count. */
const RECORD_OVERHEAD_BYTES = 16;
/** Working buffers start small so that thousands of idle partitions cost little memory. */
const MAX_INITIAL_BUILDER_BYTES = 64 * 1024;

/** The open batch of one partition. */
export class PartitionBatcher {
  readonly builder: RecordBatchBuilder;
  calls: SendCall[] = [];
  indexes: number[] = [];
  openedAtMs = 0;
  /** Listed among the open batches (possibly sealed by size since, and empty). */
  listed = false;
  private nextSequence = 0;

  constructor(
    readonly topic: string,
    readonly partition: number,
    options: AccumulatorOptions,
  ) {
    this.builder = new RecordBatchBuilder({
      compression: options.compression,
      initialCapacityBytes: Math.min(options.maxBatchBytes, MAX_INITIAL_BUILDER_BYTES),
    });
  }

  get count(): number {
    return this.calls.length;
  }

  seal(deadlineMs: number): ProducerBatch {
    const batch = new ProducerBatch(
      this.topic,
      this.partition,
      this.builder.build(),
      this.calls,
      this.indexes,
      this.nextSequence++,
      deadlineMs,
    );
    this.calls = [];
    this.indexes = [];
    return batch;
  }
}

/** A rough size of a message in a batch, to seal before the batch outgrows maxBatchBytes. */
function estimateRecordBytes(message: ProducerMessage): number {
  const key = message.key;
  const value = message.value;
  // String length counts UTF-16 units: exact for ASCII, an estimate otherwise.
  return RECORD_OVERHEAD_BYTES + (key == null ? 0 : key.length) + (value == null ? 0 : value.length);
}

export class RecordAccumulator {
  private readonly batchers = new Map<string, PartitionBatcher[]>();
  /** Batches that received a record since they were last sealed, oldest first. */
  private open: PartitionBatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;

  constructor(
    private readonly options: AccumulatorOptions,
    private readonly onSealed: (batch: ProducerBatch) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** The partitions of `topic`, indexed by partition number; hold on to it for a whole send. */
  partitionsOf(topic: string): PartitionBatcher[] {
    let partitions = this.batchers.get(topic);
    if (partitions === undefined) {
      partitions = [];
      this.batchers.set(topic, partitions);
    }
    return partitions;
  }

  /** Adds message `index` of `call` to the open batch of `partition`. */
  append(
    partitions: PartitionBatcher[],
    partition: number,
    message: ProducerMessage,
    timestampMs: number,
    call: SendCall,
    index: number,
  ): void {
    const batcher = (partitions[partition] ??= new PartitionBatcher(call.topic, partition, this.options));
    const maxBatchBytes = this.options.maxBatchBytes;
    if (batcher.calls.length > 0 && batcher.builder.sizeBytes + estimateRecordBytes(message) > maxBatchBytes) {
      this.onSealed(batcher.seal(this.now() + this.options.deliveryTimeoutMs));
    }
    batcher.builder.append(message, timestampMs);
    batcher.calls.push(call);
    batcher.indexes.push(index);
    if (batcher.calls.length === 1) {
      batcher.openedAtMs = this.now();
      if (!batcher.listed) {
        batcher.listed = true;
        this.open.push(batcher);
      }
      this.schedule();
    }
    if (batcher.builder.sizeBytes >= maxBatchBytes) {
      this.onSealed(batcher.seal(this.now() + this.options.deliveryTimeoutMs));
    }
  }

  /** Seals every open batch now (flush, close). */
  sealAll(): void {
    this.cancelTimers();
    const open = this.open;
    this.open = [];
    const deadline = this.now() + this.options.deliveryTimeoutMs;
    for (const batcher of open) {
      batcher.listed = false;
      if (batcher.count > 0) this.onSealed(batcher.seal(deadline));
    }
  }

  close(): void {
    this.cancelTimers();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.immediate !== undefined) return;
    if (this.options.lingerMs === 0) {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        this.sealAll();
      });
    } else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.sealExpired();
      }, this.options.lingerMs);
    }
  }

  /** Seals the batches that have lingered long enough; re-arms the timer for the rest. */
  private sealExpired(): void {
    const now = this.now();
    const lingerMs = this.options.lingerMs;
    const deadline = now + this.options.deliveryTimeoutMs;
    const stillOpen: PartitionBatcher[] = [];
    let oldestMs = Infinity;
    for (const batcher of this.open) {
      if (batcher.count === 0) {
        batcher.listed = false;
      } else if (now - batcher.openedAtMs >= lingerMs) {
        batcher.listed = false;
        this.onSealed(batcher.seal(deadline));
      } else {
        stillOpen.push(batcher);
        if (batcher.openedAtMs < oldestMs) oldestMs = batcher.openedAtMs;
      }
    }
    this.open = stillOpen;
    if (stillOpen.length > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.sealExpired();
      }, Math.max(1, oldestMs + lingerMs - now));
    }
  }

  private cancelTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }
}
