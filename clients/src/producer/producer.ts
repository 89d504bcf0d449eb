/**
 * The producer: `send(topic, messages)` partitions the messages, appends them to the
 * partitions' open batches and resolves once every one of them is acknowledged.
 *
 *   send() ──▶ RecordAccumulator (batch per partition; linger / size) ──▶ Sender (queue per
 *   partition, Produce stream per broker, retries) ──▶ acks settle each SendCall
 *
 * A send is checked whole before any of it is appended, so a bad message fails the call
 * without half of it being written.
 */
import { MAX_TIMESTAMP_MS } from "../../../common/src/batch/index.js";
import {
  ClosedError,
  InvalidArgumentError,
  UnknownPartitionError,
  toSluiceError,
} from "../../../common/src/errors.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { checkTopicName } from "../options.js";
import type { CachedRoute } from "../routing/route-cache.js";
import { RecordAccumulator } from "./accumulator.js";
import { randomProducerId } from "./idempotence.js";
import { parseProducerOptions, type ParsedProducerOptions, type ProducerOptions } from "./options.js";
import { createPartitioner, type TopicPartitioner } from "./partitioner.js";
import { SendCall } from "./send-call.js";
import { Sender } from "./sender.js";
import type { ProducerMessage, RecordMetadata } from "./types.js";

export class Producer {
  readonly options: ParsedProducerOptions;
  /**
   * The random id an idempotent producer stamps into its batches (see the `idempotent`
   * option); undefined otherwise. Brokers log it with refused batches.
   */
  readonly producerId: number | undefined;
  private readonly accumulator: RecordAccumulator;
  private readonly sender: Sender;
  private readonly partitioners = new Map<string, TopicPartitioner>();
  private readonly unsettled = new Set<SendCall>();
  /** Partition chosen for each message of the current send, reused across sends. */
  private partitionScratch = new Int32Array(1024);
  private closing: Promise<void> | undefined;
  private closed = false;
  /** Sends waiting for their route; settled (never rejected) views of them. */
  private readonly lookingUp = new Set<Promise<void>>();

  constructor(
    private readonly context: ClientContext,
    options: ProducerOptions = {},
    private readonly onClosed: (producer: Producer) => void = () => undefined,
  ) {
    this.options = parseProducerOptions(options);
    this.producerId = this.options.idempotent ? randomProducerId() : undefined;
    const requestTimeoutMs = context.options.requestTimeoutMs;
    this.sender = new Sender(context, {
      acks: this.options.acks,
      requestTimeoutMs,
      ...(this.producerId === undefined ? {} : { producerId: this.producerId }),
      // Load balancing hears of failing partitions, so a weighted partitioner sends less there.
      onRetriableFailure: (topic, partition) => this.partitioners.get(topic)?.noteFailure(partition),
    });
    this.accumulator = new RecordAccumulator(
      {
        lingerMs: this.options.lingerMs,
        maxBatchBytes: this.options.maxBatchBytes,
        compression: this.options.compression,
        deliveryTimeoutMs: requestTimeoutMs,
      },
      (batch) => this.sender.enqueue(batch),
    );
  }

  /**
   * Sends `messages` to `topic`. Resolves, once every message is acknowledged, with where
   * each was written, in input order; rejects with a SluiceError otherwise.
   */
  send(topic: string, messages: readonly ProducerMessage[]): Promise<RecordMetadata[]> {
    if (this.closing !== undefined) return Promise.reject(new ClosedError("the producer"));
    if (!Array.isArray(messages)) {
      return Promise.reject(new InvalidArgumentError(`send(topic, messages) takes an array of messages, got ${typeof messages}`));
    }
    const route = this.context.routes.peek(topic);
    // A cached route means the name was valid; only a new topic name needs checking.
    if (route !== undefined) return messages.length === 0 ? Promise.resolve([]) : this.append(route, topic, messages, false);
    try {
      checkTopicName(topic);
    } catch (err) {
      return Promise.reject(err);
    }
    if (messages.length === 0) return Promise.resolve([]);
    // Tracked so flush() and close() wait for sends still looking up their route.
    const pending = this.lookUp(topic).then((found) => this.append(found, topic, messages, false));
    const tracked = pending.then(
      () => undefined,
      () => undefined,
    );
    this.lookingUp.add(tracked);
    void tracked.then(() => this.lookingUp.delete(tracked));
    return pending;
  }

