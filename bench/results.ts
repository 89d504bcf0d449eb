/**
 * What one benchmark run produced: the client's JSON (contract.md's `bench --json` shape),
 * checked on the way in, plus what the orchestrator measured about the broker around it.
 */
import type { BrokerUsage } from "./proc-stats.js";
import type { BenchKind, RunSpec } from "./plan.js";
import type { FlushPolicy } from "./processes.js";

/** `sluice bench --json`: `{"msgsPerSec","mbPerSec","p50Ms","p99Ms","p999Ms","messages","seconds"}`. */
export interface BenchJson {
  msgsPerSec: number;
  mbPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  messages: number;
  seconds: number;
}

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
  /** True when broker and client ran under --cpu-prof (figures perturbed). */
  profiled: boolean;
  command: string[];
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
