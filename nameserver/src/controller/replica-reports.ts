/**
 * What each group's master last said about its slaves (in sync, connected, lag), from the
 * `replicas` of its registrations and heartbeats. `sluice cluster` shows it per slave, and hand
 * promotion without etcd refuses a slave its master did not report in sync.
 *
 * Kept per name server, in memory, per (cluster, group): each name server hears every broker. A
 * report from a master at an older epoch than the one kept is ignored (a deposed master that has
 * not stepped down yet must not overwrite its successor's view).
 */
import type { BrokerInfo, ReplicaStatus } from "../../../proto/gen/sluice/v1/nameserver.js";

export interface GroupReplicaReport {
  masterId: number;
  epoch: number;
  replicas: ReplicaStatus[];
  /** When it arrived (this name server's clock, epoch ms). */
  receivedAtMs: number;
}

export class ReplicaReports {
  private readonly byGroup = new Map<string, GroupReplicaReport>();

  /** Keeps a master's report; anything from a slave is ignored. */
  record(broker: BrokerInfo | undefined, replicas: readonly ReplicaStatus[], nowMs: number): void {
    if (broker === undefined || broker.role !== "master") return;
    const key = groupKeyOf(broker.cluster, broker.group);
    const previous = this.byGroup.get(key);
    if (previous !== undefined && previous.epoch > broker.epoch) return;
    this.byGroup.set(key, { masterId: broker.brokerId, epoch: broker.epoch, replicas: [...replicas], receivedAtMs: nowMs });
  }

  /** The group's latest master report, if any. */
  report(cluster: string, group: string): GroupReplicaReport | undefined {
    return this.byGroup.get(groupKeyOf(cluster, group));
  }

  /** How the group's master last reported `brokerId`; undefined for the master itself or when unknown. */
  statusOf(cluster: string, group: string, brokerId: number): ReplicaStatus | undefined {
    const report = this.report(cluster, group);
    if (report === undefined || report.masterId === brokerId) return undefined;
    return report.replicas.find((replica) => replica.brokerId === brokerId);
  }
}

function groupKeyOf(cluster: string, group: string): string {
  return `${cluster}/${group}`;
}
