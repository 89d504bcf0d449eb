/**
 * Group administration: list the groups of the cluster, describe one (members, assignments,
 * lag, queue windows), move a group's committed offsets. Each call goes to the group's
 * coordinator (GroupCoordinator), except the listing, which asks every broker mastering a
 * partition of `%groups` (each coordinates the groups hashed to its partitions).
 */
import { InvalidArgumentError, NoBrokersAvailableError, SluiceError } from "../../../common/src/errors.js";
import { GROUP_STATE_TOPIC } from "../../../common/src/protocol.js";
import {
  ResetTarget,
  type DescribeGroupResponse,
  type GroupMember,
  type PartitionLag,
  type QueuePartitionState,
} from "../../../proto/gen/sluice/v1/groups.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { GroupCoordinator } from "../groups/coordinator.js";
import { checkInteger, checkKnownKeys, checkTopicName } from "../options.js";
import { checkGroupName } from "../../../common/src/group-name.js";
import { listOffsets, type OffsetQuery } from "../routing/list-offsets.js";

/** One group as `sluice group list` shows it. */
export interface GroupListing {
  group: string;
  /** "consumer" | "queue" */
  kind: string;
  /** "empty" | "assigning" | "reconciling" | "stable" */
  state: string;
  members: number;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface GroupMemberDescription {
  memberId: string;
  clientId: string;
  /** Static membership id; "" for a dynamic member. */
  instanceId: string;
  assignments: TopicPartition[];
}

/** -1 marks a value nobody could report (as Kafka's tools print unknown offsets). */
export interface GroupPartitionLag {
  topic: string;
  partition: number;
  /** The next offset the group will consume; -1 when nothing was committed. */
  committedOffset: number;
  /** The partition's log end (next offset to be written). */
  endOffset: number;
  /** endOffset - committedOffset. */
  lag: number;
  /** Age of the oldest message not consumed yet; 0 when caught up. */
  lagMs: number;
}

/** The ack window of one partition of a queue group. */
export interface QueuePartitionDescription {
  topic: string;
  partition: number;
  /** Everything below is acked or dead-lettered. */
  startOffset: number;
  endOffset: number;
  inFlight: number;
  delayed: number;
  deadPending: number;
  redelivered: number;
  deadLettered: number;
}

/** `sluice group describe --json` prints exactly this. */
export interface GroupDescription {
  group: string;
  state: string;
  kind: string;
  members: GroupMemberDescription[];
  partitions: GroupPartitionLag[];
  queue: QueuePartitionDescription[];
}

export type ResetOffsetsTo = "earliest" | "latest" | { offset: number } | { timestamp: number };

export interface ResetOffsetsOptions {
  /** Partitions to move. @defaultValue every partition of the topic */
  partitions?: number[];
  /** Report the offsets the reset would commit without committing them. @defaultValue false */
  dryRun?: boolean;
}

export interface CommittedPosition {
  topic: string;
  partition: number;
  /** The next offset the group consumes. */
  offset: number;
}

const UNKNOWN = -1;

export async function listGroups(context: ClientContext): Promise<GroupListing[]> {
  const deadlineMs = deadlineFromNow(context);
  return context.retry.run(
    async (attempt) => {
      let route;
      try {
        route = attempt === 0 ? await context.routes.get(GROUP_STATE_TOPIC) : await context.routes.refresh(GROUP_STATE_TOPIC);
      } catch (err) {
        // `%groups` is created by the first FindCoordinator: without it there is no group yet.
        if (err instanceof SluiceError && err.code === "UNKNOWN_TOPIC" && !err.retriable) return [];
        throw err;
      }
      const masters = new Set<string>();
      for (let partition = 0; partition < route.partitionCount; partition++) {
        const address = route.leaders[partition];
        if (address === undefined) {
          throw new NoBrokersAvailableError(
            `${GROUP_STATE_TOPIC}/${partition} has no live master, so the groups it coordinates cannot be listed; retry once its broker group is back`,
          );
        }
        masters.add(address);
      }
      const merged = new Map<string, GroupListing>();
      await Promise.all(
        [...masters].map(async (address) => {
          const response = await context.brokers.get(address).listGroups({ header: context.header }, deadlineMs);
          for (const g of response.groups) {
            // A group reported twice (mastership moving): keep the report with members.
            const known = merged.get(g.group);
            if (known === undefined || g.members > known.members) {
              merged.set(g.group, { group: g.group, kind: g.kind, state: g.state, members: g.members });
            }
          }
        }),
      );
      return [...merged.values()].sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
    },
    { deadlineMs },
  );
}

export async function describeGroup(context: ClientContext, group: string): Promise<GroupDescription> {
  checkGroupName(group);
  const coordinator = new GroupCoordinator(context, group);
  const deadlineMs = deadlineFromNow(context);
  const response = await coordinator.run((c) => c.describeGroup({ header: context.header, group }, deadlineMs), deadlineMs);
  const description = toGroupDescription(response);
  await fillEndOffsets(context, description.partitions);
  return description;
}

function toGroupDescription(response: DescribeGroupResponse): GroupDescription {
  const partitions = response.partitions.map(toLag);
  // A queue group's position on a partition is its ack window's start (everything below is
  // acked or dead-lettered): shown as its committed offset, so lag reads the same for both kinds.
  for (const q of response.queue) {
    if (partitions.some((p) => p.topic === q.topic && p.partition === q.partition)) continue;
    const lag = q.endOffset >= 0 ? Math.max(0, q.endOffset - q.startOffset) : UNKNOWN;
    partitions.push({ topic: q.topic, partition: q.partition, committedOffset: q.startOffset, endOffset: q.endOffset, lag, lagMs: lag === 0 ? 0 : UNKNOWN });
  }
  return {
    group: response.group,
    state: response.state,
    kind: response.kind,
    members: response.members.map(toMember),
    partitions: partitions.sort(byTopicPartition),
    queue: response.queue.map(toQueuePartition).sort(byTopicPartition),
  };
}

/** The coordinator knows end offsets only of partitions it hosts: the others are asked of their masters. */
async function fillEndOffsets(context: ClientContext, partitions: GroupPartitionLag[]): Promise<void> {
  const unknownByTopic = new Map<string, GroupPartitionLag[]>();
  for (const p of partitions) {
    if (p.endOffset >= 0) continue;
    let list = unknownByTopic.get(p.topic);
    if (list === undefined) unknownByTopic.set(p.topic, (list = []));
    list.push(p);
  }
  await Promise.all(
    [...unknownByTopic].map(async ([topic, list]) => {
      let ends: Map<number, number>;
      try {
        ends = await listOffsets(context, topic, "latest", list.map((p) => p.partition));
      } catch (err) {
        // A topic deleted or unreachable: its lag stays unknown (-1) rather than failing the description.
        context.logger.debug({ topic, err: (err as Error).message }, "end offsets unavailable for group lag");
        return;
      }
      for (const p of list) {
        const end = ends.get(p.partition);
        if (end === undefined) continue;
        p.endOffset = end;
        if (p.committedOffset >= 0) p.lag = Math.max(0, end - p.committedOffset);
        if (p.lag === 0) p.lagMs = 0;
      }
    }),
  );
}

export async function resetOffsets(
  context: ClientContext,
  group: string,
  topic: string,
  to: ResetOffsetsTo,
  options: ResetOffsetsOptions = {},
): Promise<CommittedPosition[]> {
  checkGroupName(group);
  checkTopicName(topic);
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`resetOffsets options must be an object like { partitions: [0], dryRun: true }`);
  }
  checkKnownKeys("resetOffsets", options, ["partitions", "dryRun"]);
  const partitions = (options.partitions ?? []).map((p) => checkInteger("resetOffsets partition", p, 0));
  const dryRun = options.dryRun ?? false;
  if (typeof dryRun !== "boolean") throw new InvalidArgumentError(`dryRun must be true or false, got ${JSON.stringify(dryRun)}`);
  const target = resetTarget(to);
  // The coordinator hosts only its own broker group's partitions: earliest, latest and
  // timestamps are resolved here with each partition's master, then sent as explicit offsets
  // (one call per distinct offset; the coordinator still clamps those it hosts to its log).
  const explicit = target.target === ResetTarget.RESET_TARGET_OFFSET;
  const wanted = partitions.length > 0 ? partitions : [...(await listOffsets(context, topic, "latest")).keys()];
  const byOffset = new Map<number, number[]>();
  if (explicit) {
    byOffset.set(target.offset, wanted);
  } else {
    const resolved = await listOffsets(context, topic, to as OffsetQuery, wanted);
    // A timestamp past the last record resolves to -1: the end, as Kafka's reset does.
    const ends = [...resolved.values()].some((o) => o < 0) ? await listOffsets(context, topic, "latest", wanted) : undefined;
    for (const partition of wanted) {
      const found = resolved.get(partition) ?? -1;
      const offset = found >= 0 ? found : (ends?.get(partition) ?? 0);
      const list = byOffset.get(offset);
      if (list === undefined) byOffset.set(offset, [partition]);
      else list.push(partition);
    }
  }
  const coordinator = new GroupCoordinator(context, group);
  const deadlineMs = deadlineFromNow(context);
  const out: CommittedPosition[] = [];
  for (const [offset, subset] of byOffset) {
    const response = await coordinator.run(
      (c) =>
        c.resetOffsets(
          { header: context.header, group, topic, partitions: subset, dryRun, target: ResetTarget.RESET_TARGET_OFFSET, offset, timestampMs: 0 },
          deadlineMs,
        ),
      deadlineMs,
    );
    out.push(...response.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset })));
  }
  return out.sort(byTopicPartition);
}

