/**
 * The seams of the replication data path: what it needs from a partition's commit log
 * (`ReplicaLog`, the subset of storage's PartitionLog it uses, so PartitionLog satisfies it
 * structurally), from the broker that hosts the partitions, and the replication modes.
 */
import type { ReplicaTopics, ReplicaTopic } from "../../../proto/gen/sluice/v1/replication.js";

/** One entry of a partition's leader-epoch history: the first offset written under `epoch`. */
export interface EpochStart {
  epoch: number;
  startOffset: number;
}

/** Where a consumer read may stop: the high watermark (consumers) or the log end (replication). */
export type ReadLimit = "highWatermark" | "logEnd";

export interface ReplicaReadResult {
  /** Whole batches, byte for byte as stored. */
  records: Buffer;
  nextOffset: number;
  logStartOffset: number;
  logEndOffset: number;
}

/**
 * The part of a partition's commit log that replication uses (storage's PartitionLog), opened
 * in replicated mode by its owner (LogManager's `replicated` option): its high watermark moves
 * only by `setHighWatermark`.
 */
export interface ReplicaLog {
  readonly topic: string;
  readonly partition: number;
  readonly logStartOffset: number;
  /** Next offset to write ("LEO"). */
  readonly logEndOffset: number;
  /** End of what consumers may read. */
  readonly highWatermark: number;
  /** Bytes stored (to estimate lag in bytes from offsets). */
  readonly sizeBytes: number;
  readonly leaderEpochs: { entries(): readonly EpochStart[] };
  /** Clamped to the log end; never moves back. */
  setHighWatermark(offset: number): void;
  read(offset: number, maxBytes: number, upTo?: ReadLimit): ReplicaReadResult;
  /** Whole, already stamped batches from the master, starting at the log end. */
  appendReplicated(records: Buffer): Promise<unknown>;
  /** Drops everything at and above `offset` (a divergent tail). */
  truncateTo(offset: number): Promise<unknown>;
  /** Deletes every segment and starts empty at `offset` (the master's log starts past ours). */
  resetTo(offset: number): Promise<unknown>;
  /** "logEnd" (new log end offset): bytes were written. */
  on(event: "logEnd", listener: (logEndOffset: number) => void): unknown;
  off(event: "logEnd", listener: (logEndOffset: number) => void): unknown;
}

/** A partition the broker hosts, with its log. */
export interface HostedPartition {
  topic: string;
  partition: number;
  log: ReplicaLog;
}

/** What changed in the master's topic list: created (or grown) topics, deleted topic names. */
export interface TopicsChange {
  topics: ReplicaTopic[];
  deleted: string[];
}

/** The master broker's partitions, as the replication sessions see them. */
export interface ReplicaSource {
  partitions(): HostedPartition[];
  /** Every topic the group hosts, with its configuration, for the slaves to create. */
  topics(): ReplicaTopic[];
  /** Calls `listener` after topics are created or deleted; returns the unsubscribe function. */
  onTopicsChanged(listener: (change: TopicsChange) => void): () => void;
}

/** The slave broker's partitions, as the fetcher sees them. */
export interface ReplicaHost {
  partitions(): HostedPartition[];
  /** Creates the topics the master lists (and deletes those it names as deleted). */
  applyTopics(topics: ReplicaTopics): Promise<void>;
  log(topic: string, partition: number): ReplicaLog | undefined;
}

/** When an `acks: "all"` produce is acknowledged. */
export type ReplicationMode = { kind: "async" } | { kind: "sync" } | { kind: "quorum"; k: number };

export function describeMode(mode: ReplicationMode): string {
  return mode.kind === "quorum" ? `quorum:${mode.k}` : mode.kind;
}

/** `orders/3`: how logs and messages name a partition. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}/${partition}`;
}
