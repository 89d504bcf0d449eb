/**
 * A cluster of separate server processes for one run of replication-execute.ts: an optional
 * etcd, one name server, and brokers of one or more groups (each with a fresh data
 * directory), plus the metering of several brokers around the run's client processes.
 *
 * Each attempt gets a cluster of its own, stopped and deleted afterwards: replicated runs
 * leave state in etcd and three copies of their data, and the next run must not write into
 * page cache still full of them (see execute.ts on why runs delete what they wrote).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Sluice } from "../clients/src/index.js";
import type { ClusterBroker as BrokerView } from "../clients/src/admin/types.js";
import { monotonicUs } from "../cli/src/bench/member-result.js";
import { cpuProfileFlags } from "./execute.js";
import type { BenchSettings } from "./plan.js";
import { BrokerMeter, clientUsage, ProcessSampler, waitForWriteback, type BrokerUsage, type MeteredWindow } from "./proc-stats.js";
import { runCli, type CliRun } from "./processes.js";
import { killServers, startEtcd, startSluiceServer, type EtcdServer, type ServerProcess } from "./servers.js";

const SETTLE_TIMEOUT_MS = 30_000;
const POLL_MS = 100;

/** Broker data directories in use, removed on Ctrl-C as well as when their cluster stops. */
const dataDirs = new Set<string>();

/** Ctrl-C: kill every server process and remove every data directory. */
export function cleanUpClusters(): void {
  killServers();
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  dataDirs.clear();
}

export interface BrokerSpec {
  group: string;
  id: number;
  /** Extra `sluice broker` flags, e.g. ["--replication", "sync"]. */
  args: string[];
}

export interface RunningBroker extends BrokerSpec {
  address: string;
  dataDir: string;
  process: ServerProcess;
}

export interface BenchCluster {
  nameserver: string;
  etcd: EtcdServer | undefined;
  brokers: RunningBroker[];
  /** The processes that must stay alive through the run. */
  processes(): ServerProcess[];
  /** Slaves first (a stopping master hands over to a live in-sync slave), then masters, name server, etcd; data removed. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  etcd: boolean;
  brokers: BrokerSpec[];
  /** Node flags per broker process (e.g. --cpu-prof into a folder of its own). */
  brokerNodeFlags: (broker: BrokerSpec) => string[];
}

