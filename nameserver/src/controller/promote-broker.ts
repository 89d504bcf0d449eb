/**
 * Hand promotion (`sluice broker promote --name G --id N`, and a master's hand-off on SIGTERM
 * without etcd): makes broker N its group's master at the next epoch.
 *
 *   etcd     compare-and-swap the group record to {master: N, epoch + 1, masterLease: N's alive
 *            lease}; N's role manager sees it and becomes master, the others follow it.
 *   no etcd  call N's Replication.Promote with epoch = the highest epoch any live broker of the
 *            group reports + 1; the old master learns of the higher epoch from its next
 *            heartbeat answer and steps down.
 *
 * Without etcd and without `force`, a promotion while the master is alive is refused (nothing
 * would fence it until its next heartbeat). Without `force` a slave outside the in-sync set is refused (etcd: the recorded set; no etcd:
 * what the master last reported), since it may lack acknowledged messages. Without etcd, when
 * no master ever reported to this name server, nothing is known and the promotion proceeds.
 */
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { BrokerUnavailableError, InvalidArgumentError, NotReadyError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { promotedRecord } from "../../../common/src/registry/group-record.js";
import type { GroupMaster } from "../../../proto/gen/sluice/v1/nameserver.js";
import type { ClusterState } from "../cluster-state.js";
import type { GroupRecords } from "./group-records.js";
import type { ReplicaCalls } from "./replica-calls.js";
import type { ReplicaReports } from "./replica-reports.js";

/** Deadline of the call to the promoted broker (no etcd). */
export const DEFAULT_PROMOTE_TIMEOUT_MS = 5000;
const MAX_CAS_ATTEMPTS = 8;

export interface PromoteRequestFields {
  /** Empty: the only cluster that has this group. */
  cluster: string;
  group: string;
  brokerId: number;
  force: boolean;
}

export interface BrokerPromoterOptions {
  /** Set in etcd mode: promotion rewrites the group record. */
  records: GroupRecords | undefined;
  state: ClusterState;
  reports: ReplicaReports;
  brokers: ReplicaCalls;
  /** @defaultValue 5000 */
  promoteTimeoutMs?: number;
  clock?: Clock;
  logger: Logger;
}

export class BrokerPromoter {
  private readonly options: BrokerPromoterOptions;
  private readonly clock: Clock;

  constructor(options: BrokerPromoterOptions) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
  }

  async promote(request: PromoteRequestFields): Promise<GroupMaster> {
    if (request.group === "") throw new InvalidArgumentError("no group given: pass --name GROUP");
    const master = this.options.records === undefined ? await this.promoteLocal(request) : await this.promoteInEtcd(this.options.records, request);
    this.options.logger.info({ group: request.group, brokerId: master.brokerId, epoch: master.epoch, force: request.force }, "promoted by hand");
    return master;
  }

  private async promoteInEtcd(records: GroupRecords, request: PromoteRequestFields): Promise<GroupMaster> {
    const { group, brokerId } = request;
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const state = await records.read(group);
      if (state === undefined) {
        throw new InvalidArgumentError(`group "${group}" has no record in etcd: no broker of it has started with --etcd against this cluster`);
      }
      const { record, alive } = state;
      const target = alive.get(brokerId);
      if (target === undefined) {
        const live = [...alive.keys()].sort((a, b) => a - b);
        throw new BrokerUnavailableError(`broker ${group}/${brokerId} is not alive (no alive key in etcd); live brokers of ${group}: [${live.join(",")}]`);
      }
      if (record.master === brokerId && record.masterLease === target.leaseId) {
        return { brokerId, epoch: record.epoch, address: target.address };
      }
      if (!request.force && !record.inSync.includes(brokerId)) {
        throw new InvalidArgumentError(
          `broker ${group}/${brokerId} is not in group ${group}'s in-sync set [${record.inSync.join(",")}]: it may lack acknowledged messages. ` +
            "Promote an in-sync slave, or pass --force to accept that loss",
        );
      }
      const next = promotedRecord(record, brokerId, target.leaseId, this.clock.now());
      if (await records.swap(group, next, state.modRevision)) return { brokerId, epoch: next.epoch, address: target.address };
    }
    throw new NotReadyError(`group ${group}'s record kept changing during the promotion; retry`);
  }

  private async promoteLocal(request: PromoteRequestFields): Promise<GroupMaster> {
    const { group, brokerId } = request;
    const members = (await this.options.state.liveBrokers()).filter(
      (broker) => broker.group === group && (request.cluster === "" || broker.cluster === request.cluster),
    );
    const clusters = [...new Set(members.map((broker) => broker.cluster))];
    if (clusters.length > 1) {
      throw new InvalidArgumentError(`group "${group}" exists in clusters ${clusters.join(", ")}: pass --cluster to say which`);
    }
    const target = members.find((broker) => broker.brokerId === brokerId);
    if (target === undefined) {
      throw new BrokerUnavailableError(
        `broker ${group}/${brokerId} is not alive at this name server; live brokers of ${group}: [${members.map((b) => b.brokerId).join(",")}]`,
      );
    }
    const groupEpoch = Math.max(0, ...members.map((broker) => broker.epoch));
    if (target.role === "master" && target.epoch === groupEpoch) return { brokerId, epoch: target.epoch, address: target.address };
    if (!request.force) {
      const report = this.options.reports.report(target.cluster, group);
      const status = report?.replicas.find((replica) => replica.brokerId === brokerId);
      if (report !== undefined && status?.inSync !== true) {
        const lag = status === undefined ? "never connected" : `lag ${status.lagMs} ms / ${status.lagBytes} B`;
        throw new InvalidArgumentError(
          `broker ${group}/${brokerId} is not in sync with master ${group}/${report.masterId} (${lag}): it may lack acknowledged messages. ` +
            "Promote an in-sync slave, or pass --force to accept that loss",
        );
      }
      // Without etcd nothing fences a live master: until its next heartbeat answer tells it to
      // step down it keeps acknowledging writes the new master never sees.
      const liveMaster = members.find((broker) => broker.role === "master" && broker.epoch === groupEpoch && broker.brokerId !== brokerId);
      if (liveMaster !== undefined) {
        throw new InvalidArgumentError(
          `broker ${group}/${liveMaster.brokerId} is alive and master: stop it with SIGTERM (it hands mastership to an in-sync slave) ` +
            "or pass --force to promote anyway (what it acknowledges until it steps down, within a heartbeat, may be lost)",
        );
      }
    }
    const epoch = await this.options.brokers.promote(target.address, groupEpoch + 1, this.options.promoteTimeoutMs ?? DEFAULT_PROMOTE_TIMEOUT_MS);
    return { brokerId, epoch, address: target.address };
  }
}
