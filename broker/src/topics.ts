/**
 * The topics and partitions this broker hosts: configuration (LMDB) joined with the logs
 * (storage). Every RPC finds its partition through here, so "unknown topic" and "not
 * hosted here" are decided in one place.
 */
import {
  InvalidArgumentError,
  InvalidPartitionsError,
  InvalidTopicNameError,
  NotLeaderError,
  TopicAlreadyExistsError,
  UnknownPartitionError,
  UnknownTopicError,
} from "../../common/src/errors.js";
import { GROUP_STATE_TOPIC, isValidTopicName } from "../../common/src/protocol.js";
import type { Clock } from "../../common/src/clock.js";
import type { Logger } from "../../common/src/logger.js";
import { LogManager } from "./storage/log-manager.js";
import type { PartitionConfig, PartitionLog } from "./storage/partition-log.js";
import { TopicStore, type TopicRecord, type TopicSettings } from "./metadata/topic-store.js";
import type { BrokerOptions } from "./options.js";

export class TopicManager {
  private readonly changeListeners = new Set<(change: TopicChange) => void>();

  private constructor(
    private readonly store: TopicStore,
    readonly logs: LogManager,
    private readonly options: BrokerOptions,
  ) {}

  static async open(options: BrokerOptions, clock: Clock, logger: Logger): Promise<TopicManager> {
    const store = TopicStore.open(options.dataDir);
    const configFor = (topic: string): PartitionConfig => {
      const record = store.get(topic);
      return partitionConfig(record?.settings ?? defaultSettings(options), options);
    };
    const logs = await LogManager.open({
      dataDir: options.dataDir,
      configFor,
      flushIntervalMs: options.flushIntervalMs,
      // Every partition of a broker group is replicated, even with no slave (then the
      // master's tracker keeps the high watermark at the log end).
      replicated: true,
      clock,
      logger,
    });
    const manager = new TopicManager(store, logs, options);
    // A crash between writing the topic record and creating its log directories leaves
    // partitions without logs: create them now so the record stays the truth.
    for (const record of store.list()) {
      for (const partition of record.partitions) {
        if (!logs.get(record.topic, partition)) await logs.create(record.topic, partition, partitionConfig(record.settings, options));
      }
    }
    return manager;
  }

  /** The log of a hosted partition, or the typed error that tells the client what to do. */
  log(topic: string, partition: number): PartitionLog {
    const log = this.logs.get(topic, partition);
    if (log) return log;
    const record = this.store.get(topic);
    if (!record) throw new UnknownTopicError(topic, " on this broker");
    if (!Number.isInteger(partition) || partition < 0 || partition >= record.partitionCount) {
      throw new UnknownPartitionError(topic, partition, record.partitionCount);
    }
    throw new NotLeaderError(
      `partition ${partition} of topic "${topic}" is not hosted by this broker; refresh routes from the name server`,
    );
  }

  topic(name: string): TopicRecord | undefined {
    return this.store.get(name);
  }

  topics(): TopicRecord[] {
    return this.store.list();
  }

  /** Creates a topic's partitions on this broker; TOPIC_ALREADY_EXISTS if it has the topic. */
  async createPartitions(
    topic: string,
    partitions: number[],
    partitionCount: number,
    requested: Partial<TopicSettings>,
  ): Promise<number[]> {
    checkPartitions(topic, partitions, partitionCount);
    // Never merge into a topic this broker already has: a name server that has not heard of
    // it yet (just restarted, or another one created it) must not re-place or reconfigure
    // it, and its rollback must not delete data that was there before.
    if (this.store.get(topic)) throw new TopicAlreadyExistsError(topic);
    const settings = { ...defaultSettings(this.options), ...definedOnly(requested), ...(topic === GROUP_STATE_TOPIC ? GROUP_STATE_SETTINGS : {}) };
    const record: TopicRecord = {
      topic,
      partitionCount,
      partitions: [...new Set(partitions)].sort((a, b) => a - b),
      settings,
      createdAtMs: Date.now(),
    };
    // Record first, then logs: start-up completes a create that a crash interrupted.
    await this.store.put(record);
    const created: number[] = [];
    for (const partition of partitions) {
      if (!this.logs.get(topic, partition)) created.push(partition);
      await this.logs.create(topic, partition, partitionConfig(settings, this.options));
    }
    this.notify({ kind: "created", record });
    return created;
  }

