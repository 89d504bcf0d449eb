/**
 * The standard benchmark set (issues #2, #4, #5 and #6), the security group (issue #8) and the environment knobs that shrink or select it.
 *
 *   SLUICE_BENCH_SCALE=0.1         multiply every message count (rates stay fixed)
 *   SLUICE_BENCH_ONLY=a,b          run only the named runs (e.g. produce-100b); "security" names
 *                                  the security group (issue #8) as a whole
 *   SLUICE_BENCH_PARTITIONS=3      partitions of each bench topic (the group runs keep their own count)
 *   SLUICE_BENCH_TIMEOUT_S=N       kill a bench client after N s (default: grows with the count)
 *   SLUICE_BENCH_REPEAT=3          run each benchmark N times (fresh topic each) and report the
 *                                  median attempt — the box is shared, single runs are noisy
 *   SLUICE_BENCH_PROFILE=1         run broker and clients under `node --cpu-prof` (figures are
 *                                  then perturbed and go to bench/results/profiled/)
 *   SLUICE_BENCH_BROKER_NODE_FLAGS, SLUICE_BENCH_CLIENT_NODE_FLAGS
 *                                  extra node flags for the broker / the bench clients, to try a
 *                                  setting without editing code (e.g. "--max-semi-space-size=32")
 */
import type { FlowRuleInput } from "../clients/src/admin/flow-rules.js";
import { FLOW_RULE_TOPIC } from "./flow-rules.js";
import type { FlushPolicy } from "./processes.js";

export type BenchKind = "produce" | "consume" | "e2e" | MemberKind | ClusterKind;
/** Runs of several member processes at once (group-execute.ts). */
export type MemberKind = "group-consume" | "queue" | "rebalance";
/**
 * Runs on a cluster of their own instead of the shared `sluice dev` (replication-execute.ts):
 * - three-writers: three master-only broker groups, each written by its own client at once;
 * - replicated-produce: one group of a master and two slaves over etcd, one client, acks all;
 * - replication-lag: the same group, a steady producer, a reader on a slave.
 */
export type ClusterKind = "three-writers" | "replicated-produce" | "replication-lag";

export interface RunSpec {
  /** File name of the result and the key targets refer to, e.g. "produce-100b". */
  name: string;
  kind: BenchKind;
  /** Value size in bytes. */
  size: number;
  messages: number;
  flush: FlushPolicy;
  /** Messages per second, for e2e only. */
  rate?: number;
  /** Partitions of the run's topic, whatever SLUICE_BENCH_PARTITIONS says (the group runs' targets assume their count). */
  partitions?: number;
  /** Member processes of a group run. */
  members?: number;
  /** queue: the SDK's prefetch and the acks each member keeps unanswered. */
  prefetch?: number;
  acksInFlight?: number;
  /** rebalance: the members' session timeout, in ms, and how the leaving member goes (a clean close, or a crash). */
  sessionTimeoutMs?: number;
  leave?: "SIGTERM" | "SIGKILL";
  /**
   * three-writers: client processes writing the groups at once (default: one per group, each
   * on a topic of its own; 1: one client on one topic spread over every group).
   */
  writers?: number;
  /** Cluster runs: the group's `--replication` mode (none: no slaves). */
  replication?: "sync" | "async";
  /** Cluster runs: the producer's acks. */
  acks?: "leader" | "all";
  /**
   * Flow rules set on the shared `sluice dev` (with the SDK, on every broker) before the run and
   * deleted after it; FLOW_RULE_TOPIC in a scope stands for the run's topic (flow-rules.ts).
   */
  flowRules?: FlowRuleInput[];
  /** The messages/s the run's flow rules hold it to: the result reports achieved / limit. */
  flowLimitMsgsPerSec?: number;
  /**
   * Security runs (issue #8): which of the group's two `sluice dev` the run goes to — "plain"
   * (open, as every other run) or "secured" (TLS and --auth) — and, on the secured one, as whom
   * the client authenticates: "admin" (the superuser: authenticated, no ACL check) or "alice"
   * (a user with ACLs: one check per produced batch).
   */
  server?: "plain" | "secured";
  user?: "admin" | "alice";
}

