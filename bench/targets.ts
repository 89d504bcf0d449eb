/**
 * The targets of issues #2, #4, #5 and #6, checked against the runs, and the summary tables printed at the end.
 * A missed target is reported, not fatal: benchmarks inform, they do not gate.
 */
import { CEILING_RUN, COPIES, REBALANCE_CRASH_SESSION_TIMEOUT_MS, REBALANCE_SESSION_TIMEOUT_MS, THROTTLED_RATE_PER_SECOND } from "./plan.js";
import { isFailure, type RunOutcome, type RunRecord } from "./results.js";

type Metric = "msgsPerSec" | "p50Ms" | "p99Ms" | "brokerCpuUsPerMsg" | "brokerPeakRssMb" | "messages" | "handoverMs" | "othersMaxGapMs";

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
/** Issue #4: a leaving member's partitions are read by the others within 1 s plus the session timeout. */
export const HANDOVER_MS_OVER_SESSION_TIMEOUT = 1_000;
/**
 * Issue #4: the other members never stop while partitions move. Their partitions get a message
 * every few ms; a gap this long is a stall, not the producer's tick or a GC pause.
 */
export const OTHERS_MAX_GAP_MS = 500;
/**
 * Issue #5: sync-mode produce with two slaves reaches this fraction of the box's three-writer
 * ceiling. The ceiling is three processes appending at once (summed); a replicated message is
 * written three times, so the comparison is per copy: replicated msgs/s ≥ 60 % of the sum / 3.
 */
export const SYNC_REPLICATED_FRACTION_OF_CEILING = 0.6;
/** Issue #5: replication lag p99 under steady load, async mode. */
export const REPLICATION_LAG_P99_MS = 50;
/** Issue #6: rules that match every request and never bind cost at most 10 % of produce throughput. */
export const FLOW_RULES_FRACTION_OF_PRODUCE = 0.9;
/** Issue #6: a producer pushing flat out into a limited topic achieves the limit within ±5 %. */
export const THROTTLED_TOLERANCE = 0.05;

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
  { run: "group-consume-100b", metric: "msgsPerSec", label: "group consume 100 B msgs/s (3 members)", comparison: "atLeast", bound: 1_500_000 },
  { run: "group-consume-100b", metric: "messages", label: "group consume messages read", comparison: "atLeast", bound: "requested" },
  { run: "queue-100b", metric: "msgsPerSec", label: "queue acked 100 B msgs/s (3 members)", comparison: "atLeast", bound: 100_000 },
  { run: "queue-100b", metric: "messages", label: "queue messages acked", comparison: "atLeast", bound: "requested" },
  {
    run: "rebalance", metric: "handoverMs", label: "SIGTERM leave: ms to partitions read again (≤ 1 s + session)",
    comparison: "atMost", bound: HANDOVER_MS_OVER_SESSION_TIMEOUT + REBALANCE_SESSION_TIMEOUT_MS,
  },
  { run: "rebalance", metric: "othersMaxGapMs", label: "SIGTERM leave: others' max gap ms", comparison: "atMost", bound: OTHERS_MAX_GAP_MS },
  {
    run: "rebalance-crash", metric: "handoverMs", label: "SIGKILL crash: ms to partitions read again (≤ 1 s + session)",
    comparison: "atMost", bound: HANDOVER_MS_OVER_SESSION_TIMEOUT + REBALANCE_CRASH_SESSION_TIMEOUT_MS,
  },
  { run: "rebalance-crash", metric: "othersMaxGapMs", label: "SIGKILL crash: others' max gap ms", comparison: "atMost", bound: OTHERS_MAX_GAP_MS },
  {
    run: "produce-1kib-sync-replicated", metric: "msgsPerSec", label: "sync, 2 slaves, 1 KiB msgs/s (≥ 60 % of three-writer sum / 3)",
    comparison: "atLeast", bound: { fractionOf: CEILING_RUN, fraction: SYNC_REPLICATED_FRACTION_OF_CEILING / COPIES },
  },
  { run: "replication-lag-async", metric: "p99Ms", label: "async replication lag p99 ms (sent → readable on a slave)", comparison: "atMost", bound: REPLICATION_LAG_P99_MS },
  { run: "replication-lag-async", metric: "messages", label: "replication-lag messages read on the slave", comparison: "atLeast", bound: "requested" },
  {
    run: "produce-1kib-flow-rules", metric: "msgsPerSec", label: "1 KiB msgs/s under 3 never-binding flow rules (≥ 90 % of produce-1kib)",
    comparison: "atLeast", bound: { fractionOf: "produce-1kib", fraction: FLOW_RULES_FRACTION_OF_PRODUCE },
  },
  {
    run: "produce-1kib-throttled", metric: "msgsPerSec", label: "throttled msgs/s (≥ limit 50,000 − 5 %)",
    comparison: "atLeast", bound: THROTTLED_RATE_PER_SECOND * (1 - THROTTLED_TOLERANCE),
  },
  {
    run: "produce-1kib-throttled", metric: "msgsPerSec", label: "throttled msgs/s (≤ limit 50,000 + 5 %)",
    comparison: "atMost", bound: THROTTLED_RATE_PER_SECOND * (1 + THROTTLED_TOLERANCE),
  },
  { run: "produce-1kib-throttled", metric: "messages", label: "throttled messages acknowledged (no send failed)", comparison: "atLeast", bound: "requested" },
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
  const reference = byName.get(target.bound.fractionOf)?.[target.metric];
  return reference === undefined ? null : reference * target.bound.fraction;
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
      const value = record?.[target.metric] ?? null;
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

