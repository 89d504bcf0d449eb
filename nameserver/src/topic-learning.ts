/**
 * The topic records the name server writes itself: topics learned from broker reports and
 * forgotten once nobody reports them (in-memory store only, see topic-reports.ts), and topics
 * created or deleted through this name server's admin calls. They share one module because
 * they race: a creation's brokers report the new partitions while it still runs, and a
 * deleted topic may still be reported for a while.
 */
import type { Clock } from "../../common/src/clock.js";
import { NotReadyError, UnknownTopicError } from "../../common/src/errors.js";
import type { Logger } from "../../common/src/logger.js";
import type { HostedPartition } from "../../proto/gen/sluice/v1/nameserver.js";
import { brokerKey, type BrokerRecord, type RegistryStore, type TopicRecord } from "./registry/store.js";
import { TopicReports, groupReportsByTopic, mergeReportedPartitions } from "./topic-reports.js";
import { MAX_PARTITIONS_PER_TOPIC, isValidTopicName } from "./topic-validation.js";

export interface TopicLearningOptions {
  store: RegistryStore;
  clock: Clock;
  logger: Logger;
  expiryMs: number;
  /** See ClusterStateOptions.learnTopicsFromReports. */
  learnTopicsFromReports: boolean;
  /** See ClusterStateOptions.startupGraceMs. @defaultValue 0 */
  startupGraceMs?: number;
  /** Told after every topic write that may change a route. */
  announceRouteChange: () => void;
}

export class TopicLearning {
  private readonly store: RegistryStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly learnTopicsFromReports: boolean;
  private readonly announceRouteChange: () => void;
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

  constructor(options: TopicLearningOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.learnTopicsFromReports = options.learnTopicsFromReports;
    this.announceRouteChange = options.announceRouteChange;
    this.learningUntilMs = options.learnTopicsFromReports ? options.clock.now() + (options.startupGraceMs ?? 0) : 0;
    this.reports = new TopicReports(options.clock, options.expiryMs);
  }

  /** The error for a topic the store does not know: retriable while still learning after start. */
  unknownTopicError(topic: string): NotReadyError | UnknownTopicError {
    const learningMs = this.learningUntilMs - this.clock.now();
    if (learningMs > 0) {
      return new NotReadyError(
        `the name server has just started and is still learning topics from broker heartbeats; "${topic}" is not known yet, retry in ${learningMs} ms`,
      );
    }
    return new UnknownTopicError(topic, " on this name server");
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

  /**
   * Rewrites a topic through compare-and-swap (`change` may run more than once and may throw
   * to refuse); resolves the written record, or undefined when the topic is gone.
   */
  async updateTopic(topic: string, change: (current: TopicRecord) => TopicRecord): Promise<TopicRecord | undefined> {
    return this.serialTopicWrite(async () => {
      const updated = await this.store.updateTopic(topic, change);
      if (updated !== undefined) this.announceRouteChange();
      return updated;
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

  /** Drops what a broker (expired or unregistered) reported. */
  forgetBroker(key: string): void {
    this.reports.forgetBroker(key);
  }

  /** Learns the topics a broker of `group` reports hosting (when learning from reports). */
  async applyReport(key: string, group: string, partitions: readonly HostedPartition[]): Promise<void> {
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

  /**
   * Deletes the topics no live broker reports any more (when learning from reports) and
   * returns their names. `liveBrokers` is read inside the write chain.
   */
  async forgetUnreportedTopics(liveBrokers: () => Promise<BrokerRecord[]>): Promise<string[]> {
    if (!this.learnTopicsFromReports) return [];
    return this.serialTopicWrite(async () => {
      const [topics, live] = await Promise.all([this.store.listTopics(), liveBrokers()]);
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
