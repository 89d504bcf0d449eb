/**
 * `sluice consume TOPIC`: prints message values, one per line.
 *
 * Without --group it is an ephemeral reader (no offsets kept): from the end of each
 * partition, or from the beginning with --from-beginning. `--until-end` stops at the end
 * offsets seen at start; `--max-messages` stops after N; `--timeout-ms` gives up (exit 1)
 * when the goal is not reached in time.
 */
import type { Command } from "commander";
import { RequestTimedOutError } from "../../../common/src/errors.js";
import { connect } from "../client.js";
import { action, parseInteger, StdoutWriter, type GlobalOptions } from "../output.js";

interface ConsumeFlags {
  fromBeginning?: boolean;
  maxMessages?: number;
  untilEnd?: boolean;
  timeoutMs?: number;
  printOffsets?: boolean;
}

export function consumeCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("consume <topic>")
    .description("print messages, one value per line")
    .option("--from-beginning", "start at the earliest offset instead of the end")
    .option("--max-messages <n>", "stop after N messages", parseInteger("max-messages", 1))
    .option("--until-end", "stop after the end offsets seen at start")
    .option("--timeout-ms <ms>", "give up (exit 1) if not done within this time", parseInteger("timeout-ms", 1))
    .option("--print-offsets", "prefix each value with partition:offset and a tab")
    .action(
      action(async (topic: string, flags: ConsumeFlags) => {
        const g = globals();
        const sluice = connect(g);
        const out = new StdoutWriter();
        const consumer = sluice.consumer({ fromBeginning: flags.fromBeginning === true });
        let timedOut = false;
        let stopRequested = false;
        const timer =
          flags.timeoutMs === undefined
            ? undefined
            : setTimeout(() => {
                timedOut = true;
                void consumer.close();
              }, flags.timeoutMs);
        const onSignal = (): void => {
          stopRequested = true;
          void consumer.close();
        };
        process.once("SIGTERM", onSignal);
        process.once("SIGINT", onSignal);
        let printed = 0;
        // With --json, stdout carries one document: the messages, printed at the end.
        const collected: unknown[] | undefined = g.json ? [] : undefined;
        try {
          // End offsets at start, per partition: --until-end stops once each is reached.
          const remaining = flags.untilEnd ? await consumer.endOffsets(topic) : undefined;
          if (remaining) {
            for (const [partition, end] of remaining) if (end <= 0) remaining.delete(partition);
          }
          const finished = (): boolean =>
            (flags.maxMessages !== undefined && printed >= flags.maxMessages) ||
            (remaining !== undefined && remaining.size === 0);
          if (!finished()) {
            for await (const message of consumer.subscribe(topic)) {
              if (remaining) {
                const end = remaining.get(message.partition);
                if (end === undefined || message.offset >= end) {
                  if (remaining.size === 0) break;
                  continue;
                }
                if (message.offset + 1 >= end) remaining.delete(message.partition);
              }
              const value = message.value === null ? "" : message.value.toString("utf8");
              if (collected) {
                collected.push({
                  partition: message.partition,
                  offset: message.offset,
                  timestamp: message.timestamp,
                  key: message.key === null ? null : message.key.toString("utf8"),
                  value,
                  headers: Object.fromEntries(Object.entries(message.headers).map(([k, v]) => [k, v.toString("utf8")])),
                });
              } else {
                await out.line(flags.printOffsets ? `${message.partition}:${message.offset}\t${value}` : value);
              }
              printed++;
              if (finished() || out.isClosed) break;
            }
          }
        } finally {
          if (timer) clearTimeout(timer);
          process.off("SIGTERM", onSignal);
          process.off("SIGINT", onSignal);
          await out.flush();
          await consumer.close().catch(() => undefined);
          await sluice.close();
        }
        const goalMissed =
          flags.maxMessages !== undefined ? printed < flags.maxMessages : flags.untilEnd === true && timedOut;
        if (timedOut && goalMissed) {
          throw new RequestTimedOutError(
            `timed out after ${flags.timeoutMs} ms with ${printed} message${printed === 1 ? "" : "s"} printed`,
          );
        }
        if (collected) process.stdout.write(JSON.stringify({ messages: collected }) + "\n");
        if (stopRequested) process.stderr.write(`sluice: stopped after ${printed} messages\n`);
        return 0;
      }),
    );
}