  /** Sends every message waiting in a batch now and waits until all sends so far are settled. */
  async flush(): Promise<void> {
    while (this.lookingUp.size > 0) await Promise.all([...this.lookingUp]);
    this.accumulator.sealAll();
    if (this.unsettled.size > 0) await Promise.allSettled([...this.unsettled].map((call) => call.promise));
  }

  /** Flushes, then closes the producer's streams. Later sends fail with CLOSED. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.flush();
      } finally {
        this.closed = true;
        this.accumulator.close();
        this.sender.close();
        this.onClosed(this);
      }
    })();
    return this.closing;
  }

  private lookUp(topic: string): Promise<CachedRoute> {
    return this.context.retry.run(() => this.context.routes.get(topic), { deadlineMs: deadlineFromNow(this.context) });
  }

  private append(route: CachedRoute, topic: string, messages: readonly ProducerMessage[], refreshed: boolean): Promise<RecordMetadata[]> {
    const count = messages.length;
    const partitionCount = route.partitionCount;
    let partitioner = this.partitioners.get(topic);
    if (partitioner === undefined) {
      partitioner = createPartitioner(this.options.partitioner, topic);
      this.partitioners.set(topic, partitioner);
    }
    if (this.partitionScratch.length < count) this.partitionScratch = new Int32Array(count * 2);
    const partitions = this.partitionScratch;
    try {
      for (let i = 0; i < count; i++) {
        const message = messages[i]!;
        checkMessage(message, i);
        const explicit = message.partition;
        if (explicit === undefined) {
          partitions[i] = partitioner.partition(message, partitionCount);
        } else if (explicit >= partitionCount) {
          // Partitions may have been added since the route was cached: look once more.
          if (!refreshed) {
            return this.context.routes.refresh(topic).then((fresh) => this.append(fresh, topic, messages, true));
          }
          throw new UnknownPartitionError(topic, explicit, partitionCount);
        } else {
          partitions[i] = explicit;
        }
      }
    } catch (err) {
      return Promise.reject(toSluiceError(err));
    }
    // Sends accepted before close() still go out: close() flushes them first.
    if (this.closed) return Promise.reject(new ClosedError("the producer"));
    const call = new SendCall(topic, count, this.unsettled);
    const batchers = this.accumulator.partitionsOf(topic);
    const now = Date.now();
    try {
      for (let i = 0; i < count; i++) this.accumulator.append(batchers, partitions[i]!, messages[i]!, now, call, i);
    } catch (err) {
      call.fail(toSluiceError(err));
    }
    return call.promise;
  }
}

function isBytes(value: unknown): boolean {
  return value === null || value === undefined || typeof value === "string" || value instanceof Uint8Array;
}

/** Catches what the batch encoder would refuse, before anything of the send is appended. */
function checkMessage(message: ProducerMessage, index: number): void {
  if (typeof message !== "object" || message === null) {
    throw new InvalidArgumentError(`message ${index} must be an object like { key, value, headers }, got ${message === null ? "null" : typeof message}`);
  }
  if (!isBytes(message.value)) throw new InvalidArgumentError(`message ${index}: value must be a Buffer, a string or null`);
  if (!isBytes(message.key)) throw new InvalidArgumentError(`message ${index}: key must be a Buffer, a string or null`);
  const partition = message.partition;
  if (partition !== undefined && (!Number.isInteger(partition) || partition < 0)) {
    throw new InvalidArgumentError(`message ${index}: partition must be an integer >= 0, got ${String(partition)}`);
  }
  const timestamp = message.timestamp;
  if (timestamp !== undefined && (!Number.isSafeInteger(timestamp) || timestamp < 0 || timestamp > MAX_TIMESTAMP_MS)) {
    throw new InvalidArgumentError(`message ${index}: timestamp must be ms since the epoch (an integer >= 0), got ${String(timestamp)}`);
  }
  const headers = message.headers;
  if (headers !== undefined) {
    if (typeof headers !== "object" || headers === null) {
      throw new InvalidArgumentError(`message ${index}: headers must be an object of name → Buffer or string`);
    }
    for (const name in headers) {
      const value = headers[name];
      if (typeof value !== "string" && !(value instanceof Uint8Array)) {
        throw new InvalidArgumentError(`message ${index}: header "${name}" must be a Buffer or a string`);
      }
    }
  }
}
