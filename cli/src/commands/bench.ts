/**
 * `sluice bench produce | consume | e2e`: load tests against the cluster at --nameserver.
 * `sluice bench group-consume | queue`: one member of a group benchmark; run several at once
 * (`npm run bench` does) and add their JSON up.
 * `sluice bench rebalance-member | steady-produce`: the processes of the rebalance benchmark,
 * run until SIGTERM (bench/rebalance-execute.ts drives them).
 * `sluice bench replication-lag --slave <address>`: a steady producer to the master and a reader
 * on one of its slaves; how long until a message is readable there (bench/replication-execute.ts).
 */
import { Option, type Command } from "commander";
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { benchGroupConsume, benchQueue, type GroupBenchOptions } from "../bench/group-runners.js";
import { renderMemberResult } from "../bench/member-result.js";
import { benchRebalanceMember, benchSteadyProduce, type RebalanceBenchOptions } from "../bench/rebalance-runners.js";
import { benchReplicationLag, renderReplicationLag } from "../bench/replication-runners.js";
import { benchConsume, benchEndToEnd, benchProduce, type BenchOptions } from "../bench/runners.js";
import { renderResult } from "../bench/stats.js";
import { callerSecurity, type CliGlobals } from "../client.js";
import { action, emit, parseInteger, type GlobalOptions } from "../output.js";

const KINDS = ["produce", "consume", "e2e"] as const;
const GROUP_KINDS = ["group-consume", "queue", "rebalance-member", "steady-produce", "replication-lag"] as const;
const ACKS = ["none", "leader", "all"] as const;

type BenchFlags = Omit<BenchOptions, "nameservers"> &
  Omit<GroupBenchOptions, "nameservers" | "group"> &
  Pick<RebalanceBenchOptions, "sessionTimeoutMs"> & { group?: string; slave?: string };

/** Runs a group benchmark process (undefined for the single-process kinds). */
async function runGroupKind(kind: string, flags: BenchFlags, nameservers: string[]): Promise<{ value: unknown; human: () => string } | undefined> {
  if (!GROUP_KINDS.includes(kind as (typeof GROUP_KINDS)[number])) return undefined;
  if (kind === "replication-lag") {
    if (flags.slave === undefined) throw new InvalidArgumentError("bench replication-lag needs --slave <host:port> (a slave of the topic's broker group)");
    const lag = await benchReplicationLag({ ...flags, slave: flags.slave, nameservers });
    return { value: lag, human: () => renderReplicationLag(lag) };
  }
  if (kind === "steady-produce") {
    const produced = await benchSteadyProduce({ ...flags, group: "", nameservers });
    return { value: produced, human: () => `bench steady-produce\n  messages  ${produced.messages}\n  seconds   ${produced.seconds}\n` };
  }
  if (flags.group === undefined) throw new InvalidArgumentError(`bench ${kind} needs --group <name>`);
  if (kind === "rebalance-member") {
    const seen = await benchRebalanceMember({ ...flags, group: flags.group, nameservers });
    return { value: seen, human: () => `bench rebalance-member (pid ${seen.pid})\n  messages  ${seen.messages}\n  episodes  ${seen.episodes.length}\n` };
  }
  const options: GroupBenchOptions = { ...flags, group: flags.group, nameservers };
  const result = kind === "queue" ? await benchQueue(options) : await benchGroupConsume(options);
  return { value: result, human: () => renderMemberResult(result) };
}

export function benchCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("bench <kind>")
    .description(
      "load test: produce, consume or e2e (end-to-end latency at a fixed rate); " +
        "group-consume or queue: one member of a group benchmark (start several, fill the topic first); " +
        "rebalance-member, steady-produce: processes of the rebalance benchmark, run until SIGTERM; " +
        "replication-lag: steady producer to the master, reader on --slave, time until readable there",
    )
    .option("--topic <name>", "topic to use (created when missing)", "bench")
    .option("--messages <n>", "messages to send or read", parseInteger("messages", 1), 1_000_000)
    .option("--size <bytes>", "value size in bytes", parseInteger("size", 1, 16 * 1024 * 1024), 100)
    .option("--rate <n>", "messages per second (e2e, steady-produce, replication-lag)", parseInteger("rate", 1), 10_000)
    .addOption(new Option("--acks <level>", "produce: when a send counts as done").choices(ACKS).default("leader"))
    .option(
      "--start-at-us <us>",
      "produce: start the timed part at this process.hrtime µs (CLOCK_MONOTONIC; several writers at once) and print its window and timeline",
      parseInteger("start-at-us", 0),
    )
    .option("--slave <address>", "replication-lag: gRPC address (host:port) of the slave to read from")
    .option("--producers <n>", "concurrent producers (produce)", parseInteger("producers", 1, 64), 1)
    .option("--partitions <n>", "partitions when the topic is created", parseInteger("partitions", 1, 1000), 3)
    .option("--group <name>", "consumer or queue group (group-consume, queue, rebalance-member)")
    .option("--members-expected <n>", "group-consume: start once holding partitions / n", parseInteger("members-expected", 1, 1000), 1)
    .option("--prefetch <n>", "queue: jobs the broker may push ahead", parseInteger("prefetch", 1, 10_000), 2000)
    .option("--acks-in-flight <n>", "queue: unanswered acks at most", parseInteger("acks-in-flight", 1, 1_000_000), 4000)
    .option("--start-timeout-ms <ms>", "group-consume, queue: longest wait for the group to start", parseInteger("start-timeout-ms", 1), 60_000)
    .option("--session-timeout-ms <ms>", "rebalance-member: the member's session timeout", parseInteger("session-timeout-ms", 1000), 10_000)
    .action(
      action(async (kind: string, flags: BenchFlags) => {
        const g = globals();
        const nameservers = g.nameserver.split(",").map((s) => s.trim());
        // The global --tls-* / --user / --password-file, files read once for every client.
        flags.connection = callerSecurity(g as CliGlobals);
        const member = await runGroupKind(kind, flags, nameservers);
        if (member !== undefined) {
          emit(g.json, member.value, member.human);
          return;
        }
        if (!KINDS.includes(kind as (typeof KINDS)[number])) {
          throw new InvalidArgumentError(`bench kind "${kind}" is unknown: use ${[...KINDS, ...GROUP_KINDS].join(", ")}`);
        }
        const options: BenchOptions = { ...flags, nameservers };
        const result =
          kind === "produce" ? await benchProduce(options) : kind === "consume" ? await benchConsume(options) : await benchEndToEnd(options);
        emit(g.json, result, () => renderResult(kind, result));
      }),
    );
}
