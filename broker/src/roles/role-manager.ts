/**
 * Which role this broker plays in its group (master or slave) and at which group epoch. Roles
 * come from the registry, never from flags: `--id` is identity only.
 *
 * Two implementations behind one interface:
 *   - EtcdRoleManager (`--etcd`): the group record in etcd decides; the controller on the name
 *     servers fails over; the master fences itself on its lease (fence.ts).
 *   - LocalRoleManager (no etcd): `<data>/role.json` remembers the role; the name servers'
 *     heartbeat answers say who the group's master is; `sluice broker promote` moves it.
 *
 * Role changes are emitted in order; a listener sees every change exactly once. A master event
 * may follow a master event with a higher epoch (the master took its place back under a new
 * lease): the new epoch is what its batches must carry from then on.
 */
import type { GroupMaster } from "../../../proto/gen/sluice/v1/nameserver.js";
import type { Fence } from "./fence.js";

/** Where a slave replicates from. */
export interface MasterAddress {
  brokerId: number;
  /** gRPC host:port. */
  address: string;
}

export type RoleChange =
  | { role: "master"; epoch: number }
  /** `master` is undefined while the group has no live master this broker knows of. */
  | { role: "slave"; epoch: number; master: MasterAddress | undefined };

export interface RoleManager {
  /** Etcd mode: the lease fence; local mode: never fenced. Check it before every append and ack. */
  readonly fence: Fence;
  /**
   * The in-sync set the registry holds for the group (as last read or written). A new master's
   * tracker starts from it: until it records a smaller set, those slaves could be promoted, so
   * acknowledgements must keep waiting for them.
   */
  readonly recordedInSync: readonly number[];
  /**
   * The live members of the group's recorded in-sync set other than this broker, with their
   * addresses: a newly promoted master reads from them what it lacks before taking produce.
   * Local mode has no registry to ask and answers none.
   */
  inSyncPeers(): Promise<MasterAddress[]>;
  /** The role now (a slave at epoch 0 with no master before `start`). */
  current(): RoleChange;
  /** Calls `listener` after every role change; returns the function that removes it. */
  onChange(listener: (change: RoleChange) => void): () => void;
  /** Decides the first role (and starts watching); resolves with it. */
  start(): Promise<RoleChange>;
  /** Stops watching; the role stays what it was (the lead revokes the lease or exits). */
  stop(): Promise<void>;
  /**
   * The master records its in-sync slaves before acknowledging anything without a slave it
   * dropped. Etcd: compare-and-swap requiring this broker to be master at its epoch; when it is
   * not any more it becomes a slave and this rejects with NotLeaderError. Local: kept in memory.
   */
  recordInSync(slaveIds: readonly number[]): Promise<void>;
  /**
   * SIGTERM on the master, once `toBrokerId` holds everything: makes it master at epoch + 1
   * (etcd: compare-and-swap; local: through a name server's PromoteBroker) and becomes its slave.
   */
  handOff(toBrokerId: number): Promise<void>;
  /**
   * Handler of Replication.Promote (local mode): become master at `epoch`, which must be higher
   * than any epoch this broker knows (else StaleEpochError). Etcd mode refuses: promotion goes
   * through the group record there.
   */
  promote(epoch: number): Promise<void>;
  /**
   * A name server's register or heartbeat answer named the group's master (the registrar's
   * `onGroupMaster`). Local mode learns whom to follow, or that it was replaced, from it; etcd
   * mode ignores it (the group record is the authority there).
   */
  observeGroupMaster(master: GroupMaster): void;
}

/** Listener bookkeeping and change detection shared by both implementations. */
export class RoleState {
  private role: RoleChange = { role: "slave", epoch: 0, master: undefined };
  private readonly listeners = new Set<(change: RoleChange) => void>();

  constructor(private readonly onListenerError: (err: unknown) => void) {}

  get value(): RoleChange {
    return this.role;
  }

  onChange(listener: (change: RoleChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sets the role; tells the listeners when it differs from the current one. Returns whether it did. */
  set(next: RoleChange): boolean {
    if (sameRole(this.role, next)) return false;
    this.role = next;
    for (const listener of [...this.listeners]) {
      try {
        listener(next);
      } catch (err) {
        this.onListenerError(err);
      }
    }
    return true;
  }
}

export function sameRole(a: RoleChange, b: RoleChange): boolean {
  if (a.role !== b.role || a.epoch !== b.epoch) return false;
  if (a.role === "master" || b.role === "master") return true;
  return a.master?.brokerId === b.master?.brokerId && a.master?.address === b.master?.address;
}

/** "b1/0", for logs and errors. */
export function brokerName(group: string, brokerId: number): string {
  return `${group}/${brokerId}`;
}
