/**
 * The runs of issue #5, each on a cluster of its own (cluster.ts), fresh for every attempt:
 *
 * - three-writers (the box's ceiling for three copies): three broker groups b1..b3, each a lone
 *   master (no etcd, no slaves), one name server; three `sluice bench produce` processes, one
 *   per group, that start their timed part at the same instant of the shared monotonic clock
 *   (`--start-at-us`). Figure: the messages all three had acknowledged inside the window where
 *   all three ran (from the last start to the first end, read off each writer's timeline), per
 *   second of that window.
 * - replicated-produce: etcd, one name server, group b1 = ids 0 (first, so it becomes master),
 *   1 and 2 with `--replication <mode>`; once the master reports both slaves in sync, one
 *   `sluice bench produce --acks all` — the standard produce run, every acknowledged message on
 *   all three brokers. Compared with three-writers per copy (targets.ts).
 * - replication-lag: the same group, `sluice bench replication-lag`: a producer at a fixed rate
 *   to the master and a reader on a slave (cli/src/bench/replication-runners.ts).
 *
 * Broker figures are the cluster's: CPU summed over the brokers (per message produced, every
 * copy included), RSS of the largest broker; each broker's own share is kept in `cluster.servers`.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Sluice } from "../clients/src/index.js";
import { monotonicUs } from "../cli/src/bench/member-result.js";
import type { ReplicationLagResult } from "../cli/src/bench/replication-runners.js";
import type { WriterWindow } from "../cli/src/bench/runners.js";
import {
  clusterUsage, inSyncIds, rolesOf, runClientsMetered, startCluster, waitForGroup,
  type BenchCluster, type BrokerSpec, type MeteredClients, type ServerFigures,
} from "./cluster.js";
import { cpuProfileFlags } from "./execute.js";
import { describeExit } from "./group-execute.js";
import { clientTimeoutMs, partitionsOf, type BenchSettings, type ClusterKind, type RunSpec } from "./plan.js";
import { windowFigures } from "./proc-stats.js";
import { isClusterRecord, writeClusterProfiles } from "./replication-report.js";
import { failure, parseBenchJson, type BenchJson, type RunOutcome, type RunRecord } from "./results.js";

/** The replicated group's name and size (a master and two slaves). */
const REPLICATED_GROUP = "b1";
const REPLICATED_BROKERS = 3;
const IN_SYNC_TIMEOUT_MS = 30_000;
/**
 * Writers start their timed part this long after the orchestrator spawns them: node starts,
 * loads the SDK and warms its routes and connections in well under this even on a busy box,
 * so all three are waiting when the instant comes (each reports its start: see startSpreadMs).
 */
const WRITER_START_DELAY_MS = 5_000;

/** One writer of three-writers, as kept in the result file. */
export interface WriterFigures {
  group: string;
  topic: string;
  messages: number;
  /** This writer alone, over its own timed part. */
  msgsPerSec: number;
  seconds: number;
  /** Its start and end relative to the common window's start, in ms. */
  startMs: number;
  endMs: number;
  p50Ms: number;
  p99Ms: number;
}

/** What a cluster run adds to the standard record. */
export interface ClusterFigures {
  etcd: boolean;
  replication: "none" | "sync" | "async";
  acks: string;
  servers: ServerFigures[];
  /** Replicated runs: the slaves in sync before the client started and after it finished. */
  inSyncBefore: number[];
  inSyncAfter: number[];
  /** three-writers: each writer, and how the window compares with simpler ways to add them up. */
  writers?: WriterFigures[];
  window?: {
    commonSeconds: number;
    /** Last start − first start, and last end − first end, in ms. */
    startSpreadMs: number;
    endSpreadMs: number;
    /** The writers' own rates added up, and all their messages over the union of their windows. */
    sumOfRatesMsgsPerSec: number;
    unionMsgsPerSec: number;
  };
  /** replication-lag: the runner's figures beyond the standard shape. */
  lag?: Omit<ReplicationLagResult, keyof BenchJson | "kind">;
  setupMs: number;
  stopMs: number;
}

export interface ClusterRecord extends RunRecord {
  cluster: ClusterFigures;
}

