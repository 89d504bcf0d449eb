/** `sluice message get TOPIC --partition P (--offset O | --timestamp ISO)`. */
import type { Command } from "commander";
import { InvalidArgumentError, SluiceError } from "../../../common/src/errors.js";
import { withClient } from "../client.js";
import { action, emit, parseInteger, type GlobalOptions } from "../output.js";

export function messageCommands(program: Command, globals: () => GlobalOptions): void {
  const message = program.command("message").description("look up single messages");
  message
    .command("get <topic>")
    .description("one message with its headers, key, offset and timestamp")
    .requiredOption("--partition <n>", "partition", parseInteger("partition", 0))
    .option("--offset <n>", "the message at this offset", parseInteger("offset", 0))
    .option("--timestamp <iso>", "the first message appended at or after this time (ISO 8601 or epoch ms)")
    .action(
      action(async (topic: string, flags: { partition: number; offset?: number; timestamp?: string }) => {
        const g = globals();
        if ((flags.offset === undefined) === (flags.timestamp === undefined)) {
          throw new InvalidArgumentError("give exactly one of --offset or --timestamp");
        }
        const where =
          flags.offset !== undefined ? { offset: flags.offset } : { timestamp: parseTimestamp(flags.timestamp as string) };
        const found = await withClient(g, (sluice) => sluice.admin().getMessage(topic, flags.partition, where));
        if (!found) {
          throw new SluiceError("OFFSET_OUT_OF_RANGE", `no message in ${topic}/${flags.partition} at ${JSON.stringify(where)}`);
        }
        const view = {
          topic,
          partition: found.partition,
          offset: found.offset,
          timestamp: new Date(found.timestamp).toISOString(),
          key: found.key === null ? null : found.key.toString("utf8"),
          value: found.value === null ? null : found.value.toString("utf8"),
          headers: Object.fromEntries(Object.entries(found.headers).map(([k, v]) => [k, v.toString("utf8")])),
        };
        emit(g.json, view, () =>
          [
            `topic      ${view.topic}`,
            `partition  ${view.partition}`,
            `offset     ${view.offset}`,
            `timestamp  ${view.timestamp}`,
            `key        ${view.key ?? "(null)"}`,
            ...Object.entries(view.headers).map(([k, v]) => `header     ${k}: ${v}`),
            `value      ${view.value ?? "(null)"}`,
            "",
          ].join("\n"),
        );
      }),
    );
}

function parseTimestamp(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms)) throw new InvalidArgumentError(`--timestamp "${text}" is neither ISO 8601 nor epoch milliseconds`);
  return ms;
}