export const E2E_RATE_PER_SECOND = 10_000;
/** rebalance: the steady producer's rate, spread evenly over the partitions (1,000 msgs/s each). */
export const REBALANCE_RATE_PER_SECOND = 6_000;
/** rebalance: members' session timeout (the default of the SDK). */
export const REBALANCE_SESSION_TIMEOUT_MS = 10_000;
/** rebalance-crash: a short session timeout, so the crash is noticed within the run (the SDK allows 1 s at least). */
export const REBALANCE_CRASH_SESSION_TIMEOUT_MS = 3_000;
/** Issue #5: the run that measures the box's three-writer ceiling, and the copies a replicated message is written as. */
export const CEILING_RUN = "three-writers-1kib";
export const COPIES = 3;
/** replication-lag: the steady producer's rate (1 KiB messages: 20 MB/s into each of three copies). */
export const REPLICATION_LAG_RATE_PER_SECOND = 20_000;
/**
 * Issue #6, produce-1kib-flow-rules: rules of each kind of scope that match every request and
 * never bind (limits far above what the box can do), so the run shows what evaluating rules on
 * every request costs next to produce-1kib.
 */
export const NEVER_BINDING_FLOW_RULES: readonly FlowRuleInput[] = [
  { scope: "broker", limiter: "token-bucket", messagesPerSecond: 100_000_000, burst: 100_000_000 },
  { scope: "topic:*", limiter: "warm-up", messagesPerSecond: 100_000_000, warmUpMs: 1_000 },
  { scope: "client:*", limiter: "concurrency", maxInFlight: 100_000 },
];
/** Issue #6, produce-1kib-throttled: the token bucket on the run's topic, and the burst it starts with. */
export const THROTTLED_RATE_PER_SECOND = 50_000;
export const THROTTLED_BURST = 5_000;
/** rebalance runs are timed, not counted: this only caps the steady producer (100 s at its rate) should the orchestrator vanish. */
const REBALANCE_PRODUCER_CAP = 600_000;
/** Below this a run is too short for its figures to mean anything. */
const MIN_MESSAGES = 1_000;
const DEFAULT_PARTITIONS = 3;
/** A client gets this long, plus CLIENT_TIMEOUT_US_PER_MESSAGE per message (i.e. it may run as slowly as 5,000 msgs/s). */
const CLIENT_TIMEOUT_BASE_MS = 120_000;
const CLIENT_TIMEOUT_US_PER_MESSAGE = 200;

const STANDARD_SET: readonly RunSpec[] = [
  { name: "produce-100b", kind: "produce", size: 100, messages: 2_000_000, flush: "interval" },
  { name: "produce-1kib", kind: "produce", size: 1024, messages: 500_000, flush: "interval" },
  // Issue #6: the same load under three rules that never bind (the cost of evaluating them), and
  // a producer pushing flat out into a topic limited to 50,000 msgs/s (the limit's accuracy:
  // 500,000 messages take 10 s, so the 5,000 of the initial burst add 1 %).
  { name: "produce-1kib-flow-rules", kind: "produce", size: 1024, messages: 500_000, flush: "interval", flowRules: [...NEVER_BINDING_FLOW_RULES] },
  {
    name: "produce-1kib-throttled", kind: "produce", size: 1024, messages: 500_000, flush: "interval",
    flowRules: [{ scope: `topic:${FLOW_RULE_TOPIC}`, limiter: "token-bucket", messagesPerSecond: THROTTLED_RATE_PER_SECOND, burst: THROTTLED_BURST }],
    flowLimitMsgsPerSec: THROTTLED_RATE_PER_SECOND,
  },
  { name: "consume-100b", kind: "consume", size: 100, messages: 2_000_000, flush: "interval" },
  { name: "consume-1kib", kind: "consume", size: 1024, messages: 500_000, flush: "interval" },
  { name: "e2e-100b", kind: "e2e", size: 100, messages: 50_000, flush: "interval", rate: E2E_RATE_PER_SECOND },
  { name: "group-consume-100b", kind: "group-consume", size: 100, messages: 3_000_000, flush: "interval", partitions: 6, members: 3 },
  {
    name: "queue-100b", kind: "queue", size: 100, messages: 500_000, flush: "interval", partitions: 2, members: 3,
    prefetch: 2_000, acksInFlight: 4_000,
  },
  {
    name: "rebalance", kind: "rebalance", size: 100, messages: REBALANCE_PRODUCER_CAP, flush: "interval", partitions: 6, members: 3,
    rate: REBALANCE_RATE_PER_SECOND, sessionTimeoutMs: REBALANCE_SESSION_TIMEOUT_MS, leave: "SIGTERM",
  },
  {
    name: "rebalance-crash", kind: "rebalance", size: 100, messages: REBALANCE_PRODUCER_CAP, flush: "interval", partitions: 6, members: 3,
    rate: REBALANCE_RATE_PER_SECOND, sessionTimeoutMs: REBALANCE_CRASH_SESSION_TIMEOUT_MS, leave: "SIGKILL",
  },
  { name: "produce-1kib-sync", kind: "produce", size: 1024, messages: 500_000, flush: "sync" },
  // Issue #5. `messages` is per writer for three-writers: each writes what each copy of the
  // replicated run holds, so the disk sees the same bytes in both.
  { name: "three-writers-1kib", kind: "three-writers", size: 1024, messages: 500_000, flush: "interval", members: 3, acks: "leader" },
  // The same three appending brokers fed by one client process, as the replicated run has:
  // shows how much of the ceiling above three clients' own CPU takes on two cores.
  { name: "three-writers-1kib-one-client", kind: "three-writers", size: 1024, messages: 500_000, flush: "interval", members: 3, writers: 1, acks: "leader" },
  { name: "produce-1kib-sync-replicated", kind: "replicated-produce", size: 1024, messages: 500_000, flush: "interval", replication: "sync", acks: "all" },
  {
    name: "replication-lag-async", kind: "replication-lag", size: 1024, messages: REPLICATION_LAG_RATE_PER_SECOND * 10, flush: "interval",
    rate: REPLICATION_LAG_RATE_PER_SECOND, replication: "async", acks: "leader",
  },
];

