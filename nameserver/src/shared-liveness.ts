/**
 * Broker liveness over a registry shared by every name server (etcd, `sharedLiveness`): a
 * broker may talk to another name server, so each one judges brokers from their records (the
 * lease, and the `lastHeartbeatMs` the receiving name server refreshes; see
 * liveness/record-liveness.ts) rather than from the heartbeats it received itself.
 * ClusterState uses it only when the registry is shared.
 */
import type { Clock } from "../../common/src/clock.js";
import { InvalidArgumentError } from "../../common/src/errors.js";
import type { Logger } from "../../common/src/logger.js";
import type { BrokerState } from "./liveness/detector.js";
import { judgeRecord, type RecordLiveness } from "./liveness/record-liveness.js";
import { brokerKey, type BrokerRecord, type RegistryStore } from "./registry/store.js";

export interface SharedLivenessOptions {
  store: RegistryStore;
  clock: Clock;
  logger: Logger;
  heartbeatIntervalMs: number;
  expiryMs: number;
}

export interface ExpiredBroker {
  record: BrokerRecord;
  heartbeatAgeMs: number;
}

export class SharedLiveness {
  private readonly store: RegistryStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly heartbeatIntervalMs: number;
  private readonly expiryMs: number;

  constructor(options: SharedLivenessOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.expiryMs = options.expiryMs;
  }

  /** The record carries the lease and heartbeat time other name servers judge by. */
  stamp(record: BrokerRecord, etcdLeaseId: string, partitionCount: number): BrokerRecord {
    const shared: BrokerRecord = { ...record, lastHeartbeatMs: this.clock.now(), reportedPartitions: partitionCount };
    if (etcdLeaseId !== "") shared.leaseId = etcdLeaseId;
    return shared;
  }

  /**
   * A shared record's heartbeat time is refreshed at most once per interval (brokers
   * heartbeat once per interval; half of it absorbs their jitter), costing one etcd write
   * per broker per interval rather than one per heartbeat to each name server.
   */
  heartbeatIsDue(known: BrokerRecord, updated: BrokerRecord): boolean {
    if (known.reportedPartitions !== updated.reportedPartitions) return true;
    return (updated.lastHeartbeatMs ?? 0) - (known.lastHeartbeatMs ?? 0) >= this.heartbeatIntervalMs / 2;
  }

  judge(record: BrokerRecord): RecordLiveness {
    return judgeRecord(record, this.clock.now(), { heartbeatIntervalMs: this.heartbeatIntervalMs, expiryMs: this.expiryMs });
  }

  state(record: BrokerRecord): BrokerState {
    return this.judge(record).state;
  }

  /** Throws when `previous`, holding the claimant's name at another address, is not judged dead. */
  refuseIfHeldByLiveBroker(previous: BrokerRecord, claimant: BrokerRecord): void {
    const { state, heartbeatAgeMs } = this.judge(previous);
    if (state === "dead") return;
    throw new InvalidArgumentError(
      `broker ${claimant.group}/${claimant.brokerId} (cluster "${claimant.cluster}") is already registered by a live broker ` +
        `at ${previous.address} (${previous.leaseId === undefined ? `last heartbeat ${heartbeatAgeMs} ms ago` : `holding etcd lease ${previous.leaseId}`}); ` +
        `refusing the registration from ${claimant.address}. Give this broker another --id, or stop the other one: its name is ` +
        `free once ${previous.leaseId === undefined ? `it has been silent for the expiry window (${this.expiryMs} ms)` : "its lease has expired"}`,
    );
  }

  /**
   * Records of leased brokers leave with their lease; a record without one is removed by
   * whichever name server sweeps first once it is older than the expiry window (the name
   * server it talked to may be the one that died).
   */
  async removeDeadRecords(): Promise<ExpiredBroker[]> {
    const expired: ExpiredBroker[] = [];
    for (const record of await this.store.listBrokers()) {
      const { state, heartbeatAgeMs } = this.judge(record);
      if (state !== "dead" || !(await this.store.removeBroker(brokerKey(record)))) continue;
      expired.push({ record, heartbeatAgeMs });
      this.logger.warn(
        { group: record.group, brokerId: record.brokerId, address: record.address, heartbeatAgeMs, expiryMs: this.expiryMs },
        "broker expired: no name server heard from it for longer than the expiry window; routes recomputed without it",
      );
    }
    return expired;
  }
}
