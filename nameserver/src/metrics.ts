/**
 * The name server's Prometheus metrics (names start with `sluice_nameserver_`). Gauges are
 * read from the cluster state when scraped, so they can never drift from what routes use.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { perScrape } from "../../common/src/per-scrape.js";
import type { ClusterState } from "./cluster-state.js";


/** Every state a broker can be in, so each series exists (at 0) before it is needed. */
const BROKER_STATES = ["alive", "suspect", "dead"] as const;

export class NameServerMetrics {
  readonly heartbeatsReceived: Counter;
  readonly brokerExpiries: Counter<"group" | "broker_id">;
  readonly registrations: Counter;

  constructor(registry: Registry, state: ClusterState) {
    // One read of the registry per scrape: the four per-broker gauges describe one instant. A
    // registry that cannot be read (etcd unreachable) leaves the per-broker series out of that
    // scrape instead of failing /metrics (under `sluice dev`, the broker's series too).
    const readStatuses = perScrape(() => state.brokerStatuses());
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
      help: "Brokers removed because no heartbeat arrived within the expiry window, per broker.",
      labelNames: ["group", "broker_id"],
      registers: [registry],
    });
    new Gauge({
      name: "sluice_nameserver_live_brokers",
      help: "Registered brokers not yet expired (alive or suspect).",
      registers: [registry],
      async collect() {
        // NaN, not 0, when the registry cannot be read: "no live brokers" would be an alarm.
        const read = await readStatuses().catch(() => undefined);
        this.set(read === undefined ? Number.NaN : read.filter((s) => s.state !== "dead").length);
      },
    });
    new Gauge({
      name: "sluice_nameserver_heartbeat_age_seconds",
      help: "Seconds since each registered broker's last heartbeat.",
      labelNames: ["group", "broker_id"],
      registers: [registry],
      async collect() {
        const statuses = await readStatuses().catch(() => []);
        this.reset();
        for (const { record, heartbeatAgeMs } of statuses) {
          if (heartbeatAgeMs < 0) continue;
          this.set({ group: record.group, broker_id: String(record.brokerId) }, heartbeatAgeMs / 1000);
        }
      },
    });
    new Gauge({
      name: "sluice_nameserver_broker_suspicion",
      help: "The failure detector's suspicion of each registered broker: phi, or intervals of silence for the fixed detector.",
      labelNames: ["group", "broker_id"],
      registers: [registry],
      async collect() {
        const statuses = await readStatuses().catch(() => []);
        this.reset();
        for (const { record, suspicion } of statuses) {
          if (suspicion < 0) continue;
          this.set({ group: record.group, broker_id: String(record.brokerId) }, suspicion);
        }
      },
    });
    new Gauge({
      name: "sluice_nameserver_broker_state",
      help: "Each registered broker's state as this name server judges it: 1 for its current state (alive, suspect, dead), 0 for the others.",
      labelNames: ["group", "broker_id", "state"],
      registers: [registry],
      async collect() {
        const statuses = await readStatuses().catch(() => []);
        this.reset();
        for (const { record, state: current } of statuses) {
          for (const candidate of BROKER_STATES) {
            this.set({ group: record.group, broker_id: String(record.brokerId), state: candidate }, candidate === current ? 1 : 0);
          }
        }
      },
    });
    new Gauge({
      name: "sluice_nameserver_topics",
      help: "Topics this name server routes.",
      registers: [registry],
      async collect() {
        this.set(await state.topicCount().catch(() => Number.NaN));
      },
    });
  }
}
