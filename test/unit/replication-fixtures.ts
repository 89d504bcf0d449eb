/**
 * Helpers for the replication tests: a master and a slave broker reduced to their logs (Maps
 * of real PartitionLogs in temp directories), a grpc-js server on 127.0.0.1:0 serving the
 * master's ReplicaSessions, and comparisons of segment files byte for byte.
 */
import fs from "node:fs";
import path from "node:path";
import { Server, ServerCredentials, type ServerDuplexStream } from "@grpc/grpc-js";
import { silentLogger } from "../../common/src/logger.js";
import { MAX_GRPC_MESSAGE_BYTES } from "../../common/src/protocol.js";
import { ReplicationService, type ReplicaRequest, type ReplicaResponse, type ReplicaTopic, type ReplicaTopics } from "../../proto/gen/sluice/v1/replication.js";
import { PartitionLog, type PartitionConfig } from "../../broker/src/storage/partition-log.js";
import { ReplicaFetcher, type ReplicaFetcherOptions } from "../../broker/src/replication/fetcher.js";
import { ReplicaSessions, type ReplicaSessionsOptions } from "../../broker/src/replication/sessions.js";
import { ReplicaTracker, type ReplicaTrackerOptions } from "../../broker/src/replication/tracker.js";
import type { HostedPartition, ReplicaHost, ReplicaLog, ReplicaSource, TopicsChange } from "../../broker/src/replication/types.js";
import { systemClock } from "../../common/src/clock.js";
import { makeBatch, tempDir, testConfig } from "./storage-fixtures.js";

/** A broker's partitions: real logs under one temp directory, keyed "topic/partition". */
export class LogSet {
  readonly logs = new Map<string, PartitionLog>();
  private readonly listeners = new Set<(change: TopicsChange) => void>();

  constructor(
    readonly dir: string,
    readonly config: PartitionConfig,
  ) {}

  partitionDir(topic: string, partition: number): string {
    return path.join(this.dir, `${topic}-${partition}`);
  }

  async open(topic: string, partition: number): Promise<PartitionLog> {
    const key = `${topic}/${partition}`;
    const existing = this.logs.get(key);
    if (existing) return existing;
    const log = await PartitionLog.open({ dir: this.partitionDir(topic, partition), topic, partition, config: this.config, recover: false });
    // As the broker's LogManager opens them (`replicated: true`).
    log.setReplicated(true, log.logStartOffset);
    this.logs.set(key, log);
    return log;
  }

  get(topic: string, partition: number): PartitionLog {
    const log = this.logs.get(`${topic}/${partition}`);
    if (!log) throw new Error(`no log ${topic}/${partition}`);
    return log;
  }

  partitions(): HostedPartition[] {
    return [...this.logs.values()].map((log) => ({ topic: log.topic, partition: log.partition, log: log as ReplicaLog }));
  }

  topics(): ReplicaTopic[] {
    const byTopic = new Map<string, number[]>();
    for (const log of this.logs.values()) byTopic.set(log.topic, [...(byTopic.get(log.topic) ?? []), log.partition]);
    return [...byTopic].map(([topic, partitions]) => ({
      topic,
      partitionCount: Math.max(...partitions) + 1,
      partitions: partitions.sort((a, b) => a - b),
      config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 },
    }));
  }

  /** Master side: creates a topic's partitions and tells the replication sessions. */
  async createTopic(topic: string, partitions: number[]): Promise<void> {
    for (const partition of partitions) await this.open(topic, partition);
    const change = { topics: this.topics().filter((t) => t.topic === topic), deleted: [] };
    for (const listener of this.listeners) listener(change);
  }

  /** Master side: deletes a topic's logs and tells the replication sessions. */
  async deleteTopic(topic: string): Promise<void> {
    for (const log of [...this.logs.values()].filter((l) => l.topic === topic)) {
      this.logs.delete(`${log.topic}/${log.partition}`);
      await log.delete();
    }
    const change = { topics: [], deleted: [topic] };
    for (const listener of this.listeners) listener(change);
  }

  /** As a master: the ReplicaSource the sessions read. */
  asSource(): ReplicaSource {
    return {
      partitions: () => this.partitions(),
      topics: () => this.topics(),
      onTopicsChanged: (listener) => {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
      },
    };
  }

  /** As a slave: the ReplicaHost the fetcher applies topics to. */
  asHost(): ReplicaHost {
    return {
      partitions: () => this.partitions(),
      log: (topic, partition) => this.logs.get(`${topic}/${partition}`),
      applyTopics: async (topics: ReplicaTopics) => {
        for (const topic of topics.deleted) await this.deleteTopic(topic);
        for (const topic of topics.topics) for (const partition of topic.partitions) await this.open(topic.topic, partition);
      },
    };
  }

  async close(): Promise<void> {
    for (const log of this.logs.values()) await log.close();
  }
}

