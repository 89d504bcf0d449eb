/**
 * An ephemeral reader of one topic (no consumer group, no committed offsets): subscribe
 * returns an async iterator of messages, in offset order per partition.
 *
 *   for await (const m of consumer.subscribe("orders")) handle(m);
 *
 * Leaving the loop (break, return, throw) closes the consumer's streams.
 */
import { ClosedError, InvalidArgumentError } from "../../../common/src/errors.js";
import type { ClientContext } from "../context.js";
import { checkInteger, checkTopicName } from "../options.js";
import { listOffsets } from "../routing/list-offsets.js";
import {
  parseConsumerOptions,
  parseSubscribeOptions,
  type ConsumerMessage,
  type ConsumerOptions,
  type ParsedConsumerOptions,
  type SubscribeOptions,
} from "./options.js";
import { Subscription } from "./subscription.js";

export class Consumer {
  readonly options: ParsedConsumerOptions;
  private subscription: Subscription | undefined;
  private closed = false;

  constructor(
    private readonly context: ClientContext,
    options: ConsumerOptions = {},
    private readonly onClosed: (consumer: Consumer) => void = () => undefined,
  ) {
    this.options = parseConsumerOptions(options);
  }

  /**
   * Starts reading `topic` and returns the messages as an async iterator. A consumer reads
   * one topic; errors that retrying cannot fix (the topic was deleted, a corrupt batch)
   * end the iteration by throwing them.
   */
  subscribe(topic: string, options?: SubscribeOptions): AsyncIterableIterator<ConsumerMessage> {
    if (this.closed) throw new ClosedError("the consumer");
    checkTopicName(topic);
    if (this.subscription !== undefined) {
      throw new InvalidArgumentError(
        `this consumer already reads "${this.subscription.topic}"; create another consumer with sluice.consumer() for "${topic}"`,
      );
    }
    const subscription = new Subscription(this.context, topic, this.options, parseSubscribeOptions(options), () => this.close());
    this.subscription = subscription;
    subscription.start();
    return subscription.queue;
  }

  /** Moves a partition of the subscribed topic: the next message it yields is at `offset`. */
  seek(partition: number, offset: number): void {
    if (this.closed) throw new ClosedError("the consumer");
    if (this.subscription === undefined) throw new InvalidArgumentError("seek() needs a subscription: call subscribe(topic) first");
    this.subscription.seek(checkInteger("seek partition", partition, 0), checkInteger("seek offset", offset, 0));
  }

  /**
   * The end offset (next offset to be written) of each partition of `topic`, e.g. to stop
   * at the end seen at start (`--until-end`).
   */
  async endOffsets(topic: string): Promise<Map<number, number>> {
    if (this.closed) throw new ClosedError("the consumer");
    return listOffsets(this.context, checkTopicName(topic), "latest");
  }

  /** Stops reading; a pending iteration ends as done. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscription?.close();
    this.onClosed(this);
  }
}
