/** `sluice bench produce | consume | e2e`: load tests against the cluster at --nameserver. */
import type { Command } from "commander";
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { benchConsume, benchEndToEnd, benchProduce, type BenchOptions } from "../bench/runners.js";
import { renderResult } from "../bench/stats.js";
import { action, emit, parseInteger, type GlobalOptions } from "../output.js";

const KINDS = ["produce", "consume", "e2e"] as const;

export function benchCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("bench <kind>")
    .description("load test: produce, consume or e2e (end-to-end latency at a fixed rate)")
    .option("--topic <name>", "topic to use (created when missing)", "bench")
    .option("--messages <n>", "messages to send or read", parseInteger("messages", 1), 1_000_000)
    .option("--size <bytes>", "value size in bytes", parseInteger("size", 1, 16 * 1024 * 1024), 100)
    .option("--rate <n>", "messages per second (e2e)", parseInteger("rate", 1), 10_000)
    .option("--producers <n>", "concurrent producers (produce)", parseInteger("producers", 1, 64), 1)
    .option("--partitions <n>", "partitions when the topic is created", parseInteger("partitions", 1, 1000), 3)
    .action(
      action(async (kind: string, flags: Omit<BenchOptions, "nameservers">) => {
        const g = globals();
        if (!KINDS.includes(kind as (typeof KINDS)[number])) {
          throw new InvalidArgumentError(`bench kind "${kind}" is unknown: use produce, consume or e2e`);
        }
        const options: BenchOptions = { ...flags, nameservers: g.nameserver.split(",").map((s) => s.trim()) };
        const result =
          kind === "produce" ? await benchProduce(options) : kind === "consume" ? await benchConsume(options) : await benchEndToEnd(options);
        emit(g.json, result, () => renderResult(kind, result));
      }),
    );
}
