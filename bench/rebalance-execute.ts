/**
 * The rebalance run (issue #4): what a consumer group does when one member leaves.
 *
 *   1. a topic of P partitions and a producer at a steady rate (each partition gets a
 *      message every few ms);
 *   2. M members join; once the group is stable (every member holds P / M partitions) and has
 *      consumed steadily for STEADY_MS, one member is sent SIGTERM (it closes: commits and
 *      leaves) or SIGKILL (a crash: the coordinator notices after the session timeout);
 *   3. once the leaver's partitions are held by the others, the run watches for OBSERVE_MS
 *      more, stops the producer, lets the members drain, then stops them with SIGTERM.
 *
 * Figures (all from process.hrtime, one clock for the processes of the machine):
 *   - handover of a partition: from the leave (the signal) to its new owner's first message
 *     on it; the run's handoverMs is the slowest partition. Target: ≤ 1 s + session timeout.
 *   - the others never stop: the longest gap between two messages on the partitions the
 *     other members held before the leave, after it (and, for comparison, before it).
 */
import { Sluice } from "../clients/src/index.js";
import { monotonicUs } from "../cli/src/bench/member-result.js";
import type { Episode, RebalanceMemberResult, SteadyProduceResult } from "../cli/src/bench/rebalance-runners.js";
import { describeExit, freshGroup, recordBase, runMetered, type MeteredMembers } from "./group-execute.js";
import type { BenchSettings, RunSpec } from "./plan.js";
import { runCli, type DevServer } from "./processes.js";
import { failure, type RebalanceFigures, type RunOutcome } from "./results.js";

/** Consumption before the leave that the "before" gaps are taken from. */
const STEADY_MS = 2_000;
/** Watching after the handover completed: the others' gaps there count too. */
const OBSERVE_MS = 2_000;
/** From stopping the producer to stopping the members: they read what is left. */
const DRAIN_MS = 500;
const STABLE_TIMEOUT_MS = 30_000;
/** On top of the session timeout, the longest wait for the leaver's partitions to be held again. */
const HANDOVER_TIMEOUT_EXTRA_MS = 15_000;
const POLL_MS = 50;
const TOPIC_CREATE_TIMEOUT_MS = 30_000;
/** Whole-run allowance for each process (they are stopped by signal long before). */
const PROCESS_TIMEOUT_MS = 120_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseJson<T>(what: string, stdout: string, kind: string): T {
  let value: unknown;
  try {
    value = JSON.parse(stdout.trim());
  } catch {
    throw new Error(`${what} did not print one JSON document; stdout was: ${stdout.trim().slice(0, 300) || "(empty)"}`);
  }
  if ((value as { kind?: unknown })?.kind !== kind) throw new Error(`${what} printed JSON of another kind: ${stdout.trim().slice(0, 300)}`);
  return value as T;
}

