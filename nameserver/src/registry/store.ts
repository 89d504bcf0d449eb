/**
 * Where the name server keeps what it knows: registered brokers and topics.
 *
 * One interface, two implementations: the in-memory store (embedded default; every name
 * server is independent and rebuilt from broker heartbeats, RocketMQ-style) and the etcd
 * store shared by every name server (etcd-store.ts). Every method returns a Promise so the
 * etcd store fits behind the same interface; the in-memory store simply resolves at once.
 *
 * Users and ACLs (issue #8) are kept there too, as one SecuritySnapshot whose `version` grows
 * with every change: the in-memory store persists it to a file (it cannot be relearned from
 * heartbeats), the etcd store keeps one key per user and per entry.
 *
 * Records are plain JSON-serialisable objects (the etcd store writes them as JSON values).
 * With the in-memory store liveness is not stored: each name server judges it from the
 * heartbeats it receives. Over etcd every name server must judge every broker, so the record
 * carries its lease and the time of its last heartbeat (`leaseId`, `lastHeartbeatMs`).
 */
import type { SecuritySnapshot } from "../../../common/src/security/types.js";
import type { TopicConfig } from "../../../proto/gen/sluice/v1/common.js";

export type BrokerRole = "master" | "slave";

/** A registered broker, as it described itself in its last register or heartbeat. */
export interface BrokerRecord {
  cluster: string;
  /** Broker group (a master and its slaves), e.g. "b1". */
  group: string;
  /** Identity inside the group (`--id`); the role comes from the registry, not from this. */
  brokerId: number;
  /** gRPC "host:port". */
  address: string;
  /** HTTP "host:port" (admin, metrics). */
  httpAddress: string;
  version: string;
  role: BrokerRole;
  epoch: number;
  /** Placement weight: a group whose master has weight 2 takes twice the share of partitions. */
  weight: number;
  registeredAtMs: number;
  /** Shared registry only: the etcd lease the record is written under (the broker's own). */
  leaseId?: string;
  /**
   * Shared registry only: when a name server last heard a heartbeat from the broker (its
   * clock, epoch ms), refreshed at most once per heartbeat interval.
   */
  lastHeartbeatMs?: number;
  /** Shared registry only: partitions the broker listed in its latest register or heartbeat. */
  reportedPartitions?: number;
}

/** A topic: how many partitions it has and which broker group holds each. */
export interface TopicRecord {
  topic: string;
  partitionCount: number;
  /**
   * Broker group per partition: `assignment[p]` holds partition p. An empty string marks a
   * partition no broker has reported yet (a name server rebuilding from heartbeats).
   */
  assignment: string[];
  config: TopicConfig;
}

/** Identifies a broker across registrations: cluster, group and id. */
export function brokerKey(broker: { cluster: string; group: string; brokerId: number }): string {
  return `${broker.cluster}/${broker.group}/${broker.brokerId}`;
}

/** Tells every listener (a copy each); one that throws neither stops the others nor fails the change. */
export function notifySecurityListeners(listeners: Iterable<(snapshot: SecuritySnapshot) => void>, snapshot: SecuritySnapshot): void {
  for (const listener of listeners) {
    try {
      listener(structuredClone(snapshot));
    } catch (err) {
      process.emitWarning(`a users and ACLs listener failed: ${(err as Error).message}`);
    }
  }
}

export interface PutBrokerOptions {
  /**
   * An etcd lease the broker holds (decimal lease id): the record vanishes when the lease
   * expires, so a dead broker leaves the registry without any name server's help. Only the
   * etcd store has leases; the in-memory store ignores it, its name servers expire brokers by
   * missed heartbeats instead.
   */
  leaseId?: string;
}

export interface RegistryStore {
  /** Adds or replaces the broker with the same `brokerKey`. */
  putBroker(record: BrokerRecord, options?: PutBrokerOptions): Promise<void>;
  /** Removes a broker by `brokerKey`; resolves false when it was not registered. */
  removeBroker(key: string): Promise<boolean>;
  getBroker(key: string): Promise<BrokerRecord | undefined>;
  listBrokers(): Promise<BrokerRecord[]>;

  /**
   * Records a new topic unless one with that name exists (an atomic check-and-put, so two
   * name servers sharing a store cannot both create it). Resolves false when it existed.
   */
  createTopic(record: TopicRecord): Promise<boolean>;
  /** Adds or replaces a topic (learned from broker reports, or grown). */
  putTopic(record: TopicRecord): Promise<void>;
  /**
   * Reads a topic, applies `change` and writes the result only if nobody wrote the topic in
   * between (compare-and-swap; `change` runs again on a conflict, so it must not have side
   * effects). Resolves the written record, or undefined when the topic does not exist.
   */
  updateTopic(topic: string, change: (current: TopicRecord) => TopicRecord): Promise<TopicRecord | undefined>;
  getTopic(topic: string): Promise<TopicRecord | undefined>;
  /** Resolves false when the topic did not exist. */
  deleteTopic(topic: string): Promise<boolean>;
  listTopics(): Promise<TopicRecord[]>;

  /** Users and ACLs now (copies: changing them changes nothing in the store). */
  readSecurity(): Promise<SecuritySnapshot>;
  /**
   * Reads users and ACLs, applies `change` and writes the result only if nobody changed them in
   * between (compare-and-swap; `change` runs again on a conflict, so it must be pure). `change`
   * may throw a typed error (UNKNOWN_USER, USER_ALREADY_EXISTS…) to abort: nothing is written
   * and the promise rejects with it. A change that alters nothing writes nothing and keeps the
   * version. Resolves the snapshot as written, its `version` above every earlier one.
   */
  updateSecurity(change: (current: SecuritySnapshot) => SecuritySnapshot): Promise<SecuritySnapshot>;
  /**
   * Calls `listener` with the new snapshot after every change of users or ACLs, including
   * changes made through other name servers sharing the registry. Not called at once: read the
   * current state with `readSecurity` (after subscribing, so no change falls in between).
   * Returns the function that unsubscribes.
   */
  watchSecurity(listener: (snapshot: SecuritySnapshot) => void): () => void;

  close(): Promise<void>;
}
