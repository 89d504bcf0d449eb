/**
 * The processes a benchmark runs: one `sluice dev` (name server + broker) and, per run, one
 * `sluice bench` client — separate processes, as users run them. Every child started here is
 * killed when the orchestrator exits, whatever the reason.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { get as httpGet, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export type FlushPolicy = "sync" | "interval" | "os";

/** The checkout: the first folder above this file that holds bin/sluice.js (works from bench/ and dist/tools/bench/). */
export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));
export const SLUICE_BIN = join(REPO_ROOT, "bin", "sluice.js");

const DEV_START_TIMEOUT_MS = 30_000;
const DEV_STOP_GRACE_MS = 15_000;
const READY_POLL_MS = 50;
/** One readiness probe's longest wait: a server that accepted but does not answer is polled again. */
const READY_REQUEST_TIMEOUT_MS = 2_000;
/** Only the end of a child's stderr is kept: enough to explain a failure, bounded in memory. */
const STDERR_TAIL_CHARS = 8_000;

function findRepoRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "bin", "sluice.js"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no bin/sluice.js above ${start}`);
  }
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Kills every child still running (used on Ctrl-C before exiting). */
export function killAll(): void {
  for (const child of running) child.kill("SIGKILL");
}

function track(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  running.add(child);
  return new Promise((resolve) => {
    child.once("close", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
    child.once("error", () => {
      running.delete(child);
      resolve({ code: null, signal: null });
    });
  });
}

/**
 * The JSON line a `sluice … --json` server prints once it listens. Kills the process and
 * rejects, with its stderr, when the line is not JSON, does not come within `timeoutMs`, or
 * the process exits first (`exited` resolves with how it ended).
 */
export function readStartLine<T>(child: ChildProcess, exited: Promise<string>, what: string, stderr: () => string, timeoutMs: number): Promise<T> {
  let stdout = "";
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${what} did not print its start line within ${timeoutMs} ms; stderr:\n${stderr()}`));
    }, timeoutMs);
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf("\n");
      if (newline < 0) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(stdout.slice(0, newline)) as T);
      } catch {
        child.kill("SIGKILL");
        reject(new Error(`${what} printed an unexpected start line: ${stdout.slice(0, newline)}`));
      }
    });
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${how}) before starting; stderr:\n${stderr()}`));
    });
  });
}

function tailCollector(): { push(chunk: Buffer): void; text(): string } {
  let text = "";
  return {
    push(chunk: Buffer) {
      text += chunk.toString();
      if (text.length > STDERR_TAIL_CHARS * 2) text = text.slice(-STDERR_TAIL_CHARS);
    },
    text: () => text.slice(-STDERR_TAIL_CHARS),
  };
}

/** Environment for children: quiet logs (the broker must not spend the run writing them). */
function childEnv(): NodeJS.ProcessEnv {
  return { ...process.env, SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? "warn" };
}

/** What `sluice dev --json` prints once it serves. */
export interface DevInfo {
  nameserver: string;
  broker: string;
  http: string;
  dataDir: string;
  flush: FlushPolicy;
  pid: number;
}

export interface DevServer {
  readonly info: DevInfo;
  /**
   * Global CLI flags every call the orchestrator makes to this server needs (TLS, a superuser
   * identity: `--tls-ca F --user admin --password-file F`); [] for an open `sluice dev`.
   */
  readonly cliFlags: readonly string[];
  /** True while the process runs. */
  alive(): boolean;
  stderrTail(): string;
  /** SIGTERM, then SIGKILL after a grace period; resolves with the exit code (null if killed). */
  stop(): Promise<number | null>;
}

export interface DevOptions {
  dataDir: string;
  flush: FlushPolicy;
  /** Node flags placed before the script, e.g. ["--cpu-prof", "--cpu-prof-dir=…"]. */
  nodeFlags?: string[];
  /** Extra `sluice dev` flags, e.g. ["--tls-cert", F, "--tls-key", F, "--auth", …]. */
  extraArgs?: string[];
  /** With --tls-cert: the CA that signed the server's certificate; readiness is then probed over HTTPS, trusting it. */
  tlsCaFile?: string;
  /** See DevServer.cliFlags. */
  cliFlags?: string[];
}

export async function startDev(options: DevOptions): Promise<DevServer> {
  const args = [
    ...(options.nodeFlags ?? []), SLUICE_BIN,
    "dev", "--json", "--data", options.dataDir,
    "--nameserver-port", "0", "--broker-port", "0", "--http-port", "0", "--flush", options.flush,
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
  const exited = track(child);
  const stderr = tailCollector();
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
  const info = await readStartLine<DevInfo>(child, exited.then(({ code, signal }) => String(signal ?? code)), "sluice dev", stderr.text, DEV_START_TIMEOUT_MS);
  const server: DevServer = {
    info,
    cliFlags: [...(options.cliFlags ?? [])],
    alive: () => child.exitCode === null && child.signalCode === null,
    stderrTail: () => stderr.text(),
    stop: async () => {
      if (!server.alive()) return child.exitCode;
      child.kill("SIGTERM");
      const grace = setTimeout(() => child.kill("SIGKILL"), DEV_STOP_GRACE_MS);
      const { code } = await exited;
      clearTimeout(grace);
      return code;
    },
  };
  try {
    await waitReady(info.http, options.tlsCaFile, DEV_START_TIMEOUT_MS);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** One GET: the status and body. Over HTTPS when a CA is given (fetch cannot be told to trust one). */
function getText(url: string, ca: Buffer | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (response: IncomingMessage): void => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      response.on("error", reject);
    };
    const request = ca === undefined ? httpGet(url, onResponse) : httpsGet(url, { ca }, onResponse);
    request.setTimeout(READY_REQUEST_TIMEOUT_MS, () => request.destroy(new Error(`no answer within ${READY_REQUEST_TIMEOUT_MS} ms`)));
    request.on("error", reject);
  });
}

/**
 * Polls GET /readyz until 200: the broker is registered and its logs are recovered. A server
 * with TLS serves HTTPS (with --auth, --open-metrics leaves /readyz open to this probe).
 */
async function waitReady(httpAddress: string, tlsCaFile: string | undefined, timeoutMs: number): Promise<void> {
  const ca = tlsCaFile === undefined ? undefined : readFileSync(tlsCaFile);
  const url = `${ca === undefined ? "http" : "https"}://${httpAddress}/readyz`;
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const response = await getText(url, ca);
      if (response.status === 200) return;
      last = `${response.status} ${response.body}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  throw new Error(`broker at ${url} not ready after ${timeoutMs} ms: ${last}`);
}

export interface CliRun {
  /** Exit code; null when killed (by the timeout or a signal). */
  code: number | null;
  timedOut: boolean;
  stdout: string;
  stderrTail: string;
}

/** Runs `node [nodeFlags] bin/sluice.js <args>` to completion, killing it after timeoutMs. */
export function runCli(
  args: string[],
  options: {
    timeoutMs: number;
    nodeFlags?: string[];
    onSpawn?: (pid: number) => void;
    /** Called once, when stdout holds its first complete line: with --json, the result is in. */
    onFirstLine?: () => void;
  },
): Promise<CliRun> {
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), SLUICE_BIN, ...args], {
    cwd: REPO_ROOT,
    env: childEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = track(child);
  if (child.pid !== undefined) options.onSpawn?.(child.pid);
  let stdout = "";
  const stderr = tailCollector();
  let sawLine = false;
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (!sawLine && stdout.includes("\n")) {
      sawLine = true;
      options.onFirstLine?.();
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs);
  return exited.then(({ code }) => {
    clearTimeout(timer);
    return { code, timedOut, stdout, stderrTail: stderr.text() };
  });
}
