/**
 * Moves sealed batches from their partition queues onto the Produce stream of each
 * partition's master, and handles what comes back.
 *
 * - One queue per partition, in seal order (partition-queue.ts keeps the in-flight and
 *   ordering rules). A queue sends while its route is known and its broker's stream is
 *   writable; otherwise it waits for the route lookup, the stream's handshake, or the stream
 *   to drain (HTTP/2 pushing back).
 * - A batch that fails with a retriable error goes back into its queue at its original
 *   position and the queue pauses for the backoff (at least the server's retry-after); when
 *   the error means a stale route, the route is refreshed before the queue resumes. Errors
 *   that mean the master is changing hands (MASTER_CHANGE_CODES: failover, a stream broken
 *   by a dying broker, a timeout) are retried until the batch's deadline, not `retries`
 *   times: the application sees an error only when the send timeout passed. A batch keeps
 *   its bytes, and an idempotent producer's batch its sequence, across every retry.
 * - Flow control: a batch refused with THROTTLED waits the broker's retry-after and goes
 *   again, in order, until its deadline; while acks say the broker held batches, the queue
 *   keeps fewer in flight (partition-queue.ts). The application sees THROTTLED only when the
 *   send timeout passed.
 * - Idempotent producers: OUT_OF_ORDER_SEQUENCE / PRODUCER_FENCED are fatal for the send,
 *   except where an earlier batch of the partition explains them (see idempotence.ts).
 * - One sweep timer per producer fails streams whose oldest batch waits longer than the
 *   request timeout (a broker that stopped answering), drops streams to a broker the route
 *   no longer names as the partition's master once their batches waited MOVED_MASTER_GRACE_MS
 *   (a frozen former master never answers: its batches go to the new one), and fails batches
 *   queued past their deadline.
 */
import {
  ClosedError,
  NoBrokersAvailableError,
  NotLeaderError,
  RequestTimedOutError,
  ThrottledError,
  UnknownPartitionError,
  type SluiceError,
} from "../../../common/src/errors.js";
import { Acks } from "../../../proto/gen/sluice/v1/broker.js";
import type { ClientContext } from "../context.js";
import { MASTER_CHANGE_CODES } from "../retry.js";
import { ROUTE_REFRESH_CODES } from "../routing/route-cache.js";
import { MAX_IN_FLIGHT_PER_PARTITION, PartitionSequencer } from "./idempotence.js";
import { PartitionQueue } from "./partition-queue.js";
import { ProduceStream, type ProduceStreamListener } from "./produce-stream.js";
import type { ProducerBatch } from "./send-call.js";

export interface SenderOptions {
  readonly acks: Acks;
  readonly requestTimeoutMs: number;
  /** Stamp batches with this producer id and per-partition sequences (idempotent producer). */
  readonly producerId?: number;
  /** Told of every failed attempt with a retriable error, before the batch backs off. */
  readonly onRetriableFailure?: (topic: string, partition: number, err: SluiceError) => void;
}

/** The sweep runs this often at most, and at least four times per request timeout. */
const MAX_SWEEP_INTERVAL_MS = 1_000;
const MIN_SWEEP_INTERVAL_MS = 10;
/**
 * How long batches may wait on a broker the route no longer names as their partition's
 * master before the stream is dropped and they go to the new master. A deposed master that
 * still runs answers NOT_LEADER at once, and a graceful handover acknowledges what it holds
 * before the route moves, so waiting this long only matters for a frozen broker.
 */
export const MOVED_MASTER_GRACE_MS = 1_500;

/** Refusals an idempotent producer may explain by an earlier batch of the same partition. */
const SEQUENCE_REFUSALS = new Set(["OUT_OF_ORDER_SEQUENCE", "PRODUCER_FENCED"]);

