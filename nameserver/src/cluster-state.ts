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
 * `lastHeartbeatMs` the receiving name server refreshes, see liveness/record-liveness.ts).
 */
import type { Clock } from "../../common/src/clock.js";
import { InvalidArgumentError, NotReadyError, UnknownTopicError } from "../../common/src/errors.js";
import type { Logger } from "../../common/src/logger.js";
import type { BrokerInfo, HostedPartition, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import { createFailureDetector, type BrokerState, type DetectorSettings, type FailureDetector } from "./liveness/detector.js";
import { judgeRecord } from "./liveness/record-liveness.js";
import type { PlacementGroup } from "./placement.js";
import { brokerKey, type BrokerRecord, type RegistryStore, type TopicRecord } from "./registry/store.js";
import { buildGroupViews, buildTopicRoute, countHostedPartitions, type GroupView } from "./routes.js";
import { TopicReports, groupReportsByTopic, mergeReportedPartitions } from "./topic-reports.js";
import { MAX_PARTITIONS_PER_TOPIC, isValidTopicName } from "./topic-validation.js";

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
  private readonly learnTopicsFromReports: boolean;
  private readonly reports: TopicReports;
  private readonly learningUntilMs: number;
  // Topic records are read, merged and written back; one chain keeps those steps from
  // interleaving across concurrent heartbeats and admin calls.
  private topicWrites: Promise<unknown> = Promise.resolve();
  /**
   * Topics being created through this name server. The brokers announce new partitions with
   * an immediate heartbeat, which arrives while the creation is still running: learning the
   * topic from it would record a half-known topic and make the creation collide with itself.
   */
  private readonly topicsBeingCreated = new Set<string>();
  /** Told after every mutation that may change a route (route push, see route-watch.ts). */
  private readonly routeChangeListeners = new Set<() => void>();
  /** Partitions each broker reported last, by broker key (for `sluice cluster`). */
  private readonly reportedPartitionCounts = new Map<string, number>();
  private readonly sharedLiveness: boolean;
  private readonly heartbeatIntervalMs: number;
  private readonly expiryMs: number;

  constructor(options: ClusterStateOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.learnTopicsFromReports = options.learnTopicsFromReports;
    this.sharedLiveness = options.sharedLiveness ?? false;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.expiryMs = options.expiryMs;
    this.learningUntilMs = options.learnTopicsFromReports ? options.clock.now() + (options.startupGraceMs ?? 0) : 0;
    this.detector = createFailureDetector({
      clock: options.clock,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      expiryMs: options.expiryMs,
      settings: options.detector ?? { kind: "fixed" },
    });
    this.reports = new TopicReports(options.clock, options.expiryMs);
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
    await this.applyReport(key, record.group, partitions);
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
    if (changed || this.heartbeatIsDue(known, updated)) {
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
    await this.applyReport(key, updated.group, partitions);
    return true;
  }

  async unregister(cluster: string, group: string, brokerId: number): Promise<boolean> {
    const key = brokerKey({ cluster, group, brokerId });
    this.detector.forget(key);
    this.reportedPartitionCounts.delete(key);
    this.reports.forgetBroker(key);
    const removed = await this.store.removeBroker(key);
    if (removed) this.logger.info({ group, brokerId }, "broker unregistered");
    if (removed) this.announceRouteChange();
    return removed;
  }

  /** Removes brokers silent past the expiry window, then topics nobody reports any more. */
  async sweep(): Promise<SweepResult> {
    if (this.sharedLiveness) return this.sweepSharedRecords();
    const expired: SweepResult["expired"] = [];
    for (const { key, heartbeatAgeMs, suspicion } of this.detector.sweep()) {
      const record = await this.store.getBroker(key);
      this.reportedPartitionCounts.delete(key);
      this.reports.forgetBroker(key);
      if (record === undefined || !(await this.store.removeBroker(key))) continue;
      expired.push({ record, heartbeatAgeMs });
      this.logger.warn(
        { group: record.group, brokerId: record.brokerId, address: record.address, role: record.role, heartbeatAgeMs, suspicion, detector: this.detector.kind, expiryMs: this.detector.expiryMs },
        "broker expired: silent for longer than the failure detector allows; routes recomputed without it",
      );
    }
    const forgottenTopics = this.learnTopicsFromReports ? await this.forgetUnreportedTopics() : [];
    if (expired.length > 0 || forgottenTopics.length > 0) this.announceRouteChange();
    return { expired, forgottenTopics };
  }

  /** Every registered broker with its state, including suspects and not-yet-swept dead ones. */
  async brokerStatuses(): Promise<BrokerStatusView[]> {
    const brokers = await this.store.listBrokers();
    return brokers
      .map((record) => {
        const key = brokerKey(record);
        if (this.sharedLiveness) {
          const { state, heartbeatAgeMs, suspicion } = this.judge(record);
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
      if (record === undefined) {
        const learningMs = this.learningUntilMs - this.clock.now();
        if (learningMs > 0) {
          throw new NotReadyError(
            `the name server has just started and is still learning topics from broker heartbeats; "${topic}" is not known yet, retry in ${learningMs} ms`,
          );
        }
        throw new UnknownTopicError(topic, " on this name server");
      }
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
   * Reserves a topic name for a creation running on this name server; false when one already
   * runs. Reports of the topic are ignored until `releaseTopicCreation`.
   */
  claimTopicCreation(topic: string): boolean {
    if (this.topicsBeingCreated.has(topic)) return false;
    this.topicsBeingCreated.add(topic);
    return true;
  }

  releaseTopicCreation(topic: string): void {
    this.topicsBeingCreated.delete(topic);
  }

  /** Records a topic created through this name server; false when the name is taken. */
  async recordNewTopic(record: TopicRecord): Promise<boolean> {
    return this.serialTopicWrite(async () => {
      const created = await this.store.createTopic(record);
      if (created) this.reports.topicRecorded(record.topic);
      if (created) this.announceRouteChange();
      return created;
    });
  }

  /** Removes a topic deleted through this name server; false when it was unknown. */
  async removeTopic(topic: string): Promise<boolean> {
    return this.serialTopicWrite(async () => {
      const removed = await this.store.deleteTopic(topic);
      this.reports.topicDeleted(topic);
      if (removed) this.announceRouteChange();
      return removed;
    });
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
    if (this.sharedLiveness) {
      const { state, heartbeatAgeMs } = this.judge(previous);
      if (state === "dead") return;
      throw new InvalidArgumentError(
        `broker ${claimant.group}/${claimant.brokerId} (cluster "${claimant.cluster}") is already registered by a live broker ` +
          `at ${previous.address} (${previous.leaseId === undefined ? `last heartbeat ${heartbeatAgeMs} ms ago` : `holding etcd lease ${previous.leaseId}`}); ` +
          `refusing the registration from ${claimant.address}. Give this broker another --id, or stop the other one: its name is ` +
          `free once ${previous.leaseId === undefined ? `it has been silent for the expiry window (${this.expiryMs} ms)` : "its lease has expired"}`,
      );
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
    if (!this.sharedLiveness) return record;
    const shared: BrokerRecord = { ...record, lastHeartbeatMs: this.clock.now(), reportedPartitions: partitionCount };
    if (etcdLeaseId !== "") shared.leaseId = etcdLeaseId;
    return shared;
  }

  /**
   * A shared record's heartbeat time is refreshed at most once per interval (brokers
   * heartbeat once per interval; half of it absorbs their jitter), costing one etcd write
   * per broker per interval rather than one per heartbeat to each name server.
   */
  private heartbeatIsDue(known: BrokerRecord, updated: BrokerRecord): boolean {
    if (!this.sharedLiveness) return false;
    if (known.reportedPartitions !== updated.reportedPartitions) return true;
    return (updated.lastHeartbeatMs ?? 0) - (known.lastHeartbeatMs ?? 0) >= this.heartbeatIntervalMs / 2;
  }

  private judge(record: BrokerRecord): { state: BrokerState; heartbeatAgeMs: number; suspicion: number } {
    return judgeRecord(record, this.clock.now(), { heartbeatIntervalMs: this.heartbeatIntervalMs, expiryMs: this.expiryMs });
  }

  private stateOf(record: BrokerRecord): BrokerState {
    return this.sharedLiveness ? this.judge(record).state : this.detector.state(brokerKey(record));
  }

  /**
   * Shared registry: records of leased brokers leave with their lease; a record without one is
   * removed by whichever name server sweeps first once it is older than the expiry window (the
   * name server it talked to may be the one that died).
   */
  private async sweepSharedRecords(): Promise<SweepResult> {
    for (const { key } of this.detector.sweep()) {
      this.reportedPartitionCounts.delete(key);
      this.reports.forgetBroker(key);
    }
    const expired: SweepResult["expired"] = [];
    for (const record of await this.store.listBrokers()) {
      const { state, heartbeatAgeMs } = this.judge(record);
      if (state !== "dead" || !(await this.store.removeBroker(brokerKey(record)))) continue;
      expired.push({ record, heartbeatAgeMs });
      this.logger.warn(
        { group: record.group, brokerId: record.brokerId, address: record.address, heartbeatAgeMs, expiryMs: this.expiryMs },
        "broker expired: no name server heard from it for longer than the expiry window; routes recomputed without it",
      );
    }
    if (expired.length > 0) this.announceRouteChange();
    return { expired, forgottenTopics: [] };
  }

  private async applyReport(key: string, group: string, partitions: readonly HostedPartition[]): Promise<void> {
    if (!this.learnTopicsFromReports) return;
    this.reports.recordReport(key, partitions);
    if (partitions.length === 0) return;
    await this.serialTopicWrite(async () => {
      for (const [topic, reports] of groupReportsByTopic(partitions)) {
        if (!isValidTopicName(topic) || this.topicsBeingCreated.has(topic) || this.reports.isRecentlyDeleted(topic)) continue;
        if (reports.some((r) => r.partition >= MAX_PARTITIONS_PER_TOPIC || r.partitionCount > MAX_PARTITIONS_PER_TOPIC)) continue;
        const existing = await this.store.getTopic(topic);
        const merged = mergeReportedPartitions(existing, topic, group, reports);
        if (merged === undefined) continue;
        await this.store.putTopic(merged);
        this.announceRouteChange();
        if (existing === undefined) {
          this.reports.topicRecorded(topic);
          this.logger.info({ topic, partitionCount: merged.partitionCount, group }, "topic learned from a broker report");
        }
      }
    });
  }

  private async forgetUnreportedTopics(): Promise<string[]> {
    return this.serialTopicWrite(async () => {
      const [topics, live] = await Promise.all([this.store.listTopics(), this.liveBrokers()]);
      const unreported = this.reports.unreportedTopics(topics, live, brokerKey);
      for (const topic of unreported) {
        await this.store.deleteTopic(topic);
        this.reports.topicForgotten(topic);
        this.logger.info({ topic }, "topic forgotten: no live broker reports it any more (deleted through another name server)");
      }
      return unreported;
    });
  }

  private serialTopicWrite<T>(write: () => Promise<T>): Promise<T> {
    const result = this.topicWrites.then(write);
    this.topicWrites = result.catch(() => undefined);
    return result;
  }
}

/** Validates what a broker says about itself and turns it into a registry record. */
export function toBrokerRecord(info: BrokerInfo | undefined, registeredAtMs: number): BrokerRecord {
  if (info === undefined) throw new InvalidArgumentError("the request has no broker: set `broker` to this broker's BrokerInfo");
  if (info.group === "") throw new InvalidArgumentError("the broker has no group: start it with --name GROUP");
  if (!/^[^\s:]+:\d+$/.test(info.address) && !/^\[[0-9a-fA-F:.]+\]:\d+$/.test(info.address)) {
    throw new InvalidArgumentError(`broker ${info.group}/${info.brokerId} gave address "${info.address}"; expected "host:port"`);
  }
  if (info.role !== "master" && info.role !== "slave") {
    throw new InvalidArgumentError(`broker ${info.group}/${info.brokerId} gave role "${info.role}"; expected "master" or "slave"`);
  }
  return {
    cluster: info.cluster,
    group: info.group,
    brokerId: info.brokerId,
    address: info.address,
    httpAddress: info.httpAddress,
    version: info.version,
    role: info.role,
    epoch: info.epoch,
    weight: info.weight === 0 ? 1 : info.weight,
    registeredAtMs,
  };
}

function brokerChanged(a: BrokerRecord, b: BrokerRecord): boolean {
  return (
    a.address !== b.address ||
    a.httpAddress !== b.httpAddress ||
    a.version !== b.version ||
    a.role !== b.role ||
    a.epoch !== b.epoch ||
    a.weight !== b.weight
  );
}

function compareBrokers(a: BrokerRecord, b: BrokerRecord): number {
  if (a.group !== b.group) return a.group < b.group ? -1 : 1;
  return a.brokerId - b.brokerId;
}
