/**
 * Group runs (issue #4): several `sluice bench` member processes at once against one topic,
 * the broker metered around all of them, their JSON added up.
 *
 * - group-consume: M consumer-group members read a pre-filled topic; each waits until it holds
 *   its share of the partitions, then reads to the log ends seen at start.
 * - queue: M queue-group members ack every message of a pre-filled topic.
 *
 * The group's msgs/s runs from the first message any member received to the last one any
 * member received (or, for queue, the last ack that resolved). Every member stamps those with
 * process.hrtime, CLOCK_MONOTONIC on Linux: one clock for all processes of the machine, the
 * same as the orchestrator's run window and the .cpuprofile files.
 */
import { loadavg } from "node:os";
import { monotonicUs, type MemberResult } from "../cli/src/bench/member-result.js";
import { cpuProfileFlags } from "./execute.js";
import { clientTimeoutMs, memberArgs, partitionsOf, type BenchSettings, type RunSpec } from "./plan.js";
import { BrokerMeter, clientUsage, ProcessSampler, waitForWriteback, windowFigures, type MeteredWindow } from "./proc-stats.js";
import { runCli, type CliRun, type DevServer } from "./processes.js";
import { failure, parseMemberJson, type BenchJson, type MemberFigures, type RunOutcome, type RunRecord } from "./results.js";

/** Longest wait for earlier runs' data to reach the disk before a run starts. */
const SETTLE_TIMEOUT_MS = 30_000;
/** Member processes start, load the SDK and join: a fixed allowance on top of the message-count timeout. */
const MEMBER_START_ALLOWANCE_MS = 30_000;

export function describeExit(code: number | null, timedOut: boolean, timeoutMs: number): string {
  return timedOut ? `timed out after ${Math.round(timeoutMs / 1000)} s` : `exited with ${code ?? "a signal"}`;
}

/** A unique group per attempt: a fresh group has no committed offsets or ack window. */
export function freshGroup(run: RunSpec): string {
  return `bench-${run.name}-${Date.now().toString(36)}`;
}

/** What the orchestrator measured around member processes: broker usage window, client CPU and memory. */
export interface MeteredMembers extends MeteredWindow {
  runs: CliRun[];
  pids: number[];
  meter: BrokerMeter;
}

export interface MemberProcess {
  args: string[];
  /** Called when its process exists, e.g. to keep the pid for a signal later. */
  onSpawn?: (pid: number) => void;
}

/**
 * Starts the member processes together and waits for all of them. The broker meter runs from
 * the first spawn until every member has printed its result (exits are not measured).
 */
export async function runMetered(
  dev: DevServer,
  members: MemberProcess[],
  options: { timeoutMs: number; settings: BenchSettings; clientProfileDir?: string; whileRunning?: () => Promise<void> },
): Promise<MeteredMembers> {
  const settled = await waitForWriteback(SETTLE_TIMEOUT_MS);
  const startedAt = new Date().toISOString();
  const loadAverage1m = Number(loadavg()[0]?.toFixed(2) ?? 0);
  const meter = new BrokerMeter(dev.info.pid);
  meter.begin();
  const fromUs = monotonicUs();
  let toUs: number | undefined;
  const samplers: ProcessSampler[] = [];
  let seen: { peakKb: number; cpuTicks: number }[] = [];
  let printed = 0;
  const closeWindow = (): void => {
    if (toUs !== undefined) return;
    toUs = monotonicUs();
    meter.stop();
    seen = samplers.map((s) => s.stop());
  };
  const pids: number[] = [];
  const nodeFlags = [...options.settings.clientNodeFlags, ...(options.clientProfileDir ? cpuProfileFlags(options.clientProfileDir) : [])];
  const finished = Promise.all(
    members.map((member) =>
      runCli(member.args, {
        timeoutMs: options.timeoutMs,
        nodeFlags,
        onSpawn: (pid) => {
          pids.push(pid);
          const sampler = new ProcessSampler(pid);
          sampler.start();
          samplers.push(sampler);
          member.onSpawn?.(pid);
        },
        onFirstLine: () => {
          if (++printed === members.length) closeWindow();
        },
      }),
    ),
  );
  if (options.whileRunning) await options.whileRunning();
  const runs = await finished;
  const exitedUs = monotonicUs();
  closeWindow();
  return {
    runs,
    pids,
    meter,
    windowUs: { from: fromUs, to: toUs as number },
    exitedUs,
    ...clientUsage(seen),
    startedAt,
    loadAverage1m,
    settled,
  };
}

