/**
 * The security group (issue #8): the ACL check micro-benchmark, then the produce-100b load
 * against two `sluice dev` started the same way (fresh data directory, `--flush interval`,
 * free ports) except that the second has TLS and `--auth`:
 *
 * - produce-100b-plain: the open server, as the standard runs;
 * - produce-100b-tls: the secured server, the client over TLS as `admin` (authenticated on every
 *   call, a superuser: no ACL check);
 * - produce-100b-tls-alice: the secured server as `alice`, who has `produce` on `topic:bench*`
 *   (one ACL check per produced batch).
 *
 * Both servers run for the whole group and the runs are interleaved attempt by attempt, the
 * order rotating each round (plain, tls, alice; tls, alice, plain; alice, plain, tls; …), so
 * noise from the shared machine hits them alike; each run's median attempt is reported and the
 * ratios are taken from them (security-report.ts). Every topic is created by admin before its client starts (alice may not
 * create topics), for all three runs alike.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measureAclCheck, type AclCheckCost } from "./acl-check.js";
import { cpuProfileFlags, executeRun, type ExecuteOptions } from "./execute.js";
import type { BenchSettings, RunSpec } from "./plan.js";
import { startDev, type DevServer } from "./processes.js";
import { failure, isFailure, medianOutcome, type RunOutcome } from "./results.js";
import { clientFlagsAs, grantAlice, prepareSecurityFiles, securedServerArgs, type SecurityFiles } from "./security-setup.js";

/** Working directories (certificates, password files, data) in use, removed on Ctrl-C too. */
const workDirs = new Set<string>();

/** Ctrl-C: remove the group's directories (run.ts kills the processes). */
export function cleanUpSecurity(): void {
  for (const dir of workDirs) rmSync(dir, { recursive: true, force: true });
  workDirs.clear();
}

/** The ACL check micro-benchmark's figures: the median attempt by cached cost, and every attempt. */
export interface AclCheckFigures extends AclCheckCost {
  attempts: AclCheckCost[];
}

/**
 * Runs bench/acl-check.ts `repeat` times in this process (it needs no server; call it while
 * none runs, so it has the cores to itself) and keeps the median attempt by cached cost.
 */
export function measureAclChecks(settings: BenchSettings): AclCheckFigures {
  const attempts: AclCheckCost[] = [];
  for (let attempt = 0; attempt < settings.repeat; attempt++) attempts.push(measureAclCheck());
  const sorted = [...attempts].sort((a, b) => a.cachedNsPerCheck - b.cachedNsPerCheck);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as AclCheckCost;
  return { ...median, attempts };
}

export interface SecurityGroupHooks {
  log(line: string): void;
  /** Called once per run with its reported (median or failed) outcome. */
  record(outcome: RunOutcome): void;
}

/** A started server of the group, with where its profile goes when profiling. */
export interface SecurityServer {
  name: "plain" | "secured";
  brokerProfileDir: string;
  outcomes: RunOutcome[];
}

type Side = "plain" | "secured";

/**
 * The runs of one round, starting `by` places further each round (a, b, c; b, c, a; c, a, b; …):
 * each run follows each other as often as it precedes it, so whatever a run leaves behind on the
 * machine (its broker's writeback, collection, deleted segments) does not always land on the same
 * next run.
 */