/** Appends `count` batches of `recordsPerBatch` records and `payloadBytes` each, under `epoch`. */
export async function appendBatches(log: PartitionLog, count: number, options: { epoch?: number; payloadBytes?: number; records?: number; seed?: number } = {}): Promise<number> {
  let last = -1;
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const batch = makeBatch({ records: options.records ?? 2, payloadBytes: options.payloadBytes ?? 200, seed: (options.seed ?? 0) * 100_000 + log.logEndOffset + i });
    pending.push(log.append(batch, options.epoch ?? 1).then((r) => (last = Math.max(last, r.lastOffset))));
  }
  await Promise.all(pending);
  return last;
}

/** Every `.log` segment file of a partition directory, by name. */
export function segmentFiles(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of fs.readdirSync(dir).sort()) if (name.endsWith(".log")) files.set(name, fs.readFileSync(path.join(dir, name)));
  return files;
}

export interface Cluster {
  master: LogSet;
  slave: LogSet;
  tracker: ReplicaTracker;
  sessions: ReplicaSessions;
  address: string;
  /** Closes the sessions (every stream ends) and serves new ones, as a master restart would. */
  restartSessions(): Promise<void>;
  fetcher(overrides?: Partial<ReplicaFetcherOptions>): ReplicaFetcher;
  cleanup(): Promise<void>;
}

export interface ClusterOptions {
  config?: Partial<PartitionConfig>;
  tracker?: Partial<ReplicaTrackerOptions>;
  sessions?: Partial<ReplicaSessionsOptions>;
  /** Fills the master's logs before the sessions start. */
  prepare?: (master: LogSet, slave: LogSet) => Promise<void>;
  epoch?: number;
}

/** A master (logs + tracker + sessions behind a real gRPC server) and a slave's empty logs. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const masterDir = tempDir();
  const slaveDir = tempDir();
  const config = testConfig({ flush: "os", ...options.config });
  const master = new LogSet(masterDir.dir, config);
  const slave = new LogSet(slaveDir.dir, config);
  await options.prepare?.(master, slave);
  const epoch = options.epoch ?? 1;
  const tracker = new ReplicaTracker({
    group: "b1",
    mode: { kind: "async" },
    minInSyncSlaves: 0,
    maxSlaveLagMs: 10_000,
    recordInSync: async () => {},
    clock: systemClock,
    logger: silentLogger,
    ...options.tracker,
  });
  const newSessions = () =>
    new ReplicaSessions({
      group: "b1",
      brokerId: 0,
      epoch: () => epoch,
      isMaster: () => true,
      logs: master.asSource(),
      tracker,
      ...options.sessions,
    });
  let sessions = newSessions();
  const server = new Server({ "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES, "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES });
  server.addService(ReplicationService, {
    replicate: (call: ServerDuplexStream<ReplicaRequest, ReplicaResponse>) => cluster.sessions.handle(call),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  const address = `127.0.0.1:${port}`;
  const fetchers: ReplicaFetcher[] = [];
  const ticker = setInterval(() => tracker.tick(), 100);
  const cluster: Cluster = {
    master,
    slave,
    tracker,
    sessions,
    address,
    async restartSessions() {
      await sessions.close();
      sessions = newSessions();
      cluster.sessions = sessions;
    },
    fetcher(overrides = {}) {
      const fetcher = new ReplicaFetcher({ group: "b1", brokerId: 1, host: slave.asHost(), reconnectBackoffMs: 50, ...overrides });
      fetchers.push(fetcher);
      return fetcher;
    },
    async cleanup() {
      clearInterval(ticker);
      for (const fetcher of fetchers) await fetcher.stop();
      await sessions.close();
      tracker.close();
      server.forceShutdown();
      await master.close();
      await slave.close();
      masterDir.cleanup();
      slaveDir.cleanup();
    },
  };
  return cluster;
}

/** Polls until `predicate` holds; fails with `what` after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
