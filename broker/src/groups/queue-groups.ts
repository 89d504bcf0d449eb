/**
 * Queue groups (shared subscriptions): every message of a topic goes to one consumer of the
 * group, which acks it, nacks it (redelivered after a delay) or lets its lease run out
 * (redelivered); after `maxDeliveries` it moves to the group's dead-letter topic.
 *
 * One QueueTopic per (group, topic) keeps a QueueWindow per partition and the open sessions
 * (gRPC streams or WebSockets), each with message credit. It leases offsets to sessions with
 * credit and sends them the stored batches holding those offsets: the records are never
 * decoded here, except to build a dead letter or, with key ordering, to learn record keys.
 *
 * Windows are committed to `%groups` in groups: settles apply in memory at once, and one
 * write carries every window changed since the last one; each settle is answered after the
 * write that contains it, so an answered ack is never redelivered after a crash.
 */
import type { Logger } from "../../../common/src/logger.js";
import { GroupNotEmptyError, InvalidArgumentError, ShuttingDownError, UnknownTopicError } from "../../../common/src/errors.js";
import { checkGroupName } from "../../../common/src/group-name.js";
import { isInternalTopic } from "../../../common/src/protocol.js";
import type { QueueOpen, QueuePartitionState, QueueSettle, SettleError } from "../../../proto/gen/sluice/v1/groups.js";
import type { TopicManager } from "../topics.js";
import type { GroupCoordinator } from "./coordinator.js";
import type { QueueGroupView } from "./offsets.js";
import { QueueTopic, type QueueCounters, type QueueSession, type QueueSink } from "./queue-topic.js";
import { groupKey } from "./state-keys.js";

export const DEFAULT_INVISIBLE_MS = 30_000;
export const MAX_INVISIBLE_MS = 12 * 60 * 60 * 1000;
export const DEFAULT_MAX_DELIVERIES = 5;
export const MAX_DELIVERIES_LIMIT = 1000;

/** What `%groups` records about a queue group (key `g\0<group>`). */
export interface QueueGroupRecord {
  kind: "queue";
  topic: string;
  maxDeliveries: number;
  keyOrdering: boolean;
}

export interface QueueSettings {
  group: string;
  topic: string;
  memberId: string;
  clientId: string;
  invisibleMs: number;
  maxDeliveries: number;
  keyOrdering: boolean;
  fromBeginning: boolean;
}

export function parseQueueOpen(open: QueueOpen | undefined, clientId: string): QueueSettings {
  if (open === undefined) throw new InvalidArgumentError("the first message of a Queue stream must carry `open` (group, topic, member id)");
  checkGroupName(open.group);
  if (open.memberId === "" || open.memberId.length > 200) throw new InvalidArgumentError("a queue consumer needs a member id of 1 to 200 characters");
  if (isInternalTopic(open.topic)) throw new InvalidArgumentError(`"${open.topic}" is an internal topic and cannot be consumed as a queue`);
  const invisibleMs = open.invisibleMs === 0 ? DEFAULT_INVISIBLE_MS : open.invisibleMs;
  if (invisibleMs < 100 || invisibleMs > MAX_INVISIBLE_MS) {
    throw new InvalidArgumentError(`invisibleMs must be from 100 to ${MAX_INVISIBLE_MS}, got ${invisibleMs}`);
  }
  const maxDeliveries = open.maxDeliveries === 0 ? DEFAULT_MAX_DELIVERIES : open.maxDeliveries;
  if (maxDeliveries > MAX_DELIVERIES_LIMIT) throw new InvalidArgumentError(`maxDeliveries must be from 1 to ${MAX_DELIVERIES_LIMIT}, got ${maxDeliveries}`);
  return {
    group: open.group,
    topic: open.topic,
    memberId: open.memberId,
    clientId,
    invisibleMs,
    maxDeliveries,
    keyOrdering: open.keyOrdering,
    fromBeginning: open.fromBeginning,
  };
}

export class QueueGroups implements QueueGroupView {
  private readonly queues = new Map<string, QueueTopic>();
  /** Opens in progress: consumers arriving together share one QueueTopic (one window per partition). */
  private readonly opening = new Map<string, Promise<QueueTopic>>();
  private closed = false;

