/**
 * `npm run bench`: the standard benchmark set of issues #2, #4, #5 and #6 against real servers,
 * then the security group of issue #8 (security-execute.ts: the ACL check micro-benchmark, and
 * produce on an open and on a TLS + --auth `sluice dev`, interleaved).
 *
 * For each flush policy in the plan it starts `sluice dev` on free ports with a fresh data
 * directory, runs each benchmark as its own `sluice bench --json` client process on a fresh
 * topic (deleted afterwards) while metering the broker process (CPU from /proc/<pid>/stat,
 * RSS sampled from /proc/<pid>/status), and always stops the broker afterwards. The cluster
 * runs of issue #5 (several brokers, etcd) start a cluster of their own for every attempt
 * instead (replication-execute.ts). It writes bench/results/<run>.json and
 * bench/results/summary.json and prints the figures next to their targets.
 *
 * Exit code: 1 when a run failed (a client exited non-zero, the broker died, a setup step
 * failed); 0 otherwise, including when targets are missed — benchmarks report, they do not gate.
 * Environment knobs (SLUICE_BENCH_SCALE, _ONLY, _REPEAT, _PROFILE, …): see plan.ts and README.md.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { readCpuProfile, renderSummary, summarizeProfile } from "./cpuprofile.js";
import { cpuProfileFlags, executeRun, newestCpuProfile } from "./execute.js";
import { cleanUpClusters } from "./cluster.js";
import { aclCheckSelected, benchPlan, isClusterRun, parseBenchSettings, securityPlan, type BenchSettings, type ClusterKind, type RunSpec } from "./plan.js";
import { clockTicksPerSecond } from "./proc-stats.js";
import { killAll, REPO_ROOT, startDev, type FlushPolicy } from "./processes.js";
import { executeClusterRun } from "./replication-execute.js";
import { renderClusters } from "./replication-report.js";
import { failure, isFailure, medianOutcome, type RunOutcome } from "./results.js";
import { cleanUpSecurity, measureAclChecks, runSecurityGroup, type AclCheckFigures } from "./security-execute.js";
import { renderSecurity, securityChecks, securityFigures } from "./security-report.js";
import { evaluateTargets, renderChecks, renderCpu, renderFlow, renderGroups, renderRuns } from "./targets.js";

const PROFILE_TOP_FUNCTIONS = 20;
/** Broker data directories in use, removed on Ctrl-C as well as at the end of their group. */
const dataDirs = new Set<string>();

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

type Segment = { flush: FlushPolicy; runs: RunSpec[] } | { cluster: RunSpec & { kind: ClusterKind } };

/**
 * Consecutive runs with the same flush policy share one `sluice dev`; a new policy gets a fresh
 * one. A cluster run stands alone: it starts its own servers.
 */
function segmentsOf(plan: RunSpec[]): Segment[] {
  const segments: Segment[] = [];
  for (const run of plan) {
    if (isClusterRun(run)) {
      segments.push({ cluster: run });
      continue;
    }
    const last = segments[segments.length - 1];
    if (last && "runs" in last && last.flush === run.flush) last.runs.push(run);
    else segments.push({ flush: run.flush, runs: [run] });
  }
  return segments;
}

/** Writes the run's result file and logs it. */
function recordOutcome(outcome: RunOutcome, resultsDir: string, counter: { done: number; total: number }): void {
  writeFileSync(join(resultsDir, `${outcome.name}.json`), JSON.stringify(outcome, null, 2) + "\n");
  log(`[${++counter.done}/${counter.total}] ${describe(outcome)}`);
}

/** A cluster run: every attempt on a fresh cluster; the median attempt is reported. */
async function runCluster(run: RunSpec & { kind: ClusterKind }, settings: BenchSettings, resultsDir: string, counter: { done: number; total: number }): Promise<RunOutcome> {
  log(`running ${run.name}: ${run.kind} ${run.messages.toLocaleString("en-US")} × ${run.size} B${run.rate ? ` at ${run.rate} msgs/s` : ""}${run.replication ? `, replication ${run.replication}` : ""} on a cluster of its own`);
  const attempts: RunOutcome[] = [];
  for (let attempt = 1; attempt <= settings.repeat; attempt++) {
    const outcome = await executeClusterRun(run, { settings, profilesDir: join(resultsDir, "profiles"), resultsDir });
    attempts.push(outcome);
    if (settings.repeat > 1) log(`  attempt ${attempt}/${settings.repeat}: ${describe(outcome)}`);
    if (isFailure(outcome)) break;
  }
  const outcome = medianOutcome(attempts);
  recordOutcome(outcome, resultsDir, counter);
  return outcome;
}