/** Messages acknowledged by `us`, by linear interpolation between timeline samples (clamped at both ends). */
export function countAt(timeline: readonly [number, number][], us: number): number {
  const first = timeline[0];
  const last = timeline[timeline.length - 1];
  if (first === undefined || last === undefined) return 0;
  if (us <= first[0]) return first[1];
  if (us >= last[0]) return last[1];
  let lo = 0;
  let hi = timeline.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((timeline[mid] as [number, number])[0] <= us) lo = mid;
    else hi = mid;
  }
  const [t0, c0] = timeline[lo] as [number, number];
  const [t1, c1] = timeline[hi] as [number, number];
  return t1 === t0 ? c1 : c0 + ((c1 - c0) * (us - t0)) / (t1 - t0);
}

/** The window all writers ran in (last start to first end) and the messages they acknowledged inside it. */
export function commonWindow(writers: readonly WriterWindow[]): { fromUs: number; toUs: number; messages: number } {
  if (writers.length === 0) throw new Error("no writers to add up");
  const fromUs = Math.max(...writers.map((w) => w.startUs));
  const toUs = Math.min(...writers.map((w) => w.endUs));
  if (toUs <= fromUs) throw new Error(`the writers did not run at the same time (last start ${fromUs} µs, first end ${toUs} µs)`);
  const messages = writers.reduce((sum, w) => sum + countAt(w.timeline, toUs) - countAt(w.timeline, fromUs), 0);
  return { fromUs, toUs, messages: Math.round(messages) };
}

function parseJsonObject(what: string, stdout: string): Record<string, unknown> {
  try {
    return JSON.parse(stdout.trim()) as Record<string, unknown>;
  } catch {
    throw new Error(`${what} did not print one JSON document; stdout was: ${stdout.trim().slice(0, 300) || "(empty)"}`);
  }
}

/** `bench produce --start-at-us --json`: the standard figures plus the window and timeline. */
function parseWriterJson(stdout: string): BenchJson & WriterWindow {
  const figures = parseBenchJson(stdout);
  const value = parseJsonObject("a writer", stdout);
  const timeline = value.timeline;
  const valid = Array.isArray(timeline) && timeline.every((p) => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite));
  if (typeof value.startUs !== "number" || typeof value.endUs !== "number" || !valid) {
    throw new Error(`writer JSON lacks startUs, endUs or a timeline of [µs, messages] pairs: ${stdout.trim().slice(0, 300)}`);
  }
  return { ...figures, startUs: value.startUs, endUs: value.endUs, timeline: timeline as [number, number][] };
}

function parseLagJson(stdout: string): ReplicationLagResult {
  const value = parseJsonObject("the replication-lag client", stdout);
  if (value.kind !== "replication-lag") throw new Error(`the replication-lag client printed JSON of another kind: ${stdout.trim().slice(0, 300)}`);
  return value as unknown as ReplicationLagResult;
}

function lagExtras(r: ReplicationLagResult): NonNullable<ClusterFigures["lag"]> {
  return {
    afterAckP50Ms: r.afterAckP50Ms, afterAckP99Ms: r.afterAckP99Ms, afterAckP999Ms: r.afterAckP999Ms, afterAckMinMs: r.afterAckMinMs,
    ackP50Ms: r.ackP50Ms, ackP99Ms: r.ackP99Ms, ackP999Ms: r.ackP999Ms, maxLagMs: r.maxLagMs,
    missingOnSlave: r.missingOnSlave, failedSends: r.failedSends, lateTicks: r.lateTicks, slave: r.slave,
  };
}

function brokersOf(run: RunSpec & { kind: ClusterKind }): BrokerSpec[] {
  const flush = ["--flush", run.flush];
  if (run.kind === "three-writers") {
    return Array.from({ length: run.members ?? 3 }, (_, i) => ({ group: `b${i + 1}`, id: 0, args: flush }));
  }
  const replication = ["--replication", run.replication ?? "async"];
  return Array.from({ length: REPLICATED_BROKERS }, (_, id) => ({ group: REPLICATED_GROUP, id, args: [...flush, ...replication] }));
}

