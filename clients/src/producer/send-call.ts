/**
 * One `send()` call and the batches that carry its messages. A call owns exactly one
 * promise, settled when the last of its messages is acknowledged (or the first fails);
 * batches report per record with plain method calls, so there is no promise, closure or
 * timer per message.
 */
import type { SluiceError } from "../../../common/src/errors.js";
import type { RecordMetadata } from "./types.js";

export class SendCall {
  readonly results: RecordMetadata[];
  readonly promise: Promise<RecordMetadata[]>;
  settled = false;
  private remaining: number;
  private resolve!: (results: RecordMetadata[]) => void;
  private reject!: (err: SluiceError) => void;

  /** `unsettled` lists the calls still waiting (for flush); the call removes itself when settled. */
  constructor(
    readonly topic: string,
    messageCount: number,
    private readonly unsettled?: Set<SendCall>,
  ) {
    this.results = new Array<RecordMetadata>(messageCount);
    this.remaining = messageCount;
    this.promise = new Promise<RecordMetadata[]>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    unsettled?.add(this);
  }

  /** Message `index` of the call was written at `offset`. */
  acknowledge(index: number, partition: number, offset: number): void {
    if (this.settled) return;
    this.results[index] = { topic: this.topic, partition, offset };
    if (--this.remaining === 0) {
      this.settled = true;
      this.unsettled?.delete(this);
      this.resolve(this.results);
    }
  }

  /** The call fails as a whole with the first error any of its batches meets. */
  fail(err: SluiceError): void {
    if (this.settled) return;
    this.settled = true;
    this.unsettled?.delete(this);
    this.reject(err);
  }
}

/**
 * A sealed batch for one partition: the encoded bytes plus, per record, which call and
 * which message of that call it is (record i gets offset baseOffset + i).
 */
export class ProducerBatch {
  /** Attempts that failed so far. */
  attempts = 0;
  /** Of `attempts`, those refused by flow control: they do not count as retries (backoff, `retries`). */
  throttledAttempts = 0;
  /** When the batch was last written to a stream (ms since the epoch). */
  sentAtMs = 0;
  /**
   * Idempotent producers: the producer fields stamped into the header when the batch was
   * first sent (see idempotence.ts); baseSequence -1 while unstamped.
   */
  producerId = -1;
  producerEpoch = -1;
  baseSequence = -1;

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly bytes: Buffer,
    readonly calls: SendCall[],
    readonly indexes: number[],
    /**
     * Position among the partition's batches (0, 1, 2…, in seal order): retries go back in
     * this order. Not the idempotent record sequence, which is `baseSequence`.
     */
    readonly sequence: number,
    /** No attempt starts after this time (ms since the epoch); the batch then fails. */
    readonly deadlineMs: number,
  ) {}

  get recordCount(): number {
    return this.calls.length;
  }

  acknowledge(baseOffset: number): void {
    const { calls, indexes, partition } = this;
    for (let i = 0; i < calls.length; i++) {
      calls[i]!.acknowledge(indexes[i]!, partition, baseOffset < 0 ? -1 : baseOffset + i);
    }
  }

  fail(err: SluiceError): void {
    const calls = this.calls;
    let previous: SendCall | undefined;
    for (let i = 0; i < calls.length; i++) {
      const call = calls[i]!;
      if (call !== previous) call.fail(err);
      previous = call;
    }
  }

  /** True when every call with a record here has already settled (e.g. failed elsewhere). */
  get abandoned(): boolean {
    for (const call of this.calls) if (!call.settled) return false;
    return true;
  }
}
