/**
 * Consumer-group lag as Prometheus series, computed on the broker that coordinates each group
 * (users of Kafka run an exporter for this; here `/metrics` has it):
 *
 * - sluice_consumer_group_lag_messages{group,topic}: messages between the committed position
 *   and the high watermark, summed over the topic's partitions;
 * - sluice_consumer_group_lag_seconds{group,topic}: age of the oldest unconsumed message (its
 *   batch's first timestamp), the largest over the partitions; 0 when caught up.
 *
 * Partitions hosted by other broker groups count in the messages (their masters' high
 * watermarks, see remote-end-offsets.ts) but not in the seconds, which are measured on this
 * broker's own partitions: a lower bound for a topic spread over groups, and no seconds series
 * at all for a topic none of whose partitions is here.
 *
 * One series per (group, topic): low cardinality, on by default (the contract's metrics).
 * Evaluated at scrape time, so a stopped consumer's lag grows without anyone asking.
 */
import { Gauge, type Registry } from "prom-client";
import { perScrape } from "../../../common/src/per-scrape.js";
import { lagByTopic, type GroupPartitionLag, type GroupTopicLag } from "./offsets.js";

export interface GroupLagSources {
  /** Lag of every group coordinated here, per partition (GroupOffsets.lagByGroupPartition). */
  byPartition: () => Promise<GroupPartitionLag[]>;
  /** Adds sluice_consumer_group_partition_lag_messages{group,topic,partition} (metricsPerPartition). */
  perPartition: boolean;
}

export function registerGroupLagMetrics(registry: Registry, sources: GroupLagSources): void {
  // Every gauge reads one computation per scrape: the first collect starts it, the others
  // reuse it (each computation reads the logs and may ask other masters).
  const readPartitions = perScrape(sources.byPartition);
  const read = async (): Promise<GroupTopicLag[]> => lagByTopic(await readPartitions());
  const gauge = (name: string, help: string, value: (entry: GroupTopicLag) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ["group", "topic"],
      registers: [registry],
      async collect() {
        const entries = await read().catch(() => []);
        // Groups come and go: a deleted group's series must not linger.
        this.reset();
        for (const entry of entries) {
          const measured = value(entry);
          // Unknown (-1): no series rather than a number that reads as "caught up".
          if (measured >= 0) this.set({ group: entry.group, topic: entry.topic }, measured);
        }
      },
    });
  };
  gauge("sluice_consumer_group_lag_messages", "Messages a consumer group has not consumed yet, per topic (high watermark minus committed offset, summed over partitions)", (e) => e.messages);
  gauge("sluice_consumer_group_lag_seconds", "Age of the oldest message a consumer group has not consumed yet, per topic (0 when caught up; measured on the partitions this broker hosts)", (e) => e.seconds);
  if (!sources.perPartition) return;
  new Gauge({
    name: "sluice_consumer_group_partition_lag_messages",
    help: "Messages a consumer group has not consumed yet, per partition (metricsPerPartition)",
    labelNames: ["group", "topic", "partition"],
    registers: [registry],
    async collect() {
      const entries = await readPartitions().catch(() => []);
      this.reset();
      for (const e of entries) this.set({ group: e.group, topic: e.topic, partition: String(e.partition) }, e.messages);
    },
  });
}
