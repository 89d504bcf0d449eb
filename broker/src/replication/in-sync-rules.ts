/**
 * The arithmetic of the replication modes, kept apart from the tracker's bookkeeping: how many
 * slaves `acks: "all"` needs, the high watermark a set of acks gives, and the refusal that
 * names who is missing.
 */
import { InvalidConfigError, NotEnoughReplicasError } from "../../../common/src/errors.js";
import { describeMode, type ReplicationMode } from "./types.js";

/** Throws InvalidConfigError explaining the first bad setting. */
export function validateReplicationSettings(mode: ReplicationMode, minInSyncSlaves: number, maxSlaveLagMs: number): void {
  if (mode.kind === "quorum" && (!Number.isInteger(mode.k) || mode.k < 1)) {
    throw new InvalidConfigError(`replication mode quorum:${mode.k} needs k to be a positive integer (slaves that must hold a batch)`);
  }
  if (!Number.isInteger(minInSyncSlaves) || minInSyncSlaves < 0) {
    throw new InvalidConfigError(`minInSyncSlaves must be a non-negative integer, got ${minInSyncSlaves}`);
  }
  if (!Number.isFinite(maxSlaveLagMs) || maxSlaveLagMs <= 0) {
    throw new InvalidConfigError(`maxSlaveLagMs must be a positive number of milliseconds, got ${maxSlaveLagMs}`);
  }
}

/** Slaves that must be in sync for the write gate: minInSyncSlaves in sync mode, k in quorum:k. */
export function requiredInSync(mode: ReplicationMode, minInSyncSlaves: number): number {
  if (mode.kind === "sync") return minInSyncSlaves;
  if (mode.kind === "quorum") return mode.k;
  return 0;
}

/**
 * The high watermark given the acks (log ends) of the slaves that count: the log end when none
 * counts; the k-th highest ack in quorum:k; otherwise (and with fewer than k) the lowest.
 */
export function highWatermarkFor(mode: ReplicationMode, acks: number[], logEndOffset: number): number {
  if (acks.length === 0) return logEndOffset;
  let highWatermark: number;
  if (mode.kind === "quorum" && acks.length >= mode.k) {
    acks.sort((a, b) => b - a);
    highWatermark = acks[mode.k - 1]!;
  } else {
    highWatermark = Math.min(...acks);
  }
  return Math.min(highWatermark, logEndOffset);
}

export interface SlaveLag {
  brokerId: number;
  connected: boolean;
  lagMs: number;
  lagBytes: number;
}

/**
 * `b1: 1 slave in sync, 2 required (minInSyncSlaves); slave 2: lag 812 ms / 40960 B, slave 3:
 * disconnected (…what was refused…; retry when slaves catch up)`.
 */
export function notEnoughReplicas(
  group: string,
  mode: ReplicationMode,
  shortfall: { have: number; required: number },
  outOfSync: readonly SlaveLag[],
  what: string,
): NotEnoughReplicasError {
  const rule = mode.kind === "quorum" ? describeMode(mode) : "minInSyncSlaves";
  const count = `${shortfall.have} slave${shortfall.have === 1 ? "" : "s"} in sync`;
  const details =
    outOfSync.length === 0
      ? "no other slave is connected"
      : outOfSync.map((s) => (s.connected ? `slave ${s.brokerId}: lag ${s.lagMs} ms / ${s.lagBytes} B` : `slave ${s.brokerId}: disconnected`)).join(", ");
  return new NotEnoughReplicasError(`${group}: ${count}, ${shortfall.required} required (${rule}); ${details} (${what}; retry when slaves catch up)`);
}

/**
 * Set when no pending wait can be met any more, even once the records in flight land: in sync
 * mode, fewer counted slaves than minInSyncSlaves; in quorum:k, fewer than k both recorded and
 * desired.
 */
export function waitShortfall(
  mode: ReplicationMode,
  minInSyncSlaves: number,
  sets: { counted: number; recorded: number; desired: number },
): { have: number; required: number } | null {
  if (mode.kind === "sync") return sets.counted < minInSyncSlaves ? { have: sets.counted, required: minInSyncSlaves } : null;
  if (mode.kind === "quorum" && sets.recorded < mode.k && sets.desired < mode.k) {
    return { have: Math.max(sets.recorded, sets.desired), required: mode.k };
  }
  return null;
}
