/**
 * What a broker should be, given its group's record and alive keys in etcd: a pure function,
 * so every case is unit-tested without etcd.
 *
 *   no record, id 0                      → create it: master at epoch 1
 *   no record, other id                  → slave, no master yet
 *   record names me, under my lease      → master at the record's epoch (promoted, or still master)
 *   record names me, under another lease → I restarted or my lease was replaced:
 *        no in-sync slave is alive       → claim: compare-and-swap my lease in at epoch + 1
 *        an in-sync slave is alive       → slave without master: the controller promotes one of
 *                                          them (this broker may have lost unflushed acknowledged
 *                                          writes in a machine crash; they hold every one)
 *   record names another                 → slave of it, at its address while its alive key carries
 *                                          the lease it is master under (else: no master yet)
 *
 * The claim bumps the epoch even for the same broker: batches written after a restart must be
 * told apart from those written before it, or a slave holding a tail the restarted master lost
 * could not find where the two logs diverge.
 */
import type { AliveRecord, GroupRecord } from "../../../common/src/registry/group-record.js";
import type { MasterAddress } from "./role-manager.js";

export type RoleDecision =
  | { kind: "create" }
  | { kind: "claim" }
  | { kind: "master"; epoch: number }
  | { kind: "slave"; epoch: number; master: MasterAddress | undefined };

export interface DecisionInput {
  record: GroupRecord | undefined;
  alive: ReadonlyMap<number, AliveRecord>;
  brokerId: number;
  /** The lease this broker holds now. */
  leaseId: string;
}

export function decideRole(input: DecisionInput): RoleDecision {
  const { record, alive, brokerId, leaseId } = input;
  if (record === undefined) return brokerId === 0 ? { kind: "create" } : { kind: "slave", epoch: 0, master: undefined };
  if (record.master === brokerId) {
    if (record.masterLease === leaseId) return { kind: "master", epoch: record.epoch };
    const liveInSync = record.inSync.some((id) => id !== brokerId && alive.has(id));
    return liveInSync ? { kind: "slave", epoch: record.epoch, master: undefined } : { kind: "claim" };
  }
  return { kind: "slave", epoch: record.epoch, master: liveMasterOf(record, alive) };
}

/** The master's address while its alive key carries the lease it holds mastership under. */
export function liveMasterOf(record: GroupRecord, alive: ReadonlyMap<number, AliveRecord>): MasterAddress | undefined {
  const master = alive.get(record.master);
  if (master === undefined || master.leaseId !== record.masterLease) return undefined;
  return { brokerId: record.master, address: master.address };
}
