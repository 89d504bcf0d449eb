/** `sluice cluster [--watch]`: broker groups, roles, states and heartbeat ages. */
import type { Command } from "commander";
import { connect } from "../client.js";
import { action, emit, table, type GlobalOptions } from "../output.js";

export function clusterCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("cluster")
    .description("list brokers: group, id, role, state, address, epoch, heartbeat age")
    .option("--watch", "refresh every second until interrupted")
    .action(
      action(async (flags: { watch?: boolean }) => {
        const g = globals();
        const sluice = connect(g);
        try {
          for (;;) {
            const cluster = await sluice.admin().cluster();
            const render = (): string =>
              table(
                ["GROUP", "ID", "ROLE", "STATE", "ADDRESS", "EPOCH", "HEARTBEAT"],
                cluster.brokers.map((b) => [b.group, b.id, b.role, b.state, b.address, b.epoch, `${b.heartbeatAgeMs} ms ago`]),
              );
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
