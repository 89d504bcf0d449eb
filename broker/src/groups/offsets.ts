/**
 * Committed offsets and the group views built on them: commit (fenced by membership),
 * fetch, describe with lag, list, and reset. Offsets are `%groups` records keyed by
 * (group, topic, partition); the offset is the next one the group will consume.
 */
import { baseTimestampOf } from "../../../common/src/batch/layout.js";
import {
  FencedMemberError,
  GroupNotEmptyError,
  InvalidArgumentError,
  NotLeaderError,
  UnknownGroupError,
  UnknownTopicError,
  toSluiceError,
} from "../../../common/src/errors.js";
import { toWireError } from "../../../common/src/grpc/errors.js";
import {
  ResetTarget,
  type CommitOffsetsRequest,
  type CommittedOffset,
  type DescribeGroupResponse,
  type GroupSummary,
  type PartitionLag,
  type PartitionResult,
  type QueuePartitionState,
  type ResetOffsetsRequest,
} from "../../../proto/gen/sluice/v1/groups.js";
import type { TopicManager } from "../topics.js";
import type { TopicPartition } from "./assignors.js";
import type { GroupCoordinator } from "./coordinator.js";
import { remoteKey, type RemoteEndLookup } from "./remote-end-offsets.js";
import { isInternalTopic } from "../../../common/src/protocol.js";
import { groupKey, offsetKey, parseKey, type OffsetRecord } from "./state-keys.js";
import type { StateWrite } from "./state-store.js";

/** One group's lag on one topic (see lagByTopic). */
export interface GroupTopicLag {
  group: string;
  topic: string;
  messages: number;
  /** -1 when unknown: no partition counted in `messages` is hosted here (see lagByGroupPartition). */
  seconds: number;
}

/** One group's lag on one partition (see lagByGroupPartition). */
export interface GroupPartitionLag extends GroupTopicLag {
  partition: number;
}

/** Queue groups report their windows here (see queue-groups.ts). */
export interface QueueGroupView {
  kind(group: string): "queue" | undefined;
  members(group: string): Array<{ memberId: string; clientId: string; topic: string }>;
  partitions(group: string): QueuePartitionState[];
  /** Moves a queue group's windows (reset-offsets); throws GROUP_NOT_EMPTY while it has members. */
  reset(group: string, topic: string, offsets: Map<number, number>): Promise<void>;
  groupNames(): string[];
}

export class GroupOffsets {
  constructor(
    private readonly coordinator: GroupCoordinator,
    private readonly topics: TopicManager,
    private readonly queues: QueueGroupView,
    /** End offsets of partitions other broker groups host, for lag; without it they are left out. */
    private readonly remoteEnds?: RemoteEndLookup,
  ) {}

  async commit(request: CommitOffsetsRequest): Promise<PartitionResult[]> {
    const { group } = request;
    await this.coordinator.partitionOf(group);
    const membership = this.coordinator.membership(group);
    const results: PartitionResult[] = [];
    const writes: StateWrite[] = [];
    const nowMs = this.coordinator.now();
    for (const commit of request.offsets) {
      const tp: TopicPartition = { topic: commit.topic, partition: commit.partition };
      try {
        if (!Number.isSafeInteger(commit.offset) || commit.offset < 0) {
          throw new InvalidArgumentError(`offset ${commit.offset} for ${commit.topic}/${commit.partition} is invalid: offsets are integers >= 0`);
        }
        if (membership !== undefined) membership.checkCommit(request.memberId, request.memberEpoch, tp);
        else if (request.memberId !== "") membershipMissing(group, request.memberId);
        const value: OffsetRecord = { offset: commit.offset, metadata: commit.metadata, commitTimeMs: nowMs };
        writes.push({ key: offsetKey(group, commit.topic, commit.partition), value });
        results.push({ topic: commit.topic, partition: commit.partition });
      } catch (err) {
        results.push({ topic: commit.topic, partition: commit.partition, error: toWireError(err) });
      }
    }
    if (writes.length > 0) await this.coordinator.write(group, writes);
    return results;
  }

