/**
 * The name server's view of the cluster: registered brokers with their liveness, topics, and
 * the routes derived from both. The gRPC service and the sweep timer are its only callers.
 *
 * Brokers and topics live in the RegistryStore; liveness lives in the FailureDetector (each
 * name server judges it from the heartbeats it receives; fixed or φ-accrual, see liveness/). With the in-memory store, topics are
 * also learned from and forgotten by broker reports (see topic-reports.ts).
 *
 * Over a shared registry (etcd, `sharedLiveness`) every name server must judge brokers that
 * talk to another one: liveness then comes from the record itself (its lease and the
 * `lastHeartbeatMs` the receiving name server refreshes, see shared-liveness.ts).
 *
 * Topic records written by the name server itself (learned, forgotten, created, deleted) go
 * through topic-learning.ts; broker input is validated in broker-record.ts.
 */
import type { Clock } from "../../common/src/clock.js";
import { InvalidArgumentError, type SluiceError } from "../../common/src/errors.js";
import type { Logger } from "../../common/src/logger.js";
import type { BrokerInfo, HostedPartition, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import { brokerChanged, compareBrokers, toBrokerRecord } from "./broker-record.js";
import { createFailureDetector, type BrokerState, type DetectorSettings, type FailureDetector } from "./liveness/detector.js";
import type { PlacementGroup } from "./placement.js";
import { brokerKey, type BrokerRecord, type RegistryStore, type TopicRecord } from "./registry/store.js";
import { buildGroupViews, buildTopicRoute, countHostedPartitions, type GroupView } from "./routes.js";
import { SharedLiveness } from "./shared-liveness.js";
import { TopicLearning } from "./topic-learning.js";

export { toBrokerRecord } from "./broker-record.js";

export interface ClusterStateOptions {
  store: RegistryStore;
  clock: Clock;
  heartbeatIntervalMs: number;
  expiryMs: number;
  /** Which failure detector judges the brokers. @defaultValue { kind: "fixed" } */
  detector?: DetectorSettings;
  logger: Logger;
  /**
   * Learn topics from broker reports and forget those nobody reports any more: right for the
   * in-memory store, where each name server rebuilds itself from heartbeats; wrong for a
   * shared durable store, which is the authority on topics.
   */
  learnTopicsFromReports: boolean;
  /**
   * How long after start an unknown topic is answered with NOT_READY (retriable) rather than
   * UNKNOWN_TOPIC: a restarted in-memory name server knows topics only once the brokers have
   * re-registered. 0 when there is nothing to relearn (`sluice dev`). @defaultValue 0
   */
  startupGraceMs?: number;
  /**
   * Judge brokers from their records (lease, `lastHeartbeatMs`) rather than from this name
   * server's own heartbeats: right for a registry shared by every name server. @defaultValue false
   */
  sharedLiveness?: boolean;
}

export interface BrokerStatusView {
  record: BrokerRecord;
  state: BrokerState;
  /** -1 for a broker this name server never heard from (a record another one wrote). */
  heartbeatAgeMs: number;
  /** The detector's suspicion: φ, or intervals of silence for the fixed detector; -1 if unknown. */
  suspicion: number;
  /** Partitions the broker listed in its latest register or heartbeat to this name server. */
  partitionCount: number;
}

export interface SweepResult {
  expired: Array<{ record: BrokerRecord; heartbeatAgeMs: number }>;
  forgottenTopics: string[];
}

export class ClusterState {
  readonly detector: FailureDetector;
  private readonly store: RegistryStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly topics: TopicLearning;
  /** Told after every mutation that may change a route (route push, see route-watch.ts). */
  private readonly routeChangeListeners = new Set<() => void>();
  /** Partitions each broker reported last, by broker key (for `sluice cluster`). */
  private readonly reportedPartitionCounts = new Map<string, number>();
  /** Set over a shared registry: brokers are then judged from their records. */
  private readonly shared: SharedLiveness | undefined;

  constructor(options: ClusterStateOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.shared = options.sharedLiveness === true ? new SharedLiveness(options) : undefined;
    this.topics = new TopicLearning({ ...options, announceRouteChange: () => this.announceRouteChange() });
    this.detector = createFailureDetector({
      clock: options.clock,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      expiryMs: options.expiryMs,
      settings: options.detector ?? { kind: "fixed" },
    });
  }

  /**
   * Records a broker (new, or registering again after a restart or an expiry). A name held by
   * a live broker at another address is refused: two processes claiming one identity would
   * flip the routes between them with every heartbeat. The same address registering again is
   * a restart; a dead holder's name is free to take.
   */
  async register(info: BrokerInfo | undefined, partitions: readonly HostedPartition[], etcdLeaseId = ""): Promise<BrokerRecord> {
    const record = this.withSharedLiveness(toBrokerRecord(info, this.clock.now()), etcdLeaseId, partitions.length);
    const key = brokerKey(record);
    const previous = await this.store.getBroker(key);
    if (previous !== undefined && previous.address !== record.address) this.refuseIfHeldByLiveBroker(key, previous, record);
    await this.store.putBroker(record, record.leaseId === undefined ? {} : { leaseId: record.leaseId });
    // A registration starts a new rhythm: the gap before it (a restart, an expiry) says
    // nothing about how often this process heartbeats.
    this.detector.forget(key);
    this.detector.heartbeat(key);
    this.reportedPartitionCounts.set(key, partitions.length);
    this.logger.info(
      { group: record.group, brokerId: record.brokerId, address: record.address, role: record.role, epoch: record.epoch, again: previous !== undefined },
      "broker registered",
    );
    await this.topics.applyReport(key, record.group, partitions);
    this.announceRouteChange();
    return record;
  }

  /**
   * Records a heartbeat. Returns false for a broker this name server does not know (it
   * restarted, or expired the broker) or knows at another address: the broker must register again.
   */
  async heartbeat(info: BrokerInfo | undefined, partitions: readonly HostedPartition[], etcdLeaseId = ""): Promise<boolean> {
    const reported = this.withSharedLiveness(toBrokerRecord(info, this.clock.now()), etcdLeaseId, partitions.length);
    const key = brokerKey(reported);
    const known = await this.store.getBroker(key);
    if (known === undefined || !this.detector.isTracked(key)) return false;
    // Another process took the name while this one was silent (it was judged dead): make it
    // register again, where it is refused while the new holder lives.
    if (known.address !== reported.address) return false;
    // A broker that replaced its etcd lease registers again, rewriting its record under it.
    if (known.leaseId !== reported.leaseId) return false;
    this.detector.heartbeat(key);
    this.reportedPartitionCounts.set(key, partitions.length);
    const updated: BrokerRecord = { ...reported, registeredAtMs: known.registeredAtMs };
    const changed = brokerChanged(known, updated);
    if (changed || (this.shared?.heartbeatIsDue(known, updated) ?? false)) {
      await this.store.putBroker(updated, updated.leaseId === undefined ? {} : { leaseId: updated.leaseId });
    }
    if (changed) {
      this.announceRouteChange();
      if (known.role !== updated.role || known.epoch !== updated.epoch) {
        this.logger.info(
          { group: updated.group, brokerId: updated.brokerId, role: updated.role, epoch: updated.epoch, previousRole: known.role, previousEpoch: known.epoch },
          "broker changed role",
        );
      }
    }
    await this.topics.applyReport(key, updated.group, partitions);
    return true;
  }

  async unregister(cluster: string, group: string, brokerId: number): Promise<boolean> {
    const key = brokerKey({ cluster, group, brokerId });
    this.detector.forget(key);
    this.reportedPartitionCounts.delete(key);
    this.topics.forgetBroker(key);
    const removed = await this.store.removeBroker(key);
    if (removed) this.logger.info({ group, brokerId }, "broker unregistered");
    if (removed) this.announceRouteChange();
    return removed;
  }

  /** Removes brokers silent past the expiry window, then topics nobody reports any more. */
  async sweep(): Promise<SweepResult> {
    if (this.shared !== undefined) return this.sweepSharedRecords(this.shared);
    const expired: SweepResult["expired"] = [];
    for (const { key, heartbeatAgeMs, suspicion } of this.detector.sweep()) {
      const record = await this.store.getBroker(key);
      this.reportedPartitionCounts.delete(key);
      this.topics.forgetBroker(key);
      if (record === undefined || !(await this.store.removeBroker(key))) continue;
      expired.push({ record, heartbeatAgeMs });
      this.logger.warn(
        { group: record.group, brokerId: record.brokerId, address: record.address, role: record.role, heartbeatAgeMs, suspicion, detector: this.detector.kind, expiryMs: this.detector.expiryMs },
        "broker expired: silent for longer than the failure detector allows; routes recomputed without it",
      );
    }
    const forgottenTopics = await this.topics.forgetUnreportedTopics(() => this.liveBrokers());
    if (expired.length > 0 || forgottenTopics.length > 0) this.announceRouteChange();
    return { expired, forgottenTopics };
  }

  /** Every registered broker with its state, including suspects and not-yet-swept dead ones. */
  async brokerStatuses(): Promise<BrokerStatusView[]> {
    const brokers = await this.store.listBrokers();
    return brokers
      .map((record) => {
        const key = brokerKey(record);
        if (this.shared !== undefined) {
          const { state, heartbeatAgeMs, suspicion } = this.shared.judge(record);
          return { record, state, heartbeatAgeMs, suspicion, partitionCount: record.reportedPartitions ?? 0 };
        }
        return {
          record,
          state: this.detector.state(key),
          heartbeatAgeMs: this.detector.heartbeatAgeMs(key) ?? -1,
          suspicion: this.detector.suspicion(key) ?? -1,
          partitionCount: this.reportedPartitionCounts.get(key) ?? 0,
        };
      })
      .sort((a, b) => compareBrokers(a.record, b.record));
  }

  /** Brokers that may be routed to: alive or suspect. */
  async liveBrokers(): Promise<BrokerRecord[]> {
    const brokers = await this.store.listBrokers();
    return brokers.filter((record) => this.stateOf(record) !== "dead").sort(compareBrokers);
  }

  async groupViews(): Promise<Map<string, GroupView>> {
    return buildGroupViews(await this.liveBrokers());
  }

  async getTopic(topic: string): Promise<TopicRecord | undefined> {
    return this.store.getTopic(topic);
  }

  /** Routes of the named topics, in the order asked; the first unknown topic fails the call. */
  async routes(topics: readonly string[]): Promise<TopicRoute[]> {
    const groups = await this.groupViews();
    const routes: TopicRoute[] = [];
    for (const topic of topics) {
      const record = await this.store.getTopic(topic);
      if (record === undefined) throw this.topics.unknownTopicError(topic);
      routes.push(buildTopicRoute(record, groups));
    }
    return routes;
  }

  /** Routes of every topic, by name. */
  async allRoutes(): Promise<TopicRoute[]> {
    const [groups, topics] = await Promise.all([this.groupViews(), this.store.listTopics()]);
    return topics.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0)).map((t) => buildTopicRoute(t, groups));
  }

  async topicCount(): Promise<number> {
    return (await this.store.listTopics()).length;
  }

  /** Every broker group known, with what placement needs to weigh it. */
  async placementGroups(): Promise<PlacementGroup[]> {
    const [brokers, topics, groups] = await Promise.all([this.store.listBrokers(), this.store.listTopics(), this.groupViews()]);
    const hosted = countHostedPartitions(topics);
    const names = new Set(brokers.map((b) => b.group));
    return [...names].sort().map((group) => {
      const master = groups.get(group)?.master;
      return { group, weight: master?.weight ?? 1, hostedPartitions: hosted.get(group) ?? 0, hasLiveMaster: master !== undefined };
    });
  }

  /**
   * Reserves a topic name for a creation (or an alter) running on this name server; false
   * when one already runs. Reports of the topic are ignored until `releaseTopicCreation`.
   */
  claimTopicCreation(topic: string): boolean {
    return this.topics.claimTopicCreation(topic);
  }

  releaseTopicCreation(topic: string): void {
    this.topics.releaseTopicCreation(topic);
  }

  /** Records a topic created through this name server; false when the name is taken. */
  async recordNewTopic(record: TopicRecord): Promise<boolean> {
    return this.topics.recordNewTopic(record);
  }

  /** Rewrites a topic changed through this name server (compare-and-swap, see RegistryStore.updateTopic). */
  async updateTopic(topic: string, change: (current: TopicRecord) => TopicRecord): Promise<TopicRecord | undefined> {
    return this.topics.updateTopic(topic, change);
  }

  /** The error for a topic this name server does not know: NOT_READY while still learning after start. */
  unknownTopicError(topic: string): SluiceError {
    return this.topics.unknownTopicError(topic);
  }

  /** Removes a topic deleted through this name server; false when it was unknown. */
  async removeTopic(topic: string): Promise<boolean> {
    return this.topics.removeTopic(topic);
  }

  /**
   * Calls `listener` after every change that may alter a route: brokers registering, changing
   * role, epoch or address, expiring or unregistering; topics created, learned, forgotten or
   * deleted. It may be told more often than routes really change (the route watch diffs).
   * Returns the function that removes the listener.
   */
  onRouteChange(listener: () => void): () => void {
    this.routeChangeListeners.add(listener);
    return () => this.routeChangeListeners.delete(listener);
  }

  /** Tells the route listeners; public so a registry watch (changes made elsewhere) can call it. */
  announceRouteChange(): void {
    for (const listener of this.routeChangeListeners) {
      try {
        listener();
      } catch (err) {
        this.logger.error({ err }, "a route change listener failed");
      }
    }
  }

  /**
   * Throws when `previous`, holding `key` at another address, is still live. Live means the
   * detector does not judge it dead; a record this name server never tracked was written by
   * another name server sharing the store, which keeps it only while its holder lives.
   */
  private refuseIfHeldByLiveBroker(key: string, previous: BrokerRecord, claimant: BrokerRecord): void {
    if (this.shared !== undefined) {
      this.shared.refuseIfHeldByLiveBroker(previous, claimant);
      return;
    }
    const tracked = this.detector.isTracked(key);
    if (tracked && this.detector.state(key) === "dead") {
      this.logger.warn(
        { group: claimant.group, brokerId: claimant.brokerId, address: claimant.address, previousAddress: previous.address },
        "broker name taken over from a dead broker",
      );
      return;
    }
    const ageMs = this.detector.heartbeatAgeMs(key);
    const heard = tracked && ageMs !== undefined ? `last heartbeat ${ageMs} ms ago` : "registered through another name server";
    throw new InvalidArgumentError(
      `broker ${claimant.group}/${claimant.brokerId} (cluster "${claimant.cluster}") is already registered by a live broker ` +
        `at ${previous.address} (${heard}); refusing the registration from ${claimant.address}. Give this broker ` +
        `another --id, or stop the other one: its name is free once it has been silent for the expiry window ` +
        `(${this.detector.expiryMs} ms)`,
    );
  }

  /** Over a shared registry the record carries the lease and heartbeat time other name servers judge by. */
  private withSharedLiveness(record: BrokerRecord, etcdLeaseId: string, partitionCount: number): BrokerRecord {
    return this.shared === undefined ? record : this.shared.stamp(record, etcdLeaseId, partitionCount);
  }

  private stateOf(record: BrokerRecord): BrokerState {
    return this.shared !== undefined ? this.shared.state(record) : this.detector.state(brokerKey(record));
  }

  /** Shared registry: this name server's detector only tracks who talks to it; the records decide. */
  private async sweepSharedRecords(shared: SharedLiveness): Promise<SweepResult> {
    for (const { key } of this.detector.sweep()) {
      this.reportedPartitionCounts.delete(key);
      this.topics.forgetBroker(key);
    }
    const expired = await shared.removeDeadRecords();
    if (expired.length > 0) this.announceRouteChange();
    return { expired, forgottenTopics: [] };
  }
}
