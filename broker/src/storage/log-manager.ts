/**
 * All partition logs of one broker data directory (layout in logs-dir.ts), plus the duties
 * that span partitions: recovery on open, the periodic flush under the `interval` policy and
 * its recovery-point checkpoint, periodic retention, and the clean-shutdown marker.
 *
 * Durability bookkeeping: open removes the clean-shutdown marker (durably) before anything is
 * written; close writes it only after every partition flushed and the checkpoint is written.
 * A start without the marker is unclean: each partition is validated from its recovery point.
 */
import fs from "node:fs";
import path from "node:path";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { ClosedError, InvalidConfigError, InvalidTopicNameError } from "../../../common/src/errors.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import { isValidTopicName } from "../../../common/src/protocol.js";
import type { PartitionConfig } from "./config.js";
import {
  hasCleanShutdownMarker,
  listPartitionDirs,
  partitionDirName,
  partitionKey,
  readRecoveryPoints,
  removeCleanShutdownMarker,
  writeCleanShutdownMarker,
  writeRecoveryPoints,
  writeRecoveryPointsAsync,
  type RecoveryPoint,
} from "./logs-dir.js";
import { PartitionLog } from "./partition-log.js";
import { fsyncDirectory, nodeStorageIo, type StorageIo } from "./storage-io.js";

export const DEFAULT_FLUSH_INTERVAL_MS = 1000;
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 30_000;

export interface LogManagerOptions {
  dataDir: string;
  /** Settings of a partition found on disk at open. */
  configFor: (topic: string, partition: number) => PartitionConfig;
  /** How often partitions under the `interval` policy are fsynced. @defaultValue 1000 */
  flushIntervalMs?: number;
  /** How often retention runs. @defaultValue 30000 */
  retentionCheckIntervalMs?: number;
  clock?: Clock;
  logger?: Logger;
  /** Seam for the write path's file operations, passed to every partition (tests). */
  io?: StorageIo;
  /**
   * Every partition is replicated: its high watermark moves only by `setHighWatermark` and
   * starts at the log start when the log is opened or created — after a restart nothing
   * says how much of the log the group held, so consumers wait for replication to say so.
   * @defaultValue false (the high watermark is the log end)
   */
  replicated?: boolean;
}

export class LogManager {
  /** Whether open() found partitions but no clean-shutdown marker, and so ran recovery. */
  readonly recoveredUnclean: boolean;
  readonly logsDir: string;
  private readonly logs = new Map<string, PartitionLog>();
  private readonly creating = new Map<string, Promise<PartitionLog>>();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly io: StorageIo;
  private readonly replicated: boolean;
  private readonly timers: NodeJS.Timeout[] = [];
  private flushing: Promise<void> | null = null;
  private lastCheckpoint: string | null = null;
  private closed = false;

  private constructor(options: LogManagerOptions, logsDir: string, recoveredUnclean: boolean) {
    this.logsDir = logsDir;
    this.recoveredUnclean = recoveredUnclean;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.io = options.io ?? nodeStorageIo;
    this.replicated = options.replicated ?? false;
  }

  static async open(options: LogManagerOptions): Promise<LogManager> {
    const flushIntervalMs = positiveInteger("flushIntervalMs", options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS);
    const retentionCheckIntervalMs = positiveInteger("retentionCheckIntervalMs", options.retentionCheckIntervalMs ?? DEFAULT_RETENTION_CHECK_INTERVAL_MS);
    const logger = options.logger ?? silentLogger;
    const logsDir = path.join(options.dataDir, "logs");
    fs.mkdirSync(logsDir, { recursive: true });

    const partitions = listPartitionDirs(logsDir, logger);
    const clean = hasCleanShutdownMarker(logsDir);
    const recover = !clean && partitions.length > 0;
    const recoveryPoints = recover ? readRecoveryPoints(logsDir, logger) : new Map<string, number>();
    removeCleanShutdownMarker(logsDir);
    if (recover) logger.warn({ logsDir, partitions: partitions.length }, "no clean-shutdown marker: validating logs past their recovery points");

    const manager = new LogManager(options, logsDir, recover);
    for (const { topic, partition, dir } of partitions) {
      const log = await PartitionLog.open({
        dir, topic, partition, config: options.configFor(topic, partition),
        clock: manager.clock, logger: manager.logger, io: manager.io,
        recover, recoveryPoint: recoveryPoints.get(partitionKey(topic, partition)) ?? 0,
        afterRewrite: manager.checkpointAfterRewrite,
      });
      if (manager.replicated) log.setReplicated(true, log.logStartOffset);
      manager.logs.set(partitionKey(topic, partition), log);
    }
    manager.writeCheckpoint();
    manager.timers.push(
      setInterval(() => manager.flushTick(), flushIntervalMs).unref(),
      setInterval(() => manager.retentionTick(), retentionCheckIntervalMs).unref(),
    );
    logger.info({ logsDir, partitions: partitions.length, recoveredUnclean: recover }, "log manager open");
    return manager;
  }

  get(topic: string, partition: number): PartitionLog | undefined {
    return this.logs.get(partitionKey(topic, partition));
  }