interface RunContext {
  run: RunSpec & { kind: ClusterKind };
  settings: BenchSettings;
  cluster: BenchCluster;
  sluice: Sluice;
  clientProfileDir: string | undefined;
}

/** Exit codes and output of every client checked; the first problem as a message. */
function clientProblem(metered: MeteredClients, timeoutMs: number, cluster: BenchCluster): string | undefined {
  const dead = cluster.processes().filter((p) => !p.alive());
  if (dead.length > 0) return `a server exited during the run; its stderr:\n${dead.map((p) => p.stderrTail()).join("\n")}`;
  for (const [i, client] of metered.runs.entries()) {
    if (client.code !== 0) return `client ${i + 1}/${metered.runs.length} ${describeExit(client.code, client.timedOut, timeoutMs)}`;
  }
  return undefined;
}

function baseRecord(
  ctx: RunContext,
  metered: MeteredClients,
  topic: string,
  partitions: number,
  usage: ReturnType<typeof clusterUsage>,
  command: string[],
): Omit<RunRecord, keyof BenchJson> {
  const { servers: _servers, ...brokerUsage } = usage;
  return {
    name: ctx.run.name,
    kind: ctx.run.kind,
    flush: ctx.run.flush,
    size: ctx.run.size,
    requestedMessages: ctx.run.kind === "three-writers" ? ctx.run.messages * (ctx.run.members ?? 3) : ctx.run.messages,
    rate: ctx.run.rate ?? null,
    topic,
    partitions,
    ...brokerUsage,
    ...windowFigures(metered),
    profiled: ctx.settings.profile,
    command,
  };
}

/** A fresh topic of `partitions` partitions placed round robin over `groups`. */
async function createTopic(ctx: RunContext, groups: string[], partitions: number): Promise<string> {
  const topic = `bench-${ctx.run.name}-${groups.join("-")}-${Date.now().toString(36)}`;
  const created = await ctx.sluice.admin().createTopic(topic, { partitions, brokers: groups });
  const homeless = created.placement.filter((p) => p.master === null).map((p) => p.partition);
  if (homeless.length > 0) throw new Error(`topic ${topic}: partitions ${homeless.join(", ")} have no master in ${groups.join(", ")}`);
  return topic;
}

function produceArgs(ctx: RunContext, topic: string, messages: number, extra: string[]): string[] {
  return [
    "--nameserver", ctx.cluster.nameserver, "--json", "bench", "produce", "--topic", topic, "--messages", String(messages),
    "--size", String(ctx.run.size), "--acks", ctx.run.acks ?? "leader", ...extra,
  ];
}

/**
 * Each group gets `messages` × `partitions`; with one writer per group each writes its own
 * topic, with fewer every writer writes one topic placed over all groups.
 */
