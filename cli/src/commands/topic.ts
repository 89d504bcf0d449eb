/** `sluice topic create | list | describe | alter | delete`. */
import type { Command } from "commander";
import { withClient } from "../client.js";
import { action, emit, parseInteger, table, type GlobalOptions } from "../output.js";

export function topicCommands(program: Command, globals: () => GlobalOptions): void {
  const topic = program.command("topic").description("create, list, describe, alter and delete topics");

  topic
    .command("create <name>")
    .description("create a topic (placement across broker groups is automatic unless --brokers)")
    .option("--partitions <n>", "partition count", parseInteger("partitions", 1, 10000), 1)
    .option("--brokers <groups>", "comma-separated broker groups to place partitions on")
    .option("--retention-ms <ms>", "delete segments older than this (0 = broker default)", parseInteger("retention-ms"))
    .option("--retention-bytes <bytes>", "keep at most this many bytes per partition (0 = broker default)", parseInteger("retention-bytes"))
    .action(
      action(async (name: string, flags: { partitions: number; brokers?: string; retentionMs?: number; retentionBytes?: number }) => {
        const g = globals();
        const route = await withClient(g, (sluice) =>
          sluice.admin().createTopic(name, {
            partitions: flags.partitions,
            ...(flags.brokers ? { brokers: flags.brokers.split(",").map((s) => s.trim()).filter(Boolean) } : {}),
            ...(flags.retentionMs !== undefined ? { retentionMs: flags.retentionMs } : {}),
            ...(flags.retentionBytes !== undefined ? { retentionBytes: flags.retentionBytes } : {}),
          }),
        );
        emit(g.json, route, () => `created topic ${name} with ${flags.partitions} partition${flags.partitions === 1 ? "" : "s"}\n`);
      }),
    );

  topic
    .command("list")
    .description("list topics")
    .action(
      action(async () => {
        const g = globals();
        const topics = await withClient(g, (sluice) => sluice.admin().listTopics());
        emit(g.json, { topics }, () =>
          table(
            ["TOPIC", "PARTITIONS"],
            topics.map((t) => [t.topic, t.partitions]),
          ),
        );
      }),
    );

  topic
    .command("describe <name>")
    .description("partitions with their master, start/end offsets and size on disk")
    .action(
      action(async (name: string) => {
        const g = globals();
        const description = await withClient(g, (sluice) => sluice.admin().describeTopic(name));
        emit(g.json, description, () =>
          `topic ${description.topic}: ${description.partitions.length} partitions\n` +
          table(
            ["PARTITION", "GROUP", "MASTER", "START", "END", "SIZE", "SEGMENTS"],
            description.partitions.map((p) => [
              p.partition,
              p.group,
              p.master ?? "-",
              p.startOffset,
              p.endOffset,
              formatBytes(p.sizeBytes),
              p.segments,
            ]),
          ),
        );
      }),
    );

  topic
    .command("alter <name>")
    .description(
      "add partitions to a topic (the count only grows; existing partitions and their data are untouched). " +
        "New partitions are placed automatically across broker groups; producers and consumer groups pick them up " +
        "within about a second. Keyed messages may move partition: keys hash over the new count",
    )
    .requiredOption("--partitions <n>", "the new total partition count, more than the current one", parseInteger("partitions", 1, 10000))
    .action(
      action(async (name: string, flags: { partitions: number }) => {
        const g = globals();
        const description = await withClient(g, async (sluice) => {
          const admin = sluice.admin();
          await admin.createPartitions(name, flags.partitions);
          // With the logs' offsets, as `topic describe` shows it.
          return admin.describeTopic(name);
        });
        emit(g.json, description, () => `topic ${name} now has ${description.partitions.length} partitions\n`);
      }),
    );

  topic
    .command("delete <name>")
    .description("delete a topic and its data")
    .action(
      action(async (name: string) => {
        const g = globals();
        await withClient(g, (sluice) => sluice.admin().deleteTopic(name));
        emit(g.json, { deleted: name }, () => `deleted topic ${name}\n`);
      }),
    );
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