function describe(outcome: RunOutcome): string {
  if (isFailure(outcome)) return `${outcome.name} FAILED: ${outcome.error.split("\n")[0]}`;
  if (outcome.handoverMs !== undefined) {
    return (
      `${outcome.name}: partitions read again ${outcome.handoverMs} ms after the leave, others' longest gap ${outcome.othersMaxGapMs} ms, ` +
      `${outcome.msgsPerSec.toLocaleString("en-US")} msgs/s consumed, peak RSS ${outcome.brokerPeakRssMb} MB`
    );
  }
  return (
    `${outcome.name}: ${outcome.msgsPerSec.toLocaleString("en-US")} msgs/s, ${outcome.mbPerSec} MB/s, ` +
    `p50 ${outcome.p50Ms} ms, p99 ${outcome.p99Ms} ms, broker ${outcome.brokerCpuUsPerMsg} µs CPU/msg, ` +
    `peak RSS ${outcome.brokerPeakRssMb} MB${outcome.flow?.achievedOfLimit === undefined ? "" : `, ${outcome.flow.achievedOfLimit} × the flow limit`} (${outcome.seconds} s; waited ${outcome.settleWaitMs} ms for writeback, load ${outcome.loadAverage1m})`
  );
}

/** Splits a broker profile (one per `sluice dev`) by run and summarises each run's window, plus each client's profile. */
function writeProfileSummaries(outcomes: RunOutcome[], brokerProfile: string | undefined, profilesDir: string, resultsDir: string): void {
  for (const outcome of outcomes) {
    if (isFailure(outcome)) continue;
    // Only the client's timed part (its last `seconds` before printing the result): start-up,
    // module loading and topic creation would otherwise crowd the top of the client's list.
    const timed = { fromUs: outcome.windowUs.to - outcome.seconds * 1e6, toUs: outcome.windowUs.to, repoRoot: REPO_ROOT, top: PROFILE_TOP_FUNCTIONS };
    const parts: string[] = [];
    if (brokerProfile) {
      const summary = summarizeProfile(readCpuProfile(brokerProfile), timed);
      parts.push(renderSummary(`broker during ${outcome.name}, timed part (${brokerProfile})`, summary));
    }
    const clientProfile = newestCpuProfile(join(profilesDir, outcome.name));
    if (clientProfile) {
      const summary = summarizeProfile(readCpuProfile(clientProfile), timed);
      parts.push(renderSummary(`client ${outcome.name}, timed part (${clientProfile})`, summary));
    }
    const text = parts.join("\n");
    writeFileSync(join(resultsDir, `${outcome.name}.profile.txt`), text);
    process.stdout.write(text + "\n");
  }
}

async function runGroup(flush: FlushPolicy, runs: RunSpec[], settings: BenchSettings, resultsDir: string, counter: { done: number; total: number }): Promise<RunOutcome[]> {
  const profilesDir = join(resultsDir, "profiles");
  const brokerProfileDir = join(profilesDir, `broker-${flush}`);
  const dataDir = mkdtempSync(join(tmpdir(), `sluice-bench-${flush}-`));
  dataDirs.add(dataDir);
  const outcomes: RunOutcome[] = [];
  const record = (outcome: RunOutcome): void => {
    outcomes.push(outcome);
    recordOutcome(outcome, resultsDir, counter);
  };
  let dev;
  try {
    log(`starting sluice dev --flush ${flush} (data ${dataDir})`);
    const nodeFlags = [...settings.brokerNodeFlags, ...(settings.profile ? cpuProfileFlags(brokerProfileDir) : [])];
    dev = await startDev({ dataDir, flush, nodeFlags });
    if (dev.info.flush !== flush) throw new Error(`sluice dev reports flush "${dev.info.flush}", expected "${flush}"`);
    log(`broker pid ${dev.info.pid}, name server ${dev.info.nameserver}`);
    for (const run of runs) {
      log(`running ${run.name}: ${run.kind} ${run.messages.toLocaleString("en-US")} × ${run.size} B${run.rate ? ` at ${run.rate} msgs/s` : ""}`);
      const attempts: RunOutcome[] = [];
      for (let attempt = 1; attempt <= settings.repeat; attempt++) {
        const outcome = await executeRun(run, dev, settings.profile ? { settings, clientProfileDir: join(profilesDir, run.name) } : { settings });
        attempts.push(outcome);
        if (settings.repeat > 1) log(`  attempt ${attempt}/${settings.repeat}: ${describe(outcome)}`);
        if (isFailure(outcome)) break;
      }
      record(medianOutcome(attempts));
    }
  } catch (err) {
    const message = (err as Error).message;
    const stderrTail = dev?.stderrTail() ?? "";
    for (const run of runs.slice(outcomes.length)) record(failure(run, new Date().toISOString(), [], message, null, stderrTail));
  } finally {
    if (dev) {
      const code = await dev.stop();
      if (code !== 0) log(`warning: sluice dev exited with ${code ?? "SIGKILL"} on SIGTERM`);
    }
    rmSync(dataDir, { recursive: true, force: true });
    dataDirs.delete(dataDir);
  }
  if (settings.profile) writeProfileSummaries(outcomes, newestCpuProfile(brokerProfileDir), profilesDir, resultsDir);
  return outcomes;
}

