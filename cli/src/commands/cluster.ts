/**
 * `sluice cluster [--watch]`: each broker's group, role, state, address, epoch, partitions,
 * heartbeat age and the failure detector's suspicion (φ with `--detector phi`, missed
 * heartbeat intervals with the fixed detector).
 */
import type { Command } from "commander";
import type { ClusterBroker } from "../../../clients/src/index.js";
import { connect } from "../client.js";
import { action, emit, table, type GlobalOptions } from "../output.js";

const COLUMNS = ["GROUP", "ID", "ROLE", "STATE", "ADDRESS", "EPOCH", "PARTITIONS", "HEARTBEAT", "SUSPICION"];

function row(b: ClusterBroker): (string | number)[] {
  // -1 means the answering name server never heard from the broker itself.
  const heartbeat = b.heartbeatAgeMs < 0 ? "-" : `${b.heartbeatAgeMs} ms ago`;
  const suspicion = b.suspicion < 0 ? "-" : b.suspicion.toFixed(2);
  return [b.group, b.id, b.role, b.state, b.address, b.epoch, b.partitions, heartbeat, suspicion];
}

export function clusterCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("cluster")
    .description("list brokers: group, id, role, state, address, epoch, partitions, heartbeat age, suspicion")
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