/** pid → partitions, per the coordinator; clientId is bench-rebalance-<pid> (rebalance-runners.ts). */
async function holdings(sluice: Sluice, group: string): Promise<{ state: string; byPid: Map<number, number[]> }> {
  const described = await sluice.admin().describeGroup(group);
  const byPid = new Map<number, number[]>();
  for (const member of described.members) {
    const pid = Number(/bench-rebalance-(\d+)$/.exec(member.clientId)?.[1] ?? NaN);
    byPid.set(pid, member.assignments.map((a) => a.partition).sort((a, b) => a - b));
  }
  return { state: described.state, byPid };
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const found = await probe();
      if (found !== undefined) return found;
    } catch (err) {
      lastError = err; // The group may not exist yet.
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms${lastError ? ` (last error: ${String(lastError)})` : ""}`);
    await sleep(POLL_MS);
  }
}

interface Timeline {
  stableUs: number;
  leaveUs: number;
  leaverPid: number;
  leaverPartitions: number[];
  /** The partitions each other member held just before the leave. */
  othersBefore: Map<number, number[]>;
}

/** Figures from what the members logged (see the file comment). */
export function rebalanceFigures(
  timeline: Timeline,
  members: RebalanceMemberResult[],
  signal: RebalanceFigures["leave"],
  sessionTimeoutMs: number,
  producedMessages: number,
): RebalanceFigures {
  const others = members.filter((m) => m.pid !== timeline.leaverPid);
  const handovers = timeline.leaverPartitions.map((partition) => {
    let best: { pid: number; episode: Episode } | undefined;
    for (const member of others) {
      for (const episode of member.episodes) {
        if (episode.partition !== partition || episode.assignedUs < timeline.leaveUs) continue;
        if (best === undefined || episode.assignedUs < best.episode.assignedUs) best = { pid: member.pid, episode };
      }
    }
    const ms = (us: number | null | undefined): number | null => (us === null || us === undefined ? null : Number(((us - timeline.leaveUs) / 1000).toFixed(1)));
    return { partition, newOwnerPid: best?.pid ?? null, assignedMs: ms(best?.episode.assignedUs), firstMessageMs: ms(best?.episode.firstMessageUs) };
  });
  let before = 0;
  let after = 0;
  let afterEndUs = timeline.leaveUs;
  let kept = true;
  for (const member of others) {
    const original = new Set(timeline.othersBefore.get(member.pid) ?? []);
    for (const episode of member.episodes) {
      const heldAtLeave = episode.assignedUs < timeline.leaveUs && (episode.releasedUs === null || episode.releasedUs > timeline.leaveUs);
      if (!heldAtLeave || !original.has(episode.partition)) continue;
      // Released before this member was told to stop: a partition moved that had no reason to.
      if (episode.releasedUs !== null && episode.releasedUs < member.signalUs) kept = false;
      for (const gap of episode.gaps) {
        if (gap.endUs > timeline.leaveUs && gap.endUs <= member.signalUs) {
          if (gap.ms > after) afterEndUs = gap.endUs;
          after = Math.max(after, gap.ms);
        }
        else if (gap.endUs > timeline.stableUs && gap.endUs <= timeline.leaveUs) before = Math.max(before, gap.ms);
      }
    }
  }
  return {
    sessionTimeoutMs,
    leave: signal,
    leaverPartitions: timeline.leaverPartitions,
    handovers,
    othersMaxGapBeforeMs: before,
    othersMaxGapAfterMs: after,
    othersMaxGapAfterEndMs: Number(((afterEndUs - timeline.leaveUs) / 1000).toFixed(1)),
    othersKeptPartitions: kept,
    producedMessages,
  };
}

export async function executeRebalance(
  run: RunSpec,
  topic: string,
  dev: DevServer,
  options: { settings: BenchSettings; clientProfileDir?: string },
): Promise<RunOutcome> {
  const { settings } = options;
  const nameserver = dev.info.nameserver;
  const partitions = run.partitions ?? settings.partitions;
  const memberCount = run.members ?? 3;
  const sessionTimeoutMs = run.sessionTimeoutMs ?? 10_000;
  const signal: RebalanceFigures["leave"] = run.leave ?? "SIGTERM";
  const group = freshGroup(run);
  const created = await runCli(["--nameserver", nameserver, "topic", "create", topic, "--partitions", String(partitions)], { timeoutMs: TOPIC_CREATE_TIMEOUT_MS });
  if (created.code !== 0) return failure(run, new Date().toISOString(), [], `creating topic ${topic} failed`, created.code, created.stderrTail);
  const producerArgs = [
    "--nameserver", nameserver, "--json", "bench", "steady-produce", "--topic", topic,
    "--rate", String(run.rate ?? 6000), "--messages", String(run.messages), "--size", String(run.size),
  ];
  const memberArgs = [
    "--nameserver", nameserver, "--json", "bench", "rebalance-member", "--topic", topic, "--group", group,
    "--session-timeout-ms", String(sessionTimeoutMs),
  ];
  const command = ["node", "bin/sluice.js", ...memberArgs];
  let producerPid = 0;
  const memberPids: number[] = [];
  let timeline: Timeline | undefined;
  let orchestrationError: Error | undefined;
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "bench-orchestrator" });
  const stop = (pid: number, how: NodeJS.Signals): void => {
    // pid 0 would signal the orchestrator's own process group.
    if (pid <= 0) return;
    try {
      process.kill(pid, how);
    } catch {
      // Already gone: its exit code tells what happened.
    }
  };
  const orchestrate = async (): Promise<void> => {
    try {
      const stable = await waitFor(`the group did not become stable with ${memberCount} members`, STABLE_TIMEOUT_MS, async () => {
        const seen = await holdings(sluice, group);
        const even = [...seen.byPid.values()].every((held) => held.length >= Math.floor(partitions / memberCount) && held.length <= Math.ceil(partitions / memberCount));
        return seen.state === "stable" && seen.byPid.size === memberCount && even ? seen : undefined;
      });
      const stableUs = monotonicUs();
      await sleep(STEADY_MS);
      const before = await holdings(sluice, group);
      const leaverPid = memberPids[0] as number;
      const leaverPartitions = before.byPid.get(leaverPid) ?? stable.byPid.get(leaverPid) ?? [];
      const leaveUs = monotonicUs();
      stop(leaverPid, signal);
      timeline = { stableUs, leaveUs, leaverPid, leaverPartitions, othersBefore: before.byPid };
      await waitFor(`the leaver's partitions were not taken over`, sessionTimeoutMs + HANDOVER_TIMEOUT_EXTRA_MS, async () => {
        const now = await holdings(sluice, group);
        const heldByOthers = new Set([...now.byPid].filter(([pid]) => pid !== leaverPid).flatMap(([, held]) => held));
        return !now.byPid.has(leaverPid) && leaverPartitions.every((p) => heldByOthers.has(p)) ? true : undefined;
      });
      await sleep(OBSERVE_MS);
    } catch (err) {
      orchestrationError = err as Error;
    } finally {
      stop(producerPid, "SIGTERM");
      await sleep(DRAIN_MS);
      for (const pid of memberPids) stop(pid, "SIGTERM");
    }
  };
  let metered: MeteredMembers;
  try {
    metered = await runMetered(
      dev,
      [
        { args: producerArgs, onSpawn: (pid) => (producerPid = pid) },
        ...Array.from({ length: memberCount }, () => ({ args: memberArgs, onSpawn: (pid: number) => memberPids.push(pid) })),
      ],
      { timeoutMs: PROCESS_TIMEOUT_MS, settings, ...(options.clientProfileDir ? { clientProfileDir: options.clientProfileDir } : {}), whileRunning: orchestrate },
    );
  } finally {
    await sluice.close();
  }
  const [producerRun, ...memberRuns] = metered.runs;
  const stderr = metered.runs.map((r) => r.stderrTail.trim()).filter(Boolean).join("\n");
  if (!dev.alive()) return failure(run, metered.startedAt, memberArgs, `the broker exited during the run; its stderr:\n${dev.stderrTail()}`, null, stderr);
  if (orchestrationError !== undefined || timeline === undefined) {
    return failure(run, metered.startedAt, memberArgs, orchestrationError?.message ?? "the run did not reach the leave", null, stderr);
  }
  let produced: SteadyProduceResult;
  const members: RebalanceMemberResult[] = [];
  try {
    if (producerRun?.code !== 0) throw new Error(`the steady producer ${describeExit(producerRun?.code ?? null, producerRun?.timedOut ?? false, PROCESS_TIMEOUT_MS)}`);
    produced = parseJson<SteadyProduceResult>("the steady producer", producerRun.stdout, "steady-produce");
    for (const [i, member] of memberRuns.entries()) {
      // A member killed with SIGKILL has nothing to say: that is the point.
      if (signal === "SIGKILL" && metered.pids[i + 1] === timeline.leaverPid) continue;
      if (member.code !== 0) throw new Error(`member ${i + 1}/${memberCount} ${describeExit(member.code, member.timedOut, PROCESS_TIMEOUT_MS)}`);
      members.push(parseJson<RebalanceMemberResult>(`member ${i + 1}`, member.stdout, "rebalance-member"));
    }
  } catch (err) {
    return failure(run, metered.startedAt, memberArgs, (err as Error).message, null, stderr);
  }
  const figures = rebalanceFigures(timeline, members, signal, sessionTimeoutMs, produced.messages);
  const handovers = figures.handovers.map((h) => h.firstMessageMs);
  const missing = figures.handovers.filter((h) => h.firstMessageMs === null).map((h) => h.partition);
  if (missing.length > 0) {
    return failure(run, metered.startedAt, memberArgs, `no other member read partitions ${missing.join(", ")} after the leave`, null, stderr);
  }
  const messages = members.reduce((sum, m) => sum + m.messages, 0);
  const firstUs = Math.min(...members.flatMap((m) => m.episodes.map((e) => e.firstMessageUs ?? Number.POSITIVE_INFINITY)));
  const lastUs = Math.max(...members.flatMap((m) => m.episodes.map((e) => e.lastMessageUs ?? 0)));
  const seconds = Number.isFinite(firstUs) && lastUs > firstUs ? (lastUs - firstUs) / 1e6 : 0;
  return {
    ...recordBase(run, topic, settings, metered, messages, command),
    msgsPerSec: seconds > 0 ? Math.round(messages / seconds) : 0,
    mbPerSec: seconds > 0 ? Number(((messages * run.size) / seconds / 1e6).toFixed(1)) : 0,
    p50Ms: 0,
    p99Ms: 0,
    p999Ms: 0,
    messages,
    seconds: Number(seconds.toFixed(3)),
    handoverMs: Math.max(...(handovers as number[])),
    othersMaxGapMs: figures.othersMaxGapAfterMs,
    rebalance: figures,
  };
}
