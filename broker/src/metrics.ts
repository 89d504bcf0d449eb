/** The broker's Prometheus metrics. Low cardinality: no per-partition labels by default. */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { TopicManager } from "./topics.js";

export class BrokerMetrics {
  readonly produceRequests: Counter<"result">;
  readonly producedMessages: Counter;
  readonly producedBytes: Counter;
  readonly produceLatency: Histogram;
  readonly fetchRequests: Counter<"kind">;
  readonly fetchedBytes: Counter;
  readonly activeStreams: Gauge<"kind">;

  constructor(registry: Registry, topics: () => TopicManager | undefined) {
    this.produceRequests = new Counter({
      name: "sluice_produce_requests_total",
      help: "Produce requests (one batch each) by result",
      labelNames: ["result"],
      registers: [registry],
    });
    this.producedMessages = new Counter({
      name: "sluice_produced_messages_total",
      help: "Messages appended to logs",
      registers: [registry],
    });
    this.producedBytes = new Counter({
      name: "sluice_produced_bytes_total",
      help: "Batch bytes appended to logs",
      registers: [registry],
    });
    this.produceLatency = new Histogram({
      name: "sluice_produce_latency_seconds",
      help: "Time from receiving a batch to acknowledging it",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    });
    this.fetchRequests = new Counter({
      name: "sluice_fetch_responses_total",
      help: "Fetch responses sent, by kind (long-poll or subscribe stream)",
      labelNames: ["kind"],
      registers: [registry],
    });
    this.fetchedBytes = new Counter({
      name: "sluice_fetched_bytes_total",
      help: "Stored batch bytes served to consumers",
      registers: [registry],
    });
    this.activeStreams = new Gauge({
      name: "sluice_active_streams",
      help: "Open produce and subscribe streams",
      labelNames: ["kind"],
      registers: [registry],
    });
    new Gauge({
      name: "sluice_log_size_bytes",
      help: "Bytes on disk across all hosted partitions",
      registers: [registry],
      collect() {
        const manager = topics();
        this.set(manager ? manager.logs.all().reduce((sum, log) => sum + log.sizeBytes, 0) : 0);
      },
    });
    new Gauge({
      name: "sluice_log_segments",
      help: "Segment files across all hosted partitions",
      registers: [registry],
      collect() {
        const manager = topics();
        this.set(manager ? manager.logs.all().reduce((sum, log) => sum + log.segmentCount, 0) : 0);
      },
    });
    new Gauge({
      name: "sluice_partitions",
      help: "Partitions hosted by this broker",
      registers: [registry],
      collect() {
        this.set(topics()?.logs.all().length ?? 0);
      },
    });
  }
}