function resetTarget(to: ResetOffsetsTo): { target: ResetTarget; offset: number; timestampMs: number } {
  if (to === "earliest") return { target: ResetTarget.RESET_TARGET_EARLIEST, offset: 0, timestampMs: 0 };
  if (to === "latest") return { target: ResetTarget.RESET_TARGET_LATEST, offset: 0, timestampMs: 0 };
  if (typeof to === "object" && to !== null && "offset" in to) {
    return { target: ResetTarget.RESET_TARGET_OFFSET, offset: checkInteger("reset offset", to.offset, 0), timestampMs: 0 };
  }
  if (typeof to === "object" && to !== null && "timestamp" in to) {
    return { target: ResetTarget.RESET_TARGET_TIMESTAMP, offset: 0, timestampMs: checkInteger("reset timestamp", to.timestamp, 0) };
  }
  throw new InvalidArgumentError(`reset offsets to "earliest", "latest", { offset: n } or { timestamp: ms }, got ${JSON.stringify(to)}`);
}

function toMember(member: GroupMember): GroupMemberDescription {
  const assignments: TopicPartition[] = [];
  for (const tp of member.assignment) for (const partition of tp.partitions) assignments.push({ topic: tp.topic, partition });
  assignments.sort(byTopicPartition);
  return { memberId: member.memberId, clientId: member.clientId, instanceId: member.instanceId, assignments };
}

function toLag(p: PartitionLag): GroupPartitionLag {
  const lag = p.lag >= 0 ? p.lag : p.committedOffset >= 0 && p.endOffset >= 0 ? Math.max(0, p.endOffset - p.committedOffset) : UNKNOWN;
  return { topic: p.topic, partition: p.partition, committedOffset: p.committedOffset, endOffset: p.endOffset, lag, lagMs: p.lagMs };
}

function toQueuePartition(q: QueuePartitionState): QueuePartitionDescription {
  return {
    topic: q.topic,
    partition: q.partition,
    startOffset: q.startOffset,
    endOffset: q.endOffset,
    inFlight: q.inFlight,
    delayed: q.delayed,
    deadPending: q.deadPending,
    redelivered: q.redelivered,
    deadLettered: q.deadLettered,
  };
}

function byTopicPartition(a: TopicPartition, b: TopicPartition): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition;
}
