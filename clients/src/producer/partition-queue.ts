/**
 * The batches of one partition waiting to be sent, and the rules that keep them in order.
 *
 * - Batches wait in seal order (`ProducerBatch.sequence`); a retried batch goes
 *   back in front of every later one.
 * - Normally several batches of the partition are in flight at once (at most
 *   MAX_IN_FLIGHT_PER_PARTITION for an idempotent producer, unbounded otherwise).
 * - Recovery: once an attempt failed, the partition sends one batch at a time, the lowest
 *   earliest first, and only after every batch still in flight came back. It goes back to
 *   pipelining when nothing that failed before is waiting or in flight. So a retry never
 *   overtakes an earlier batch, and an idempotent producer's master sees sequences in order
 *   after a failover without the whole window being refused as out of order.
 * - Pacing: while the broker's flow control holds the partition's batches (acks carry a
 *   throttle time), at most THROTTLED_IN_FLIGHT go at once: one waits at the broker while the
 *   next is on its way, so the limit is used fully without queueing more there than it will
 *   admit (which would end in THROTTLED refusals and resends).
 * - Batches in flight all went to one broker: when the route moves the partition to another,
 *   the queue waits for them to come back before it sends there, so two brokers never hold
 *   its batches at once.
 */
import type { PartitionSequencer } from "./idempotence.js";
import type { ProducerBatch } from "./send-call.js";

/** Batches of a partition in flight at once while the broker holds them (flow control). */
export const THROTTLED_IN_FLIGHT = 2;

export class PartitionQueue {
  readonly batches: ProducerBatch[] = [];
  /** Batches sent and not yet acknowledged or failed. */
  inFlight = 0;
  /** The broker the in-flight batches went to. */
  inFlightAddress: string | undefined;
  /** An attempt failed and not every failed batch has been acknowledged since. */
  recovering = false;
  /** The last acknowledgement said the broker held the batch (flow control). */
  throttled = false;
  /** Waiting for a backoff or a route lookup; whatever paused it resumes it. */
  paused = false;
  retryTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly topic: string,
    readonly partition: number,
    /** Batches in flight at once outside recovery. */
    private readonly maxInFlight: number,
    /** Stamps producer id, epoch and sequence: idempotent producers only. */
    readonly sequencer: PartitionSequencer | undefined,
  ) {}

  /** There is a batch to send and the in-flight rules allow sending it now. */
  get canSend(): boolean {
    if (this.batches.length === 0 || this.paused) return false;
    if (this.recovering) return this.inFlight < 1;
    return this.inFlight < (this.throttled ? Math.min(THROTTLED_IN_FLIGHT, this.maxInFlight) : this.maxInFlight);
  }

  /** Whether a batch may go to `address` now: not while earlier ones are on another broker. */
  mayGoTo(address: string): boolean {
    return this.inFlight === 0 || this.inFlightAddress === address;
  }

  /** Takes the next batch out to send it to `address`; stamps it when idempotent. */
  takeForSending(address: string, counted: boolean): ProducerBatch {
    const batch = this.batches.shift()!;
    this.sequencer?.stamp(batch);
    if (counted) {
      this.inFlight++;
      this.inFlightAddress = address;
    }
    return batch;
  }

  /** A batch sent earlier came back (acknowledged or failed). */
  returned(): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  /** Puts a retried batch back in front of every later batch and enters recovery. */
  retry(batch: ProducerBatch): void {
    const batches = this.batches;
    let at = batches.length;
    while (at > 0 && batches[at - 1]!.sequence > batch.sequence) at--;
    batches.splice(at, 0, batch);
    this.recovering = true;
  }

  /** After an acknowledgement: recovery ends once nothing that failed before is left. */
  settleRecovery(): void {
    if (!this.recovering || this.inFlight > 0) return;
    for (const batch of this.batches) if (batch.attempts > 0) return;
    this.recovering = false;
  }
}