function rotated<T>(items: readonly T[], by: number): T[] {
  const shift = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

function sideOf(run: RunSpec): Side {
  return run.server ?? "plain";
}

/** The measured client's global flags: none on the open server, TLS and the run's user on the secured one. */
function clientFlagsFor(run: RunSpec, files: SecurityFiles | undefined): string[] {
  if (sideOf(run) === "plain") return [];
  if (files === undefined) throw new Error(`${run.name} needs the secured server's files`);
  return clientFlagsAs(files, run.user ?? "admin");
}

async function startSide(side: Side, root: string, settings: BenchSettings, profileDir: string, files: SecurityFiles | undefined, log: (line: string) => void): Promise<DevServer> {
  const dataDir = join(root, `data-${side}`);
  mkdirSync(dataDir);
  const nodeFlags = [...settings.brokerNodeFlags, ...(settings.profile ? cpuProfileFlags(profileDir) : [])];
  if (side === "plain") {
    log(`starting sluice dev --flush interval, open (data ${dataDir})`);
    return startDev({ dataDir, flush: "interval", nodeFlags });
  }
  if (files === undefined) throw new Error("the secured server needs certificates and password files");
  log(`starting sluice dev --flush interval with TLS and --auth (data ${dataDir})`);
  return startDev({
    dataDir, flush: "interval", nodeFlags,
    extraArgs: securedServerArgs(files),
    tlsCaFile: files.caFile,
    cliFlags: clientFlagsAs(files, "admin"),
  });
}

/**
 * Runs the group's server runs (security plan order) on their two servers, interleaved, and
 * always stops both. Returns each server's outcomes (for profile summaries).
 */
export async function runSecurityGroup(
  runs: readonly RunSpec[],
  settings: BenchSettings,
  profilesDir: string,
  hooks: SecurityGroupHooks,
): Promise<SecurityServer[]> {
  const root = mkdtempSync(join(tmpdir(), "sluice-bench-security-"));
  workDirs.add(root);
  const sides: Side[] = (["plain", "secured"] as const).filter((side) => runs.some((run) => sideOf(run) === side));
  const servers = new Map<Side, SecurityServer>(sides.map((side) => [side, { name: side, brokerProfileDir: join(profilesDir, `broker-security-${side}`), outcomes: [] }]));
  const devs = new Map<Side, DevServer>();
  // Outcomes are recorded in plan order once the group is over, whichever settled first.
  const settled = new Map<string, RunOutcome>();
  try {
    const files = sides.includes("secured") ? await prepareSecurityFiles(root) : undefined;
    for (const side of sides) {
      const server = servers.get(side) as SecurityServer;
      const dev = await startSide(side, root, settings, server.brokerProfileDir, files, hooks.log);
      devs.set(side, dev);
      hooks.log(`${side} broker pid ${dev.info.pid}, name server ${dev.info.nameserver}`);
    }
    let measured = [...runs];
    if (files !== undefined && runs.some((run) => run.user === "alice")) {
      hooks.log("adding user alice with produce and describe on topic:bench* (sluice user add, sluice acl add as admin)");
      try {
        await grantAlice(devs.get("secured") as DevServer, files);
      } catch (err) {
        // Only alice's run needs her: the others still run.
        const why = `setting up user alice: ${(err as Error).message}`;
        for (const run of runs) if (run.user === "alice") settled.set(run.name, failure(run, new Date().toISOString(), [], why, null, devs.get("secured")?.stderrTail() ?? ""));
        measured = runs.filter((run) => run.user !== "alice");
      }
    }

    const attempts = new Map<string, RunOutcome[]>(measured.map((run) => [run.name, []]));
    for (let attempt = 1; attempt <= settings.repeat; attempt++) {
      for (const run of rotated(measured, attempt - 1)) {
        const done = attempts.get(run.name) as RunOutcome[];
        if (done.some(isFailure)) continue;
        const dev = devs.get(sideOf(run)) as DevServer;
        if (attempt === 1) hooks.log(`running ${run.name}: ${run.kind} ${run.messages.toLocaleString("en-US")} × ${run.size} B on the ${sideOf(run)} server${run.user ? ` as ${run.user}` : ""}`);
        const options: ExecuteOptions = {
          settings,
          clientFlags: clientFlagsFor(run, files),
          createTopic: true,
          ...(settings.profile ? { clientProfileDir: join(profilesDir, run.name) } : {}),
        };
        const outcome = await executeRun(run, dev, options);
        done.push(outcome);
        if (settings.repeat > 1) hooks.log(`  ${run.name} attempt ${attempt}/${settings.repeat}: ${isFailure(outcome) ? `FAILED: ${outcome.error.split("\n")[0]}` : `${outcome.msgsPerSec.toLocaleString("en-US")} msgs/s`}`);
      }
    }
    for (const run of measured) settled.set(run.name, medianOutcome(attempts.get(run.name) as RunOutcome[]));
  } catch (err) {
    const message = (err as Error).message;
    const stderrTail = [...devs.values()].map((dev) => dev.stderrTail()).join("\n");
    for (const run of runs) if (!settled.has(run.name)) settled.set(run.name, failure(run, new Date().toISOString(), [], message, null, stderrTail));
  } finally {
    for (const [side, dev] of devs) {
      const code = await dev.stop();
      if (code !== 0) hooks.log(`warning: the ${side} sluice dev exited with ${code ?? "SIGKILL"} on SIGTERM`);
    }
    rmSync(root, { recursive: true, force: true });
    workDirs.delete(root);
  }
  for (const run of runs) {
    const outcome = settled.get(run.name) as RunOutcome;
    servers.get(sideOf(run))?.outcomes.push(outcome);
    hooks.record(outcome);
  }
  return [...servers.values()];
}
