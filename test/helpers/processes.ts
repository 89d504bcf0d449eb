/**
 * Starts real `sluice` processes (the built CLI, as a user runs it) on free loopback ports,
 * and always stops them: every process started here is killed when the test file ends,
 * even if the test failed or threw.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after } from "node:test";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const SLUICE_BIN = join(REPO_ROOT, "bin", "sluice.js");

const running = new Set<ChildProcess>();
const tempDirs: string[] = [];

after(async () => {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export function tempDir(prefix = "sluice-it-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** What the server printed as its JSON start line (addresses it bound). */
  readonly info: Record<string, string>;
  stderr(): string;
  /** Sends a signal and waits for the process to exit; returns its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `sluice <args> --json` and resolves once it printed its start line. */
export async function startServer(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; wrapper?: string[] } = {},
): Promise<ServerProcess> {
  // A wrapper (e.g. strace) runs node as its child; the start line's pid is node's own.
  const [command, ...prefix] = options.wrapper ?? [process.execPath];
  const commandArgs = options.wrapper ? [...prefix, process.execPath] : [];
  const child = spawn(command as string, [...commandArgs, SLUICE_BIN, ...args, "--json"], {
    env: { ...process.env, SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? "warn", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => {
    running.delete(child);
    resolve(code);
  }));
  const info = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sluice ${args.join(" ")} did not start in time; stderr:\n${stderr}`)), options.timeoutMs ?? 20_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf("\n");
      if (newline >= 0) {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(stdout.slice(0, newline)) as Record<string, string>);
        } catch (err) {
          reject(new Error(`unexpected start line: ${stdout.slice(0, newline)}`));
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`sluice ${args.join(" ")} exited with ${code} before starting; stderr:\n${stderr}`));
    });
  });
  return {
    child,
    pid: child.pid as number,
    info,
    stderr: () => stderr,
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/** Polls GET http://address/readyz until it answers 200. */
export async function waitReady(httpAddress: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://${httpAddress}/readyz`);
      if (response.status === 200) return;
      last = await response.text();
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${httpAddress} not ready after ${timeoutMs} ms: ${last}`);
}

export interface Cluster {
  nameserver: string;
  broker: string;
  http: string;
  dataDir: string;
  process: ServerProcess;
}

/** `sluice dev` on free ports with its own data directory. */
export async function startDev(
  options: { dataDir?: string; flush?: "sync" | "interval" | "os"; extra?: string[]; wrapper?: string[] } = {},
): Promise<Cluster> {
  const dataDir = options.dataDir ?? tempDir();
  const args = ["dev", "--data", dataDir, "--nameserver-port", "0", "--broker-port", "0", "--http-port", "0"];
  if (options.flush) args.push("--flush", options.flush);
  const proc = await startServer([...args, ...(options.extra ?? [])], options.wrapper ? { wrapper: options.wrapper } : {});
  const info = proc.info as { nameserver: string; broker: string; http: string };
  await waitReady(info.http);
  return { nameserver: info.nameserver, broker: info.broker, http: info.http, dataDir, process: proc };
}

/** `sluice nameserver` on free ports. */
export async function startNameServer(extra: string[] = []): Promise<{ address: string; http: string; process: ServerProcess }> {
  const proc = await startServer(["nameserver", "--port", "0", "--http-port", "0", ...extra]);
  await waitReady(proc.info.http as string);
  return { address: proc.info.nameserver as string, http: proc.info.http as string, process: proc };
}

/** `sluice broker` on free ports, registered with the given name servers. */
export async function startBroker(options: {
  nameservers: string[];
  name?: string;
  id?: number;
  dataDir?: string;
  flush?: "sync" | "interval" | "os";
  extra?: string[];
  port?: number;
}): Promise<{ address: string; http: string; dataDir: string; process: ServerProcess }> {
  const dataDir = options.dataDir ?? tempDir();
  const args = [
    "--nameserver", options.nameservers.join(","),
    "broker", "--name", options.name ?? "b1", "--id", String(options.id ?? 0), "--data", dataDir,
    "--port", String(options.port ?? 0), "--http-port", "0",
  ];
  if (options.flush) args.push("--flush", options.flush);
  const proc = await startServer([...args, ...(options.extra ?? [])]);
  await waitReady(proc.info.http as string);
  return { address: proc.info.broker as string, http: proc.info.http as string, dataDir, process: proc };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one CLI command to completion, optionally feeding stdin. */
export function runCli(args: string[], options: { input?: string | Buffer; nameserver?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const fullArgs = options.nameserver ? ["--nameserver", options.nameserver, ...args] : args;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SLUICE_BIN, ...fullArgs], {
      env: { ...process.env, SLUICE_LOG_LEVEL: "warn" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    running.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`sluice ${fullArgs.join(" ")} timed out; stderr: ${Buffer.concat(err).toString()}`));
    }, options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.on("error", () => undefined);
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}
