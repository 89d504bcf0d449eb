/**
 * A consumer of one topic, in one of two modes:
 *
 * - without `group`: an ephemeral reader (no committed offsets) of every partition, or of
 *   the partitions named in subscribe();
 * - with `group`: a member of a consumer group. The group's coordinator spreads the
 *   topic's partitions over its members; each partition starts at the group's committed
 *   offset (else per `fromBeginning`), and positions are committed as the application goes
 *   (auto-commit), when partitions move to another member, and on close(). Every group
 *   sees every message: offsets are kept per group.
 *
 *   const consumer = sluice.consumer({ group: "billing" });
 *   for await (const m of consumer.subscribe("orders")) handle(m);
 *
 * Leaving the loop (break, return, throw) closes the consumer (a member commits and leaves
 * its group); `await sluice.close()` or `await consumer.close()` waits for that.
 */
import { ClosedError, InvalidArgumentError, type SluiceError } from "../../../common/src/errors.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { checkInteger, checkTopicName } from "../options.js";
import { listOffsets } from "../routing/list-offsets.js";
import { GroupMember, type GroupMembership } from "./group-member.js";
import { CoordinatorRpc } from "./group-rpc.js";
import {
  parseConsumerOptions,
  parseSubscribeOptions,
  type ConsumerMessage,
  type ConsumerOptions,
  type ParsedConsumerOptions,
  type ParsedGroupOptions,
  type SubscribeOptions,
} from "./options.js";
import { Subscription } from "./subscription.js";

export class Consumer {
  readonly options: ParsedConsumerOptions;
  private subscription: Subscription | undefined;
  private member: GroupMember | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

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
    const group = this.options.group;
    const parsed = parseSubscribeOptions(options);
    if (group !== undefined && (parsed.partitions !== undefined || parsed.offsets.size > 0)) {
      throw new InvalidArgumentError(
        `a member of group "${group.group}" reads the partitions the group assigns it, from the group's offsets; ` +
          `use seek() on an assigned partition, or a consumer without a group to choose partitions`,
      );
    }
    const subscription = new Subscription(this.context, topic, this.options, parsed, () => void this.close(), group !== undefined);
    this.subscription = subscription;
    subscription.start();
    if (group !== undefined) {
      this.member = this.createMember(topic, group, subscription);
      this.member.start();
    }
    return subscription.queue;
  }

  /**
   * Moves a partition: the next message it yields is at `offset`. In a group, only for a
   * partition assigned to this member (see `membership()`); the move is committed like
   * any position.
   */
  seek(partition: number, offset: number): void {
    const checked = checkInteger("seek partition", partition, 0);
    this.requireSubscription("seek").seek(checked, checkInteger("seek offset", offset, 0));
    // A move back is committed as it is, even below an offset committed by hand before.
    this.member?.forgetAppCommit(checked);
  }

  /** Stops fetching a partition it reads; its position is kept (and committed as it is). */
  pause(partition: number): void {
    this.requireSubscription("pause").pause(checkInteger("pause partition", partition, 0));
  }

  /** Fetches a paused partition again, from its position. */
  resume(partition: number): void {
    this.requireSubscription("resume").resume(checkInteger("resume partition", partition, 0));
  }

  /** The next offset the iterator yields for `partition` (a partition this consumer reads). */
  position(partition: number): number {
    return this.requireSubscription("position").position(checkInteger("position partition", partition, 0));
  }

  /** The partitions this consumer reads now: in a group, those assigned to this member. */
  assignment(): number[] {
    return this.subscription?.assignedPartitions() ?? [];
  }

  /** This member's view of its group; undefined without a group or before subscribe(). */
  membership(): GroupMembership | undefined {
    return this.member?.membership();
  }

  /**
   * Commits group offsets. Without arguments: the position after the last message yielded
   * by the iterator, for each partition assigned to this member. With `offsets`
   * (partition → the next offset to consume, i.e. the last handled offset + 1): exactly
   * those. Rejects with FENCED_MEMBER for a partition this member does not own.
   */
  async commit(offsets?: Record<number, number>): Promise<void> {
    if (this.closed) throw new ClosedError("the consumer");
    const member = this.member;
    if (member === undefined) {
      throw new InvalidArgumentError(
        this.options.group === undefined
          ? `commit() needs a consumer group: create the consumer with sluice.consumer({ group: "..." })`
          : `commit() needs a subscription: call subscribe(topic) first`,
      );
    }
    if (offsets === undefined) return member.commitYielded();
    if (typeof offsets !== "object" || offsets === null) {
      throw new InvalidArgumentError(`commit offsets must be an object like { 0: 42 } (partition → next offset to consume)`);
    }
    const explicit = new Map<number, number>();
    for (const [key, offset] of Object.entries(offsets)) {
      const partition = checkInteger("commit offsets key (a partition)", Number(key), 0);
      explicit.set(partition, checkInteger(`commit offset of partition ${partition}`, offset, 0));
    }
    if (explicit.size > 0) await member.commitOffsets(explicit);
  }

  /**
   * The end offset (next offset to be written) of each partition of `topic`, e.g. to stop
   * at the end seen at start (`--until-end`).
   */
  async endOffsets(topic: string): Promise<Map<number, number>> {
    if (this.closed) throw new ClosedError("the consumer");
    // A slave answers while a partition's master is away (its high watermark).
    return listOffsets(this.context, checkTopicName(topic), "latest", undefined, { readFromSlaves: true });
  }

  /**
   * Stops reading; a pending iteration ends as done. A group member then commits what the
   * application finished with (with auto-commit; the message the loop is still on is not
   * included: call `commit()` first to include it) and leaves its group; the promise
   * resolves once it has.
   */
  close(): Promise<void> {
    if (this.closed) return this.closing ?? Promise.resolve();
    this.closed = true;
    this.closing = this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    const member = this.member;
    member?.stop();
    // The iterator ends first, so nothing is yielded past the positions committed below.
    this.subscription?.close();
    try {
      await member?.leave();
    } finally {
      this.onClosed(this);
    }
  }

  private requireSubscription(what: string): Subscription {
    if (this.closed) throw new ClosedError("the consumer");
    if (this.subscription === undefined) throw new InvalidArgumentError(`${what}() needs a subscription: call subscribe(topic) first`);
    return this.subscription;
  }

  private createMember(topic: string, group: ParsedGroupOptions, subscription: Subscription): GroupMember {
    const context = this.context;
    const policy = this.options.fromBeginning ? "earliest" : "latest";
    return new GroupMember(topic, group, {
      rpc: new CoordinatorRpc(context, group.group, GroupMember.heartbeatTimeoutMs(group)),
      partitions: subscription,
      resetOffsets: async (partitions) => {
        const route = context.routes.peek(topic);
        // Partitions past the cached count: the topic grew since the route was read.
        if (route === undefined || partitions.some((p) => p >= route.partitionCount)) await context.routes.refresh(topic);
        return listOffsets(context, topic, policy, partitions, { readFromSlaves: true });
      },
      partitionCount: async () => {
        const route =
          context.routes.peek(topic) ?? (await context.retry.run(() => context.routes.get(topic), { deadlineMs: deadlineFromNow(context) }));
        return route.partitionCount;
      },
      onFatal: (err: SluiceError) => subscription.queue.fail(err),
      retryDelayMs: (retry) => context.retry.delayMs(retry),
      logger: context.logger,
    });
  }
}
