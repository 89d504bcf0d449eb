/**
 * One message leased to this consumer: the message itself (like ConsumerMessage) and the
 * three ways to settle its lease. Settles are batched on the wire (settle-batcher.ts); each
 * promise resolves once the broker has made the settle durable.
 */
import { InvalidArgumentError, toSluiceError } from "../../../common/src/errors.js";
import type { DecodedRecord } from "../../../common/src/batch/index.js";
import type { QueueLease } from "../../../proto/gen/sluice/v1/groups.js";
import { checkInteger } from "../options.js";
import { MAX_EXTEND_MS, parseNackOptions, type NackOptions } from "./options.js";
import type { SettleKind, SettleOwner } from "./settle-batcher.js";

/** Where a job's settles go: the queue consumer that received it. */
export interface JobSettler {
  settle(job: Job, kind: SettleKind, delayMs: number, error: string, extendMs: number): Promise<void>;
}

export class Job implements SettleOwner {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** Creation time, ms since the epoch. */
  readonly timestamp: number;
  /** A view into the received bytes, not a copy. */
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Record<string, Buffer>;
  /** 1 on the first delivery; counts every lease of this message, expired ones included. */
  readonly deliveryCount: number;
  /** The lease this delivery holds; a settle names it so a stale one is refused. */
  readonly leaseId: number;
  /** When the lease ran out as delivered (the broker's clock, ms since the epoch); extend() moves it on the broker. */
  readonly leaseDeadlineMs: number;
  /** @internal batch stamp of the last settle (see SettleOwner). */
  settleStamp = 0;
  /** "ack" or "nack" once one was called: a job is settled for good only once. */
  private finished: "ack" | "nack" | undefined;

  constructor(
    topic: string,
    partition: number,
    record: DecodedRecord,
    lease: QueueLease,
    private readonly settler: JobSettler,
  ) {
    this.topic = topic;
    this.partition = partition;
    this.offset = record.offset;
    this.timestamp = record.timestamp;
    this.key = record.key;
    this.value = record.value;
    this.headers = record.headers;
    this.deliveryCount = lease.deliveryCount;
    this.leaseId = lease.leaseId;
    this.leaseDeadlineMs = lease.deadlineMs;
  }

  /**
   * Done with it: the message will not be delivered again. Resolves once durable; rejects
   * with UNKNOWN_LEASE when the lease had already expired (the message went, or goes, to
   * another delivery), or with a retriable error when the connection was lost first (the
   * job may then be acked again: the consumer reopens with the same member id).
   */
  ack(): Promise<void> {
    const refused = this.finish("ack");
    if (refused !== undefined) return refused;
    return this.reopenOnRetriable(this.settler.settle(this, "ack", 0, "", 0));
  }

  /**
   * Failed: deliver it again after `delayMs` (to any consumer of the group), or dead-letter
   * it if this was delivery number `maxDeliveries`. `error` is kept in the dead letter.
   */
  nack(options?: NackOptions): Promise<void> {
    let parsed: { delayMs: number; error: string };
    try {
      parsed = parseNackOptions(options);
    } catch (err) {
      return Promise.reject(err);
    }
    const refused = this.finish("nack");
    if (refused !== undefined) return refused;
    return this.reopenOnRetriable(this.settler.settle(this, "nack", parsed.delayMs, parsed.error, 0));
  }

  /** Still working on it: the lease now ends `ms` from now (not from its old deadline). */
  extend(ms: number): Promise<void> {
    try {
      checkInteger("extend ms", ms, 1, MAX_EXTEND_MS);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.finished !== undefined) {
      return Promise.reject(new InvalidArgumentError(`cannot extend ${this.describe()}: it was already ${this.finished}ed`));
    }
    return this.settler.settle(this, "extend", 0, "", ms);
  }

  /** A settle lost with the connection did not happen: the job can be settled again. */
  private reopenOnRetriable(settled: Promise<void>): Promise<void> {
    return settled.catch((err: unknown) => {
      if (toSluiceError(err).retriable) this.finished = undefined;
      throw err;
    });
  }

  private finish(kind: "ack" | "nack"): Promise<void> | undefined {
    if (this.finished === undefined) {
      this.finished = kind;
      return undefined;
    }
    return Promise.reject(new InvalidArgumentError(`cannot ${kind} ${this.describe()}: it was already ${this.finished}ed`));
  }

  private describe(): string {
    return `the job at ${this.topic}/${this.partition} offset ${this.offset}`;
  }
}
