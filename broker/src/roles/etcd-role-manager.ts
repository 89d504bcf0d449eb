/**
 * Roles from etcd (`--etcd`). The group record `groups/<group>` names the master, the epoch and
 * the lease the master holds mastership under; each broker puts `alive/<group>/<id>` under its
 * own lease. This manager watches both and applies `decideRole` (role-decision.ts) after every
 * change; the name servers' controller promotes a slave when the master's lease is gone.
 *
 * Every etcd write of this broker (creating the record, claiming it, recording the in-sync set,
 * handing off) is a compare-and-swap on the record's mod revision, and they run one at a time,
 * so a decision is always made on the record it writes over.
 *
 * The fence (fence.ts) is armed with the lease mastership was recorded under: if the lease is
 * replaced, or its keep-alives stop being answered, the master stops appending and acking at
 * once, whatever the record says, until a new compare-and-swap re-establishes it.
 */
import type { Watcher } from "etcd3";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { BrokerUnavailableError, InvalidArgumentError, NotLeaderError, NotReadyError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import {
  newGroupRecord,
  promotedRecord,
  registryKeyPrefix,
  type GroupRecord,
  type GroupReplicationMode,
} from "../../../common/src/registry/group-record.js";
import type { ReplicationMode } from "../options.js";
import type { BrokerLease } from "../registration/etcd-lease.js";
import { LeaseFence } from "./fence.js";
import { GroupRegistry, type GroupSnapshot } from "../../../common/src/registry/group-registry.js";
import { decideRole } from "./role-decision.js";
import { RoleState, brokerName, type MasterAddress, type RoleChange, type RoleManager } from "./role-manager.js";

/** The record is re-read this often besides the watch (a watch can miss nothing, but a broken one says nothing). */
export const DEFAULT_ROLE_RESYNC_INTERVAL_MS = 2000;
/** Compare-and-swap attempts of one write before it gives up (retriable). */
const MAX_CAS_ATTEMPTS = 16;

export interface EtcdRoleManagerOptions {
  group: string;
  brokerId: number;
  /** gRPC host:port slaves replicate from. */
  address: string;
  httpAddress: string;
  /** The broker's lease, already started; the fence and the alive key live on it. */
  lease: BrokerLease;
  /** Names the deployment's part of the key space (as the name servers' `--cluster`). */
  cluster: string;
  /** @defaultValue "/sluice" */
  keyRoot?: string;
  /** This broker's `--replication`, written into the record while it is master. */
  replication: ReplicationMode;
  /** @defaultValue 500 */
  fenceMarginMs?: number;
  /** @defaultValue 2000 */
  resyncIntervalMs?: number;
  clock?: Clock;
  logger: Logger;
}

export class EtcdRoleManager implements RoleManager {
  readonly fence: LeaseFence;
  private readonly options: EtcdRoleManagerOptions;
  private readonly name: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly registry: GroupRegistry;
  private readonly state: RoleState;
  private readonly mode: GroupReplicationMode;
  private readonly quorum: number;
  private chain: Promise<unknown> = Promise.resolve();
  private reconcileQueued = false;
  private watchers: Watcher[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private unsubscribeLease: (() => void) | undefined;
  private stopped = false;
  private failing = false;
  private lastInSync: readonly number[] = [];

  constructor(options: EtcdRoleManagerOptions) {
    this.options = options;
    this.name = brokerName(options.group, options.brokerId);
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger.child({ component: "roles" });
    this.registry = new GroupRegistry({
      client: options.lease.client,
      keyPrefix: registryKeyPrefix(options.cluster, options.keyRoot),
      group: options.group,
    });
    this.fence = new LeaseFence({ lease: options.lease, clock: this.clock, marginMs: options.fenceMarginMs, brokerName: this.name });
    this.state = new RoleState((err) => this.logger.error({ err }, "a role change listener failed"));
    this.mode = options.replication.kind;
    this.quorum = options.replication.kind === "quorum" ? options.replication.k : 0;
  }

  current(): RoleChange {
    return this.state.value;
  }

  get recordedInSync(): readonly number[] {
    return this.lastInSync;
  }

  async inSyncPeers(): Promise<MasterAddress[]> {
    const snapshot = await this.registry.read();
    const inSync = new Set(snapshot.record?.inSync ?? []);
    const peers: MasterAddress[] = [];
    for (const [brokerId, alive] of snapshot.alive) {
      if (brokerId !== this.options.brokerId && inSync.has(brokerId)) peers.push({ brokerId, address: alive.address });
    }
    return peers.sort((a, b) => a.brokerId - b.brokerId);
  }

  onChange(listener: (change: RoleChange) => void): () => void {
    return this.state.onChange(listener);
  }

  async start(): Promise<RoleChange> {
    this.unsubscribeLease = this.options.lease.onLeaseReplaced(() => this.scheduleReconcile());
    this.watchers = await this.registry.watch(() => this.scheduleReconcile());
    await this.serial(() => this.reconcile());
    const intervalMs = this.options.resyncIntervalMs ?? DEFAULT_ROLE_RESYNC_INTERVAL_MS;
    this.resyncTimer = setInterval(() => this.scheduleReconcile(), intervalMs);
    this.resyncTimer.unref();
    return this.current();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.unsubscribeLease?.();
    const watchers = this.watchers;
    this.watchers = [];
    await Promise.all(watchers.map((watcher) => watcher.cancel().catch(() => undefined)));
    await this.chain;
  }

  recordInSync(slaveIds: readonly number[]): Promise<void> {
    return this.serial(async () => {
      const inSync = [...new Set(slaveIds)].filter((id) => id !== this.options.brokerId).sort((a, b) => a - b);
      for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
        const snapshot = await this.registry.read();
        const record = await this.requireMastership(snapshot, "record the in-sync set");
        if (sameIds(record.inSync, inSync) && record.mode === this.mode && record.quorum === this.quorum) return;
        const next: GroupRecord = { ...record, inSync, mode: this.mode, quorum: this.quorum, updatedAtMs: this.clock.now() };
        if (await this.registry.swap(next, snapshot.modRevision)) {
          this.lastInSync = inSync;
          this.logger.info({ group: this.options.group, epoch: record.epoch, inSync, previous: record.inSync }, "in-sync set recorded");
          return;
        }
      }
      throw new NotReadyError(`group ${this.options.group}'s record kept changing while ${this.name} recorded its in-sync set; retry`);
    });
  }

  handOff(toBrokerId: number): Promise<void> {
    return this.serial(async () => {
      if (toBrokerId === this.options.brokerId) throw new InvalidArgumentError(`broker ${this.name} cannot hand mastership to itself`);
      // Stop acting as master before the record moves: nothing may be acked by two masters.
      this.fence.disarm();
      try {
        for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
          const snapshot = await this.registry.read();
          const record = await this.requireMastership(snapshot, "hand mastership over");
          const target = snapshot.alive.get(toBrokerId);
          if (target === undefined) {
            throw new BrokerUnavailableError(
              `cannot hand mastership of group ${this.options.group} to broker ${toBrokerId}: it has no alive key in etcd (not running?)`,
            );
          }
          const next = promotedRecord(record, toBrokerId, target.leaseId, this.clock.now());
          if (await this.registry.swap(next, snapshot.modRevision)) {
            this.logger.info({ group: this.options.group, from: this.options.brokerId, to: toBrokerId, epoch: next.epoch }, "mastership handed off");
            this.becomeSlave(next.epoch, { brokerId: toBrokerId, address: target.address });
            return;
          }
        }
        throw new NotReadyError(`group ${this.options.group}'s record kept changing while ${this.name} handed mastership off; retry`);
      } catch (err) {
        // Still master (the hand-off did not happen): the fence is armed again if so.
        await this.reconcile().catch(() => undefined);
        throw err;
      }
    });
  }

  promote(epoch: number): Promise<void> {
    return Promise.reject(
      new InvalidArgumentError(
        `broker ${this.name} takes its role from etcd; promotion to epoch ${epoch} by hand is refused: run ` +
          "`sluice broker promote` against a name server on the same etcd, which rewrites the group record",
      ),
    );
  }

  /** The group record in etcd decides; what name servers say about the master changes nothing. */
  observeGroupMaster(): void {}

  private scheduleReconcile(): void {
    if (this.stopped || this.reconcileQueued) return;
    this.reconcileQueued = true;
    this.serial(async () => {
      this.reconcileQueued = false;
      if (!this.stopped) await this.reconcile();
    }).catch((err: unknown) => {
      if (!this.failing) this.logger.warn({ err: (err as Error).message }, "cannot read the group record from etcd; keeping the role, retrying");
      this.failing = true;
    });
  }

  /** Reads the record and alive keys and becomes what they say (creating or claiming the record when due). */
  private async reconcile(): Promise<void> {
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const leaseId = this.options.lease.leaseId;
      // Between losing a lease and getting the next one nothing can be decided; the fence
      // already refuses work, and the new lease triggers another pass.
      if (leaseId === undefined) return;
      const snapshot = await this.registry.read();
      this.failing = false;
      this.lastInSync = snapshot.record?.inSync ?? [];
      if (snapshot.alive.get(this.options.brokerId)?.leaseId !== leaseId) {
        await this.registry.putAlive(this.options.brokerId, { leaseId, address: this.options.address, httpAddress: this.options.httpAddress });
      }
      const decision = decideRole({ record: snapshot.record, alive: snapshot.alive, brokerId: this.options.brokerId, leaseId });
      switch (decision.kind) {
        case "master":
          this.becomeMaster(decision.epoch, leaseId);
          return;
        case "slave":
          this.becomeSlave(decision.epoch, decision.master);
          return;
        case "create":
          if (await this.registry.create(newGroupRecord(leaseId, this.mode, this.quorum, this.clock.now()))) {
            this.logger.info({ group: this.options.group }, "created the group record: first master, epoch 1");
            this.becomeMaster(1, leaseId);
            return;
          }
          break;
        case "claim": {
          const record = snapshot.record as GroupRecord;
          const next: GroupRecord = { ...record, epoch: record.epoch + 1, masterLease: leaseId, mode: this.mode, quorum: this.quorum, updatedAtMs: this.clock.now() };
          if (await this.registry.swap(next, snapshot.modRevision)) {
            this.logger.info({ group: this.options.group, epoch: next.epoch, previousLease: record.masterLease }, "took mastership back under a new lease");
            this.becomeMaster(next.epoch, leaseId);
            return;
          }
          break;
        }
      }
    }
    throw new NotReadyError(`group ${this.options.group}'s record kept changing while ${this.name} decided its role; retrying`);
  }

  /** The record, if it still says this broker is master at its epoch under its lease; else demotes and throws. */
  private async requireMastership(snapshot: GroupSnapshot, what: string): Promise<GroupRecord> {
    const record = snapshot.record;
    const role = this.current();
    if (
      record !== undefined &&
      role.role === "master" &&
      record.master === this.options.brokerId &&
      record.epoch === role.epoch &&
      record.masterLease === this.options.lease.leaseId
    ) {
      return record;
    }
    await this.reconcile();
    const says = record === undefined ? "no record" : `master ${record.master} at epoch ${record.epoch}`;
    throw new NotLeaderError(
      `broker ${this.name} is no longer master of group ${this.options.group} (etcd says ${says}); cannot ${what}`,
    );
  }

  private becomeMaster(epoch: number, leaseId: string): void {
    this.fence.arm(leaseId);
    if (this.state.set({ role: "master", epoch })) {
      this.logger.info({ group: this.options.group, brokerId: this.options.brokerId, epoch }, "became master");
    }
  }

  private becomeSlave(epoch: number, master: MasterAddress | undefined): void {
    this.fence.disarm();
    if (this.state.set({ role: "slave", epoch, master })) {
      this.logger.info({ group: this.options.group, brokerId: this.options.brokerId, epoch, master }, "following as slave");
    }
  }

  /** Runs `task` after every earlier one: etcd writes of this broker never interleave. */
  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.chain.then(task, task);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}
