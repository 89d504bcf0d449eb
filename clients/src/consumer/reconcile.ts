/**
 * The pure decisions of a consumer-group member, kept apart from the timers and calls of
 * group-member.ts so they can be tested on their own:
 *
 * - what to start and what to stop when the coordinator sends an assignment (the complete
 *   set the member may own now: everything else it owns must be released);
 * - where a newly assigned partition starts (the committed offset, else the reset policy);
 * - which positions are worth committing (those that moved since the last commit).
 */
import type { TopicPartitions } from "../../../proto/gen/sluice/v1/groups.js";

export interface ReconcilePlan {
  /** Assigned but not owned yet: look up their start offsets and start reading. */
  readonly assign: number[];
  /** Owned but no longer assigned: stop, commit, release (heartbeat at once). */
  readonly revoke: number[];
}

/** The partitions of `topic` in a heartbeat's assignment, sorted, without duplicates. */
export function partitionsOf(topic: string, assignment: readonly TopicPartitions[]): number[] {
  const partitions = new Set<number>();
  for (const entry of assignment) {
    if (entry.topic !== topic) continue;
    for (const partition of entry.partitions) partitions.add(partition);
  }
  return [...partitions].sort((a, b) => a - b);
}

/** What `owned` (what the member reads now) must become to match `assigned`. */
export function planReconcile(owned: Iterable<number>, assigned: readonly number[]): ReconcilePlan {
  const target = new Set(assigned);
  const have = new Set(owned);
  const revoke = [...have].filter((p) => !target.has(p)).sort((a, b) => a - b);
  const assign = [...target].filter((p) => !have.has(p)).sort((a, b) => a - b);
  return { assign, revoke };
}

/** The `owned` field of a heartbeat: one entry for the topic, or none when nothing is owned. */
export function ownedField(topic: string, owned: Iterable<number>): TopicPartitions[] {
  const partitions = [...owned].sort((a, b) => a - b);
  return partitions.length === 0 ? [] : [{ topic, partitions }];
}

/** Offset value of "nothing committed", on the wire and in these maps. */
export const NO_OFFSET = -1;

/**
 * Start offset of each partition: the committed offset where there is one (>= 0), else the
 * reset offset (earliest or latest, per `fromBeginning`). A partition with neither is left
 * out: the caller must look up its reset offset first.
 */
export function startOffsets(
  partitions: readonly number[],
  committed: ReadonlyMap<number, number>,
  resets: ReadonlyMap<number, number>,
): Map<number, number> {
  const starts = new Map<number, number>();
  for (const partition of partitions) {
    const offset = committed.get(partition) ?? NO_OFFSET;
    if (offset >= 0) starts.set(partition, offset);
    else if ((resets.get(partition) ?? NO_OFFSET) >= 0) starts.set(partition, resets.get(partition)!);
  }
  return starts;
}

/** The partitions whose committed offset would need a reset policy (nothing committed). */
export function needingReset(partitions: readonly number[], committed: ReadonlyMap<number, number>): number[] {
  return partitions.filter((p) => (committed.get(p) ?? NO_OFFSET) < 0);
}

/**
 * The positions worth committing: known (>= 0) and different from what is committed. A
 * position below the committed offset is committed too: the application seeked back.
 */
export function offsetsToCommit(positions: ReadonlyMap<number, number>, committed: ReadonlyMap<number, number>): Map<number, number> {
  const due = new Map<number, number>();
  for (const [partition, offset] of positions) {
    if (offset >= 0 && committed.get(partition) !== offset) due.set(partition, offset);
  }
  return due;
}

/** Keeps the entries of `positions` whose partition is in `partitions`. */
export function pick(positions: ReadonlyMap<number, number>, partitions: Iterable<number>): Map<number, number> {
  const picked = new Map<number, number>();
  for (const partition of partitions) {
    const offset = positions.get(partition);
    if (offset !== undefined) picked.set(partition, offset);
  }
  return picked;
}
