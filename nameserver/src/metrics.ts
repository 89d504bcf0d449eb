/**
 * The name server's Prometheus metrics (names start with `sluice_nameserver_`). Gauges are
 * read from the cluster state when scraped, so they can never drift from what routes use.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { ClusterState } from "./cluster-state.js";

export class NameServerMetrics {
  readonly heartbeatsReceived: Counter;
  readonly brokerExpiries: Counter;
  readonly registrations: Counter;

  constructor(registry: Registry, state: ClusterState) {
    this.heartbeatsReceived = new Counter({
      name: "sluice_nameserver_heartbeats_received_total",
      help: "Broker heartbeats received (known and unknown brokers).",
      registers: [registry],
    });
    this.registrations = new Counter({
      name: "sluice_nameserver_broker_registrations_total",
      help: "Broker registrations, including re-registrations after a restart or an expiry.",
      registers: [registry],
    });
    this.brokerExpiries = new Counter({
      name: "sluice_nameserver_broker_expiries_total",
      help: "Brokers removed because no heartbeat arrived within the expiry window.",
      registers: [registry],
    });
    new Gauge({
      name: "sluice_nameserver_live_brokers",
      help: "Registered brokers not yet expired (alive or suspect).",
      registers: [registry],
      async collect() {
        const statuses = await state.brokerStatuses();
        this.set(statuses.filter((s) => s.state !== "dead").length);
      },
    });
    new Gauge({
      name: "sluice_nameserver_heartbeat_age_seconds",
      help: "Seconds since each registered broker's last heartbeat.",
      labelNames: ["group", "broker_id"],
      registers: [registry],
      async collect() {
        const statuses = await state.brokerStatuses();
        this.reset();
        for (const { record, heartbeatAgeMs } of statuses) {
          if (heartbeatAgeMs < 0) continue;
          this.set({ group: record.group, broker_id: String(record.brokerId) }, heartbeatAgeMs / 1000);
        }
      },
    });
    new Gauge({
      name: "sluice_nameserver_topics",
      help: "Topics this name server routes.",
      registers: [registry],
      async collect() {
        this.set(await state.topicCount());
      },
    });
  }
}