export class Sender implements ProduceStreamListener {
  private readonly queues = new Map<string, PartitionQueue[]>();
  private readonly streams = new Map<string, ProduceStream>();
  /** Queues waiting for a stream to become writable. */
  private readonly waiting = new Map<ProduceStream, Set<PartitionQueue>>();
  private readonly maxInFlight: number;
  /** Acknowledged batches leave the queue's count; with acks none nothing comes back to count. */
  private readonly countsInFlight: boolean;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly context: ClientContext,
    private readonly options: SenderOptions,
  ) {
    this.maxInFlight = options.producerId === undefined ? Infinity : MAX_IN_FLIGHT_PER_PARTITION;
    this.countsInFlight = options.acks !== Acks.ACKS_NONE;
  }

  /** Takes a sealed batch; sends it at once when its partition can send. */
  enqueue(batch: ProducerBatch): void {
    if (this.closed) {
      batch.fail(new ClosedError("the producer"));
      return;
    }
    this.startSweep();
    const queue = this.queueFor(batch.topic, batch.partition);
    queue.batches.push(batch);
    if (queue.canSend) this.pump(queue);
  }

  streamAcknowledged(batch: ProducerBatch, baseOffset: number, throttleTimeMs: number): void {
    const queue = this.queueFor(batch.topic, batch.partition);
    queue.returned();
    queue.throttled = throttleTimeMs > 0;
    queue.sequencer?.acknowledged(batch);
    batch.acknowledge(baseOffset);
    queue.settleRecovery();
    if (queue.canSend) this.pump(queue);
  }

  streamFailed(batch: ProducerBatch, err: SluiceError): void {
    const queue = this.queueFor(batch.topic, batch.partition);
    queue.returned();
    this.retryOrFail(queue, batch, err);
    if (queue.canSend) this.pump(queue);
  }

  /** A failed attempt: back into the queue after a backoff, or the batch's sends fail. */
  private retryOrFail(queue: PartitionQueue, batch: ProducerBatch, err: SluiceError): void {
    this.context.routes.noteError(batch.topic, err);
    // Refusals by flow control are pacing, not failures: they do not use up `retries` or
    // grow the backoff of a later failure.
    const retry = batch.attempts++ - batch.throttledAttempts;
    if (err.code === "THROTTLED") batch.throttledAttempts++;
    if (err.retriable && !this.closed) this.options.onRetriableFailure?.(batch.topic, batch.partition, err);
    // Another failure ends "throttled": a broker that then stops answering is not reported
    // as flow control keeping the batch waiting.
    if (err.code !== "THROTTLED") queue.throttled = false;
    let delay: number;
    if (this.closed) {
      delay = -1;
    } else if (queue.sequencer !== undefined && SEQUENCE_REFUSALS.has(err.code) && queue.sequencer.refused(batch) !== "fatal") {
      // Explained by an earlier batch: it goes again right after that one, no backoff needed.
      delay = batch.deadlineMs > Date.now() ? 0 : -1;
    } else if (err.code === "THROTTLED") {
      // The broker says when it will admit the batch: wait that long, until the deadline.
      queue.throttled = true;
      delay = this.context.retry.throttleDelayMs(err, batch.deadlineMs);
    } else {
      delay = this.context.retry.nextDelayMs(err, retry, batch.deadlineMs, MASTER_CHANGE_CODES.has(err.code));
    }
    if (delay < 0) {
      this.failBatch(queue, batch, err);
      return;
    }
    if (batch.abandoned) {
      // Every send with a record here already failed: sending it again helps no one.
      this.failBatch(queue, batch, err);
      return;
    }
    queue.retry(batch);
    if (delay > 0) this.pauseFor(queue, delay, ROUTE_REFRESH_CODES.has(err.code));
  }

  /** A batch fails for good; an idempotent partition whose sequence it leaves uncertain starts a new epoch. */
  private failBatch(queue: PartitionQueue, batch: ProducerBatch, err: SluiceError): void {
    const sequencer = queue.sequencer;
    if (sequencer !== undefined && batch.baseSequence >= 0) {
      sequencer.failed(batch);
      // Later batches of the old epoch may still be in flight: none of the new epoch goes
      // out beside them.
      queue.recovering = true;
    }
    batch.fail(err);
  }

  streamWritable(stream: ProduceStream): void {
    const queues = this.waiting.get(stream);
    if (queues === undefined) return;
    this.waiting.delete(stream);
    for (const queue of queues) if (queue.canSend) this.pump(queue);
  }

  streamClosed(stream: ProduceStream, err: SluiceError): void {
    if (this.streams.get(stream.address) === stream) this.streams.delete(stream.address);
    const queues = this.waiting.get(stream);
    if (queues === undefined) return;
    this.waiting.delete(stream);
    // The stream never opened (handshake refused or broker unreachable): count it as a
    // failed attempt of each waiting queue's next batch, which backs off and refreshes routes.
    for (const queue of queues) {
      const head = queue.batches.shift();
      if (head !== undefined) this.retryOrFail(queue, head, err);
      if (queue.canSend) this.pump(queue);
    }
  }

  /** Ends every stream; anything still queued fails with CLOSED. Call after a flush. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    const closedError = new ClosedError("the producer");
    for (const partitions of this.queues.values()) {
      for (const queue of partitions) {
        if (!queue) continue;
        if (queue.retryTimer !== undefined) clearTimeout(queue.retryTimer);
        for (const batch of queue.batches.splice(0)) this.failBatch(queue, batch, closedError);
      }
    }
    for (const stream of this.streams.values()) {
      if (stream.inFlight.size === 0) stream.end();
      else stream.abort(closedError);
    }
    this.streams.clear();
    this.waiting.clear();
  }

  private queueFor(topic: string, partition: number): PartitionQueue {
    let partitions = this.queues.get(topic);
    if (partitions === undefined) {
      partitions = [];
      this.queues.set(topic, partitions);
    }
    let queue = partitions[partition];
    if (queue === undefined) {
      const producerId = this.options.producerId;
      const sequencer = producerId === undefined ? undefined : new PartitionSequencer(producerId);
      queue = partitions[partition] = new PartitionQueue(topic, partition, this.maxInFlight, sequencer);
    }
    return queue;
  }

  private pump(queue: PartitionQueue): void {
    const routes = this.context.routes;
    while (queue.canSend && !this.closed) {
      const route = routes.peek(queue.topic);
      if (route === undefined) {
        this.lookUpRoute(queue);
        return;
      }
      if (queue.partition >= route.partitionCount) {
        this.failQueue(queue, new UnknownPartitionError(queue.topic, queue.partition, route.partitionCount));
        return;
      }
      const address = route.leaders[queue.partition];
      if (address === undefined) {
        const noMaster = new NoBrokersAvailableError(
          `partition ${queue.topic}/${queue.partition} has no live master (broker group "${route.partitions[queue.partition]?.group ?? "?"}"); retrying`,
        );
        this.retryOrFail(queue, queue.batches.shift()!, noMaster);
        continue;
      }
      // The partition moved while batches were on their way to its former master: they
      // come back (acknowledged, refused or timed out) before anything goes to the new one.
      if (!queue.mayGoTo(address)) return;
      const stream = this.streamFor(address);
      if (!stream.ready || stream.blocked) {
        let queues = this.waiting.get(stream);
        if (queues === undefined) this.waiting.set(stream, (queues = new Set()));
        queues.add(queue);
        return;
      }
      stream.send(queue.takeForSending(address, this.countsInFlight), Date.now());
    }
  }

  private streamFor(address: string): ProduceStream {
    let stream = this.streams.get(address);
    if (stream === undefined || stream.closed) {
      stream = new ProduceStream(this.context.brokers.get(address), this.context.header, this.options.acks, this);
      this.streams.set(address, stream);
      stream.start();
    }
    return stream;
  }

  private lookUpRoute(queue: PartitionQueue): void {
    queue.paused = true;
    this.resumeAfter(queue, this.context.routes.get(queue.topic), (err) => {
      if (queue.batches.length > 0) this.retryOrFail(queue, queue.batches.shift()!, err);
      if (queue.canSend) this.pump(queue);
    });
  }

  /**
   * Unpauses the queue when a route lookup settles: pumps on success; on failure, fails the
   * queue when the error is final (e.g. the name servers say the topic does not exist),
   * otherwise leaves the next step to `onRetriable`.
   */
  private resumeAfter(queue: PartitionQueue, lookup: Promise<unknown>, onRetriable: (err: SluiceError) => void): void {
    lookup.then(
      () => {
        queue.paused = false;
        this.pump(queue);
      },
      (err: SluiceError) => {
        queue.paused = false;
        if (!err.retriable) this.failQueue(queue, err);
        else onRetriable(err);
      },
    );
  }

  /**
   * Pauses a queue for a backoff, then resumes it, after refreshing the topic's route when
   * the error says the route may be stale (a throttled partition just waits).
   */
  private pauseFor(queue: PartitionQueue, delayMs: number, refreshRoute: boolean): void {
    if (queue.paused) return;
    queue.paused = true;
    queue.retryTimer = setTimeout(() => {
      queue.retryTimer = undefined;
      if (this.closed) return;
      if (!refreshRoute) {
        queue.paused = false;
        this.pump(queue);
        return;
      }
      // On a retriable failure keep the cached route; a failure there backs off again.
      this.resumeAfter(queue, this.context.routes.refresh(queue.topic), () => this.pump(queue));
    }, delayMs);
  }

  private failQueue(queue: PartitionQueue, err: SluiceError): void {
    for (const batch of queue.batches.splice(0)) this.failBatch(queue, batch, err);
  }

  private startSweep(): void {
    if (this.sweepTimer !== undefined) return;
    const interval = Math.min(MAX_SWEEP_INTERVAL_MS, Math.max(MIN_SWEEP_INTERVAL_MS, Math.floor(this.options.requestTimeoutMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), interval);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    const timeoutMs = this.options.requestTimeoutMs;
    for (const stream of [...this.streams.values()]) {
      const oldest = stream.oldestInFlight();
      if (oldest === undefined) continue;
      const waitedMs = now - oldest.sentAtMs;
      if (waitedMs > timeoutMs) {
        stream.abort(new RequestTimedOutError(`broker ${stream.address} acknowledged nothing for ${timeoutMs} ms (requestTimeoutMs)`));
        continue;
      }
      const master = this.context.routes.peek(oldest.topic)?.leaders[oldest.partition];
      if (waitedMs > MOVED_MASTER_GRACE_MS && master !== undefined && master !== stream.address) {
        stream.abort(
          new NotLeaderError(
            `partition ${oldest.topic}/${oldest.partition} moved to broker ${master} while broker ${stream.address} held its batches unacknowledged for ${waitedMs} ms; resending there`,
          ),
        );
      }
    }
    for (const partitions of this.queues.values()) {
      for (const queue of partitions) {
        if (!queue || queue.batches.length === 0 || queue.batches[0]!.deadlineMs > now) continue;
        const late = queue.batches.filter((b) => b.deadlineMs <= now);
        if (late.length === 0) continue;
        queue.batches.splice(0, queue.batches.length, ...queue.batches.filter((b) => b.deadlineMs > now));
        for (const batch of late) {
          const err = queue.throttled
            ? new ThrottledError(
                `could not deliver to ${batch.topic}/${batch.partition} within ${timeoutMs} ms (requestTimeoutMs): the broker's flow control kept it waiting; send less, or raise the limit (sluice flow list)`,
              )
            : new RequestTimedOutError(
                `could not deliver to ${batch.topic}/${batch.partition} within ${timeoutMs} ms (requestTimeoutMs); the partition's broker is unreachable or has no master`,
              );
          this.failBatch(queue, batch, err);
        }
      }
    }
  }
}
