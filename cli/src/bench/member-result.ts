/**
 * What one member process of a multi-process benchmark prints (`sluice bench group-consume |
 * queue | rebalance-member --json`), and the clock every member stamps it with.
 *
 * Members run in separate processes; the orchestrator (bench/) adds their figures up. Times are
 * process.hrtime in µs: CLOCK_MONOTONIC on Linux, one clock for every process of the machine,
 * so the first message of one process and the last of another make one interval (the same
 * clock .cpuprofile files and the orchestrator's run windows use).
 */
import { LatencyRecorder } from "./stats.js";

/** Monotonic µs, comparable across the processes of one machine. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** `sluice bench group-consume | queue --json`: one member's share of the work. */
export interface MemberResult {
  kind: "group-consume" | "queue";
  pid: number;
  /** Messages this member received (group-consume) or whose ack resolved (queue). */
  messages: number;
  bytes: number;
  /** When the member received its first message (monotonicUs). */
  firstUs: number;
  /** When it received its last message (group-consume) or its last ack resolved (queue). */
  lastUs: number;
  /** This member alone, from its first to its last. */
  seconds: number;
  msgsPerSec: number;
  /**
   * group-consume: gap between blocks of 1,024 messages (as `bench consume`);
   * queue: from job.ack() to its promise resolving (the broker made it durable).
   */
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** Messages per partition ("0": 12345, …). */
  partitions: Record<string, number>;
  /** From subscribing to receiving the first message: joining, waiting for the group to spread. */
  startupMs: number;
  /** queue: acks that rejected (their jobs come back after the lease: duplicates). */
  failedAcks: number;
}

/** Figures shared by both member kinds, from counts and the recorded latencies. */
export function memberResult(
  kind: MemberResult["kind"],
  counts: { messages: number; bytes: number; firstUs: number; lastUs: number; startupMs: number; failedAcks: number },
  perPartition: Map<number, number>,
  latency: LatencyRecorder,
): MemberResult {
  const [p50, p99, p999] = latency.percentiles(0.5, 0.99, 0.999);
  const seconds = counts.messages > 0 ? (counts.lastUs - counts.firstUs) / 1e6 : 0;
  const partitions: Record<string, number> = {};
  for (const [partition, n] of [...perPartition].sort((a, b) => a[0] - b[0])) partitions[String(partition)] = n;
  return {
    kind,
    pid: process.pid,
    messages: counts.messages,
    bytes: counts.bytes,
    firstUs: counts.firstUs,
    lastUs: counts.lastUs,
    seconds: Number(seconds.toFixed(3)),
    msgsPerSec: seconds > 0 ? Math.round(counts.messages / seconds) : 0,
    p50Ms: Number((p50 ?? 0).toFixed(3)),
    p99Ms: Number((p99 ?? 0).toFixed(3)),
    p999Ms: Number((p999 ?? 0).toFixed(3)),
    partitions,
    startupMs: Math.round(counts.startupMs),
    failedAcks: counts.failedAcks,
  };
}

export function renderMemberResult(result: MemberResult): string {
  const rows: [string, string][] = [
    ["messages", String(result.messages)],
    ["seconds", result.seconds.toFixed(2)],
    ["msgs/s", result.msgsPerSec.toLocaleString("en-US")],
    ["partitions", Object.entries(result.partitions).map(([p, n]) => `${p}:${n}`).join(" ")],
    [result.kind === "queue" ? "ack p50" : "p50", `${result.p50Ms} ms`],
    [result.kind === "queue" ? "ack p99" : "p99", `${result.p99Ms} ms`],
    ["start-up", `${result.startupMs} ms`],
  ];
  if (result.kind === "queue") rows.push(["failed acks", String(result.failedAcks)]);
  return `bench ${result.kind} (pid ${result.pid})\n` + rows.map(([k, v]) => `  ${k.padEnd(11)} ${v}`).join("\n") + "\n";
}
