/**
 * The one way a master writes to a log it replicates: every writer (produce, group state,
 * dead letters) goes through here, so none can forget the fence, the epoch stamp or the wait
 * for the replication requirement.
 *
 *   fence ─▶ append(batch, epoch) ─▶ [wait for slaves] ─▶ fence ─▶ resolve
 *
 * The fence is checked before the append and again before the caller may acknowledge: a
 * master frozen past its lease (SIGSTOP, a long GC, a partition from etcd) wakes up with
 * requests already queued, and Node runs them before any timer could demote it. Checking the
 * lease synchronously on both sides means nothing it appends or acknowledges after the freeze
 * can count as acknowledged.
 */
import type { AppendResult, PartitionLog } from "./storage/partition-log.js";

export interface ReplicationGuard {
  /** The group epoch this master stamps into every batch (partition leader epoch). */
  epoch(): number;
  /** Throws NotLeaderError unless this broker is master and its lease is fresh. */
  checkMaster(): void;
  /** Throws NotEnoughReplicasError when too few slaves are in sync for `acks: "all"`. */
  checkWriteGate(topic: string, partition: number): void;
  /** Resolves once the group's replication requirement covers `lastOffset`. */
  waitReplicated(topic: string, partition: number, lastOffset: number): Promise<void>;
}

/** A guard for a broker that replicates nothing (tests, tools): always master, epoch unset. */
export const UNREPLICATED: ReplicationGuard = {
  epoch: () => -1,
  checkMaster: () => undefined,
  checkWriteGate: () => undefined,
  waitReplicated: () => Promise.resolve(),
};

/**
 * Appends `batch` as master. With `replicated`, resolves only once the replication
 * requirement is met; either way the fence is checked again before resolving.
 */
export async function appendAsMaster(guard: ReplicationGuard, log: PartitionLog, batch: Buffer, replicated: boolean): Promise<AppendResult> {
  guard.checkMaster();
  const result = await log.append(batch, guard.epoch());
  if (replicated) await guard.waitReplicated(log.topic, log.partition, result.lastOffset);
  guard.checkMaster();
  return result;
}
