/**
 * A queue consumer: a member of a queue group that takes jobs from a topic, each message
 * going to one member of the group at a time (a shared subscription, like RocketMQ's POP
 * consumer or Pulsar's shared subscription).
 *
 *   const queue = sluice.queue({ group: "workers", topic: "jobs" });
 *   for await (const job of queue) { await work(job); await job.ack(); }
 *
 * - One Queue stream to the group's coordinator (GroupCoordinator finds it). The broker
 *   leases messages to this member, at most the message credit granted: `prefetch` at open,
 *   given back as the iterator hands jobs out. It sends the stored batches holding the leased
 *   offsets; only the leased records become jobs.
 * - Settles are batched (settle-batcher.ts) and resolve when durable.
 * - The stream fails (coordinator moved, broker restarted): jobs received but not handed out
 *   are dropped, settles sent and not answered reject with a retriable error, and the stream
 *   is opened again after a backoff, with the coordinator looked up anew. Settles made while
 *   no stream is open go out on the next one (same member id and lease ids: a coordinator
 *   that still knows the lease accepts them, another answers UNKNOWN_LEASE). Whatever was
 *   not settled is delivered again once its lease runs out: at-least-once.
 * - Leaving the loop (break, return, throw) closes the queue consumer.
 */
import { randomUUID } from "node:crypto";
import type { DecodedRecord } from "../../../common/src/batch/index.js";
import { BrokerUnavailableError, ClosedError, toSluiceError, type SluiceError } from "../../../common/src/errors.js";
import type { QueueDelivery, QueueLease, QueueOpen, QueueResponse } from "../../../proto/gen/sluice/v1/groups.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { GroupCoordinator } from "../groups/coordinator.js";
import { Job, type JobSettler } from "./job.js";
import { LeasedRecords } from "./leased-records.js";
import { parseQueueOptions, type ParsedQueueOptions, type QueueOptions } from "./options.js";
import { QueueStream, type QueueStreamListener } from "./queue-stream.js";
import { SettleBatcher, type SettleKind } from "./settle-batcher.js";

/** How long close() waits for the broker to confirm settles already made. */
export const CLOSE_SETTLE_WAIT_MS = 5_000;
/** Credit is given back in steps of this fraction of `prefetch`, so at least ¾ stays granted. */
const CREDIT_RETURN_FRACTION = 4;
/** The error text of jobs handed back, unprocessed, by a closing consumer. */
const RELEASED_ON_CLOSE = "released unprocessed by a closing queue consumer";

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

export class QueueConsumer implements AsyncIterableIterator<Job>, JobSettler, QueueStreamListener {
  readonly options: ParsedQueueOptions;
  private currentMemberId = randomUUID();
  private readonly coordinator: GroupCoordinator;
  private readonly batcher: SettleBatcher;
  private readonly open: QueueOpen;
  /** Stored batches decoded once for the deliveries that share them. */
  private readonly records = new LeasedRecords();
  private stream: QueueStream | undefined;
  /** Jobs received and not yet handed out; `head` is the next one. */
  private jobs: (Job | undefined)[] = [];
  private head = 0;
  private waiters: { resolve: (r: IteratorResult<Job>) => void; reject: (e: SluiceError) => void }[] = [];
  private failure: SluiceError | undefined;
  private failureReported = false;
  private started = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Settles are taken until close() has waited for the last ones: work finishing during close still acks. */
  private acceptingSettles = true;
  private reopenTimer: NodeJS.Timeout | undefined;
  private reopenAttempt = 0;

  constructor(
    private readonly context: ClientContext,
    options: QueueOptions,
    private readonly onClosed: (queue: QueueConsumer) => void = () => undefined,
  ) {
    this.options = parseQueueOptions(options);
    this.coordinator = new GroupCoordinator(context, this.options.group, true);
    this.batcher = new SettleBatcher((request) => this.stream?.write(request) ?? false, {
      creditThreshold: Math.max(1, Math.floor(this.options.prefetch / CREDIT_RETURN_FRACTION)),
    });
    const { group, topic, invisibleMs, maxDeliveries, keyOrdering, fromBeginning } = this.options;
    this.open = { group, topic, memberId: this.memberId, invisibleMs, maxDeliveries, keyOrdering, fromBeginning };
  }