/** Issue #8: the ACL check micro-benchmark (bench/acl-check.ts, in the orchestrator's process: no server). */
export const ACL_CHECK_RUN = "acl-check";
/** SLUICE_BENCH_ONLY name standing for every run of issue #8. */
export const SECURITY_GROUP = "security";
export const SECURITY_PLAIN_RUN = "produce-100b-plain";
export const SECURITY_TLS_RUN = "produce-100b-tls";
export const SECURITY_ACL_RUN = "produce-100b-tls-alice";

/**
 * Issue #8: the produce-100b load against an open `sluice dev` and against one with TLS and
 * --auth (as admin, then as an ACL'd user). security-execute.ts runs them interleaved.
 */
const SECURITY_SET: readonly RunSpec[] = [
  { name: SECURITY_PLAIN_RUN, kind: "produce", size: 100, messages: 2_000_000, flush: "interval", server: "plain" },
  { name: SECURITY_TLS_RUN, kind: "produce", size: 100, messages: 2_000_000, flush: "interval", server: "secured", user: "admin" },
  { name: SECURITY_ACL_RUN, kind: "produce", size: 100, messages: 2_000_000, flush: "interval", server: "secured", user: "alice" },
];

export interface BenchSettings {
  scale: number;
  only: string[] | undefined;
  partitions: number;
  /** Fixed client timeout; undefined = derived from the message count. */
  timeoutMs: number | undefined;
  profile: boolean;
  /** Attempts per run; the median one is reported. */
  repeat: number;
  brokerNodeFlags: string[];
  clientNodeFlags: string[];
}

function nodeFlags(env: NodeJS.ProcessEnv, name: string): string[] {
  return (env[name] ?? "").split(/\s+/).filter(Boolean);
}

