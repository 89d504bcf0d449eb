/**
 * Queue groups as Prometheus series, one per group (low cardinality):
 *
 * - sluice_queue_in_flight_messages{group}: leased to a consumer and not yet acked (gauge);
 * - sluice_queue_redelivered_total{group}: leases handed back for another delivery, nacked or
 *   expired (counter);
 * - sluice_queue_dead_lettered_total{group}: messages moved to the group's dead-letter topic
 *   (counter);
 * - sluice_queue_dead_letters{group}: dead letters waiting in the group's dead-letter topic,
 *   not yet redriven (gauge; what a "DLQ growing" alert watches, and it survives restarts,
 *   unlike the counters).
 *
 * Only the broker that coordinates a group (its master) reports it, so nothing is counted twice.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { DLQ_TOPIC_PREFIX } from "../../../common/src/protocol.js";
import type { TopicManager } from "../topics.js";
import type { QueueGroupView } from "./offsets.js";
import type { QueueCounters } from "./queue-topic.js";

export interface QueueMetricsSources {
  queues: () => QueueGroupView | undefined;
  topics: () => TopicManager | undefined;
  /** Slaves host the dead-letter topics too; only the master reports them. */
  isMaster: () => boolean;
  /** A group's committed offset on a partition: redrive moves it past the letters sent back. */
  committedOffset: (group: string, topic: string, partition: number) => number | undefined;
  /** Resolves once the group state this master coordinates is loaded (after a restart or failover). */
  loaded: () => Promise<unknown>;
}

export function registerQueueMetrics(registry: Registry, sources: QueueMetricsSources): QueueCounters {
  const { queues, topics, isMaster, committedOffset, loaded } = sources;
  const redelivered = new Counter({
    name: "sluice_queue_redelivered_total",
    help: "Queue leases handed back for another delivery (nacked, or expired before an ack)",
    labelNames: ["group"],
    registers: [registry],
  });
  const deadLettered = new Counter({
    name: "sluice_queue_dead_lettered_total",
    help: "Queue messages moved to their group's dead-letter topic after too many deliveries",
    labelNames: ["group"],
    registers: [registry],
  });
  new Gauge({
    name: "sluice_queue_in_flight_messages",
    help: "Queue messages leased to a consumer and not yet acknowledged",
    labelNames: ["group"],
    registers: [registry],
    collect() {
      this.reset();
      const view = queues();
      if (view === undefined) return;
      for (const group of view.groupNames()) {
        const partitions = view.partitions(group);
        if (partitions.length === 0) continue;
        this.set({ group }, partitions.reduce((sum, p) => sum + p.inFlight, 0));
      }
    },
  });
  new Gauge({
    name: "sluice_queue_dead_letters",
    help: "Messages in each queue group's dead-letter topic (hosted on this master)",
    labelNames: ["group"],
    registers: [registry],
    async collect() {
      // Committed offsets come from group state: before it is loaded every letter already
      // redriven would count again (and a "DLQ growing" alert would fire on the restart).
      const ready = isMaster() ? await loaded().then(() => true, () => false) : false;
      this.reset();
      if (!ready) return;
      for (const log of topics()?.logs.all() ?? []) {
        if (!log.topic.startsWith(DLQ_TOPIC_PREFIX)) continue;
        const group = log.topic.slice(DLQ_TOPIC_PREFIX.length);
        // What `sluice dlq list` shows: from the group's offset on its DLQ (past what was redriven) to the end.
        const from = Math.max(log.logStartOffset, committedOffset(group, log.topic, log.partition) ?? 0);
        this.inc({ group }, Math.max(0, log.highWatermark - from));
      }
    },
  });
  return {
    redelivered: (group, count) => redelivered.inc({ group }, count),
    deadLettered: (group, count) => deadLettered.inc({ group }, count),
  };
}
