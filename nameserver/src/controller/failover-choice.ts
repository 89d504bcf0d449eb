/**
 * Whom the controller promotes when a group's master is gone: pure functions over the group
 * record, its alive keys and the slaves' ReplicaState answers, so every rule is unit-tested.
 *
 *   gone        the master's alive key is missing, or carries another lease than `masterLease`
 *               (the master died, or restarted and has not taken its place back)
 *   candidates  live slaves in the recorded in-sync set (they hold every acknowledged batch);
 *               `async` mode acknowledges without slaves, so any live slave will do
 *   answers     each candidate's log end offsets (ReplicaState); the highest sum wins, ties to
 *               the lowest id (deterministic, so two controllers would pick the same one)
 *   quorum:k    an acknowledged batch is on k in-sync slaves, not on all of them: only after
 *               hearing from |inSync| − k + 1 of them is one of those answering sure to hold it
 */
import type { AliveRecord, GroupRecord } from "../../../common/src/registry/group-record.js";

/** What one slave said it holds. */
export interface ReplicaAnswer {
  brokerId: number;
  /** Sum of its partitions' log end offsets. */
  totalOffset: number;
}

export type FailoverChoice =
  | { kind: "promote"; brokerId: number; totalOffset: number }
  | { kind: "wait"; reason: string };

export function masterIsGone(record: GroupRecord, alive: ReadonlyMap<number, AliveRecord>): boolean {
  const master = alive.get(record.master);
  return master === undefined || master.leaseId !== record.masterLease;
}

/** Slaves that may be promoted, ascending ids (never the master named by the record). */
export function failoverCandidates(record: GroupRecord, alive: ReadonlyMap<number, AliveRecord>): number[] {
  const pool = record.mode === "async" ? [...alive.keys()] : record.inSync;
  return [...new Set(pool)].filter((id) => id !== record.master && alive.has(id)).sort((a, b) => a - b);
}

/** Answers needed from candidates before choosing (see the file comment). */
export function answersNeeded(record: GroupRecord): number {
  if (record.mode !== "quorum") return 1;
  return Math.max(1, record.inSync.length - record.quorum + 1);
}

export function chooseNewMaster(
  record: GroupRecord,
  candidates: readonly number[],
  answers: ReadonlyMap<number, ReplicaAnswer>,
): FailoverChoice {
  if (candidates.length === 0) return { kind: "wait", reason: noCandidateReason(record) };
  const answered = candidates.map((id) => answers.get(id)).filter((answer): answer is ReplicaAnswer => answer !== undefined);
  const needed = answersNeeded(record);
  if (answered.length < needed) {
    const asked = `${answered.length} of the live candidates [${candidates.join(",")}] answered ReplicaState`;
    return {
      kind: "wait",
      reason:
        record.mode === "quorum"
          ? `${asked}; quorum:${record.quorum} over in-sync set [${record.inSync.join(",")}] needs ${needed} answers to be sure the chosen one holds every acknowledged batch`
          : `${asked}; none can be promoted without knowing what it holds`,
    };
  }
  let best = answered[0] as ReplicaAnswer;
  for (const answer of answered) {
    if (answer.totalOffset > best.totalOffset || (answer.totalOffset === best.totalOffset && answer.brokerId < best.brokerId)) {
      best = answer;
    }
  }
  return { kind: "promote", brokerId: best.brokerId, totalOffset: best.totalOffset };
}

function noCandidateReason(record: GroupRecord): string {
  if (record.mode === "async") return "no slave of the group is alive";
  if (record.inSync.length === 0) {
    return "no slave was in sync when the master died (it acknowledged alone), so every slave may lack acknowledged messages; `sluice broker promote --force` accepts that loss";
  }
  return `none of the in-sync slaves [${record.inSync.join(",")}] is alive`;
}
