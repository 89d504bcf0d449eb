/**
 * The name server's view of the cluster: registered brokers with their liveness, topics, and
 * the routes derived from both. The gRPC service and the sweep timer are its only callers.
 *
 * Brokers and topics live in the RegistryStore; liveness lives in the LivenessDetector (each
 * name server judges it from the heartbeats it receives). With the in-memory store, topics are
 * also learned from and forgotten by broker reports (see topic-reports.ts).
 */
import type { Clock } from "../../common/src/clock.js";
import { InvalidArgumentError, NotReadyError, UnknownTopicError } from "../../common/src/errors.js";
import type { Logger } from "../../common/src/logger.js";
import type { BrokerInfo, HostedPartition, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import { LivenessDetector, type BrokerState } from "./liveness/detector.js";
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
}

export interface BrokerStatusView {
  record: BrokerRecord;
  state: BrokerState;
  heartbeatAgeMs: number;
}

export interface SweepResult {
  expired: Array<{ record: BrokerRecord; heartbeatAgeMs: number }>;
  forgottenTopics: string[];
}

export class ClusterState {
  readonly detector: LivenessDetector;
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

  constructor(options: ClusterStateOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.learnTopicsFromReports = options.learnTopicsFromReports;
    this.learningUntilMs = options.learnTopicsFromReports ? options.clock.now() + (options.startupGraceMs ?? 0) : 0;
    this.detector = new LivenessDetector(options);
    this.reports = new TopicReports(options.clock, options.expiryMs);
  }

  /** Records a broker (new, or registering again after a restart or an expiry). */
  async register(info: BrokerInfo | undefined, partitions: readonly HostedPartition[]): Promise<BrokerRecord> {
    const record = toBrokerRecord(info, this.clock.now());
    const key = brokerKey(record);
    const previous = await this.store.getBroker(key);
    await this.store.putBroker(record);
    this.detector.heartbeat(key);
    this.logger.info(
      { group: record.group, brokerId: record.brokerId, address: record.address, role: record.role, epoch: record.epoch, again: previous !== undefined },
      "broker registered",
    );
    await this.applyReport(key, record.group, partitions);
    return record;
  }

  /**
   * Records a heartbeat. Returns false for a broker this name server does not know (it
   * restarted, or expired the broker): the broker must register again.
   */
  async heartbeat(info: BrokerInfo | undefined, partitions: readonly HostedPartition[]): Promise<boolean> {
    const reported = toBrokerRecord(info, this.clock.now());
    const key = brokerKey(reported);
    const known = await this.store.getBroker(key);
    if (known === undefined || !this.detector.isTracked(key)) return false;
    this.detector.heartbeat(key);
    const updated: BrokerRecord = { ...reported, registeredAtMs: known.registeredAtMs };
    if (brokerChanged(known, updated)) {
      await this.store.putBroker(updated);
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
    this.reports.forgetBroker(key);
    const removed = await this.store.removeBroker(key);
    if (removed) this.logger.info({ group, brokerId }, "broker unregistered");
    return removed;
  }

  /** Removes brokers silent past the expiry window, then topics nobody reports any more. */
  async sweep(): Promise<SweepResult> {
    const expired: SweepResult["expired"] = [];
    for (const { key, heartbeatAgeMs } of this.detector.sweep()) {
      const record = await this.store.getBroker(key);
      this.reports.forgetBroker(key);
      if (record === undefined || !(await this.store.removeBroker(key))) continue;
      expired.push({ record, heartbeatAgeMs });
      this.logger.warn(
        { group: record.group, brokerId: record.brokerId, address: record.address, role: record.role, heartbeatAgeMs, expiryMs: this.detector.expiryMs },
        "broker expired: no heartbeat within the expiry window; routes recomputed without it",
      );
    }
    const forgottenTopics = this.learnTopicsFromReports ? await this.forgetUnreportedTopics() : [];
    return { expired, forgottenTopics };
  }

  /** Every registered broker with its state, including suspects and not-yet-swept dead ones. */
  async brokerStatuses(): Promise<BrokerStatusView[]> {
    const brokers = await this.store.listBrokers();
    return brokers
      .map((record) => {
        const key = brokerKey(record);
        return { record, state: this.detector.state(key), heartbeatAgeMs: this.detector.heartbeatAgeMs(key) ?? -1 };
      })
      .sort((a, b) => compareBrokers(a.record, b.record));
  }

  /** Brokers that may be routed to: alive or suspect. */
  async liveBrokers(): Promise<BrokerRecord[]> {
    const brokers = await this.store.listBrokers();
    return brokers.filter((record) => this.detector.state(brokerKey(record)) !== "dead").sort(compareBrokers);
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
      return created;
    });
  }

  /** Removes a topic deleted through this name server; false when it was unknown. */
  async removeTopic(topic: string): Promise<boolean> {
    return this.serialTopicWrite(async () => {
      const removed = await this.store.deleteTopic(topic);
      this.reports.topicDeleted(topic);
      return removed;
    });
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
