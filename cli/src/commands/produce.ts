/**
 * `sluice produce TOPIC`: one message per stdin line. Lines are sent in chunks without
 * waiting for each chunk's acknowledgement (the producer batches and pipelines), and the
 * command prints how many were acknowledged; it fails unless every line was. `--idempotent`
 * makes retries (a failover, a broken connection) never write a line twice.
 */
import type { Command } from "commander";
import { createInterface } from "node:readline";
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { connect } from "../client.js";
import { action, emit, reportError, EXIT_FAILURE, type GlobalOptions } from "../output.js";

const LINES_PER_SEND = 1000;
/** Chunks in flight at once; bounds memory when stdin is faster than the cluster. */
const MAX_SENDS_IN_FLIGHT = 64;
const ACKS = ["none", "leader", "all"] as const;
type AcksFlag = (typeof ACKS)[number];

export function produceCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("produce <topic>")
    .description("send one message per line of standard input")
    .option("--key <key>", "key for every message (keyed messages share a partition)")
    .option("--partition <n>", "send every message to this partition")
    .option("--acks <acks>", "none | leader | all (default: leader; all with --idempotent)")
    .option("--idempotent", "retries never write a message twice and keep each partition's order (needs --acks all)")
    .option("--linger-ms <ms>", "how long the producer waits to fill a batch", "5")
    .action(
      action(async (topic: string, flags: { key?: string; partition?: string; acks?: string; idempotent?: boolean; lingerMs: string }) => {
        const g = globals();
        const idempotent = flags.idempotent === true;
        const acks = flags.acks ?? (idempotent ? "all" : "leader");
        if (!ACKS.includes(acks as AcksFlag)) {
          throw new InvalidArgumentError(`--acks must be none, leader or all, got "${acks}"`);
        }
        if (idempotent && acks !== "all") {
          throw new InvalidArgumentError(`--idempotent needs --acks all, got --acks ${acks}`);
        }
        const partition = flags.partition === undefined ? undefined : Number(flags.partition);
        if (partition !== undefined && (!Number.isInteger(partition) || partition < 0)) {
          throw new InvalidArgumentError(`--partition must be a non-negative integer, got "${flags.partition}"`);
        }
        const lingerMs = Number(flags.lingerMs);
        if (!Number.isFinite(lingerMs) || lingerMs < 0) {
          throw new InvalidArgumentError(`--linger-ms must be a non-negative number, got "${flags.lingerMs}"`);
        }
        const sluice = connect(g);
        const producer = sluice.producer({ acks: acks as AcksFlag, idempotent, lingerMs });
        let sent = 0;
        let acknowledged = 0;
        let firstError: unknown;
        const inFlight = new Set<Promise<void>>();
        const send = (lines: string[]): void => {
          sent += lines.length;
          const messages = lines.map((value) => ({
            value,
            ...(flags.key !== undefined ? { key: flags.key } : {}),
            ...(partition !== undefined ? { partition } : {}),
          }));
          const p: Promise<void> = producer.send(topic, messages).then(
            () => {
              acknowledged += lines.length;
            },
            (err: unknown) => {
              firstError ??= err;
            },
          ).finally(() => inFlight.delete(p));
          inFlight.add(p);
        };
        try {
          const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
          let chunk: string[] = [];
          for await (const line of input) {
            chunk.push(line);
            if (chunk.length >= LINES_PER_SEND) {
              send(chunk);
              chunk = [];
              if (inFlight.size >= MAX_SENDS_IN_FLIGHT) await Promise.race(inFlight);
              if (firstError !== undefined) break;
            }
          }
          if (chunk.length > 0 && firstError === undefined) send(chunk);
          await Promise.all(inFlight);
          await producer.flush();
        } finally {
          await producer.close().catch(() => undefined);
          await sluice.close();
        }
        if (firstError !== undefined || acknowledged !== sent) {
          if (firstError !== undefined) reportError(firstError);
          process.stderr.write(`sluice: ${sent - acknowledged} of ${sent} messages were not acknowledged\n`);
          emit(g.json, { acknowledged, sent }, () => `${acknowledged} acknowledged\n`);
          return EXIT_FAILURE;
        }
        emit(g.json, { acknowledged, sent }, () => `${acknowledged} acknowledged\n`);
        return 0;
      }),
    );
}