async function threeWriters(ctx: RunContext, figures: Pick<ClusterFigures, "setupMs">): Promise<RunOutcome> {
  const { run, settings, cluster } = ctx;
  const groups = cluster.brokers.map((b) => b.group);
  const writerCount = run.writers ?? groups.length;
  const partitions = partitionsOf(run, settings);
  const topics: string[] = [];
  if (writerCount === groups.length) for (const group of groups) topics.push(await createTopic(ctx, [group], partitions));
  else {
    const shared = await createTopic(ctx, groups, partitions * groups.length);
    for (let i = 0; i < writerCount; i++) topics.push(shared);
  }
  const perWriter = Math.round((run.messages * groups.length) / writerCount);
  const roles = await rolesOf(ctx.sluice);
  const startAtUs = monotonicUs() + WRITER_START_DELAY_MS * 1000;
  const clientArgs = topics.map((topic) => produceArgs(ctx, topic, perWriter, ["--start-at-us", String(startAtUs)]));
  const timeoutMs = clientTimeoutMs(run, settings) + WRITER_START_DELAY_MS;
  const metered = await runClientsMetered(cluster, clientArgs, {
    timeoutMs, settings, meterFromUs: startAtUs, ...(ctx.clientProfileDir ? { clientProfileDir: ctx.clientProfileDir } : {}),
  });
  const command = ["node", "bin/sluice.js", ...(clientArgs[0] ?? [])];
  const stderr = metered.runs.map((r) => r.stderrTail.trim()).filter(Boolean).join("\n");
  const problem = clientProblem(metered, timeoutMs, cluster);
  if (problem !== undefined) return failure(run, metered.startedAt, command.slice(2), problem, null, stderr);
  let writers: (BenchJson & WriterWindow)[];
  let window: ReturnType<typeof commonWindow>;
  try {
    writers = metered.runs.map((r) => parseWriterJson(r.stdout));
    window = commonWindow(writers);
  } catch (err) {
    return failure(run, metered.startedAt, command.slice(2), (err as Error).message, null, stderr);
  }
  const total = writers.reduce((sum, w) => sum + w.messages, 0);
  const seconds = (window.toUs - window.fromUs) / 1e6;
  const unionSeconds = (Math.max(...writers.map((w) => w.endUs)) - Math.min(...writers.map((w) => w.startUs))) / 1e6;
  const usage = clusterUsage(cluster, metered.meters, total, roles);
  const worst = (key: "p50Ms" | "p99Ms" | "p999Ms"): number => Math.max(...writers.map((w) => w[key]));
  const record: ClusterRecord = {
    ...baseRecord(ctx, metered, [...new Set(topics)].join(","), writerCount === groups.length ? partitions : partitions * groups.length, usage, command),
    msgsPerSec: Math.round(window.messages / seconds),
    mbPerSec: Number(((window.messages * run.size) / seconds / 1e6).toFixed(1)),
    p50Ms: worst("p50Ms"),
    p99Ms: worst("p99Ms"),
    p999Ms: worst("p999Ms"),
    messages: window.messages,
    seconds: Number(seconds.toFixed(3)),
    cluster: {
      etcd: false,
      replication: "none",
      acks: run.acks ?? "leader",
      servers: usage.servers,
      inSyncBefore: [],
      inSyncAfter: [],
      writers: writers.map((w, i) => ({
        group: writerCount === groups.length ? (groups[i] as string) : groups.join("+"), topic: topics[i] as string, messages: w.messages, msgsPerSec: w.msgsPerSec, seconds: w.seconds,
        startMs: Number(((w.startUs - window.fromUs) / 1000).toFixed(1)), endMs: Number(((w.endUs - window.fromUs) / 1000).toFixed(1)),
        p50Ms: w.p50Ms, p99Ms: w.p99Ms,
      })),
      window: {
        commonSeconds: Number(seconds.toFixed(3)),
        startSpreadMs: Number(((Math.max(...writers.map((w) => w.startUs)) - Math.min(...writers.map((w) => w.startUs))) / 1000).toFixed(1)),
        endSpreadMs: Number(((Math.max(...writers.map((w) => w.endUs)) - Math.min(...writers.map((w) => w.endUs))) / 1000).toFixed(1)),
        sumOfRatesMsgsPerSec: writers.reduce((sum, w) => sum + w.msgsPerSec, 0),
        unionMsgsPerSec: Math.round(total / unionSeconds),
      },
      setupMs: figures.setupMs,
      stopMs: 0,
    },
  };
  return record;
}