  async fetch(group: string, wanted: ReadonlyArray<{ topic: string; partitions: number[] }>): Promise<CommittedOffset[]> {
    await this.coordinator.partitionOf(group);
    const store = this.coordinator.store;
    if (wanted.length === 0) return this.committed(group);
    const out: CommittedOffset[] = [];
    for (const { topic, partitions } of wanted) {
      for (const partition of partitions) {
        const record = store.get<OffsetRecord>(offsetKey(group, topic, partition));
        out.push(toCommitted(topic, partition, record));
      }
    }
    return out;
  }

  async describe(group: string): Promise<DescribeGroupResponse> {
    await this.coordinator.partitionOf(group);
    const membership = this.coordinator.membership(group);
    const committed = this.committed(group);
    const queueKind = this.queues.kind(group);
    if (membership === undefined && committed.length === 0 && queueKind === undefined) throw new UnknownGroupError(group);
    const lagByKey = new Map<string, PartitionLag>();
    for (const c of committed) lagByKey.set(`${c.topic}\u0000${c.partition}`, this.lag(c.topic, c.partition, c.offset));
    const members = (membership?.memberList() ?? []).map((m) => ({
      memberId: m.memberId,
      instanceId: m.instanceId,
      clientId: m.clientId,
      memberEpoch: m.epoch,
      topics: m.topics,
      assignment: groupByTopic(m.target),
    }));
    for (const m of membership?.memberList() ?? []) {
      for (const tp of m.target) {
        const k = `${tp.topic}\u0000${tp.partition}`;
        if (!lagByKey.has(k)) lagByKey.set(k, this.lag(tp.topic, tp.partition, -1));
      }
    }
    if (queueKind !== undefined) {
      for (const m of this.queues.members(group)) {
        members.push({ memberId: m.memberId, instanceId: "", clientId: m.clientId, memberEpoch: 0, topics: [m.topic], assignment: [] });
      }
    }
    return {
      group,
      kind: queueKind ?? "consumer",
      state: queueKind !== undefined ? (members.length > 0 ? "stable" : "empty") : (membership?.state() ?? "empty"),
      groupEpoch: membership?.epoch ?? 0,
      assignor: membership?.assignorName ?? "",
      members,
      partitions: [...lagByKey.values()].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition),
      queue: this.queues.partitions(group),
    };
  }

  async list(): Promise<GroupSummary[]> {
    await this.coordinator.loadAll();
    const names = new Set<string>([...this.coordinator.groupNames(), ...this.queues.groupNames()]);
    for (const [key] of this.coordinator.store.scan("o\u0000")) {
      const parsed = parseKey(key);
      if (parsed !== undefined) names.add(parsed.group);
    }
    return [...names].sort().map((group) => {
      const membership = this.coordinator.membership(group);
      const queue = this.queues.kind(group) !== undefined;
      const members = queue ? this.queues.members(group).length : (membership?.size ?? 0);
      return {
        group,
        kind: queue ? "queue" : "consumer",
        state: queue ? (members > 0 ? "stable" : "empty") : (membership?.state() ?? "empty"),
        members,
      };
    });
  }

  async reset(request: ResetOffsetsRequest): Promise<CommittedOffset[]> {
    const { group, topic } = request;
    await this.coordinator.partitionOf(group);
    const membership = this.coordinator.membership(group);
    if (membership !== undefined && membership.size > 0) {
      throw new GroupNotEmptyError(
        `group "${group}" has ${membership.size} active member(s); stop its consumers (or wait for their sessions to end) before resetting offsets`,
      );
    }
    let partitions = request.partitions;
    if (partitions.length === 0) {
      // "Every partition" needs the count, which only a broker hosting the topic knows; the SDK
      // always names the partitions (it reads them from the routes).
      const record = this.topics.topic(topic);
      if (record === undefined) throw new UnknownTopicError(topic, " on the group's coordinator: name the partitions to reset (the SDK and CLI do)");
      partitions = Array.from({ length: record.partitionCount }, (_, i) => i);
    }
    const targets = new Map<number, number>();
    for (const partition of partitions) targets.set(partition, this.resetTarget(request, partition));
    const nowMs = this.coordinator.now();
    const out = [...targets].map(([partition, offset]) => ({ topic, partition, offset, metadata: "", commitTimeMs: nowMs }));
    if (request.dryRun) return out;
    if (this.queues.kind(group) !== undefined) {
      await this.queues.reset(group, topic, targets);
    } else {
      await this.coordinator.write(
        group,
        out.map((o) => ({ key: offsetKey(group, topic, o.partition), value: { offset: o.offset, metadata: "", commitTimeMs: nowMs } })),
      );
    }
    return out;
  }

  /**
   * Lag of every group coordinated here on every partition with a known position. Partitions
   * hosted here are measured on their logs; those other broker groups host are measured to
   * the high watermark their masters report (remoteEnds: cached for seconds, asked with a short
   * deadline at scrape time) and left out while it cannot be had. Their `seconds` is -1 while
   * they have a backlog: the age of the message at an offset is not something a master answers
   * without sending the batch (ListOffsets has no such question).
   */
  async lagByGroupPartition(): Promise<GroupPartitionLag[]> {
    // Only a master coordinates (loadAll answers nothing on a slave): no double counting.
    if ((await this.coordinator.loadAll()).length === 0) return [];
    const out: GroupPartitionLag[] = [];
    const remote: Array<{ group: string; topic: string; partition: number; position: number }> = [];
    const measure = (group: string, topic: string, partition: number, position: number): void => {
      if (this.topics.logs.get(topic, partition) === undefined) {
        // Nothing committed yet: where the group starts depends on its reset policy, so lag is unknown.
        if (position >= 0) remote.push({ group, topic, partition, position });
        return;
      }
      const lag = this.lag(topic, partition, position);
      if (lag.lag < 0) return;
      out.push({ group, topic, partition, messages: lag.lag, seconds: Math.max(0, lag.lagMs) / 1000 });
    };
    for (const [key, record] of this.coordinator.store.scan<OffsetRecord>("o\u0000")) {
      const parsed = parseKey(key);
      if (parsed?.topic === undefined || parsed.partition === undefined) continue;
      // A queue group's offset on its %DLQ% topic is redrive's cursor, not consumer lag (the
      // DLQ has its own series): internal topics stay out.
      if (isInternalTopic(parsed.topic)) continue;
      measure(parsed.group, parsed.topic, parsed.partition, record.offset);
    }
    for (const group of this.queues.groupNames()) {
      for (const p of this.queues.partitions(group)) measure(group, p.topic, p.partition, p.startOffset);
    }
    if (remote.length === 0 || this.remoteEnds === undefined) return out;
    const ends = await this.remoteEnds.lookup(remote);
    for (const { group, topic, partition, position } of remote) {
      const end = ends.get(remoteKey(topic, partition));
      if (end === undefined) continue;
      const messages = Math.max(0, end.highWatermark - Math.max(position, end.logStartOffset));
      // Caught up is caught up wherever the partition lives; a backlog's age is unknown here.
      out.push({ group, topic, partition, messages, seconds: messages === 0 ? 0 : -1 });
    }
    return out;
  }

  /** The group's committed offset on one partition, from the local state cache; undefined when none. */
  committedOffset(group: string, topic: string, partition: number): number | undefined {
    return this.coordinator.store.get<OffsetRecord>(offsetKey(group, topic, partition))?.offset;
  }

  /** Forgets a group whose membership is gone (kept for listing otherwise). */
  async forgetMembership(group: string): Promise<void> {
    await this.coordinator.write(group, [{ key: groupKey(group), value: null }]);
  }

  private committed(group: string): CommittedOffset[] {
    const out: CommittedOffset[] = [];
    for (const [key, record] of this.coordinator.store.scan<OffsetRecord>(`o\u0000${group}\u0000`)) {
      const parsed = parseKey(key);
      if (parsed?.topic === undefined || parsed.partition === undefined) continue;
      out.push(toCommitted(parsed.topic, parsed.partition, record));
    }
    return out;
  }

  private lag(topic: string, partition: number, committedOffset: number): PartitionLag {
    const log = this.topics.logs.get(topic, partition);
    if (log === undefined) return { topic, partition, committedOffset, endOffset: -1, lag: -1, lagMs: -1 };
    // Lag is measured to the high watermark: what the group could read now.
    const endOffset = log.highWatermark;
    // Nothing committed yet: where the group starts depends on its reset policy, so lag is unknown.
    if (committedOffset < 0) return { topic, partition, committedOffset, endOffset, lag: -1, lagMs: -1 };
    const from = Math.max(committedOffset, log.logStartOffset);
    const lag = Math.max(0, endOffset - from);
    let lagMs = 0;
    if (lag > 0) {
      try {
        // Age of the oldest unconsumed message: its batch's first timestamp, from the header alone.
        const { records } = log.read(from, 1);
        if (records.length > 0) lagMs = Math.max(0, this.coordinator.now() - baseTimestampOf(records));
      } catch (err) {
        lagMs = toSluiceError(err).code === "OFFSET_OUT_OF_RANGE" ? 0 : -1;
      }
    }
    return { topic, partition, committedOffset, endOffset, lag, lagMs };
  }

  private resetTarget(request: ResetOffsetsRequest, partition: number): number {
    const log = this.topics.logs.get(request.topic, partition);
    if (log === undefined) {
      // Hosted by another broker group: only an explicit offset can be taken (the SDK resolves
      // earliest, latest and timestamps with the partition's master first).
      if (request.target === ResetTarget.RESET_TARGET_OFFSET && Number.isSafeInteger(request.offset) && request.offset >= 0) return request.offset;
      throw new NotLeaderError(
        `${request.topic}/${partition} is not hosted on the group's coordinator; reset it to an explicit offset (the SDK resolves earliest, latest and timestamps first)`,
      );
    }
    switch (request.target) {
      case ResetTarget.RESET_TARGET_EARLIEST:
        return log.logStartOffset;
      case ResetTarget.RESET_TARGET_LATEST:
        return log.highWatermark;
      case ResetTarget.RESET_TARGET_OFFSET:
        if (!Number.isSafeInteger(request.offset) || request.offset < 0) {
          throw new InvalidArgumentError(`offset ${request.offset} is invalid: offsets are integers >= 0`);
        }
        return Math.min(Math.max(request.offset, log.logStartOffset), log.highWatermark);
      case ResetTarget.RESET_TARGET_TIMESTAMP:
        return Math.min(log.offsetForTimestamp(request.timestampMs)?.offset ?? log.highWatermark, log.highWatermark);
      default:
        throw new InvalidArgumentError(`unknown reset target ${String(request.target)}`);
    }
  }
}

