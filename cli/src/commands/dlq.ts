/**
 * `sluice dlq list G [--max N]` and `sluice dlq redrive G [--max N] [--rate R]`: the dead
 * letters of queue group G (`%DLQ%<G>` from the group's committed offset on), and sending
 * them back to their source topics.
 */
import type { Command } from "commander";
import type { DeadLetter } from "../../../clients/src/index.js";
import { dlqTopicOf } from "../../../common/src/protocol.js";
import { withClient } from "../client.js";
import { action, emit, parseInteger, table, type GlobalOptions } from "../output.js";

/** Values longer than this are cut in the human table (the JSON carries them whole). */
const VALUE_PREVIEW_CHARS = 40;

export function dlqCommands(program: Command, globals: () => GlobalOptions): void {
  const dlq = program.command("dlq").description("dead letters of queue groups: list them, send them back");

  dlq
    .command("list <group>")
    .description("dead-lettered messages not redriven yet, oldest first")
    .option("--max <n>", "show at most N", parseInteger("max", 1))
    .action(
      action(async (group: string, flags: { max?: number }) => {
        const g = globals();
        const letters = await withClient(g, (sluice) => sluice.admin().deadLetters(group, flags.max === undefined ? {} : { max: flags.max }));
        const messages = letters.map(toView);
        emit(g.json, { group, topic: dlqTopicOf(group), messages }, () =>
          messages.length === 0
            ? `no dead letters for group ${group}\n`
            : table(
                ["OFFSET", "SOURCE", "DELIVERIES", "DEAD-AT", "ERROR", "KEY", "VALUE"],
                messages.map((m) => [
                  m.offset,
                  `${m.source.topic}/${m.source.partition}@${m.source.offset}`,
                  m.deliveries,
                  m.deadAtMs < 0 ? "-" : new Date(m.deadAtMs).toISOString(),
                  m.error || "-",
                  m.key ?? "-",
                  preview(m.value),
                ]),
              ),
        );
      }),
    );

  dlq
    .command("redrive <group>")
    .description("send dead letters back to their source topics, then commit past them")
    .option("--max <n>", "send at most N", parseInteger("max", 1))
    .option("--rate <r>", "at most R messages per second", parseInteger("rate", 1))
    .action(
      action(async (group: string, flags: { max?: number; rate?: number }) => {
        const g = globals();
        const result = await withClient(g, (sluice) =>
          sluice.admin().redrive(group, {
            ...(flags.max !== undefined ? { max: flags.max } : {}),
            ...(flags.rate !== undefined ? { ratePerSecond: flags.rate } : {}),
          }),
        );
        emit(g.json, { group, ...result }, () => {
          const skipped = result.skipped > 0 ? `, ${result.skipped} without a source skipped` : "";
          return `${result.redriven} redriven${skipped}, ${result.remaining} remaining\n`;
        });
      }),
    );
}

interface DeadLetterView {
  offset: number;
  timestamp: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
  source: { topic: string; partition: number; offset: number };
  deliveries: number;
  error: string;
  deadAtMs: number;
}

function toView(letter: DeadLetter): DeadLetterView {
  return {
    offset: letter.offset,
    timestamp: letter.timestamp,
    key: letter.key === null ? null : letter.key.toString("utf8"),
    value: letter.value === null ? null : letter.value.toString("utf8"),
    headers: Object.fromEntries(Object.entries(letter.headers).map(([k, v]) => [k, v.toString("utf8")])),
    source: letter.source,
    deliveries: letter.deliveries,
    error: letter.error,
    deadAtMs: letter.deadAtMs,
  };
}

function preview(value: string | null): string {
  if (value === null) return "(null)";
  const oneLine = value.replace(/\s+/g, " ");
  return oneLine.length > VALUE_PREVIEW_CHARS ? `${oneLine.slice(0, VALUE_PREVIEW_CHARS - 1)}…` : oneLine;
}