/** The common part of a group run's record: settings, window, client and broker figures. */
export function recordBase(
  run: RunSpec,
  topic: string,
  settings: BenchSettings,
  metered: MeteredMembers,
  messages: number,
  command: string[],
): Omit<RunRecord, keyof BenchJson> {
  return {
    name: run.name,
    kind: run.kind,
    flush: run.flush,
    size: run.size,
    requestedMessages: run.messages,
    rate: run.rate ?? null,
    topic,
    partitions: partitionsOf(run, settings),
    ...metered.meter.usage(messages),
    ...windowFigures(metered),
    profiled: settings.profile,
    command,
  };
}

function figuresOf(member: MemberResult): MemberFigures {
  return {
    pid: member.pid, messages: member.messages, msgsPerSec: member.msgsPerSec, seconds: member.seconds, partitions: member.partitions,
    startupMs: member.startupMs, p50Ms: member.p50Ms, p99Ms: member.p99Ms, failedAcks: member.failedAcks,
  };
}

/** group-consume or queue on a topic already filled. */
export async function executeMembers(
  run: RunSpec & { kind: "group-consume" | "queue" },
  topic: string,
  dev: DevServer,
  options: { settings: BenchSettings; clientProfileDir?: string },
): Promise<RunOutcome> {
  const { settings } = options;
  const timeoutMs = clientTimeoutMs(run, settings) + MEMBER_START_ALLOWANCE_MS;
  const args = memberArgs(run, { nameserver: dev.info.nameserver, topic, group: freshGroup(run) });
  const command = ["node", "bin/sluice.js", ...args];
  const count = run.members ?? 1;
  if (!dev.alive()) return failure(run, new Date().toISOString(), args, "the broker had already exited", null, dev.stderrTail());
  const metered = await runMetered(dev, Array.from({ length: count }, () => ({ args })), {
    timeoutMs,
    settings,
    ...(options.clientProfileDir ? { clientProfileDir: options.clientProfileDir } : {}),
  });
  if (!dev.alive()) {
    const stderr = metered.runs.map((r) => r.stderrTail).join("\n");
    return failure(run, metered.startedAt, args, `the broker exited during the run; its stderr:\n${dev.stderrTail()}`, null, stderr);
  }
  const results: MemberResult[] = [];
  for (const [i, member] of metered.runs.entries()) {
    try {
      if (member.code !== 0) throw new Error(`bench member ${i + 1}/${count} ${describeExit(member.code, member.timedOut, timeoutMs)}`);
      results.push(parseMemberJson(member.stdout));
    } catch (err) {
      return failure(run, metered.startedAt, args, (err as Error).message, member.code, member.stderrTail);
    }
  }
  const active = results.filter((r) => r.messages > 0);
  const messages = results.reduce((sum, r) => sum + r.messages, 0);
  const bytes = results.reduce((sum, r) => sum + r.bytes, 0);
  const firstUs = Math.min(...active.map((r) => r.firstUs));
  const lastUs = Math.max(...active.map((r) => r.lastUs));
  const seconds = active.length > 0 ? (lastUs - firstUs) / 1e6 : 0;
  const worst = (key: "p50Ms" | "p99Ms" | "p999Ms"): number => Math.max(0, ...results.map((r) => r[key]));
  return {
    ...recordBase(run, topic, settings, metered, messages, command),
    msgsPerSec: seconds > 0 ? Math.round(messages / seconds) : 0,
    mbPerSec: seconds > 0 ? Number((bytes / seconds / 1e6).toFixed(1)) : 0,
    p50Ms: worst("p50Ms"),
    p99Ms: worst("p99Ms"),
    p999Ms: worst("p999Ms"),
    messages,
    seconds: Number(seconds.toFixed(3)),
    members: results.map(figuresOf),
  };
}
