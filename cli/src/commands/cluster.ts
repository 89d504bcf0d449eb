/**
 * `sluice cluster [--watch]`: each broker's group, role, state, address, epoch, replication
 * (for a slave: in sync or not, and its lag as its master last reported it), partitions,
 * heartbeat age and the failure detector's suspicion (φ with `--detector phi`, missed
 * heartbeat intervals with the fixed detector).
 */
import type { Command } from "commander";
import type { ClusterBroker } from "../../../clients/src/index.js";
import { connect } from "../client.js";
import { action, emit, table, type GlobalOptions } from "../output.js";

const COLUMNS = ["GROUP", "ID", "ROLE", "STATE", "ADDRESS", "EPOCH", "REPLICATION", "PARTITIONS", "HEARTBEAT", "SUSPICION"];

/** A slave's replication as its master reports it; null for masters and while unknown. */
type ReplicatedBroker = ClusterBroker;

function row(b: ReplicatedBroker): (string | number)[] {
  // -1 means the answering name server never heard from the broker itself.
  const heartbeat = b.heartbeatAgeMs < 0 ? "-" : `${b.heartbeatAgeMs} ms ago`;
  const suspicion = b.suspicion < 0 ? "-" : b.suspicion.toFixed(2);
  return [b.group, b.id, b.role, b.state, b.address, b.epoch, replication(b), b.partitions, heartbeat, suspicion];
}

/** "in sync  lag 0 ms / 0 B", "behind  lag 1200 ms / 48.0 KiB"; "-" for a master or when unknown. */
export function replication(b: ReplicatedBroker): string {
  if (b.role !== "slave" || b.inSync === undefined || b.inSync === null) return "-";
  return `${b.inSync ? "in sync" : "behind"}  lag ${b.lagMs ?? 0} ms / ${formatBytes(b.lagBytes ?? 0)}`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 * 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  return `${(bytes / (1024 * 1024 * 1024)).toFixed(1)} GiB`;
}

export function clusterCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("cluster")
    .description("list brokers: group, id, role, state, address, epoch, replication (slaves: in sync, lag), partitions, heartbeat age, suspicion")
    .option("--watch", "refresh every second until interrupted")
    .action(
      action(async (flags: { watch?: boolean }) => {
        const g = globals();
        const sluice = connect(g);
        try {
          for (;;) {
            const cluster = await sluice.admin().cluster();
            const render = (): string => table(COLUMNS, cluster.brokers.map(row));
            if (flags.watch && !g.json) process.stdout.write("\x1b[2J\x1b[H");
            emit(g.json, cluster, render);
            if (!flags.watch) return;
            await new Promise((resolve) => setTimeout(resolve, 1000));
          }
        } finally {
          await sluice.close();
        }
      }),
    );
}
