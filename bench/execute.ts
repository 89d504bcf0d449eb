/**
 * One benchmark run against a running `sluice dev`: fill the topic if the run reads, set the
 * run's flow rules if it has any, then start the measured `sluice bench` client with the
 * broker's CPU and memory metered around it.
 */
import { mkdirSync, readdirSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { BrokerMeter, clockTicksPerSecond, ProcessSampler, waitForWriteback } from "./proc-stats.js";
import { decisionsDuring, flowRulesFor, FlowRulesLeftError, readFlowDecisions, withFlowRules } from "./flow-rules.js";
import { executeMembers } from "./group-execute.js";
import { executeRebalance } from "./rebalance-execute.js";
import { benchArgs, clientTimeoutMs, isMemberRun, partitionsOf, prefillFor, type BenchSettings, type RunSpec } from "./plan.js";
import { runCli, type DevServer } from "./processes.js";
import { failure, isFailure, parseBenchJson, type RunOutcome } from "./results.js";

/** Where `node --cpu-prof` writes, and the flags that make it. */
export function cpuProfileFlags(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  return ["--cpu-prof", `--cpu-prof-dir=${dir}`];
}

/** The newest .cpuprofile in a directory (node names them by time and pid). */
export function newestCpuProfile(dir: string): string | undefined {
  let newest: { path: string; mtimeMs: number } | undefined;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  for (const name of names) {
    if (!name.endsWith(".cpuprofile")) continue;
    const path = join(dir, name);
    const { mtimeMs } = statSync(path);
    if (!newest || mtimeMs > newest.mtimeMs) newest = { path, mtimeMs };
  }
  return newest?.path;
}

/** Longest wait for earlier runs' data to reach the disk before a run starts. */
const SETTLE_TIMEOUT_MS = 30_000;

function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** A short, unique topic per run: each run starts from an empty log. */
function freshTopic(run: RunSpec): string {
  return `bench-${run.name}-${Date.now().toString(36)}`;
}

function describeExit(code: number | null, timedOut: boolean, timeoutMs: number): string {
  return timedOut ? `timed out after ${Math.round(timeoutMs / 1000)} s` : `exited with ${code ?? "a signal"}`;
}

export interface ExecuteOptions {
  settings: BenchSettings;
  /** When profiling: the folder for this run's client profile. */
  clientProfileDir?: string;
  /**
   * Global CLI flags of the measured client, before `bench`: TLS and who it is
   * (`--tls-ca F --user alice --password-file F`). Default: the server's own `cliFlags`.
   */
  clientFlags?: readonly string[];
  /**
   * Create the run's topic (with the server's `cliFlags`) before the client starts, so a client
   * that may not create topics (a user with only `produce` on them) finds it there.
   */
  createTopic?: boolean;
}

/** How long creating or deleting a run's topic may take before the orchestrator moves on. */
const ADMIN_CALL_TIMEOUT_MS = 30_000;

/**
 * Runs one attempt on a fresh topic and deletes the topic afterwards (whatever happened).
 *
 * Deleting matters for the figures, not just for disk space: on this kind of VM, writing into
 * page cache that has to grow into memory not used recently costs several times more kernel
 * time (measured with dd: ~350 MB/s, against 1.2–2.2 GB/s when reusing freed pages), so a run
 * would otherwise be slowed by how much its predecessors wrote. A long-running broker, whose
 * retention deletes old segments, is in the "reuse" state too.
 */
export async function executeRun(run: RunSpec, dev: DevServer, options: ExecuteOptions): Promise<RunOutcome> {
  const topic = freshTopic(run);
  try {
    if (options.createTopic) {
      const partitions = String(partitionsOf(run, options.settings));
      const created = await runCli([...dev.cliFlags, "--nameserver", dev.info.nameserver, "topic", "create", topic, "--partitions", partitions], { timeoutMs: ADMIN_CALL_TIMEOUT_MS });
      if (created.code !== 0) return failure(run, new Date().toISOString(), [], `creating topic ${topic} ${describeExit(created.code, created.timedOut, ADMIN_CALL_TIMEOUT_MS)}`, created.code, created.stderrTail);
    }
    if (run.flowRules === undefined || run.flowRules.length === 0) return await executeOnTopic(run, topic, dev, options);
    return await executeUnderFlowRules(run, topic, dev, options);
  } finally {
    if (dev.alive()) {
      const deleted = await runCli([...dev.cliFlags, "--nameserver", dev.info.nameserver, "topic", "delete", topic], { timeoutMs: ADMIN_CALL_TIMEOUT_MS });
      if (deleted.code !== 0) process.stderr.write(`bench: warning: could not delete topic ${topic}: ${deleted.stderrTail.trim().split("\n").pop() ?? ""}\n`);
    }
  }
}

/**
 * A run with flow rules: they are set before it and deleted after it (withFlowRules throws when
 * one cannot be deleted, which fails the rest of the shared broker's runs), and the broker's
 * decisions under them are counted around the client and kept in the result.
 */
async function executeUnderFlowRules(run: RunSpec, topic: string, dev: DevServer, options: ExecuteOptions): Promise<RunOutcome> {
  const rules = flowRulesFor(run.flowRules ?? [], topic);
  try {
    return await withFlowRules(dev.info.nameserver, rules, async (stored) => {
      const before = await readFlowDecisions(dev.info.http);
      const outcome = await executeOnTopic(run, topic, dev, options);
      if (isFailure(outcome)) return outcome;
      const decisions = decisionsDuring(before, await readFlowDecisions(dev.info.http), stored);
      const limit = run.flowLimitMsgsPerSec;
      const ratio = limit === undefined ? {} : { limitMsgsPerSec: limit, achievedOfLimit: Number((outcome.msgsPerSec / limit).toFixed(4)) };
      return { ...outcome, flow: { rules: stored, decisions, ...ratio } };
    });
  } catch (err) {
    // Setting a rule failed (nothing was measured), or deleting one did: the latter must stop the
    // broker's remaining runs, so it goes on up.
    if (err instanceof FlowRulesLeftError) throw err;
    return failure(run, new Date().toISOString(), [], `flow rules: ${(err as Error).message}`, null, dev.stderrTail());
  }
}

async function executeOnTopic(run: RunSpec, topic: string, dev: DevServer, options: ExecuteOptions): Promise<RunOutcome> {
  const { settings } = options;
  const timeoutMs = clientTimeoutMs(run, settings);
  const address = { nameserver: dev.info.nameserver, topic, partitions: partitionsOf(run, settings) };
  const prefill = prefillFor(run);
  if (prefill) {
    const prefillArgs = [...dev.cliFlags, ...benchArgs(prefill, address)];
    const filled = await runCli(prefillArgs, { timeoutMs, nodeFlags: settings.clientNodeFlags });
    if (filled.code !== 0) {
      const why = `filling topic ${topic} first ${describeExit(filled.code, filled.timedOut, timeoutMs)}`;
      return failure(run, new Date().toISOString(), prefillArgs, why, filled.code, filled.stderrTail);
    }
  }
  if (isMemberRun(run)) {
    if (run.kind === "rebalance") return executeRebalance(run, topic, dev, options);
    return executeMembers({ ...run, kind: run.kind }, topic, dev, options);
  }

  const args = [...(options.clientFlags ?? dev.cliFlags), ...benchArgs(run, address)];
  const settled = await waitForWriteback(SETTLE_TIMEOUT_MS);
  const startedAt = new Date().toISOString();
  const loadAverage1m = Number(loadavg()[0]?.toFixed(2) ?? 0);
  if (!dev.alive()) return failure(run, startedAt, args, "the broker had already exited", null, dev.stderrTail());
  const meter = new BrokerMeter(dev.info.pid);
  meter.begin();
  const fromUs = nowUs();
  let toUs: number | undefined;
  let clientSampler: ProcessSampler | undefined;
  let clientSeen = { peakKb: 0, cpuTicks: 0 };
  // The window closes when the client prints its result, not when it exits: shutting
  // connections down (or a stray timer) is not part of what is measured.
  const closeWindow = (): void => {
    if (toUs !== undefined) return;
    toUs = nowUs();
    meter.stop();
    clientSeen = clientSampler?.stop() ?? clientSeen;
  };
  const client = await runCli(args, {
    timeoutMs,
    nodeFlags: [...settings.clientNodeFlags, ...(options.clientProfileDir ? cpuProfileFlags(options.clientProfileDir) : [])],
    onSpawn: (pid) => {
      clientSampler = new ProcessSampler(pid);
      clientSampler.start();
    },
    onFirstLine: closeWindow,
  });
  const exitedUs = nowUs();
  closeWindow();
  if (!dev.alive()) {
    return failure(run, startedAt, args, `the broker exited during the run; its stderr:\n${dev.stderrTail()}`, client.code, client.stderrTail);
  }
  let result;
  try {
    if (client.code !== 0) throw new Error(`bench client ${describeExit(client.code, client.timedOut, timeoutMs)}`);
    result = parseBenchJson(client.stdout);
  } catch (err) {
    return failure(run, startedAt, args, (err as Error).message, client.code, client.stderrTail);
  }
  const usage = meter.usage(result.messages);
  return {
    name: run.name,
    kind: run.kind,
    flush: run.flush,
    size: run.size,
    requestedMessages: run.messages,
    rate: run.rate ?? null,
    topic,
    partitions: address.partitions,
    ...result,
    ...usage,
    clientCpuMs: Math.round((clientSeen.cpuTicks * 1000) / clockTicksPerSecond()),
    clientPeakRssMb: Number((clientSeen.peakKb / 1024).toFixed(1)),
    clientShutdownMs: Math.round((exitedUs - (toUs as number)) / 1000),
    startedAt,
    loadAverage1m,
    settleWaitMs: settled.waitedMs,
    unwrittenMbAtStart: settled.unwrittenMb,
    windowUs: { from: fromUs, to: toUs as number },
    profiled: settings.profile,
    command: ["node", "bin/sluice.js", ...args],
  };
}
