/**
 * The broker's Prometheus metrics. Low cardinality: no per-partition labels by default
 * (`metricsPerPartition` adds them). Gauges over logs and the disk are read at scrape time.
 */
import { statfsSync } from "node:fs";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { toSluiceError } from "../../common/src/errors.js";
import type { TopicManager } from "./topics.js";

/** Seconds; from 50 µs (a read served from the page cache) to 10 s (a consumer far behind a slow replica). */
const LATENCY_BUCKETS_SECONDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/**
 * A request's outcome for availability: `ok`; `rejected` when the client was refused for its
 * own request (4xx: bad input, unknown topic, throttled, or a stale route — NOT_LEADER, which
 * the client follows to the master); `failed` when the broker could not serve it (5xx: not
 * enough replicas, shutting down, storage, timeouts).
 * Availability = ok / (ok + failed).
 */
export type RequestResult = "ok" | "rejected" | "failed";

export function requestResultOf(error: unknown): RequestResult {
  if (error === undefined) return "ok";
  return toSluiceError(error).httpStatus >= 500 ? "failed" : "rejected";
}

export interface BrokerMetricsOptions {
  /** The data directory, whose file system's free and total bytes are exported. */
  dataDir: string;
  /** Export per-partition series (end offset, size) too. */
  perPartition: boolean;
}
export class BrokerMetrics {
  readonly produceRequests: Counter<"result">;
  readonly producedMessages: Counter;
  readonly producedBytes: Counter;
  readonly produceLatency: Histogram;
  readonly fetchRequests: Counter<"kind">;
  readonly fetchedBytes: Counter;
  readonly fetchedMessages: Counter;
  readonly fetchLatency: Histogram;
  readonly endToEndLatency: Histogram;
  readonly endToEndUntimed: Counter;
  readonly requests: Counter<"api" | "result">;
  readonly activeStreams: Gauge<"kind">;

  constructor(registry: Registry, topics: () => TopicManager | undefined, options: BrokerMetricsOptions) {
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
    this.fetchedMessages = new Counter({
      name: "sluice_fetched_messages_total",
      help: "Messages served to consumers (record counts read from batch headers)",
      registers: [registry],
    });
    this.fetchLatency = new Histogram({
      name: "sluice_fetch_latency_seconds",
      help: "Time to read and send a fetch response once there is data (a long-poll's wait for data is not counted)",
      buckets: LATENCY_BUCKETS_SECONDS,
      registers: [registry],
    });
    this.endToEndLatency = new Histogram({
      name: "sluice_end_to_end_latency_seconds",
      help: "Time from a batch's append to the log to its delivery to a consumer, per batch, for batches appended in the last 30 s (older ones count in sluice_end_to_end_untimed_batches_total)",
      buckets: LATENCY_BUCKETS_SECONDS,
      registers: [registry],
    });
    this.endToEndUntimed = new Counter({
      name: "sluice_end_to_end_untimed_batches_total",
      help: "Batches delivered more than 30 s after their append (a consumer catching up), or appended before the broker started: lag, not latency, so not in the end-to-end histogram",
      registers: [registry],
    });
    this.requests = new Counter({
      name: "sluice_requests_total",
      help: "Client requests by API and result (ok, rejected: the request's own fault, failed: the broker could not serve it); availability = ok / (ok + failed)",
      labelNames: ["api", "result"],
      registers: [registry],
    });
    // The data-path series exist from the start at 0, so rate() sees their first increase.
    for (const api of ["produce", "fetch", "subscribe"]) {
      for (const result of ["ok", "rejected", "failed"] as const) this.requests.inc({ api, result }, 0);
    }
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
      name: "sluice_data_disk_free_bytes",
      help: "Bytes available to the broker on the file system of its data directory",
      registers: [registry],
      collect() {
        const stats = diskStats(options.dataDir);
        this.set(stats === undefined ? Number.NaN : stats.bavail * stats.bsize);
      },
    });
    new Gauge({
      name: "sluice_data_disk_total_bytes",
      help: "Size of the file system of the broker's data directory",
      registers: [registry],
      collect() {
        const stats = diskStats(options.dataDir);
        this.set(stats === undefined ? Number.NaN : stats.blocks * stats.bsize);
      },
    });
    if (options.perPartition) registerPartitionSeries(registry, topics);
    new Gauge({
      name: "sluice_partitions",
      help: "Partitions hosted by this broker",
      registers: [registry],
      collect() {
        this.set(topics()?.logs.all().length ?? 0);
      },
    });
  }

  /** Counts one client request of `api` (a gRPC method name), failed with `error` or not. */
  request(api: string, error?: unknown): void {
    this.requests.inc({ api, result: requestResultOf(error) });
  }
}

/**
 * The data directory's file system, or undefined when it cannot be read (unmounted, EIO): the
 * gauges then read NaN, which no alert threshold matches, instead of a collect that throws and
 * takes every other series of the scrape down with it.
 */
function diskStats(dataDir: string): { bavail: number; blocks: number; bsize: number } | undefined {
  try {
    return statfsSync(dataDir);
  } catch {
    return undefined;
  }
}

/** Per-partition series (behind `metricsPerPartition`): one per hosted partition. */
function registerPartitionSeries(registry: Registry, topics: () => TopicManager | undefined): void {
  const perLog = (name: string, help: string, value: (log: { logEndOffset: number; sizeBytes: number }) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ["topic", "partition"],
      registers: [registry],
      collect() {
        // Deleted topics must not linger.
        this.reset();
        for (const log of topics()?.logs.all() ?? []) this.set({ topic: log.topic, partition: String(log.partition) }, value(log));
      },
    });
  };
  perLog("sluice_partition_end_offset", "Log end offset per hosted partition", (log) => log.logEndOffset);
  perLog("sluice_partition_size_bytes", "Bytes on disk per hosted partition", (log) => log.sizeBytes);
}