  all(): PartitionLog[] {
    return [...this.logs.values()];
  }

  /** Opens the partition's log, creating its directory if needed; returns the existing one if open. */
  create(topic: string, partition: number, config: PartitionConfig): Promise<PartitionLog> {
    if (this.closed) return Promise.reject(new ClosedError("log manager"));
    if (!isValidTopicName(topic, true)) {
      return Promise.reject(new InvalidTopicNameError(`topic name "${topic}" is not a valid topic name`));
    }
    if (!Number.isSafeInteger(partition) || partition < 0) {
      return Promise.reject(new InvalidConfigError(`partition must be a non-negative integer, got ${partition}`));
    }
    const key = partitionKey(topic, partition);
    const existing = this.logs.get(key);
    if (existing) return Promise.resolve(existing);
    const pending = this.creating.get(key);
    if (pending) return pending;
    const creation = (async () => {
      const dir = path.join(this.logsDir, partitionDirName(topic, partition));
      const existed = fs.existsSync(dir);
      const log = await PartitionLog.open({
        dir, topic, partition, config, clock: this.clock, logger: this.logger, io: this.io, recover: false, afterRewrite: this.checkpointAfterRewrite,
      });
      if (!existed) fsyncDirectory(this.logsDir);
      if (this.replicated) log.setReplicated(true, log.logStartOffset);
      this.logs.set(key, log);
      return log;
    })().finally(() => this.creating.delete(key));
    this.creating.set(key, creation);
    return creation;
  }

  /** Closes and removes every partition of `topic`. */
  async deleteTopic(topic: string): Promise<void> {
    const ofTopic = `${topic} `; // partitionKey is "<topic> <partition>", and topics have no spaces
    await Promise.allSettled([...this.creating.entries()].filter(([key]) => key.startsWith(ofTopic)).map(([, pending]) => pending));
    const doomed = this.all().filter((log) => log.topic === topic);
    for (const log of doomed) this.logs.delete(partitionKey(log.topic, log.partition));
    for (const log of doomed) await log.delete();
    if (doomed.length > 0) {
      this.logger.info({ topic, partitions: doomed.length }, "deleted topic logs");
      await this.flushing; // the periodic checkpoint writes the same temporary file
      this.writeCheckpoint();
    }
  }

  /** Flushes every partition, writes the checkpoint and then the clean-shutdown marker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.flushing;
    await Promise.allSettled(this.creating.values());
    const results = await Promise.allSettled(this.all().map((log) => log.close()));
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    this.writeCheckpoint();
    if (failures.length > 0) {
      this.logger.error({ errors: failures.map((f) => String(f.reason)) }, "some partitions failed to flush; no clean-shutdown marker, the next start will validate the logs");
      return;
    }
    writeCleanShutdownMarker(this.logsDir, this.clock.now());
  }

  private flushTick(): void {
    if (this.closed || this.flushing) return;
    this.flushing = this.flushAll().finally(() => {
      this.flushing = null;
    });
  }

  /**
   * fsyncs partitions under `interval`, and `sync` ones too: their data is already on disk,
   * but their indexes are not, and the recovery point covers both.
   */
  private async flushAll(): Promise<void> {
    const due = this.all().filter((log) => log.config.flush !== "os");
    const results = await Promise.allSettled(due.map((log) => log.flush()));
    for (const result of results) {
      if (result.status === "rejected") this.logger.error({ err: result.reason }, "periodic flush failed");
    }
    try {
      const points = this.recoveryPoints();
      const text = JSON.stringify(points);
      if (text !== this.lastCheckpoint) {
        await writeRecoveryPointsAsync(this.logsDir, points);
        this.lastCheckpoint = text;
      }
    } catch (err) {
      this.logger.error({ err }, "could not write the recovery-point checkpoint");
    }
  }

  /**
   * A truncation or reset lowered a partition's recovery point: write the checkpoint now, so
   * that a crash before the next periodic flush does not start recovery from the old, higher
   * point and trust unflushed data written since. Never throws (the truncation succeeded).
   */
  private readonly checkpointAfterRewrite = async (): Promise<void> => {
    try {
      while (this.flushing) await this.flushing; // the periodic checkpoint writes the same temporary file
      if (!this.closed) this.writeCheckpoint();
    } catch (err) {
      this.logger.error({ err }, "could not write the recovery-point checkpoint after a truncation");
    }
  };

  private recoveryPoints(): RecoveryPoint[] {
    return this.all().map((log) => ({ topic: log.topic, partition: log.partition, offset: log.flushedOffset }));
  }

  private retentionTick(): void {
    if (this.closed) return;
    const nowMs = this.clock.now();
    for (const log of this.all()) {
      try {
        log.applyRetention(nowMs);
      } catch (err) {
        this.logger.error({ err, topic: log.topic, partition: log.partition }, "retention failed");
      }
    }
  }

  private writeCheckpoint(): void {
    const points = this.recoveryPoints();
    const text = JSON.stringify(points);
    if (text === this.lastCheckpoint) return;
    writeRecoveryPoints(this.logsDir, points);
    this.lastCheckpoint = text;
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidConfigError(`${name} must be a positive integer, got ${value}`);
  return value;
}
