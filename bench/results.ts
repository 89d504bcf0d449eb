/**
 * What one benchmark run produced: the client's JSON (contract.md's `bench --json` shape),
 * checked on the way in, plus what the orchestrator measured about the broker around it.
 */
import type { MemberResult } from "../cli/src/bench/member-result.js";
import type { FlowFigures } from "./flow-rules.js";
import type { BenchResult } from "../cli/src/bench/stats.js";
import type { BrokerUsage } from "./proc-stats.js";
import type { BenchKind, RunSpec } from "./plan.js";
import type { FlushPolicy } from "./processes.js";

/** `sluice bench --json`: `{"msgsPerSec","mbPerSec","p50Ms","p99Ms","p999Ms","messages","seconds"}`. */
export type BenchJson = BenchResult;

const BENCH_JSON_KEYS = ["msgsPerSec", "mbPerSec", "p50Ms", "p99Ms", "p999Ms", "messages", "seconds"] as const;

/** Parses the single JSON document a `sluice bench --json` client printed; throws with the text when it is not one. */
export function parseBenchJson(stdout: string): BenchJson {
  const text = stdout.trim();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`bench client did not print one JSON document; stdout was: ${text.slice(0, 300) || "(empty)"}`);
  }
  const record = value as Record<string, unknown>;
  const missing = BENCH_JSON_KEYS.filter((key) => typeof record?.[key] !== "number" || !Number.isFinite(record[key]));
  if (missing.length > 0) throw new Error(`bench JSON lacks numeric ${missing.join(", ")}: ${text.slice(0, 300)}`);
  const out = {} as BenchJson;
  for (const key of BENCH_JSON_KEYS) out[key] = record[key] as number;
  return out;
}

const MEMBER_JSON_KEYS = ["messages", "bytes", "firstUs", "lastUs", "seconds", "msgsPerSec", "p50Ms", "p99Ms", "p999Ms", "startupMs", "failedAcks", "pid"] as const;

/** Parses what one member process of a group run printed (`sluice bench group-consume | queue --json`). */
export function parseMemberJson(stdout: string): MemberResult {
  const text = stdout.trim();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`bench member did not print one JSON document; stdout was: ${text.slice(0, 300) || "(empty)"}`);
  }
  const record = value as Record<string, unknown>;
  const missing = MEMBER_JSON_KEYS.filter((key) => typeof record?.[key] !== "number" || !Number.isFinite(record[key]));
  if (missing.length > 0 || typeof record.partitions !== "object" || record.partitions === null) {
    throw new Error(`bench member JSON lacks numeric ${[...missing, "partitions"].join(", ")}: ${text.slice(0, 300)}`);
  }
  return value as MemberResult;
}

/** One member process of a group run, as kept in the result file. */
export interface MemberFigures {
  pid: number;
  messages: number;
  msgsPerSec: number;
  seconds: number;
  /** Messages per partition. */
  partitions: Record<string, number>;
  startupMs: number;
  p50Ms: number;
  p99Ms: number;
  failedAcks: number;
}

/** The rebalance run's figures (rebalance-execute.ts explains each). */
export interface RebalanceFigures {
  sessionTimeoutMs: number;
  /** "SIGTERM": the member closes (commits, leaves); "SIGKILL": the coordinator notices after the session timeout. */
  leave: "SIGTERM" | "SIGKILL";
  leaverPartitions: number[];
  /** Per partition of the leaver: ms from the leave to the new owner's assignment and first message. */
  handovers: { partition: number; newOwnerPid: number | null; assignedMs: number | null; firstMessageMs: number | null }[];
  /** Longest gap between messages on the partitions the other members kept, before and after the leave. */
  othersMaxGapBeforeMs: number;
  othersMaxGapAfterMs: number;
  /** When that longest gap after the leave ended, in ms after the leave. */
  othersMaxGapAfterEndMs: number;
  /** Those partitions kept by their owner throughout (false: a partition moved that should not have). */
  othersKeptPartitions: boolean;
  producedMessages: number;
}