function positiveNumber(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

/** Reads and validates the SLUICE_BENCH_* variables once, at start-up. */
export function parseBenchSettings(env: NodeJS.ProcessEnv): BenchSettings {
  const securityNames = [...SECURITY_SET.map((r) => r.name), ACL_CHECK_RUN];
  const only = env.SLUICE_BENCH_ONLY?.split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .flatMap((name) => (name === SECURITY_GROUP ? securityNames : [name]));
  const known = [...STANDARD_SET.map((r) => r.name), ...securityNames];
  const unknown = only?.filter((name) => !known.includes(name)) ?? [];
  if (unknown.length > 0) throw new Error(`SLUICE_BENCH_ONLY names unknown runs (${unknown.join(", ")}); known: ${known.join(", ")}`);
  const partitions = positiveNumber(env, "SLUICE_BENCH_PARTITIONS") ?? DEFAULT_PARTITIONS;
  if (!Number.isInteger(partitions)) throw new Error(`SLUICE_BENCH_PARTITIONS must be an integer, got ${partitions}`);
  const timeoutS = positiveNumber(env, "SLUICE_BENCH_TIMEOUT_S");
  const repeat = positiveNumber(env, "SLUICE_BENCH_REPEAT") ?? 1;
  if (!Number.isInteger(repeat)) throw new Error(`SLUICE_BENCH_REPEAT must be an integer, got ${repeat}`);
  const profile = ["1", "true", "yes"].includes((env.SLUICE_BENCH_PROFILE ?? "").toLowerCase());
  // A profile summary pairs one broker window with one client profile: one attempt per run.
  if (profile && repeat > 1) throw new Error("SLUICE_BENCH_PROFILE profiles a single attempt per run: leave SLUICE_BENCH_REPEAT unset");
  return {
    scale: positiveNumber(env, "SLUICE_BENCH_SCALE") ?? 1,
    only: only && only.length > 0 ? only : undefined,
    partitions,
    timeoutMs: timeoutS === undefined ? undefined : timeoutS * 1000,
    profile,
    repeat,
    brokerNodeFlags: nodeFlags(env, "SLUICE_BENCH_BROKER_NODE_FLAGS"),
    clientNodeFlags: nodeFlags(env, "SLUICE_BENCH_CLIENT_NODE_FLAGS"),
  };
}

function selected(settings: BenchSettings, name: string): boolean {
  return settings.only === undefined || settings.only.includes(name);
}

function scaled(runs: readonly RunSpec[], settings: BenchSettings): RunSpec[] {
  return runs.filter((run) => selected(settings, run.name)).map((run) => ({
    ...run,
    messages: run.kind === "rebalance" ? run.messages : Math.max(MIN_MESSAGES, Math.round(run.messages * settings.scale)),
  }));
}

/** The standard set, scaled and filtered, in the order it runs. The rebalance run is timed, not counted: it does not scale. */
export function benchPlan(settings: BenchSettings): RunSpec[] {
  return scaled(STANDARD_SET, settings);
}

/** The security group's server runs (issue #8), scaled and filtered; they run after the standard set. */
export function securityPlan(settings: BenchSettings): RunSpec[] {
  return scaled(SECURITY_SET, settings);
}

/** Whether the ACL check micro-benchmark is selected. */
export function aclCheckSelected(settings: BenchSettings): boolean {
  return selected(settings, ACL_CHECK_RUN);
}

export function isMemberRun(run: RunSpec): run is RunSpec & { kind: MemberKind } {
  return run.kind === "group-consume" || run.kind === "queue" || run.kind === "rebalance";
}

export function isClusterRun(run: RunSpec): run is RunSpec & { kind: ClusterKind } {
  return run.kind === "three-writers" || run.kind === "replicated-produce" || run.kind === "replication-lag";
}

/** Partitions of a run's topic: its own count, else SLUICE_BENCH_PARTITIONS. */
export function partitionsOf(run: RunSpec, settings: BenchSettings): number {
  return run.partitions ?? settings.partitions;
}

export function clientTimeoutMs(run: RunSpec, settings: BenchSettings): number {
  return settings.timeoutMs ?? CLIENT_TIMEOUT_BASE_MS + (run.messages * CLIENT_TIMEOUT_US_PER_MESSAGE) / 1000;
}

/** `sluice bench` arguments for a run (global flags first, as the CLI expects them). */
export function benchArgs(run: RunSpec, options: { nameserver: string; topic: string; partitions: number }): string[] {
  const args = [
    "--nameserver", options.nameserver, "--json",
    "bench", run.kind, "--topic", options.topic, "--messages", String(run.messages), "--size", String(run.size),
    "--partitions", String(options.partitions),
  ];
  if (run.rate !== undefined) args.push("--rate", String(run.rate));
  return args;
}

/**
 * A consume run reads a topic filled beforehand by a separate, unmeasured `bench produce`,
 * so the broker CPU and memory measured are those of serving reads only (the consume
 * command would otherwise fill the topic itself, inside the measured window).
 */
export function prefillFor(run: RunSpec): RunSpec | undefined {
  const reads = run.kind === "consume" || run.kind === "group-consume" || run.kind === "queue";
  return reads ? { ...run, name: `${run.name}-prefill`, kind: "produce" } : undefined;
}

/** `sluice bench` arguments of one member process of a group run (not rebalance: see rebalance-execute.ts). */
export function memberArgs(run: RunSpec & { kind: "group-consume" | "queue" }, options: { nameserver: string; topic: string; group: string }): string[] {
  const args = ["--nameserver", options.nameserver, "--json", "bench", run.kind, "--topic", options.topic, "--group", options.group];
  if (run.kind === "group-consume") args.push("--members-expected", String(run.members ?? 1));
  if (run.prefetch !== undefined) args.push("--prefetch", String(run.prefetch));
  if (run.acksInFlight !== undefined) args.push("--acks-in-flight", String(run.acksInFlight));
  return args;
}
