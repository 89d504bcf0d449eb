/**
 * The server processes of the multi-broker runs (replication-execute.ts): a single-member etcd
 * (Debian's `etcd-server`, started as test/helpers/etcd.ts starts it: free loopback ports, a
 * temporary data directory), `sluice nameserver` and `sluice broker` processes on free ports.
 * Every process started here is killed when the orchestrator exits, whatever the reason
 * (`killServers()` on Ctrl-C), and each etcd data directory is removed when it stops.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdLaunch, findEtcdBinary } from "../test/helpers/etcd-launch.js";
import { readStartLine, REPO_ROOT, SLUICE_BIN } from "./processes.js";

const START_TIMEOUT_MS = 30_000;
/** A broker's SIGTERM may wait for its shutdown steps (a master hands over first): allow them. */
const STOP_GRACE_MS = 15_000;
const POLL_MS = 50;
const STDERR_TAIL_CHARS = 8_000;
const ETCD_START_ATTEMPTS = 3;

const running = new Set<ChildProcess>();
const etcdDirs = new Set<string>();
process.on("exit", () => killServers());

/** SIGKILLs every process started here and removes etcd's data directories (Ctrl-C, crash). */
export function killServers(): void {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of etcdDirs) rmSync(dir, { recursive: true, force: true });
  etcdDirs.clear();
}

export interface ServerProcess {
  readonly pid: number;
  /** What a sluice server printed as its `--json` start line; {} for etcd. */
  readonly info: Record<string, unknown>;
  alive(): boolean;
  stderrTail(): string;
  /** SIGTERM, then SIGKILL after STOP_GRACE_MS; resolves with the exit code (null if killed). */
  stop(): Promise<number | null>;
}

function spawnTracked(command: string, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(command, args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once("close", (code) => {
      running.delete(child);
      resolve(code);
    });
    child.once("error", () => {
      running.delete(child);
      resolve(null);
    });
  });
  let tail = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    tail += chunk.toString();
    if (tail.length > STDERR_TAIL_CHARS * 2) tail = tail.slice(-STDERR_TAIL_CHARS);
  });
  return { child, exited, stderr: () => tail.slice(-STDERR_TAIL_CHARS) };
}

function handle(child: ChildProcess, exited: Promise<number | null>, stderr: () => string, info: Record<string, unknown>): ServerProcess {
  const server: ServerProcess = {
    pid: child.pid as number,
    info,
    alive: () => child.exitCode === null && child.signalCode === null,
    stderrTail: stderr,
    stop: async () => {
      if (!server.alive()) return child.exitCode;
      child.kill("SIGTERM");
      const grace = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
      const code = await exited;
      clearTimeout(grace);
      return code;
    },
  };
  return server;
}

/**
 * Runs `node [nodeFlags] bin/sluice.js <args> --json` (quiet logs) and resolves once it printed
 * its start line; when that line names an `http` address, also once GET /readyz answers 200.
 */
export async function startSluiceServer(args: string[], options: { nodeFlags?: string[] } = {}): Promise<ServerProcess> {
  const env = { ...process.env, SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? "warn" };
  const { child, exited, stderr } = spawnTracked(process.execPath, [...(options.nodeFlags ?? []), SLUICE_BIN, ...args, "--json"], env);
  const what = `sluice ${args.join(" ")}`;
  const info = await readStartLine<Record<string, unknown>>(child, exited.then(String), what, stderr, START_TIMEOUT_MS);
  const server = handle(child, exited, stderr, info);
  if (typeof info.http === "string") {
    try {
      await waitOk(`http://${info.http}/readyz`, START_TIMEOUT_MS);
    } catch (err) {
      await server.stop();
      throw err;
    }
  }
  return server;
}

/** Polls `url` until it answers 200 (and, when given, `accept(body)` holds). */
async function waitOk(url: string, timeoutMs: number, accept: (body: string) => boolean = () => true, isAlive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline && isAlive()) {
    try {
      const response = await fetch(url);
      const body = await response.text();
      if (response.status === 200 && accept(body)) return;
      last = `${response.status} ${body}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`${url} not ready${isAlive() ? ` after ${timeoutMs} ms` : " (the process exited)"}: ${last}`);
}

export interface EtcdServer extends ServerProcess {
  /** Client URL, e.g. "http://127.0.0.1:43121". */
  readonly endpoint: string;
}


/** Distinct free loopback ports (bound, read and released: etcd binds them next). */

/** A single-member etcd on free loopback ports; resolves once /health says so. Retries on new ports (a port race). */
export async function startEtcd(): Promise<EtcdServer> {
  const binary = findEtcdBinary();
  if (binary === undefined) throw new Error("etcd is not installed: the replication runs need it (sudo apt-get install -y etcd-server)");
  let lastError: unknown;
  for (let attempt = 1; attempt <= ETCD_START_ATTEMPTS; attempt++) {
    try {
      return await startEtcdOnce(binary);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startEtcdOnce(binary: string): Promise<EtcdServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-bench-etcd-"));
  etcdDirs.add(dataDir);
  const { endpoint, args } = await etcdLaunch("bench", dataDir);
  // ETCDCTL_/ETCD_ variables from the developer's shell would override the flags.
  const { child, exited, stderr } = spawnTracked(binary, args, { PATH: process.env.PATH ?? "" });
  const base = handle(child, exited, stderr, {});
  const stop = async (): Promise<number | null> => {
    const code = await base.stop();
    rmSync(dataDir, { recursive: true, force: true });
    etcdDirs.delete(dataDir);
    return code;
  };
  try {
    await waitOk(`${endpoint}/health`, START_TIMEOUT_MS, (body) => (JSON.parse(body) as { health?: string }).health === "true", base.alive);
  } catch (err) {
    await stop();
    throw new Error(`etcd did not become healthy: ${(err as Error).message}\n${stderr()}`);
  }
  return { ...base, endpoint, stop };
}
