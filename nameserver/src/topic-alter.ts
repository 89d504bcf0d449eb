/**
 * Adding partitions to a topic (Kafka's CreatePartitions, `sluice topic alter --partitions N`):
 * the checks and the plan, with no I/O. TopicAdmin asks the brokers and writes the record.
 *
 * A topic only grows. Removing a partition would drop its messages, and a consumer group's
 * committed offsets would point into nothing, so Kafka refuses it and so does Sluice: a total
 * at or below the current count is INVALID_PARTITIONS, naming the current count.
 *
 * New partitions are placed exactly as a new topic's are (placement.ts, automatic: the least
 * loaded groups first, counting every partition they already host, this topic's included), so
 * growing a topic spreads it over groups that joined since it was created.
 *
 * Every group that holds a partition of the topic is told the new count, not only the groups
 * receiving new partitions: a broker's own count is what its group coordinator assigns from
 * and what its heartbeats report, and a stale one would hide the new partitions from both.
 */
import { InvalidPartitionsError, InvalidTopicNameError, LimitExceededError, NoBrokersAvailableError, NotReadyError } from "../../common/src/errors.js";
import { isInternalTopic } from "../../common/src/protocol.js";
import type { TopicLimits } from "./options.js";
import { placePartitions, type PlacementGroup } from "./placement.js";
import type { TopicRecord } from "./registry/store.js";
import { validatePartitionCount, validateTopicName } from "./topic-validation.js";

export interface PartitionGrowth {
  topic: string;
  /** The count the plan was made from; the record must still have it when written. */
  previousCount: number;
  partitionCount: number;
  /** Broker group of each new partition: `added[i]` holds partition `previousCount + i`. */
  added: string[];
  /**
   * Every group to tell, with the new partitions it receives (none for a group that only
   * learns the new count), in group-name order.
   */
  partitionsByGroup: Map<string, number[]>;
}

/** Checks a topic name before anything is read: internal topics keep their count. */
export function validateAlterableTopic(topic: string): void {
  if (isInternalTopic(topic)) {
    throw new InvalidTopicNameError(
      `"${topic}" is one of Sluice's internal topics; its partition count is fixed (consumer groups find their ` +
        `coordinator by hashing into it), so partitions cannot be added to it`,
    );
  }
  validateTopicName(topic);
}

/**
 * Plans growing `record` to `partitionCount` partitions over `groups` (as
 * ClusterState.placementGroups returns them). Throws INVALID_PARTITIONS for a count that does
 * not grow the topic, NOT_READY while a partition's group is not known yet (a name server
 * still learning the topic from heartbeats), NO_BROKERS_AVAILABLE when a group holding the
 * topic has no live master to record the new count.
 */
export function planPartitionGrowth(record: TopicRecord, partitionCount: number, groups: readonly PlacementGroup[]): PartitionGrowth {
  const { topic } = record;
  const current = record.partitionCount;
  validatePartitionCount(topic, partitionCount);
  if (partitionCount <= current) {
    const same = partitionCount === current;
    throw new InvalidPartitionsError(
      `topic "${topic}" has ${current} partition${current === 1 ? "" : "s"}; ` +
        (same ? `it already has ${partitionCount}` : `it cannot shrink to ${partitionCount}`) +
        `: partitions can be added, never removed (ask for more than ${current})`,
    );
  }
  const unplaced = record.assignment.findIndex((group) => group === "");
  if (unplaced >= 0 || record.assignment.length < current) {
    const partition = unplaced >= 0 ? unplaced : record.assignment.length;
    throw new NotReadyError(
      `topic "${topic}": no broker has reported partition ${partition} to this name server yet, so the groups to ` +
        `tell about new partitions are not all known; retry in a few seconds`,
    );
  }
  const hosting = [...new Set(record.assignment)].sort();
  const live = new Map(groups.map((g) => [g.group, g.hasLiveMaster]));
  const headless = hosting.filter((group) => live.get(group) !== true);
  if (headless.length > 0) {
    throw new NoBrokersAvailableError(
      `cannot add partitions to topic "${topic}": broker group${headless.length === 1 ? "" : "s"} ` +
        `${headless.map((g) => `"${g}"`).join(", ")} hold${headless.length === 1 ? "s" : ""} some of its partitions and ` +
        `ha${headless.length === 1 ? "s" : "ve"} no live master to record the new count; start or promote one, then retry`,
    );
  }
  const added = placePartitions({ topic, partitionCount: partitionCount - current, groups });
  const partitionsByGroup = new Map<string, number[]>();
  for (const group of [...new Set([...hosting, ...added])].sort()) partitionsByGroup.set(group, []);
  added.forEach((group, i) => partitionsByGroup.get(group)!.push(current + i));
  return { topic, previousCount: current, partitionCount, added, partitionsByGroup };
}

/**
 * The record after the growth, for a compare-and-swap: refuses when someone changed the
 * topic's count since the plan was made (another alter, through another name server).
 */
export function grownRecord(current: TopicRecord, growth: PartitionGrowth): TopicRecord {
  if (current.partitionCount !== growth.previousCount) {
    throw new InvalidPartitionsError(
      `topic "${growth.topic}" went from ${growth.previousCount} to ${current.partitionCount} partitions while this ` +
        `alter ran (another alter, through another name server); describe it and alter again if it needs more`,
    );
  }
  return {
    ...current,
    partitionCount: growth.partitionCount,
    assignment: [...current.assignment.slice(0, growth.previousCount), ...growth.added],
  };
}

/**
 * Refuses growing `topic` from `currentCount` to `partitionCount` partitions past the topic's
 * limit (maxPartitionsPerTopic) or the cluster's (maxPartitions), `clusterPartitions` being
 * the partitions of every topic now, internal ones included. Only user topics grow.
 */
export function checkGrowthLimits(
  limits: TopicLimits,
  topic: string,
  currentCount: number,
  partitionCount: number,
  clusterPartitions: number,
): void {
  if (partitionCount > limits.maxPartitionsPerTopic) {
    throw new LimitExceededError(
      `topic "${topic}" has ${currentCount} partition${currentCount === 1 ? "" : "s"} and cannot grow to ${partitionCount}: ` +
        `the limit is ${limits.maxPartitionsPerTopic} per topic (maxPartitionsPerTopic); raise it with --max-partitions-per-topic on the name servers`,
    );
  }
  const added = partitionCount - currentCount;
  checkClusterPartitions(limits, clusterPartitions, added, `adding ${added} partition${added === 1 ? "" : "s"} to topic "${topic}"`);
}

/**
 * Refuses adding `added` partitions to a cluster holding `clusterPartitions` when the total
 * would pass maxPartitions. `what` names the request in the message.
 */
export function checkClusterPartitions(limits: TopicLimits, clusterPartitions: number, added: number, what: string): void {
  if (clusterPartitions + added <= limits.maxPartitions) return;
  throw new LimitExceededError(
    `${what} would pass the cluster's limit of ${limits.maxPartitions} partitions (maxPartitions): it has ${clusterPartitions} ` +
      `(internal topics included); delete topics, or raise the limit with --max-partitions on the name servers`,
  );
}
