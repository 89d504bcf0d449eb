/**
 * Where a new topic's partitions go (R5): each partition is mastered by one broker group, and
 * partition (= leader) counts stay even across groups.
 *
 * Automatic placement hands out partitions one at a time to the group whose share would be
 * smallest after taking it: (hosted + 1) / weight, counting partitions the group already hosts
 * for other topics, ties broken by group name so placement is deterministic. A group with
 * weight 2 thus ends up with twice the partitions of a weight-1 group. Only groups with a live
 * master are candidates: a partition placed on a headless group could not be written.
 *
 * Pinned placement (`--brokers g1,g2`) is plain round robin over the listed groups, in the
 * order given; the operator chose, so load is not second-guessed.
 */
import { InvalidArgumentError, NoBrokersAvailableError } from "../../common/src/errors.js";

export interface PlacementGroup {
  group: string;
  /** Relative share of partitions; values below 1 count as 1. */
  weight: number;
  /** Partitions of other topics the group already hosts. */
  hostedPartitions: number;
  hasLiveMaster: boolean;
}

export interface PlacementRequest {
  topic: string;
  partitionCount: number;
  /** Every known broker group, live or not (to tell "unknown" from "down" when pinning). */
  groups: readonly PlacementGroup[];
  /** Groups to place on, round robin; empty or absent = automatic. */
  pinnedGroups?: readonly string[];
}

/** Returns the broker group for each partition: `result[p]` holds partition p. */
export function placePartitions(request: PlacementRequest): string[] {
  if (!Number.isInteger(request.partitionCount) || request.partitionCount < 1) {
    throw new InvalidArgumentError(`cannot place ${request.partitionCount} partitions: the count must be a positive integer`);
  }
  const pinned = request.pinnedGroups ?? [];
  return pinned.length > 0
    ? placePinned(request, [...new Set(pinned)])
    : placeAutomatically(request);
}

function placeAutomatically(request: PlacementRequest): string[] {
  const candidates = request.groups
    .filter((g) => g.hasLiveMaster)
    .map((g) => ({ group: g.group, weight: Math.max(1, Math.floor(g.weight) || 1), hosted: g.hostedPartitions }));
  if (candidates.length === 0) {
    throw new NoBrokersAvailableError(
      `cannot create topic "${request.topic}": no broker group has a live master; start a broker ` +
        `(\`sluice broker --name b1 --id 0\`) or wait for one to register with the name server`,
    );
  }
  const assignment: string[] = [];
  for (let partition = 0; partition < request.partitionCount; partition++) {
    let best = candidates[0]!;
    for (const candidate of candidates) {
      if (shareAfterOneMore(candidate, best) < 0) best = candidate;
    }
    best.hosted += 1;
    assignment.push(best.group);
  }
  return assignment;
}

/**
 * Compares (a.hosted + 1) / a.weight with (b.hosted + 1) / b.weight without floating point:
 * negative when a would carry the smaller share, ties broken by name.
 */
function shareAfterOneMore(
  a: { group: string; weight: number; hosted: number },
  b: { group: string; weight: number; hosted: number },
): number {
  const difference = (a.hosted + 1) * b.weight - (b.hosted + 1) * a.weight;
  if (difference !== 0) return difference;
  return a.group < b.group ? -1 : a.group > b.group ? 1 : 0;
}

function placePinned(request: PlacementRequest, pinned: string[]): string[] {
  const byName = new Map(request.groups.map((g) => [g.group, g]));
  for (const name of pinned) {
    const group = byName.get(name);
    if (group === undefined) {
      const known = [...byName.keys()].sort();
      throw new InvalidArgumentError(
        `cannot place topic "${request.topic}" on broker group "${name}": no such group is registered` +
          (known.length > 0 ? ` (registered groups: ${known.join(", ")})` : " (no broker is registered)"),
      );
    }
    if (!group.hasLiveMaster) {
      throw new NoBrokersAvailableError(
        `cannot place topic "${request.topic}" on broker group "${name}": it has no live master; ` +
          `start its master or leave it out of --brokers`,
      );
    }
  }
  return Array.from({ length: request.partitionCount }, (_, partition) => pinned[partition % pinned.length]!);
}