/** Group runs: each member's share, and what the rebalance runs saw around the leave. */
export function renderGroups(outcomes: readonly RunOutcome[]): string {
  const lines: string[] = [];
  for (const o of outcomes) {
    if (isFailure(o)) continue;
    for (const [i, m] of (o.members ?? []).entries()) {
      const spread = Object.entries(m.partitions).map(([p, n]) => `p${p}:${formatNumber(n)}`).join(" ");
      const acks = o.kind === "queue" ? `, ack p50 ${formatNumber(m.p50Ms)} ms p99 ${formatNumber(m.p99Ms)} ms, ${m.failedAcks} acks failed` : "";
      lines.push(
        `${o.name} member ${i + 1} (pid ${m.pid}): ${formatNumber(m.messages)} msgs at ${formatNumber(m.msgsPerSec)} msgs/s over ${m.seconds} s ` +
          `[${spread}], first message ${formatNumber(m.startupMs)} ms after subscribing${acks}`,
      );
    }
    const r = o.rebalance;
    if (r === undefined) continue;
    lines.push(
      `${o.name}: ${r.leave} to a member holding [${r.leaverPartitions.join(", ")}] (session timeout ${formatNumber(r.sessionTimeoutMs)} ms); ` +
        `produced ${formatNumber(r.producedMessages)}, consumed ${formatNumber(o.messages)}`,
    );
    for (const h of r.handovers) {
      lines.push(`  partition ${h.partition} → pid ${h.newOwnerPid ?? "none"}: assigned after ${formatNumber(h.assignedMs)} ms, first message after ${formatNumber(h.firstMessageMs)} ms`);
    }
    lines.push(
      `  others' partitions: longest gap ${formatNumber(r.othersMaxGapBeforeMs)} ms before the leave, ${formatNumber(r.othersMaxGapAfterMs)} ms after ` +
        `(ending ${formatNumber(r.othersMaxGapAfterEndMs)} ms after the leave) ` +
        `(gaps under 20 ms are not logged: 0 means none longer); ${r.othersKeptPartitions ? "all kept" : "SOME MOVED"}`,
    );
  }
  return lines.length > 0 ? lines.join("\n") + "\n" : "";
}

/** Runs under flow rules: achieved / limit, and each rule's decisions (requests admitted at once, held then admitted, refused). */
export function renderFlow(outcomes: readonly RunOutcome[]): string {
  const lines: string[] = [];
  for (const o of outcomes) {
    if (isFailure(o) || o.flow === undefined) continue;
    const { flow } = o;
    const ratio =
      flow.limitMsgsPerSec === undefined
        ? ""
        : `: ${formatNumber(o.msgsPerSec)} msgs/s = ${(flow.achievedOfLimit ?? 0).toFixed(3)} × the limit ${formatNumber(flow.limitMsgsPerSec)} msgs/s`;
    lines.push(`${o.name}${ratio} (broker CPU ${formatNumber(o.brokerCpuUsPerMsg)} µs/msg)`);
    for (const d of flow.decisions) {
      lines.push(`  ${d.scope} ${d.limiter}: ${formatNumber(d.admitted)} requests admitted at once, ${formatNumber(d.delayed)} held then admitted, ${formatNumber(d.refused)} refused`);
    }
  }
  return lines.length > 0 ? lines.join("\n") + "\n" : "";
}
