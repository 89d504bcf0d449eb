/**
 * Roles without etcd. `<data>/role.json` remembers the newest group epoch this broker knows and
 * who was master at it (role-file.ts). A fresh broker 0 is its new group's master at epoch 1;
 * any other fresh broker is a slave that does not know its master yet.
 *
 * The name servers tell each broker its group's master in every heartbeat answer (the live
 * broker claiming mastership at the highest epoch), and `observeGroupMaster` applies it:
 *   - a slave follows the master it names (at an epoch not older than the one it knows);
 *   - a master that sees another master at a higher epoch steps down and follows it (the
 *     former master of a hand promotion, back after a restart or a partition).
 * News older than what the broker knows is ignored: a name server that has not yet heard from
 * the new master must not send a broker back to the old one.
 *
 * Nothing fences a master here: without a shared registry nobody promotes behind its back;
 * promotion happens only by hand (`sluice broker promote`, which calls `promote`) or on SIGTERM
 * (`handOff`, through a name server's PromoteBroker).
 */
import { InvalidArgumentError, NotLeaderError, StaleEpochError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { GroupMaster } from "../../../proto/gen/sluice/v1/nameserver.js";
import { NO_FENCE, type Fence } from "./fence.js";
import { readRoleFile, writeRoleFile, type RoleFileContent } from "./role-file.js";
import { RoleState, brokerName, type MasterAddress, type RoleChange, type RoleManager } from "./role-manager.js";

export interface LocalRoleManagerOptions {
  group: string;
  brokerId: number;
  /** Where role.json lives (the broker's data directory). */
  dataDir: string;
  /**
   * Asks a name server to make `toBrokerId` the master at the group's next epoch (PromoteBroker);
   * resolves with the new master. Used by `handOff`.
   */
  requestPromotion: (toBrokerId: number) => Promise<GroupMaster>;
  logger: Logger;
}

export class LocalRoleManager implements RoleManager {
  readonly fence: Fence = NO_FENCE;
  private readonly options: LocalRoleManagerOptions;
  private readonly name: string;
  private readonly logger: Logger;
  private readonly state: RoleState;
  /** What role.json says (kept in step with it). */
  private known: RoleFileContent = { epoch: 0, master: null };
  private inSync: number[] = [];
  private warnedSameEpochMaster: string | undefined;

  constructor(options: LocalRoleManagerOptions) {
    this.options = options;
    this.name = brokerName(options.group, options.brokerId);
    this.logger = options.logger.child({ component: "roles" });
    this.state = new RoleState((err) => this.logger.error({ err }, "a role change listener failed"));
  }

  current(): RoleChange {
    return this.state.value;
  }

  onChange(listener: (change: RoleChange) => void): () => void {
    return this.state.onChange(listener);
  }

  async inSyncPeers(): Promise<MasterAddress[]> {
    return [];
  }

  /** The slaves the master last recorded as in sync (local mode keeps them in memory only). */
  get recordedInSync(): readonly number[] {
    return this.inSync;
  }

  async start(): Promise<RoleChange> {
    const { brokerId, dataDir } = this.options;
    const stored = readRoleFile(dataDir);
    if (stored === undefined) {
      this.remember(brokerId === 0 ? { epoch: 1, master: 0 } : { epoch: 0, master: null });
    } else {
      this.known = stored;
    }
    if (this.known.master === brokerId && this.known.epoch > 0) this.becomeMaster(this.known.epoch);
    else this.becomeSlave(this.known.epoch, undefined);
    return this.current();
  }

  async stop(): Promise<void> {
    // Nothing runs in the background.
  }

  /** A name server's answer named the group's master (see the file comment). */
  observeGroupMaster(master: GroupMaster): void {
    if (master.brokerId === this.options.brokerId || master.epoch < this.known.epoch) return;
    const role = this.current();
    const address: MasterAddress = { brokerId: master.brokerId, address: master.address };
    if (role.role === "master") {
      if (master.epoch === role.epoch) {
        const key = `${master.brokerId}@${master.epoch}`;
        if (this.warnedSameEpochMaster !== key) {
          this.logger.warn({ group: this.options.group, epoch: master.epoch, other: master.brokerId }, "another broker claims mastership at this broker's epoch; keeping it until a higher epoch appears");
          this.warnedSameEpochMaster = key;
        }
        return;
      }
      this.logger.warn({ group: this.options.group, epoch: role.epoch, newMaster: master.brokerId, newEpoch: master.epoch }, "a master at a higher epoch exists: stepping down");
    }
    if (master.epoch !== this.known.epoch || master.brokerId !== this.known.master) {
      this.remember({ epoch: master.epoch, master: master.brokerId });
    }
    this.becomeSlave(master.epoch, address);
  }

  async recordInSync(slaveIds: readonly number[]): Promise<void> {
    if (this.current().role !== "master") throw new NotLeaderError(`broker ${this.name} is not the master of group ${this.options.group}`);
    this.inSync = [...new Set(slaveIds)].filter((id) => id !== this.options.brokerId).sort((a, b) => a - b);
  }

  async handOff(toBrokerId: number): Promise<void> {
    if (toBrokerId === this.options.brokerId) throw new InvalidArgumentError(`broker ${this.name} cannot hand mastership to itself`);
    if (this.current().role !== "master") throw new NotLeaderError(`broker ${this.name} is not the master of group ${this.options.group}; nothing to hand off`);
    const promoted = await this.options.requestPromotion(toBrokerId);
    this.logger.info({ group: this.options.group, from: this.options.brokerId, to: promoted.brokerId, epoch: promoted.epoch }, "mastership handed off");
    this.remember({ epoch: promoted.epoch, master: promoted.brokerId });
    this.becomeSlave(promoted.epoch, { brokerId: promoted.brokerId, address: promoted.address });
  }

  async promote(epoch: number): Promise<void> {
    if (!Number.isSafeInteger(epoch) || epoch <= this.known.epoch) {
      throw new StaleEpochError(
        `broker ${this.name} already knows group epoch ${this.known.epoch}; promotion needs a higher epoch than that, got ${epoch}`,
      );
    }
    this.remember({ epoch, master: this.options.brokerId });
    this.logger.info({ group: this.options.group, brokerId: this.options.brokerId, epoch }, "promoted by hand");
    this.becomeMaster(epoch);
  }

  private remember(content: RoleFileContent): void {
    writeRoleFile(this.options.dataDir, content);
    this.known = content;
  }

  private becomeMaster(epoch: number): void {
    if (this.state.set({ role: "master", epoch })) {
      this.logger.info({ group: this.options.group, brokerId: this.options.brokerId, epoch }, "became master");
    }
  }

  private becomeSlave(epoch: number, master: MasterAddress | undefined): void {
    if (this.state.set({ role: "slave", epoch, master })) {
      this.logger.info({ group: this.options.group, brokerId: this.options.brokerId, epoch, master }, "following as slave");
    }
  }
}