async function main(): Promise<number> {
  const settings = parseBenchSettings(process.env);
  const plan = benchPlan(settings);
  const security = securityPlan(settings);
  const aclCheckPlanned = aclCheckSelected(settings);
  const resultsDir = settings.profile ? join(REPO_ROOT, "bench", "results", "profiled") : join(REPO_ROOT, "bench", "results");
  // Profiles are picked per run as the newest file of a folder: clear any left from an earlier invocation.
  if (settings.profile) rmSync(join(resultsDir, "profiles"), { recursive: true, force: true });
  mkdirSync(resultsDir, { recursive: true });
  const startedAt = new Date().toISOString();
  log(`${plan.length + security.length} runs${aclCheckPlanned ? " and the ACL check" : ""}${settings.repeat > 1 ? ` × ${settings.repeat} attempts (median reported)` : ""}, scale ${settings.scale}${settings.profile ? ", under --cpu-prof (figures perturbed)" : ""}; results in ${resultsDir}`);
  if (settings.brokerNodeFlags.length > 0) log(`broker node flags: ${settings.brokerNodeFlags.join(" ")}`);
  if (settings.clientNodeFlags.length > 0) log(`client node flags: ${settings.clientNodeFlags.join(" ")}`);
  const outcomes: RunOutcome[] = [];
  const counter = { done: 0, total: plan.length + security.length };
  for (const segment of segmentsOf(plan)) {
    if ("cluster" in segment) outcomes.push(await runCluster(segment.cluster, settings, resultsDir, counter));
    else outcomes.push(...(await runGroup(segment.flush, segment.runs, settings, resultsDir, counter)));
  }
  // Issue #8. The micro-benchmark first, while no server runs: it has the cores to itself.
  let aclCheck: AclCheckFigures | null = null;
  if (aclCheckPlanned) {
    aclCheck = measureAclChecks(settings);
    writeFileSync(join(resultsDir, "acl-check.json"), JSON.stringify(aclCheck, null, 2) + "\n");
    log(`acl-check: ${aclCheck.cachedNsPerCheck} ns per cached check, ${aclCheck.uncachedNsPerCheck} ns uncached`);
  }
  if (security.length > 0) {
    const profilesDir = join(resultsDir, "profiles");
    const hooks = {
      log,
      record: (outcome: RunOutcome): void => {
        outcomes.push(outcome);
        recordOutcome(outcome, resultsDir, counter);
      },
    };
    const servers = await runSecurityGroup(security, settings, profilesDir, hooks);
    if (settings.profile) {
      for (const server of servers) writeProfileSummaries(server.outcomes, newestCpuProfile(server.brokerProfileDir), profilesDir, resultsDir);
    }
  }
  const securitySummary = securityFigures(outcomes, aclCheck);

  const checks = [...evaluateTargets(outcomes), ...securityChecks(outcomes.map((o) => o.name), securitySummary, aclCheckPlanned)];
  const failed = outcomes.filter(isFailure);
  const summary = {
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", node: process.version, clockTicksPerSecond: clockTicksPerSecond() },
    settings,
    runs: outcomes,
    security: securitySummary,
    checks,
    targetsMissed: checks.filter((c) => c.met === false).length,
    runsFailed: failed.map((f) => f.name),
  };
  writeFileSync(join(resultsDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");

  process.stdout.write(`\nSluice benchmarks (${summary.machine.cpus} cores, node ${process.version}, scale ${settings.scale})\n\n`);
  process.stdout.write(renderRuns(outcomes) + "\n");
  process.stdout.write(renderCpu(outcomes) + "\n");
  const groups = renderGroups(outcomes);
  if (groups) process.stdout.write(groups + "\n");
  const flow = renderFlow(outcomes);
  if (flow) process.stdout.write(flow + "\n");
  const clusters = renderClusters(outcomes);
  if (clusters) process.stdout.write(clusters + "\n");
  const securityText = renderSecurity(outcomes, securitySummary);
  if (securityText) process.stdout.write(securityText + "\n");
  process.stdout.write(renderChecks(checks) + "\n");
  for (const f of failed) {
    process.stdout.write(`${f.name} failed: ${f.error}\n  command: ${f.command.join(" ")}\n`);
    if (f.stderrTail.trim()) process.stdout.write(`  stderr (end):\n${f.stderrTail.trim().split("\n").slice(-15).map((l) => `    ${l}`).join("\n")}\n`);
  }
  process.stdout.write(
    `${checks.filter((c) => c.met === true).length} targets met, ${summary.targetsMissed} missed, ` +
      `${checks.filter((c) => c.met === null).length} not evaluated; ${failed.length} runs failed. Results: ${resultsDir}\n`,
  );
  return failed.length > 0 ? 1 : 0;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping every process started`);
    killAll();
    cleanUpClusters();
    cleanUpSecurity();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    killAll();
    cleanUpClusters();
    cleanUpSecurity();
    process.exitCode = 1;
  },
);
