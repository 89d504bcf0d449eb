/** What the admin API returns, as plain JSON-friendly objects, and the conversions from the wire. */
import type { TopicConfig } from "../../../proto/gen/sluice/v1/common.js";
import type { BrokerStatus, PartitionRoute, TopicRoute } from "../../../proto/gen/sluice/v1/nameserver.js";

export interface CreateTopicOptions {
  /** Number of partitions, 1 to 10000. @defaultValue 1 */
  partitions?: number;
  /** Broker groups to place the partitions on. @defaultValue placement chosen by the name server */
  brokers?: string[];
  /** Delete segments older than this, in ms; 0 keeps them for ever. @defaultValue 0 */
  retentionMs?: number;
  /** Per partition: delete the oldest segments beyond this size; 0 = no limit. @defaultValue 0 */
  retentionBytes?: number;
}

export interface TopicSettings {
  /** 0 = keep for ever. */
  retentionMs: number;
  /** Per partition; 0 = no size limit. */
  retentionBytes: number;
  /** 0 = the broker's default. */
  segmentBytes: number;
  /** Largest batch accepted; 0 = the broker's default. */
  maxMessageBytes: number;
}

export interface PartitionPlacement {
  partition: number;
  /** The broker group holding the partition. */
  group: string;
  /** gRPC address of the group's master; null while the group has no live master. */
  master: string | null;
  /** Broker id of the master inside its group; null without a master. */
  masterId: number | null;
  /** gRPC addresses of the group's live slaves. */
  slaves: string[];
  epoch: number;
}

/** A topic as listed: its partition count, settings and where each partition lives. */
export interface TopicInfo {
  topic: string;
  partitions: number;
  config: TopicSettings;
  placement: PartitionPlacement[];
}

/**
 * A partition's placement plus its log, as its master reports it. The log fields are -1
 * (as Kafka's tools print unknown offsets) when the master could not report; `error` says why.
 */
export interface PartitionDetails extends PartitionPlacement {
  startOffset: number;
  endOffset: number;
  highWatermark: number;
  sizeBytes: number;
  segments: number;
  /** Why the log fields are -1, when they are. */
  error?: string;
}

export interface TopicDescription {
  topic: string;
  config: TopicSettings;
  partitions: PartitionDetails[];
}

/** One broker as `sluice cluster` shows it. */
export interface ClusterBroker {
  group: string;
  id: number;
  role: string;
  /** "alive" | "suspect" | "dead" */
  state: string;
  epoch: number;
  address: string;
  /** HTTP host:port (REST admin API, /metrics, WebSocket). */
  httpAddress: string;
  /** -1 when the name server answering never heard from this broker itself. */
  heartbeatAgeMs: number;
  /** Partitions the broker reported hosting in its latest heartbeat. */
  partitions: number;
  /**
   * The name server's failure detector's suspicion: φ with `--detector phi` (suspect from the
   * φ threshold, 8 by default), missed heartbeat intervals with the fixed detector; -1 unknown.
   */
  suspicion: number;
  /** A slave: in its master's in-sync set (null for masters and while its master has not reported it). */
  inSync: boolean | null;
  /** A slave: how long ago it was last caught up, as its master reports it; null when unknown. */
  lagMs: number | null;
  /** A slave: bytes behind its master; null when unknown. */
  lagBytes: number | null;
}

export interface ClusterInfo {
  brokers: ClusterBroker[];
}

export function toSettings(config: TopicConfig | undefined): TopicSettings {
  return {
    retentionMs: config?.retentionMs ?? 0,
    retentionBytes: config?.retentionBytes ?? 0,
    segmentBytes: config?.segmentBytes ?? 0,
    maxMessageBytes: config?.maxMessageBytes ?? 0,
  };
}

export function toPlacement(route: PartitionRoute): PartitionPlacement {
  return {
    partition: route.partition,
    group: route.group,
    master: route.master?.address || null,
    masterId: route.master?.address ? route.master.brokerId : null,
    slaves: route.slaves.map((slave) => slave.address),
    epoch: route.epoch,
  };
}

export function toTopicInfo(route: TopicRoute): TopicInfo {
  const partitions = [...route.partitions].sort((a, b) => a.partition - b.partition).map(toPlacement);
  return { topic: route.topic, partitions: partitions.length, config: toSettings(route.config), placement: partitions };
}

export function toClusterBroker(status: BrokerStatus): ClusterBroker {
  const broker = status.broker;
  return {
    group: broker?.group ?? "",
    id: broker?.brokerId ?? 0,
    role: broker?.role ?? "",
    state: status.state,
    epoch: broker?.epoch ?? 0,
    address: broker?.address ?? "",
    httpAddress: broker?.httpAddress ?? "",
    heartbeatAgeMs: status.heartbeatAgeMs,
    partitions: status.partitionCount,
    suspicion: status.suspicion,
    inSync: status.replication?.inSync ?? null,
    lagMs: status.replication?.lagMs ?? null,
    lagBytes: status.replication?.lagBytes ?? null,
  };
}
