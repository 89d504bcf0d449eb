/**
 * Where a slave's log stops agreeing with its master's: KIP-101 / KIP-279 in one round trip,
 * since the slave sends its whole leader-epoch history in its hello.
 *
 * Each epoch had exactly one master, so the data two replicas hold under the same epoch came
 * from the same writer and one is a prefix of the other. Take the largest epoch E both
 * histories know; each side's data under E ends where its next epoch starts (or at its log
 * end). The logs agree up to the smaller of the two ends; everything the slave holds from
 * there on is a divergent tail (a former master's unreplicated writes) or data the master
 * never had. The answer never exceeds either log end.
 *
 * Without a common epoch the slave shares nothing with the master: it truncates everything
 * (to its first entry's start, which the log keeps equal to its log start). A slave without
 * entries holds no data at all, so it has nothing to truncate (its log end is the answer).
 * Epoch -1 (data written before epochs existed) counts as an epoch like any other.
 *
 * When the answer lies below the slave's log start (the master's copy of a shared epoch ended
 * before the slave's retention point), the slave cannot truncate there and must reset instead.
 */
import type { EpochEntry } from "./leader-epochs.js";
import { epochEndOffset } from "./leader-epochs.js";

export interface EpochHistory {
  /** (epoch, startOffset) ascending, as `LeaderEpochCache.entries()` returns them. */
  entries: readonly EpochEntry[];
  logEndOffset: number;
}

/** The offset from which the slave must drop its log to follow the master. */
export function divergencePoint(master: EpochHistory, slave: EpochHistory): number {
  const ceiling = Math.min(slave.logEndOffset, master.logEndOffset);
  if (slave.entries.length === 0) return ceiling;
  const common = largestCommonEpoch(master.entries, slave.entries);
  if (common === null) return Math.min(slave.entries[0]!.startOffset, ceiling);
  const masterEnd = epochEndOffset(master.entries, common, master.logEndOffset);
  const slaveEnd = epochEndOffset(slave.entries, common, slave.logEndOffset);
  return Math.min(masterEnd, slaveEnd, ceiling);
}

/** Both lists ascending by epoch: a merge walk from the top. */
function largestCommonEpoch(a: readonly EpochEntry[], b: readonly EpochEntry[]): number | null {
  let i = a.length - 1;
  let j = b.length - 1;
  while (i >= 0 && j >= 0) {
    const x = a[i]!.epoch;
    const y = b[j]!.epoch;
    if (x === y) return x;
    if (x > y) i--;
    else j--;
  }
  return null;
}