  constructor(
    private readonly coordinator: GroupCoordinator,
    private readonly topics: TopicManager,
    private readonly logger: Logger,
    private readonly counters?: QueueCounters,
  ) {}

  /** Opens a session: the caller then grants credit and settles through it. */
  async open(settings: QueueSettings, sink: QueueSink): Promise<QueueSession> {
    const { group, topic } = settings;
    await this.coordinator.partitionOf(group);
    if (this.coordinator.membership(group)?.size) {
      throw new InvalidArgumentError(`group "${group}" is a pub/sub consumer group with members; use another group name for queue consumers`);
    }
    const topicRecord = this.topics.topic(topic);
    if (topicRecord === undefined) {
      throw new UnknownTopicError(topic, " on the group's coordinator (a queue topic must have partitions on the coordinator's broker group)");
    }
    if (topicRecord.partitions.length === 0) {
      throw new InvalidArgumentError(
        `topic "${topic}" has no partitions on the broker group coordinating queue group "${group}"; place the topic there (sluice topic create --brokers) or use another group name`,
      );
    }
    const recorded = this.coordinator.store.get<QueueGroupRecord | { kind: string }>(groupKey(group));
    if (recorded !== undefined && recorded.kind === "queue" && (recorded as QueueGroupRecord).topic !== topic) {
      throw new InvalidArgumentError(
        `queue group "${group}" consumes topic "${(recorded as QueueGroupRecord).topic}"; use another group name for "${topic}"`,
      );
    }
    let queue = this.queues.get(group);
    if (queue === undefined) {
      let opening = this.opening.get(group);
      if (opening === undefined) {
        opening = QueueTopic.open({
          ...(this.counters === undefined ? {} : { counters: this.counters }),
          group,
          topic,
          coordinator: this.coordinator,
          topics: this.topics,
          logger: this.logger,
          fromBeginning: settings.fromBeginning,
        })
          .then(async (opened) => {
            if (this.closed) {
              await opened.close();
              throw new ShuttingDownError();
            }
            this.queues.set(group, opened);
            return opened;
          })
          .finally(() => this.opening.delete(group));
        this.opening.set(group, opening);
      }
      queue = await opening;
    }
    const record: QueueGroupRecord = { kind: "queue", topic, maxDeliveries: settings.maxDeliveries, keyOrdering: settings.keyOrdering };
    if (JSON.stringify(recorded) !== JSON.stringify(record)) await this.coordinator.write(group, [{ key: groupKey(group), value: record }]);
    queue.configure(settings.maxDeliveries, settings.keyOrdering);
    return queue.attach(settings, sink);
  }

  kind(group: string): "queue" | undefined {
    if (this.queues.has(group)) return "queue";
    return this.coordinator.store.get<{ kind: string }>(groupKey(group))?.kind === "queue" ? "queue" : undefined;
  }

  members(group: string): Array<{ memberId: string; clientId: string; topic: string }> {
    return this.queues.get(group)?.members() ?? [];
  }

  partitions(group: string): QueuePartitionState[] {
    return this.queues.get(group)?.describe() ?? [];
  }

  async reset(group: string, topic: string, offsets: Map<number, number>): Promise<void> {
    const queue = this.queues.get(group);
    if (queue !== undefined && queue.members().length > 0) {
      throw new GroupNotEmptyError(`queue group "${group}" has consumers attached; stop them before resetting its offsets`);
    }
    if (queue !== undefined) {
      await queue.reset(offsets);
      return;
    }
    await QueueTopic.resetStored(this.coordinator, group, topic, offsets);
  }

  groupNames(): string[] {
    const names = new Set(this.queues.keys());
    for (const [key, value] of this.coordinator.store.scan<{ kind: string }>("g\u0000")) {
      if (value.kind === "queue") names.add(key.slice(2));
    }
    return [...names];
  }

  /**
   * This broker stopped being master: windows are no longer ours to commit (the new master
   * replays them from the replicated log). The broker ends the queue streams, and consumers
   * find the new coordinator.
   */
  async demote(): Promise<void> {
    const queues = [...this.queues.values()];
    this.queues.clear();
    await Promise.allSettled(queues.map((q) => q.close()));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}

export type { QueueSession, QueueSink, QueueSettle, SettleError };