/** bench/results/<name>.json for a run that completed. */
export interface RunRecord extends BenchJson, BrokerUsage {
  name: string;
  kind: BenchKind;
  flush: FlushPolicy;
  size: number;
  requestedMessages: number;
  rate: number | null;
  topic: string;
  partitions: number;
  /** CPU of the client process, up to its last 100 ms sample before it exited (a slight undercount). */
  clientCpuMs: number;
  clientPeakRssMb: number;
  /** From the client printing its result to its exit: long means something kept it alive. */
  clientShutdownMs: number;
  /** ISO time the measured client started. */
  startedAt: string;
  /** Monotonic window of the measured client, in µs of process.hrtime (the clock .cpuprofile files use). */
  windowUs: { from: number; to: number };
  /** The machine's 1-minute load average when the run started: above the core count, other work competed. */
  loadAverage1m: number;
  /** How long the run waited for earlier data to be written back, and how much was still unwritten (MB). */
  settleWaitMs: number;
  unwrittenMbAtStart: number;
  /**
   * Every attempt when SLUICE_BENCH_REPEAT > 1. The record's own figures are the median
   * attempt's (by msgs/s, or by p99 for e2e), except brokerPeakRssMb: the largest of all.
   */
  attempts?: AttemptFigures[];
  /** True when broker and client ran under --cpu-prof (figures perturbed). */
  profiled: boolean;
  command: string[];
  /**
   * Group runs (several member processes): each member's figures. The record's own figures
   * are the group's: messages summed, msgs/s from the first message of any member to the last
   * of any, latencies the worst member's. clientCpuMs sums the members, clientPeakRssMb is the largest.
   */
  members?: MemberFigures[];
  /** rebalance: the slowest handover, ms from the leave to the leaver's last partition being read by its new owner. */
  handoverMs?: number;
  /** rebalance: the longest gap on the other members' own partitions after the leave. */
  othersMaxGapMs?: number;
  rebalance?: RebalanceFigures;
  /** Runs under flow rules (issue #6): the rules, the broker's decisions under them, achieved / limit. */
  flow?: FlowFigures;
}

/** The figures of one attempt, kept beside the median when a run is repeated. */
export interface AttemptFigures {
  msgsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  brokerCpuUsPerMsg: number;
  brokerPeakRssMb: number;
  loadAverage1m: number;
  /** rebalance runs only. */
  handoverMs?: number;
  othersMaxGapMs?: number;
}

/** bench/results/<name>.json for a run whose client or setup failed. */
export interface RunFailure {
  name: string;
  kind: BenchKind;
  flush: FlushPolicy;
  size: number;
  startedAt: string;
  failed: true;
  error: string;
  exitCode: number | null;
  stderrTail: string;
  command: string[];
}

export type RunOutcome = RunRecord | RunFailure;

export function isFailure(outcome: RunOutcome): outcome is RunFailure {
  return "failed" in outcome;
}

export function failure(run: RunSpec, startedAt: string, command: string[], error: string, exitCode: number | null, stderrTail: string): RunFailure {
  return { name: run.name, kind: run.kind, flush: run.flush, size: run.size, startedAt, failed: true, error, exitCode, stderrTail, command };
}

/** Throughput runs are ranked by msgs/s; latency runs by p99, rebalance by handover (lower is better). */
function rank(record: RunRecord): number {
  if (record.kind === "rebalance") return -(record.handoverMs ?? Number.POSITIVE_INFINITY);
  return record.kind === "e2e" || record.kind === "replication-lag" ? -record.p99Ms : record.msgsPerSec;
}

/**
 * One outcome for a repeated run: the first failure if any attempt failed, else the median
 * attempt (the lower middle one for an even count), carrying every attempt's figures and the
 * largest broker RSS seen by any of them.
 */
export function medianOutcome(attempts: readonly RunOutcome[]): RunOutcome {
  if (attempts.length === 0) throw new Error("no attempts to choose from");
  const failed = attempts.find(isFailure);
  if (failed) return failed;
  const records = attempts as readonly RunRecord[];
  if (records.length === 1) return records[0] as RunRecord;
  const sorted = [...records].sort((a, b) => rank(a) - rank(b));
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as RunRecord;
  return {
    ...median,
    brokerPeakRssMb: Math.max(...records.map((r) => r.brokerPeakRssMb)),
    attempts: records.map((r) => ({
      msgsPerSec: r.msgsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, brokerCpuUsPerMsg: r.brokerCpuUsPerMsg,
      brokerPeakRssMb: r.brokerPeakRssMb, loadAverage1m: r.loadAverage1m,
      ...(r.handoverMs === undefined ? {} : { handoverMs: r.handoverMs, othersMaxGapMs: r.othersMaxGapMs ?? 0 }),
    })),
  };
}
