/**
 * Role and replication as Prometheus series, read from the broker's group role at scrape time:
 *
 * - sluice_broker_info{group,broker_id,role} = 1, sluice_broker_is_master, sluice_broker_epoch;
 * - on a master, per slave ("group/id"): sluice_replication_lag_messages / _bytes / _seconds
 *   and sluice_replication_slave_in_sync (0/1);
 * - sluice_under_replicated_partitions: on a master, every hosted partition while a slave it
 *   knows is out of sync or fewer slaves are in sync than `acks: "all"` needs (the in-sync set is
 *   group-wide, so one lagging slave leaves every partition short of a replica);
 * - sluice_write_gate_open{group}: 1 while a master accepts `acks: "all"` produce, 0 while too few
 *   slaves are in sync; absent on a slave (nothing to alert on).
 *
 * A slave exports no per-slave series, so a failover never leaves stale ones behind.
 */
import { Gauge, type Registry } from "prom-client";
import type { ReplicaStatus } from "../../../proto/gen/sluice/v1/nameserver.js";

export interface ReplicationView {
  readonly group: string;
  readonly brokerId: number;
  /** Slaves that must be in sync for `acks: "all"` (the write gate's threshold, per replication mode). */
  readonly requiredInSync: number;
  role(): "master" | "slave";
  epoch(): number;
  /** The slaves as this master sees them (empty on a slave). */
  slaves(): ReplicaStatus[];
  /** Undefined on a slave. */
  writeGateOpen(): boolean | undefined;
  /** Partitions hosted here. */
  partitions(): number;
}

export function registerReplicationMetrics(registry: Registry, view: ReplicationView): void {
  const isMaster = (): boolean => view.role() === "master";
  new Gauge({
    name: "sluice_broker_info",
    help: "This broker's group, id and current role (always 1)",
    labelNames: ["group", "broker_id", "role"],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ group: view.group, broker_id: String(view.brokerId), role: view.role() }, 1);
    },
  });
  new Gauge({
    name: "sluice_broker_is_master",
    help: "1 while this broker is its group's master",
    registers: [registry],
    collect() {
      this.set(isMaster() ? 1 : 0);
    },
  });
  new Gauge({
    name: "sluice_broker_epoch",
    help: "The broker group's epoch as this broker knows it (it grows with every failover)",
    registers: [registry],
    collect() {
      this.set(view.epoch());
    },
  });
  const perSlave = (name: string, help: string, value: (slave: ReplicaStatus) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ["slave"],
      registers: [registry],
      collect() {
        this.reset();
        for (const slave of view.slaves()) this.set({ slave: `${view.group}/${slave.brokerId}` }, value(slave));
      },
    });
  };
  perSlave("sluice_replication_lag_messages", "Messages a slave is behind this master, summed over partitions", (s) => s.lagMessages);
  perSlave("sluice_replication_lag_bytes", "Bytes a slave is behind this master (estimated from each partition's bytes per offset)", (s) => s.lagBytes);
  perSlave("sluice_replication_lag_seconds", "Time since a slave was last caught up, on its worst partition", (s) => s.lagMs / 1000);
  perSlave("sluice_replication_slave_in_sync", "1 while a slave is in the in-sync set (counts for acks \"all\")", (s) => (s.inSync && s.connected ? 1 : 0));
  new Gauge({
    name: "sluice_under_replicated_partitions",
    help: "Partitions this master hosts while a slave is out of sync or fewer slaves are in sync than acks \"all\" needs",
    registers: [registry],
    collect() {
      if (!isMaster()) {
        this.set(0);
        return;
      }
      const slaves = view.slaves();
      const inSync = slaves.filter((s) => s.inSync && s.connected).length;
      const short = inSync < slaves.length || inSync < view.requiredInSync;
      this.set(short ? view.partitions() : 0);
    },
  });
  new Gauge({
    name: "sluice_write_gate_open",
    help: "1 while this master accepts acks \"all\" produce; 0 while too few slaves are in sync (absent on a slave)",
    // Labelled so a slave can export no series at all (an unlabelled gauge always shows a value).
    labelNames: ["group"],
    registers: [registry],
    collect() {
      this.reset();
      const open = view.writeGateOpen();
      if (open !== undefined) this.set({ group: view.group }, open ? 1 : 0);
    },
  });
}