/** replicated-produce and replication-lag: b1 with a master and two slaves in sync, one client. */
async function replicated(ctx: RunContext, figures: Pick<ClusterFigures, "setupMs">): Promise<RunOutcome> {
  const { run, settings, cluster } = ctx;
  const { inSync } = await waitForGroup(ctx.sluice, REPLICATED_GROUP, REPLICATED_BROKERS - 1, IN_SYNC_TIMEOUT_MS);
  const topic = await createTopic(ctx, [REPLICATED_GROUP], partitionsOf(run, settings));
  const roles = await rolesOf(ctx.sluice);
  const inSyncBefore = inSync.map((b) => b.id);
  const lagRun = run.kind === "replication-lag";
  const slave = inSync[0]?.address as string;
  const args = lagRun
    ? [
        "--nameserver", cluster.nameserver, "--json", "bench", "replication-lag", "--topic", topic, "--messages", String(run.messages),
        "--size", String(run.size), "--rate", String(run.rate ?? 20_000), "--slave", slave,
      ]
    : produceArgs(ctx, topic, run.messages, []);
  const timeoutMs = clientTimeoutMs(run, settings);
  const metered = await runClientsMetered(cluster, [args], { timeoutMs, settings, ...(ctx.clientProfileDir ? { clientProfileDir: ctx.clientProfileDir } : {}) });
  const command = ["node", "bin/sluice.js", ...args];
  const stderr = metered.runs[0]?.stderrTail ?? "";
  const problem = clientProblem(metered, timeoutMs, cluster);
  if (problem !== undefined) return failure(run, metered.startedAt, args, problem, metered.runs[0]?.code ?? null, stderr);
  let result: BenchJson;
  let lag: ClusterFigures["lag"];
  try {
    result = parseBenchJson(metered.runs[0]?.stdout ?? "");
    if (lagRun) lag = lagExtras(parseLagJson(metered.runs[0]?.stdout ?? ""));
  } catch (err) {
    return failure(run, metered.startedAt, args, (err as Error).message, 0, stderr);
  }
  const inSyncAfter = await inSyncIds(ctx.sluice, REPLICATED_GROUP);
  const usage = clusterUsage(cluster, metered.meters, result.messages, roles);
  const record: ClusterRecord = {
    ...baseRecord(ctx, metered, topic, partitionsOf(run, settings), usage, command),
    ...result,
    cluster: {
      etcd: true,
      replication: run.replication ?? "async",
      acks: run.acks ?? "leader",
      servers: usage.servers,
      inSyncBefore,
      inSyncAfter,
      ...(lag === undefined ? {} : { lag }),
      setupMs: figures.setupMs,
      stopMs: 0,
    },
  };
  return record;
}

/**
 * One attempt of a cluster run: start its cluster, run, stop and delete the cluster (always).
 * With SLUICE_BENCH_PROFILE, every broker and the clients run under --cpu-prof and the run's
 * profile summary goes to <resultsDir>/<run>.profile.txt.
 */
export async function executeClusterRun(
  run: RunSpec & { kind: ClusterKind },
  options: { settings: BenchSettings; profilesDir: string; resultsDir: string },
): Promise<RunOutcome> {
  const { settings } = options;
  const runProfileDir = settings.profile ? join(options.profilesDir, run.name) : undefined;
  const brokerProfileDir = (b: BrokerSpec): string | undefined => (runProfileDir ? join(runProfileDir, `broker-${b.group}-${b.id}`) : undefined);
  const setupStarted = Date.now();
  let cluster: BenchCluster | undefined;
  let sluice: Sluice | undefined;
  let outcome: RunOutcome;
  try {
    cluster = await startCluster({
      etcd: run.kind !== "three-writers",
      brokers: brokersOf(run),
      brokerNodeFlags: (b) => {
        const dir = brokerProfileDir(b);
        return [...settings.brokerNodeFlags, ...(dir ? cpuProfileFlags(dir) : [])];
      },
    });
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "bench-orchestrator" });
    const ctx: RunContext = { run, settings, cluster, sluice, clientProfileDir: runProfileDir ? join(runProfileDir, "client") : undefined };
    const setup = { setupMs: Date.now() - setupStarted };
    outcome = run.kind === "three-writers" ? await threeWriters(ctx, setup) : await replicated(ctx, setup);
  } catch (err) {
    const stderr = cluster?.processes().map((p) => p.stderrTail().trim()).filter(Boolean).join("\n") ?? "";
    outcome = failure(run, new Date().toISOString(), [], (err as Error).message, null, stderr);
  } finally {
    await sluice?.close();
  }
  const stopStarted = Date.now();
  await cluster?.stop();
  if (isClusterRecord(outcome)) outcome.cluster.stopMs = Date.now() - stopStarted;
  if (runProfileDir && isClusterRecord(outcome) && cluster) {
    const text = writeClusterProfiles(outcome, cluster.brokers.map((b) => ({ label: `broker ${b.group}/${b.id}`, dir: brokerProfileDir(b) as string })), join(runProfileDir, "client"));
    writeFileSync(join(options.resultsDir, `${run.name}.profile.txt`), text);
    process.stdout.write(text + "\n");
  }
  return outcome;
}