/** Starts etcd (when asked), the name server, then the brokers in the order given (a group's id 0 first: it becomes master). */
export async function startCluster(options: ClusterOptions): Promise<BenchCluster> {
  const started: ServerProcess[] = [];
  const dirs: string[] = [];
  let etcd: EtcdServer | undefined;
  const brokers: RunningBroker[] = [];
  let nameserverProcess: ServerProcess | undefined;
  const stop = async (): Promise<void> => {
    const slavesFirst = [...brokers].sort((a, b) => Number(b.id !== 0) - Number(a.id !== 0));
    for (const broker of slavesFirst) await broker.process.stop();
    await nameserverProcess?.stop();
    await etcd?.stop();
    for (const dir of dirs) {
      rmSync(dir, { recursive: true, force: true });
      dataDirs.delete(dir);
    }
  };
  try {
    if (options.etcd) {
      etcd = await startEtcd();
      started.push(etcd);
    }
    const etcdArgs = etcd ? ["--etcd", etcd.endpoint] : [];
    nameserverProcess = await startSluiceServer(["nameserver", "--port", "0", "--http-port", "0", ...etcdArgs]);
    started.push(nameserverProcess);
    const nameserver = String(nameserverProcess.info.nameserver);
    for (const spec of options.brokers) {
      const dataDir = mkdtempSync(join(tmpdir(), `sluice-bench-${spec.group}-${spec.id}-`));
      dirs.push(dataDir);
      dataDirs.add(dataDir);
      const server = await startSluiceServer(
        [
          "--nameserver", nameserver, "broker", "--name", spec.group, "--id", String(spec.id), "--data", dataDir,
          "--port", "0", "--http-port", "0", ...etcdArgs, ...spec.args,
        ],
        { nodeFlags: options.brokerNodeFlags(spec) },
      );
      started.push(server);
      brokers.push({ ...spec, address: String(server.info.broker), dataDir, process: server });
    }
    return { nameserver, etcd, brokers, processes: () => [...started], stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Waits until the name server reports `group` with a live master and `slaves` slaves in its in-sync set; returns them. */
export async function waitForGroup(sluice: Sluice, group: string, slaves: number, timeoutMs: number): Promise<{ master: BrokerView; inSync: BrokerView[] }> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const members = (await sluice.admin().cluster()).brokers.filter((b) => b.group === group && b.state === "alive");
      const master = members.find((b) => b.role === "master");
      const inSync = members.filter((b) => b.role === "slave" && b.inSync === true).sort((a, b) => a.id - b.id);
      if (master !== undefined && inSync.length >= slaves) return { master, inSync };
      last = members.map((b) => `${b.id}:${b.role}${b.inSync === null ? "" : b.inSync ? " in sync" : " not in sync"}`).join(", ") || "no live broker";
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`group ${group} did not get a master and ${slaves} in-sync slaves within ${timeoutMs} ms (${last})`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The ids of `group`'s slaves its master reports in sync now. */
export async function inSyncIds(sluice: Sluice, group: string): Promise<number[]> {
  const brokers = (await sluice.admin().cluster()).brokers;
  return brokers.filter((b) => b.group === group && b.role === "slave" && b.inSync === true).map((b) => b.id).sort((a, b) => a - b);
}

/** What the orchestrator measured around a run's client processes. */
export interface MeteredClients extends MeteredWindow {
  runs: CliRun[];
  meters: BrokerMeter[];
}

/**
 * Starts the clients together and waits for all of them, metering every broker of the
 * cluster from `meterFromUs` (default: now; writers that start together later pass their
 * start, so their start-up is not counted) until the last client printed its result.
 */
export async function runClientsMetered(
  cluster: BenchCluster,
  clientArgs: string[][],
  options: { timeoutMs: number; settings: BenchSettings; clientProfileDir?: string; meterFromUs?: number },
): Promise<MeteredClients> {
  const settled = await waitForWriteback(SETTLE_TIMEOUT_MS);
  const startedAt = new Date().toISOString();
  const loadAverage1m = Number(loadavg()[0]?.toFixed(2) ?? 0);
  const meters = cluster.brokers.map((b) => new BrokerMeter(b.process.pid));
  const fromUs = Math.max(monotonicUs(), options.meterFromUs ?? 0);
  let began = false;
  const begin = (): void => {
    if (began) return;
    began = true;
    for (const meter of meters) meter.begin();
  };
  const beginTimer = setTimeout(begin, Math.max(0, (fromUs - monotonicUs()) / 1000));
  let toUs: number | undefined;
  const samplers: ProcessSampler[] = [];
  let seen: { peakKb: number; cpuTicks: number }[] = [];
  let printed = 0;
  const closeWindow = (): void => {
    if (toUs !== undefined) return;
    clearTimeout(beginTimer);
    begin();
    toUs = monotonicUs();
    for (const meter of meters) meter.stop();
    seen = samplers.map((s) => s.stop());
  };
  const nodeFlags = [...options.settings.clientNodeFlags, ...(options.clientProfileDir ? cpuProfileFlags(options.clientProfileDir) : [])];
  const runs = await Promise.all(
    clientArgs.map((args) =>
      runCli(args, {
        timeoutMs: options.timeoutMs,
        nodeFlags,
        onSpawn: (pid) => {
          const sampler = new ProcessSampler(pid);
          sampler.start();
          samplers.push(sampler);
        },
        onFirstLine: () => {
          if (++printed === clientArgs.length) closeWindow();
        },
      }),
    ),
  );
  const exitedUs = monotonicUs();
  closeWindow();
  return {
    runs,
    meters,
    windowUs: { from: fromUs, to: toUs as number },
    exitedUs,
    ...clientUsage(seen),
    startedAt,
    loadAverage1m,
    settled,
  };
}

/** One broker process's share of a run. */
export interface ServerFigures {
  group: string;
  id: number;
  role: string;
  pid: number;
  cpuMs: number;
  userCpuMs: number;
  systemCpuMs: number;
  peakRssMb: number;
}

/**
 * The brokers' usage added up: CPU summed (so brokerCpuUsPerMsg is the cluster's CPU per
 * message produced, every copy included), RSS the largest single broker (the ceiling is per
 * process), plus each broker's own figures.
 */
export function clusterUsage(cluster: BenchCluster, meters: BrokerMeter[], messages: number, roles: Map<string, string>): BrokerUsage & { servers: ServerFigures[] } {
  const usages = meters.map((m) => m.usage(messages));
  const sum = (key: "brokerCpuMs" | "brokerUserCpuMs" | "brokerSystemCpuMs"): number => usages.reduce((total, u) => total + u[key], 0);
  const max = (key: "brokerPeakRssMb" | "brokerHighWaterRssMb" | "peakUnwrittenMb"): number => Math.max(0, ...usages.map((u) => u[key]));
  const cpuMs = sum("brokerCpuMs");
  return {
    brokerCpuMs: cpuMs,
    brokerUserCpuMs: sum("brokerUserCpuMs"),
    brokerSystemCpuMs: sum("brokerSystemCpuMs"),
    brokerCpuUsPerMsg: messages > 0 ? Number(((cpuMs * 1000) / messages).toFixed(3)) : 0,
    brokerPeakRssMb: max("brokerPeakRssMb"),
    brokerHighWaterRssMb: max("brokerHighWaterRssMb"),
    rssSamples: Math.min(...usages.map((u) => u.rssSamples)),
    peakUnwrittenMb: max("peakUnwrittenMb"),
    servers: cluster.brokers.map((b, i) => {
      const u = usages[i] as BrokerUsage;
      return {
        group: b.group, id: b.id, role: roles.get(`${b.group}/${b.id}`) ?? "?", pid: b.process.pid,
        cpuMs: u.brokerCpuMs, userCpuMs: u.brokerUserCpuMs, systemCpuMs: u.brokerSystemCpuMs, peakRssMb: u.brokerPeakRssMb,
      };
    }),
  };
}

/** "group/id" → role, as the name server reports them now. */
export async function rolesOf(sluice: Sluice): Promise<Map<string, string>> {
  const brokers = (await sluice.admin().cluster()).brokers;
  return new Map(brokers.map((b) => [`${b.group}/${b.id}`, b.role]));
}