  /**
   * Topic alter: adds `partitions` to a topic (creating it here if this broker hosts none of
   * it yet) and raises its count to `partitionCount`. Hosted partitions, their data and the
   * settings of a topic already here are left as they are, so asking twice is harmless (a
   * name server retrying a half-done alter). A count below this broker's is refused: the
   * caller's view of the topic is older than this broker's.
   */
  async growTopic(topic: string, partitions: number[], partitionCount: number, requested: Partial<TopicSettings>): Promise<GrowResult> {
    const existing = this.store.get(topic);
    if (existing === undefined) {
      const created = await this.createPartitions(topic, partitions, partitionCount, requested);
      return { created, changed: true };
    }
    checkPartitions(topic, partitions, partitionCount);
    if (partitionCount < existing.partitionCount) {
      throw new InvalidPartitionsError(
        `topic "${topic}" has ${existing.partitionCount} partitions on this broker; it cannot shrink to ${partitionCount}`,
      );
    }
    const merged: TopicRecord = {
      ...existing,
      partitionCount,
      partitions: [...new Set([...existing.partitions, ...partitions])].sort((a, b) => a - b),
    };
    const changed = merged.partitionCount !== existing.partitionCount || merged.partitions.length !== existing.partitions.length;
    if (!changed) return { created: [], changed: false };
    // Record first, then logs, as in createPartitions; slaves mirror the record (see notify).
    await this.store.put(merged);
    const created: number[] = [];
    for (const partition of merged.partitions) {
      if (this.logs.get(topic, partition)) continue;
      await this.logs.create(topic, partition, partitionConfig(merged.settings, this.options));
      created.push(partition);
    }
    this.notify({ kind: "created", record: merged });
    return { created, changed: true };
  }

  async deleteTopic(topic: string): Promise<void> {
    if (!this.store.get(topic)) throw new UnknownTopicError(topic, " on this broker");
    await this.store.delete(topic);
    await this.logs.deleteTopic(topic);
    this.notify({ kind: "deleted", topic });
  }

  /**
   * A slave mirrors its master's topics: the master's record (partitions, settings, creation
   * time) is taken as it is, and partitions this broker lacks are created empty (replication
   * then fills them). Never refuses an existing topic, unlike `createPartitions`.
   */
  async mirrorTopic(record: TopicRecord): Promise<void> {
    const existing = this.store.get(record.topic);
    const partitions = [...new Set([...(existing?.partitions ?? []), ...record.partitions])].sort((a, b) => a - b);
    const merged: TopicRecord = { ...record, partitions, createdAtMs: existing?.createdAtMs ?? record.createdAtMs };
    if (existing === undefined || JSON.stringify(existing) !== JSON.stringify(merged)) await this.store.put(merged);
    for (const partition of partitions) {
      if (!this.logs.get(record.topic, partition)) await this.logs.create(record.topic, partition, partitionConfig(merged.settings, this.options));
    }
  }

  /** Tells `listener` about every topic created, grown or deleted here; returns the unsubscribe. */
  onChange(listener: (change: TopicChange) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private notify(change: TopicChange): void {
    for (const listener of this.changeListeners) listener(change);
  }

  async close(): Promise<void> {
    await this.logs.close();
    await this.store.close();
  }
}

export interface GrowResult {
  /** Partitions whose logs were created by this call. */
  created: number[];
  /** False when the broker already had every partition and the count (nothing to announce). */
  changed: boolean;
}

export type TopicChange = { kind: "created"; record: TopicRecord } | { kind: "deleted"; topic: string };

/**
 * `%groups` keeps everything until compaction snapshots it (retention would delete committed
 * offsets for good), in small segments so compaction can free space soon after a roll.
 */
const GROUP_STATE_SETTINGS: Partial<TopicSettings> = { retentionMs: 0, retentionBytes: 0, segmentBytes: 8 * 1024 * 1024 };

export function defaultSettings(options: BrokerOptions): TopicSettings {
  return {
    retentionMs: options.retentionMs,
    retentionBytes: options.retentionBytes,
    segmentBytes: options.segmentBytes,
    maxMessageBytes: options.maxMessageBytes,
  };
}

function partitionConfig(settings: TopicSettings, options: BrokerOptions): PartitionConfig {
  return {
    segmentBytes: settings.segmentBytes,
    indexIntervalBytes: 4096,
    retentionMs: settings.retentionMs,
    retentionBytes: settings.retentionBytes,
    flush: options.flush,
  };
}

function checkPartitions(topic: string, partitions: readonly number[], partitionCount: number): void {
  // Internal `%` names pass: the name server creates `%groups` and dead-letter topics here.
  if (!isValidTopicName(topic, true)) {
    throw new InvalidTopicNameError(
      `topic name "${topic}" is invalid: use 1-249 characters from letters, digits, '.', '_' and '-'`,
    );
  }
  if (!Number.isInteger(partitionCount) || partitionCount < 1) {
    throw new InvalidArgumentError(`partition count must be a positive integer, got ${partitionCount}`);
  }
  for (const p of partitions) {
    if (!Number.isInteger(p) || p < 0 || p >= partitionCount) {
      throw new InvalidArgumentError(`partition ${p} is outside 0..${partitionCount - 1} for topic "${topic}"`);
    }
  }
}

/** Proto3 sends 0 for "unset": only positive values override the defaults. */
function definedOnly(settings: Partial<TopicSettings>): Partial<TopicSettings> {
  const out: Partial<TopicSettings> = {};
  for (const [key, value] of Object.entries(settings) as [keyof TopicSettings, number | undefined][]) {
    if (value !== undefined && value > 0) out[key] = value;
  }
  return out;
}
