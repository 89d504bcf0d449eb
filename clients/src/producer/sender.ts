/**
 * Moves sealed batches from their partition queues onto the Produce stream of each
 * partition's master, and handles what comes back.
 *
 * - One queue per partition, in seal order. A queue sends while its route is known and its
 *   broker's stream is writable; otherwise it waits for the route lookup, the stream's
 *   handshake, or the stream to drain (HTTP/2 pushing back).
 * - A batch that fails with a retriable error goes back into its queue at its original
 *   position (by sequence) and the queue pauses for the backoff (at least the server's
 *   retry-after); when the error means a stale route, the route is refreshed before the
 *   queue resumes. So a partition keeps its order across a leader change in normal
 *   operation. Non-retriable errors, and retries past the deadline, fail the batch's sends.
 * - One sweep timer per producer fails streams whose oldest batch waits longer than the
 *   request timeout (a broker that stopped answering) and batches queued past their deadline.
 */
import {
  ClosedError,
  NoBrokersAvailableError,
  RequestTimedOutError,
  UnknownPartitionError,
  type SluiceError,
} from "../../../common/src/errors.js";
import type { Acks } from "../../../proto/gen/sluice/v1/broker.js";
import type { ClientContext } from "../context.js";
import { ROUTE_REFRESH_CODES } from "../routing/route-cache.js";
import { ProduceStream, type ProduceStreamListener } from "./produce-stream.js";
import type { ProducerBatch } from "./send-call.js";

export interface SenderOptions {
  readonly acks: Acks;
  readonly requestTimeoutMs: number;
  /** Told of every failed attempt with a retriable error, before the batch backs off. */
  readonly onRetriableFailure?: (topic: string, partition: number, err: SluiceError) => void;
}

/** The sweep runs this often at most, and at least four times per request timeout. */
const MAX_SWEEP_INTERVAL_MS = 1_000;
const MIN_SWEEP_INTERVAL_MS = 10;

class PartitionQueue {
  readonly batches: ProducerBatch[] = [];
  /** Waiting for a backoff or a route lookup; whatever paused it resumes it. */
  paused = false;
  retryTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}

  /** Puts a retried batch back in front of every later batch of the partition. */
  insert(batch: ProducerBatch): void {
    const batches = this.batches;
    let at = batches.length;
    while (at > 0 && batches[at - 1]!.sequence > batch.sequence) at--;
    batches.splice(at, 0, batch);
  }
}

export class Sender implements ProduceStreamListener {
  private readonly queues = new Map<string, PartitionQueue[]>();
  private readonly streams = new Map<string, ProduceStream>();
  /** Queues waiting for the stream to an address to become writable. */
  private readonly waiting = new Map<string, Set<PartitionQueue>>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly context: ClientContext,
    private readonly options: SenderOptions,
  ) {}

  /** Takes a sealed batch; sends it at once when its partition can send. */
  enqueue(batch: ProducerBatch): void {
    if (this.closed) {
      batch.fail(new ClosedError("the producer"));
      return;
    }
    this.startSweep();
    const queue = this.queueFor(batch.topic, batch.partition);
    queue.batches.push(batch);
    if (!queue.paused) this.pump(queue);
  }

  streamAcknowledged(batch: ProducerBatch, baseOffset: number): void {
    batch.acknowledge(baseOffset);
  }

  streamFailed(batch: ProducerBatch, err: SluiceError): void {
    this.retryOrFail(batch, err);
  }

  /** A failed attempt: back into the queue after a backoff, or the batch's sends fail. */
  private retryOrFail(batch: ProducerBatch, err: SluiceError): void {
    this.context.routes.noteError(batch.topic, err);
    if (err.retriable && !this.closed) this.options.onRetriableFailure?.(batch.topic, batch.partition, err);
    const queue = this.queueFor(batch.topic, batch.partition);
    const delay = this.closed ? -1 : this.context.retry.nextDelayMs(err, batch.attempts++, batch.deadlineMs);
    if (delay < 0) {
      batch.fail(err);
      return;
    }
    if (batch.abandoned) return;
    queue.insert(batch);
    this.pauseFor(queue, delay, ROUTE_REFRESH_CODES.has(err.code));
  }

  streamWritable(stream: ProduceStream): void {
    const queues = this.waiting.get(stream.address);
    if (queues === undefined) return;
    this.waiting.delete(stream.address);
    for (const queue of queues) if (!queue.paused) this.pump(queue);
  }

  streamClosed(stream: ProduceStream, err: SluiceError): void {
    if (this.streams.get(stream.address) === stream) this.streams.delete(stream.address);
    const queues = this.waiting.get(stream.address);
    if (queues === undefined) return;
    this.waiting.delete(stream.address);
    // The stream never opened (handshake refused or broker unreachable): count it as a
    // failed attempt of each waiting queue's next batch, which backs off and refreshes routes.
    for (const queue of queues) {
      const head = queue.batches.shift();
      if (head !== undefined) this.retryOrFail(head, err);
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
        for (const batch of queue.batches.splice(0)) batch.fail(closedError);
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
    return (partitions[partition] ??= new PartitionQueue(topic, partition));
  }

  private pump(queue: PartitionQueue): void {
    const routes = this.context.routes;
    while (queue.batches.length > 0 && !queue.paused && !this.closed) {
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
        this.retryOrFail(queue.batches.shift()!, noMaster);
        return;
      }
      const stream = this.streamFor(address);
      if (!stream.ready || stream.blocked) {
        let queues = this.waiting.get(address);
        if (queues === undefined) this.waiting.set(address, (queues = new Set()));
        queues.add(queue);
        return;
      }
      stream.send(queue.batches.shift()!, Date.now());
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
      if (queue.batches.length > 0) this.retryOrFail(queue.batches.shift()!, err);
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
    for (const batch of queue.batches.splice(0)) batch.fail(err);
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
      const oldest = stream.oldestSentAtMs();
      if (oldest !== undefined && now - oldest > timeoutMs) {
        stream.abort(new RequestTimedOutError(`broker ${stream.address} acknowledged nothing for ${timeoutMs} ms (requestTimeoutMs)`));
      }
    }
    for (const partitions of this.queues.values()) {
      for (const queue of partitions) {
        if (!queue || queue.batches.length === 0 || queue.batches[0]!.deadlineMs > now) continue;
        const late = queue.batches.filter((b) => b.deadlineMs <= now);
        if (late.length === 0) continue;
        queue.batches.splice(0, queue.batches.length, ...queue.batches.filter((b) => b.deadlineMs > now));
        for (const batch of late) {
          batch.fail(
            new RequestTimedOutError(
              `could not deliver to ${batch.topic}/${batch.partition} within ${timeoutMs} ms (requestTimeoutMs); the partition's broker is unreachable or has no master`,
            ),
          );
        }
      }
    }
  }
}
