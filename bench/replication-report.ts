/**
 * What the cluster runs (replication-execute.ts) print beyond the shared tables: each broker's
 * share, the writers of three-writers, the replicated run as a fraction of the three-writer
 * ceiling, the replication-lag split; and their CPU profile summaries under SLUICE_BENCH_PROFILE.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { readCpuProfile, renderSummary, summarizeProfile } from "./cpuprofile.js";
import { newestCpuProfile } from "./execute.js";
import { CEILING_RUN, COPIES } from "./plan.js";
import { REPO_ROOT } from "./processes.js";
import type { ClusterRecord } from "./replication-execute.js";
import { isFailure, type RunOutcome } from "./results.js";

const PROFILE_TOP_FUNCTIONS = 20;

export function isClusterRecord(outcome: RunOutcome): outcome is ClusterRecord {
  return !isFailure(outcome) && "cluster" in outcome;
}

function fmt(n: number): string {
  return Math.abs(n) >= 1000 ? Math.round(n).toLocaleString("en-US") : String(Number(n.toFixed(2)));
}

/** The lines printed under the shared tables for every cluster run that completed ("" when none). */
export function renderClusters(outcomes: readonly RunOutcome[]): string {
  const records = outcomes.filter(isClusterRecord);
  if (records.length === 0) return "";
  // The standard ceiling first, then any other three-writer variant, for comparison.
  const ceilings = records.filter((r) => r.kind === "three-writers").sort((a, b) => Number(b.name === CEILING_RUN) - Number(a.name === CEILING_RUN));
  const lines: string[] = [];
  for (const r of records) {
    const c = r.cluster;
    const servers = c.servers
      .map((s) => `${s.group}/${s.id} ${s.role} ${(s.cpuMs / 1000).toFixed(2)} s CPU (${(s.userCpuMs / 1000).toFixed(2)}+${(s.systemCpuMs / 1000).toFixed(2)}), ${fmt(s.peakRssMb)} MB`)
      .join("; ");
    lines.push(`${r.name}: ${c.etcd ? "etcd, " : ""}replication ${c.replication}, acks ${c.acks}; cluster up in ${fmt(c.setupMs)} ms, stopped in ${fmt(c.stopMs)} ms`);
    lines.push(`  brokers: ${servers}`);
    if (c.replication !== "none") lines.push(`  slaves in sync: [${c.inSyncBefore.join(", ")}] before, [${c.inSyncAfter.join(", ")}] after`);
    for (const w of c.writers ?? []) {
      lines.push(
        `  writer ${w.group} (${w.topic}): ${fmt(w.messages)} msgs at ${fmt(w.msgsPerSec)} msgs/s over ${w.seconds} s, ` +
          `from ${w.startMs} ms to ${fmt(w.endMs)} ms of the common window, p50 ${w.p50Ms} ms p99 ${w.p99Ms} ms`,
      );
    }
    if (c.window) {
      const w = c.window;
      lines.push(
        `  common window ${w.commonSeconds} s (starts spread over ${w.startSpreadMs} ms, ends over ${fmt(w.endSpreadMs)} ms): ` +
          `${fmt(r.msgsPerSec)} msgs/s, ${fmt(r.mbPerSec)} MB/s in total, ${fmt(r.msgsPerSec / COPIES)} msgs/s per broker; ` +
          `for comparison, own rates added ${fmt(w.sumOfRatesMsgsPerSec)}, over the union of windows ${fmt(w.unionMsgsPerSec)}`,
      );
    }
    for (const ceiling of c.replication !== "none" && c.lag === undefined ? ceilings : []) {
      const perCopy = ceiling.msgsPerSec / COPIES;
      lines.push(
        `  vs ${ceiling.name}: ${fmt(r.msgsPerSec)} msgs/s = ${((r.msgsPerSec * 100) / perCopy).toFixed(1)} % of the per-copy ceiling ` +
          `(${fmt(perCopy)} msgs/s = ${fmt(ceiling.msgsPerSec)} / ${COPIES})`,
      );
    }
    if (c.lag) {
      const l = c.lag;
      lines.push(
        `  lag on slave ${l.slave}: sent → readable p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, p99.9 ${r.p999Ms} ms, max ${l.maxLagMs} ms; ` +
          `acked → readable p50 ${l.afterAckP50Ms} ms, p99 ${l.afterAckP99Ms} ms, p99.9 ${l.afterAckP999Ms} ms (min ${l.afterAckMinMs} ms); ` +
          `ack p50 ${l.ackP50Ms} ms, p99 ${l.ackP99Ms} ms`,
      );
      lines.push(`  ${fmt(r.messages)} msgs counted at ${fmt(r.msgsPerSec)} msgs/s; ${l.missingOnSlave} never read on the slave, ${l.failedSends} failed sends, ${l.lateTicks} late producer ticks`);
    }
  }
  return lines.join("\n") + "\n";
}

function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => name.endsWith(".cpuprofile")).sort().map((name) => join(dir, name));
  } catch {
    return [];
  }
}

/**
 * Summaries of the brokers' and clients' profiles over the run's timed part (three-writers:
 * from the writers' common start to the last result; otherwise the client's timed seconds).
 */
export function writeClusterProfiles(record: ClusterRecord, brokers: { label: string; dir: string }[], clientDir: string): string {
  const fromUs = record.kind === "three-writers" ? record.windowUs.from : record.windowUs.to - record.seconds * 1e6;
  const timed = { fromUs, toUs: record.windowUs.to, repoRoot: REPO_ROOT, top: PROFILE_TOP_FUNCTIONS };
  const parts: string[] = [];
  for (const broker of brokers) {
    const file = newestCpuProfile(broker.dir);
    if (file) parts.push(renderSummary(`${broker.label} during ${record.name}, timed part (${file})`, summarizeProfile(readCpuProfile(file), timed)));
  }
  for (const file of profilesIn(clientDir)) {
    parts.push(renderSummary(`client of ${record.name}, timed part (${file})`, summarizeProfile(readCpuProfile(file), timed)));
  }
  return parts.join("\n");
}