  /** This member's id in the group, kept across reconnections so the broker recognises its leases. */
  get memberId(): string {
    return this.currentMemberId;
  }

  get group(): string {
    return this.options.group;
  }

  get topic(): string {
    return this.options.topic;
  }

  /** Jobs received from the broker and not yet handed out. */
  get buffered(): number {
    return this.jobs.length - this.head;
  }

  [Symbol.asyncIterator](): this {
    this.start();
    return this;
  }

  next(): Promise<IteratorResult<Job>> {
    this.start();
    if (this.waiters.length === 0) {
      const ready = this.ready();
      if (ready !== undefined) return ready;
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<Job>> {
    void this.close();
    return Promise.resolve(DONE);
  }

  throw(err?: unknown): Promise<IteratorResult<Job>> {
    void this.close();
    return Promise.reject(toSluiceError(err));
  }

  /**
   * Stops the iterator (a pending `next()` reports done), hands jobs received but not taken
   * back to the group, waits up to 5 s for settles to be confirmed (settles made meanwhile,
   * by work still finishing, are sent too), then ends the stream. Later settles reject with
   * CLOSED; their jobs are delivered again after their lease.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** JobSettler: the jobs' ack, nack and extend land here. */
  settle(job: Job, kind: SettleKind, delayMs: number, error: string, extendMs: number): Promise<void> {
    if (!this.acceptingSettles) return Promise.reject(new ClosedError("the queue consumer"));
    return this.batcher.add(kind, job, { partition: job.partition, offset: job.offset, leaseId: job.leaseId, delayMs, error, extendMs });
  }

  streamResponse(stream: QueueStream, response: QueueResponse): void {
    if (stream !== this.stream) return;
    this.reopenAttempt = 0;
    if (response.settled !== undefined) this.batcher.settled(response.settled);
    for (const delivery of response.deliveries) this.deliver(delivery);
  }

  streamClosed(stream: QueueStream, err: SluiceError): void {
    if (stream !== this.stream) return;
    this.stream = undefined;
    const lost = new BrokerUnavailableError(
      `the queue stream to broker ${stream.address} failed before these settles were confirmed (${err.message}); ` +
        `jobs not settled are delivered again once their lease runs out`,
      { cause: err },
    );
    this.batcher.streamLost(lost);
    this.dropBuffered();
    if (this.closing !== undefined) {
      // Closing: no stream will come to confirm the rest, so close() need not wait for them.
      this.acceptingSettles = false;
      this.batcher.rejectAll(lost);
      return;
    }
    this.context.logger.info(
      { group: this.group, topic: this.topic, broker: stream.address, code: err.code },
      "queue stream failed; reopening",
    );
    this.recover(err);
  }

  private start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.connect();
  }

  /** Looks the coordinator up and opens a stream; failures go through `recover`. */
  private connect(): void {
    this.openStream().catch((err: unknown) => {
      if (this.closing === undefined) this.recover(toSluiceError(err));
    });
  }

  private async openStream(): Promise<void> {
    const deadlineMs = deadlineFromNow(this.context);
    // The name servers' "no such topic" is final: a queue on a missing topic fails at once.
    await this.context.routes.get(this.topic);
    const connection = await this.coordinator.connection(deadlineMs);
    await connection.whenReady();
    if (this.closing !== undefined) return;
    const stream = new QueueStream(connection, this);
    this.stream = stream;
    // The broker's memory of the batch it sent last is per stream: so is ours.
    this.records.clear();
    this.batcher.dropCredit();
    stream.start(this.context.header, this.open, this.options.prefetch);
    this.batcher.resume();
  }

  /** Retriable failures reopen after a backoff; the others end the iteration with the error. */
  private recover(err: SluiceError): void {
    if (err.code === "FENCED_MEMBER") {
      // The coordinator no longer accepts this member id (e.g. it replaced a stale one): come back as a new member.
      this.currentMemberId = randomUUID();
      this.open.memberId = this.currentMemberId;
    } else if (!err.retriable) {
      this.fail(err);
      return;
    }
    this.coordinator.forget();
    if (err.code === "UNKNOWN_TOPIC") this.context.routes.forget(this.topic);
    const delayMs = this.context.retry.delayMs(this.reopenAttempt++, err);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      if (this.closing === undefined) this.connect();
    }, delayMs);
  }

  /** Turns the leased records of one delivery into jobs, in offset order. */
  private deliver(delivery: QueueDelivery): void {
    const leases = sortedByOffset(delivery.leases);
    if (leases.length === 0) return;
    const partition = delivery.partition;
    let created: number;
    try {
      created = this.records.match(partition, delivery.records, leases, this.addJob.bind(this, partition));
    } catch (err) {
      this.fail(toSluiceError(err));
      return;
    }
    if (created < leases.length) {
      // Never expected: a lease without its record cannot become a job. Its credit goes back
      // at once; the broker delivers the offset again after the lease.
      const missing = leases.length - created;
      this.context.logger.warn({ group: this.group, topic: this.topic, partition, missing }, "leased offsets missing from the delivered batches");
      this.batcher.grantCredit(missing);
    }
    if (created > 0 && this.waiters.length > 0) this.wake();
  }

  private addJob(partition: number, record: DecodedRecord, lease: QueueLease): void {
    this.jobs.push(new Job(this.options.topic, partition, record, lease, this));
  }

  /** A result available now (a job, the failure, or done), else undefined. */
  private ready(): Promise<IteratorResult<Job>> | undefined {
    if (this.head < this.jobs.length) return Promise.resolve({ done: false, value: this.take() });
    if (this.failure !== undefined && !this.failureReported) {
      this.failureReported = true;
      return Promise.reject(this.failure);
    }
    if (this.closed) return Promise.resolve(DONE);
    return undefined;
  }

  private take(): Job {
    const job = this.jobs[this.head]!;
    this.jobs[this.head++] = undefined;
    if (this.head === this.jobs.length) {
      this.jobs.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.jobs.length) {
      this.jobs = this.jobs.slice(this.head);
      this.head = 0;
    }
    this.batcher.grantCredit(1);
    return job;
  }

  private wake(): void {
    while (this.waiters.length > 0) {
      const result = this.ready();
      if (result === undefined) return;
      const waiter = this.waiters.shift()!;
      result.then(waiter.resolve, waiter.reject);
    }
  }

  /** Ends the iteration with `err` and closes; `for await` does not call return() after a rejection. */
  private fail(err: SluiceError): void {
    if (this.failure !== undefined || this.closing !== undefined) return;
    this.failure = err;
    this.dropBuffered();
    this.wake();
    void this.close();
  }

  /** Forgets jobs not handed out: their leases belong to a stream that is gone. */
  private dropBuffered(): Job[] {
    const dropped = this.jobs.slice(this.head) as Job[];
    this.jobs = [];
    this.head = 0;
    return dropped;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    if (this.reopenTimer !== undefined) clearTimeout(this.reopenTimer);
    this.reopenTimer = undefined;
    const unclaimed = this.dropBuffered();
    this.wake();
    if (this.stream !== undefined) {
      // Hand jobs nobody will process back to the group now rather than when their lease runs out.
      for (const job of unclaimed) {
        const release = { partition: job.partition, offset: job.offset, leaseId: job.leaseId, delayMs: 0, error: RELEASED_ON_CLOSE, extendMs: 0 };
        this.batcher.add("nack", job, release).catch(() => undefined);
      }
      this.batcher.flush();
      await this.batcher.whenIdle(Math.min(CLOSE_SETTLE_WAIT_MS, this.context.options.requestTimeoutMs));
    }
    this.acceptingSettles = false;
    this.batcher.rejectAll(new ClosedError("the queue consumer"));
    this.records.clear();
    this.stream?.end();
    this.stream = undefined;
    this.onClosed(this);
  }
}

/** Leases usually arrive in offset order; sorts a copy only when they do not. */
function sortedByOffset(leases: QueueLease[]): QueueLease[] {
  for (let i = 1; i < leases.length; i++) {
    if (leases[i]!.offset < leases[i - 1]!.offset) return [...leases].sort((a, b) => a.offset - b.offset);
  }
  return leases;
}
