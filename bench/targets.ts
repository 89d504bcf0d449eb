/**
 * The targets of issue #2, checked against the runs, and the summary tables printed at the end.
 * A missed target is reported, not fatal: benchmarks inform, they do not gate.
 */
import { isFailure, type RunOutcome, type RunRecord } from "./results.js";

type Metric = "msgsPerSec" | "p50Ms" | "p99Ms" | "brokerCpuUsPerMsg" | "brokerPeakRssMb" | "messages";

interface Target {
  /** A run name, or "*" for every completed run. */
  run: string;
  metric: Metric;
  label: string;
  comparison: "atLeast" | "atMost";
  /** An absolute bound, or a fraction of another run's figure for the same metric. */
  bound: number | { fractionOf: string; fraction: number } | "requested";
}

export const BROKER_RSS_CEILING_MB = 300;
export const BROKER_CPU_US_PER_100B_RECORD = 1;

export const TARGETS: readonly Target[] = [
  { run: "produce-100b", metric: "msgsPerSec", label: "produce 100 B msgs/s", comparison: "atLeast", bound: 1_000_000 },
  { run: "produce-1kib", metric: "msgsPerSec", label: "produce 1 KiB msgs/s", comparison: "atLeast", bound: 300_000 },
  { run: "consume-100b", metric: "msgsPerSec", label: "consume 100 B msgs/s", comparison: "atLeast", bound: 2_000_000 },
  { run: "consume-100b", metric: "messages", label: "consume 100 B messages read", comparison: "atLeast", bound: "requested" },
  { run: "consume-1kib", metric: "messages", label: "consume 1 KiB messages read", comparison: "atLeast", bound: "requested" },
  { run: "e2e-100b", metric: "p50Ms", label: "e2e p50 ms at 10k msgs/s", comparison: "atMost", bound: 0.5 },
  { run: "e2e-100b", metric: "p99Ms", label: "e2e p99 ms at 10k msgs/s", comparison: "atMost", bound: 2 },
  { run: "e2e-100b", metric: "messages", label: "e2e messages delivered", comparison: "atLeast", bound: "requested" },
  {
    run: "produce-1kib-sync", metric: "msgsPerSec", label: "flush sync 1 KiB msgs/s (≥ 70 % of interval)",
    comparison: "atLeast", bound: { fractionOf: "produce-1kib", fraction: 0.7 },
  },
  { run: "produce-100b", metric: "brokerCpuUsPerMsg", label: "broker CPU µs per 100 B record", comparison: "atMost", bound: BROKER_CPU_US_PER_100B_RECORD },
  { run: "consume-100b", metric: "brokerCpuUsPerMsg", label: "broker CPU µs per 100 B record", comparison: "atMost", bound: BROKER_CPU_US_PER_100B_RECORD },
  { run: "*", metric: "brokerPeakRssMb", label: "broker peak RSS MB", comparison: "atMost", bound: BROKER_RSS_CEILING_MB },
];

export interface CheckResult {
  run: string;
  label: string;
  value: number | null;
  /** The bound it was compared with; null when it could not be computed (a run missing). */
  bound: number | null;
  comparison: "atLeast" | "atMost";
  /** null: not evaluated, because the run (or the run it is relative to) failed or was not selected. */
  met: boolean | null;
}

function boundOf(target: Target, record: RunRecord | undefined, byName: Map<string, RunRecord>): number | null {
  if (typeof target.bound === "number") return target.bound;
  if (target.bound === "requested") return record ? record.requestedMessages : null;
  const reference = byName.get(target.bound.fractionOf);
  return reference ? reference[target.metric] * target.bound.fraction : null;
}

/** Every target that applies to the runs that were planned; runs absent from `outcomes` are skipped. */
export function evaluateTargets(outcomes: readonly RunOutcome[]): CheckResult[] {
  const byName = new Map<string, RunRecord>();
  for (const outcome of outcomes) if (!isFailure(outcome)) byName.set(outcome.name, outcome);
  const planned = outcomes.map((o) => o.name);
  const checks: CheckResult[] = [];
  for (const target of TARGETS) {
    const runs = target.run === "*" ? planned : planned.filter((name) => name === target.run);
    for (const run of runs) {
      const record = byName.get(run);
      const value = record ? record[target.metric] : null;
      const bound = boundOf(target, record, byName);
      const met = value === null || bound === null ? null : target.comparison === "atLeast" ? value >= bound : value <= bound;
      checks.push({ run, label: target.label, value, bound, comparison: target.comparison, met });
    }
  }
  return checks;
}

function formatNumber(n: number | null): string {
  if (n === null) return "—";
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString("en-US");
  return String(Number(n.toFixed(3)));
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n") + "\n";
}

export function renderRuns(outcomes: readonly RunOutcome[]): string {
  const rows = outcomes.map((o) =>
    isFailure(o)
      ? [o.name, o.flush, `FAILED (exit ${o.exitCode ?? "killed"})`, "", "", "", "", "", "", "", ""]
      : [
          o.name, o.flush, formatNumber(o.msgsPerSec), formatNumber(o.mbPerSec), formatNumber(o.p50Ms), formatNumber(o.p99Ms),
          formatNumber(o.p999Ms), formatNumber(o.messages), formatNumber(o.brokerCpuUsPerMsg), formatNumber(o.brokerPeakRssMb),
          formatNumber(o.brokerHighWaterRssMb),
        ],
  );
  return table(["run", "flush", "msgs/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms", "messages", "broker CPU µs/msg", "broker peak RSS MB", "VmHWM MB"], rows);
}

/** Who was busy: CPU of broker and client from the client's start to its result (the machine's cores are shared by both). */
export function renderCpu(outcomes: readonly RunOutcome[]): string {
  const rows: string[][] = [];
  for (const o of outcomes) {
    if (isFailure(o)) continue;
    const wallMs = (o.windowUs.to - o.windowUs.from) / 1000;
    const cores = (cpuMs: number): string => (wallMs > 0 ? (cpuMs / wallMs).toFixed(2) : "—");
    rows.push([
      o.name, (wallMs / 1000).toFixed(2), o.seconds.toFixed(2),
      `${(o.brokerCpuMs / 1000).toFixed(2)} (${(o.brokerUserCpuMs / 1000).toFixed(2)}+${(o.brokerSystemCpuMs / 1000).toFixed(2)})`,
      (o.clientCpuMs / 1000).toFixed(2),
      cores(o.brokerCpuMs), cores(o.clientCpuMs), formatNumber(o.clientPeakRssMb), (o.clientShutdownMs / 1000).toFixed(2),
      o.loadAverage1m.toFixed(2), formatNumber(o.peakUnwrittenMb),
    ]);
  }
  return table(["run", "client wall s", "timed s", "broker CPU s (user+sys)", "client CPU s", "broker cores", "client cores", "client peak RSS MB", "client exit after s", "load 1m", "peak dirty MB"], rows);
}

export function renderChecks(checks: readonly CheckResult[]): string {
  const rows = checks.map((c) => [
    c.run, c.label, formatNumber(c.value), `${c.comparison === "atLeast" ? "≥" : "≤"} ${formatNumber(c.bound)}`,
    c.met === null ? "n/a" : c.met ? "met" : "MISSED",
  ]);
  return table(["run", "target", "measured", "target", "result"], rows);
}
