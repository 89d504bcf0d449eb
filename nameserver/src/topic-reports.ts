/**
 * Topics as the brokers report them, for a name server whose registry is rebuilt from
 * heartbeats (the in-memory store). RocketMQ's name servers work the same way: every broker
 * registers with every name server and lists what it hosts, so a topic created through one
 * name server reaches the others with the next heartbeat, and a restarted name server knows
 * every topic again one heartbeat after it comes back.
 *
 * Three rules:
 *  - learn: a reported partition of a topic the store does not know adds the topic; a reported
 *    partition whose slot is still empty fills it (the store wins over reports otherwise);
 *  - forget: a topic that no live broker reports any more was deleted through another name
 *    server, and is dropped — but only after a grace period since this name server first
 *    recorded it (a heartbeat built before the broker created the partitions may still be in
 *    flight) and only while a broker of one of its groups is alive to vouch for its absence
 *    (a topic whose brokers are all down keeps its record; its data still exists);
 *  - tombstone: a topic deleted through this name server is ignored in reports for the grace
 *    period, so a heartbeat sent just before the broker deleted it does not bring it back.
 */
import type { Clock } from "../../common/src/clock.js";
import type { HostedPartition } from "../../proto/gen/sluice/v1/nameserver.js";
import type { BrokerRecord, TopicRecord } from "./registry/store.js";

export const EMPTY_TOPIC_CONFIG = { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } as const;

/** Groups reports by topic, keeping the order in which topics first appear. */
export function groupReportsByTopic(partitions: readonly HostedPartition[]): Map<string, HostedPartition[]> {
  const byTopic = new Map<string, HostedPartition[]>();
  for (const partition of partitions) {
    const list = byTopic.get(partition.topic);
    if (list === undefined) byTopic.set(partition.topic, [partition]);
    else list.push(partition);
  }
  return byTopic;
}

/**
 * Applies one group's report for one topic to the stored record. Returns the updated record,
 * or undefined when the report adds nothing (the common case: one heartbeat per second).
 */
export function mergeReportedPartitions(
  existing: TopicRecord | undefined,
  topic: string,
  group: string,
  reports: readonly HostedPartition[],
): TopicRecord | undefined {
  let partitionCount = existing?.partitionCount ?? 0;
  for (const report of reports) {
    partitionCount = Math.max(partitionCount, report.partitionCount, report.partition + 1);
  }
  const assignment = existing === undefined ? [] : [...existing.assignment];
  while (assignment.length < partitionCount) assignment.push("");
  let changed = existing === undefined || partitionCount !== existing.partitionCount;
  for (const report of reports) {
    if (assignment[report.partition] === "") {
      assignment[report.partition] = group;
      changed = true;
    }
  }
  if (!changed) return undefined;
  const config = existing?.config ?? { ...EMPTY_TOPIC_CONFIG, ...reports.find((r) => r.config)?.config };
  return { topic, partitionCount, assignment, config };
}

export class TopicReports {
  /** Topics each broker listed in its latest register or heartbeat. */
  private readonly topicsByBroker = new Map<string, Set<string>>();
  /** When this name server first recorded each topic (created here or learned). */
  private readonly recordedAtMs = new Map<string, number>();
  /** Topics deleted through this name server, and when. */
  private readonly deletedAtMs = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    /** How long a fresh topic is safe from being forgotten, and a deleted one stays deleted. */
    private readonly graceMs: number,
  ) {}

  /** Remembers what a broker hosts now (replacing its previous report). */
  recordReport(brokerKey: string, partitions: readonly HostedPartition[]): void {
    this.topicsByBroker.set(brokerKey, new Set(partitions.map((p) => p.topic)));
  }

  forgetBroker(brokerKey: string): void {
    this.topicsByBroker.delete(brokerKey);
  }

  topicRecorded(topic: string): void {
    this.recordedAtMs.set(topic, this.clock.now());
    this.deletedAtMs.delete(topic);
  }

  topicDeleted(topic: string): void {
    this.recordedAtMs.delete(topic);
    this.deletedAtMs.set(topic, this.clock.now());
  }

  /** The topic was dropped because nobody reports it: nothing to remember about it. */
  topicForgotten(topic: string): void {
    this.recordedAtMs.delete(topic);
  }

  /** True while reports of `topic` must be ignored because it was just deleted here. */
  isRecentlyDeleted(topic: string): boolean {
    const deletedAt = this.deletedAtMs.get(topic);
    if (deletedAt === undefined) return false;
    if (this.clock.now() - deletedAt > this.graceMs) {
      this.deletedAtMs.delete(topic);
      return false;
    }
    return true;
  }

  /** Topics no live broker reports any more, by the rules in the header. */
  unreportedTopics(topics: readonly TopicRecord[], liveBrokers: readonly BrokerRecord[], keyOf: (b: BrokerRecord) => string): string[] {
    const now = this.clock.now();
    const reported = new Set<string>();
    const liveGroups = new Set<string>();
    for (const broker of liveBrokers) {
      liveGroups.add(broker.group);
      for (const topic of this.topicsByBroker.get(keyOf(broker)) ?? []) reported.add(topic);
    }
    const unreported: string[] = [];
    for (const topic of topics) {
      if (reported.has(topic.topic)) continue;
      const recordedAt = this.recordedAtMs.get(topic.topic);
      if (recordedAt === undefined) {
        // Recorded before this process knew it (a shared store): start its grace period now.
        this.recordedAtMs.set(topic.topic, now);
        continue;
      }
      if (now - recordedAt <= this.graceMs) continue;
      if (!topic.assignment.some((group) => liveGroups.has(group))) continue;
      unreported.push(topic.topic);
    }
    return unreported;
  }
}