function membershipMissing(group: string, memberId: string): never {
  throw new FencedMemberError(`member ${memberId} is not in group "${group}" (the group has no members); rejoin before committing`);
}

function toCommitted(topic: string, partition: number, record: OffsetRecord | undefined): CommittedOffset {
  return {
    topic,
    partition,
    offset: record?.offset ?? -1,
    metadata: record?.metadata ?? "",
    commitTimeMs: record?.commitTimeMs ?? 0,
  };
}

/** Partitions grouped by topic, as the protocol's TopicPartitions lists carry them. */
export function groupByTopic(tps: readonly TopicPartition[]): Array<{ topic: string; partitions: number[] }> {
  const byTopic = new Map<string, number[]>();
  for (const tp of tps) {
    const list = byTopic.get(tp.topic);
    if (list === undefined) byTopic.set(tp.topic, [tp.partition]);
    else list.push(tp.partition);
  }
  return [...byTopic].map(([topic, partitions]) => ({ topic, partitions: partitions.sort((a, b) => a - b) }));
}

/**
 * Lag per (group, topic) from lag per partition: messages summed, seconds the largest (the
 * oldest unconsumed message's age). A backlog of unknown age (on another broker group) next to
 * caught-up partitions here leaves the seconds unknown (-1): 0 would read "caught up".
 */
export function lagByTopic(partitions: readonly GroupPartitionLag[]): GroupTopicLag[] {
  const byKey = new Map<string, GroupTopicLag>();
  const unknownAge = new Set<string>();
  for (const lag of partitions) {
    const key = `${lag.group}\u0000${lag.topic}`;
    const entry = byKey.get(key) ?? { group: lag.group, topic: lag.topic, messages: 0, seconds: -1 };
    entry.messages += lag.messages;
    entry.seconds = Math.max(entry.seconds, lag.seconds);
    if (lag.seconds < 0 && lag.messages > 0) unknownAge.add(key);
    byKey.set(key, entry);
  }
  for (const [key, entry] of byKey) if (entry.seconds === 0 && unknownAge.has(key)) entry.seconds = -1;
  return [...byKey.values()];
}
