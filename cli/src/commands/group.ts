/**
 * `sluice group list | describe G | reset-offsets G --topic T (--to earliest|latest|OFFSET | --to-datetime ISO) [--partitions P,…] [--dry-run]`.
 *
 * `describe --json` prints the contract's shape: {group, state, kind, members[{memberId,
 * clientId, instanceId, assignments[{topic, partition}]}], partitions[{topic, partition,
 * committedOffset, endOffset, lag, lagMs}], queue[…]}; -1 marks a value nobody could report.
 */
import type { Command } from "commander";
import { InvalidArgumentError } from "../../../common/src/errors.js";
import type { GroupDescription, ResetOffsetsTo } from "../../../clients/src/index.js";
import { withClient } from "../client.js";
import { action, emit, parseInteger, table, type GlobalOptions } from "../output.js";

interface ResetFlags {
  topic: string;
  to?: string;
  toDatetime?: string;
  partitions?: string;
  dryRun?: boolean;
}

export function groupCommands(program: Command, globals: () => GlobalOptions): void {
  const group = program.command("group").description("consumer and queue groups: members, assignments, lag, offsets");

  group
    .command("list")
    .description("every group with its kind, state and member count")
    .action(
      action(async () => {
        const g = globals();
        const groups = await withClient(g, (sluice) => sluice.admin().listGroups());
        emit(g.json, { groups }, () =>
          groups.length === 0
            ? "no groups\n"
            : table(
                ["GROUP", "KIND", "STATE", "MEMBERS"],
                groups.map((x) => [x.group, x.kind, x.state, x.members]),
              ),
        );
      }),
    );

  group
    .command("describe <group>")
    .description("members and their assignments, committed offsets and lag per partition")
    .action(
      action(async (name: string) => {
        const g = globals();
        const description = await withClient(g, (sluice) => sluice.admin().describeGroup(name));
        emit(g.json, description, () => renderDescription(description));
      }),
    );

  group
    .command("reset-offsets <group>")
    .description("move the group's committed offsets on a topic (refused while the group has members)")
    .requiredOption("--topic <topic>", "the topic whose offsets move")
    .option("--to <target>", "earliest, latest, or an offset")
    .option("--to-datetime <iso>", "the first message at or after this time (ISO 8601 or epoch ms)")
    .option("--partitions <list>", "comma-separated partitions (default: all of the topic)")
    .option("--dry-run", "show the offsets that would be committed, commit nothing")
    .action(
      action(async (name: string, flags: ResetFlags) => {
        const g = globals();
        const to = resetTarget(flags);
        const partitions = flags.partitions?.split(",").map((p) => parseInteger("partitions", 0)(p.trim()));
        const dryRun = flags.dryRun === true;
        const offsets = await withClient(g, (sluice) =>
          sluice.admin().resetOffsets(name, flags.topic, to, { dryRun, ...(partitions ? { partitions } : {}) }),
        );
        emit(g.json, { group: name, topic: flags.topic, dryRun, offsets }, () =>
          (dryRun ? `dry run: would commit for group ${name}\n` : `committed for group ${name}\n`) +
          table(
            ["TOPIC", "PARTITION", "OFFSET"],
            offsets.map((o) => [o.topic, o.partition, o.offset]),
          ),
        );
      }),
    );
}

function resetTarget(flags: ResetFlags): ResetOffsetsTo {
  if ((flags.to === undefined) === (flags.toDatetime === undefined)) {
    throw new InvalidArgumentError("give exactly one of --to (earliest, latest or an offset) or --to-datetime");
  }
  if (flags.toDatetime !== undefined) {
    const text = flags.toDatetime.trim();
    const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
    if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError(`--to-datetime "${text}" is neither ISO 8601 nor epoch milliseconds`);
    return { timestamp: ms };
  }
  const to = (flags.to as string).trim();
  if (to === "earliest" || to === "latest") return to;
  if (/^\d+$/.test(to) && Number.isSafeInteger(Number(to))) return { offset: Number(to) };
  throw new InvalidArgumentError(`--to must be earliest, latest or an offset (an integer >= 0), got "${to}"`);
}

/** -1 (unknown) prints as "-". */
function known(value: number): string | number {
  return value < 0 ? "-" : value;
}

function renderDescription(d: GroupDescription): string {
  const lines = [`group ${d.group}: ${d.kind}, ${d.state}, ${d.members.length} member${d.members.length === 1 ? "" : "s"}\n`];
  if (d.members.length > 0) {
    lines.push(
      table(
        ["MEMBER", "CLIENT", "INSTANCE", "ASSIGNMENTS"],
        d.members.map((m) => [
          m.memberId,
          m.clientId,
          m.instanceId || "-",
          m.assignments.map((a) => `${a.topic}/${a.partition}`).join(",") || "-",
        ]),
      ),
    );
  }
  if (d.partitions.length > 0) {
    lines.push(
      table(
        ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG-MS"],
        d.partitions.map((p) => [p.topic, p.partition, known(p.committedOffset), known(p.endOffset), known(p.lag), known(p.lagMs)]),
      ),
    );
  }
  if (d.queue.length > 0) {
    lines.push(
      table(
        ["TOPIC", "PARTITION", "START", "END", "IN-FLIGHT", "DELAYED", "DEAD-PENDING", "REDELIVERED", "DEAD-LETTERED"],
        d.queue.map((q) => [q.topic, q.partition, q.startOffset, q.endOffset, q.inFlight, q.delayed, q.deadPending, q.redelivered, q.deadLettered]),
      ),
    );
  }
  return lines.join("\n");
}
