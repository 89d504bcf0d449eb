/**
 * Starts a real etcd (Debian's `etcd-server`) for a test file: a single member on free loopback
 * client and peer ports with a temporary data directory, and always stops it (SIGTERM, then
 * SIGKILL) and removes the directory when the file ends, even if a test failed or threw.
 *
 * Without `etcd` on the PATH a developer's run skips the etcd tests with a message saying what
 * to install; in CI (`CI` set) they run and fail instead, so a CI image that lost etcd cannot
 * pass silently.
 *
 *   describe("…", { skip: etcdSkipReason }, () => { … const etcd = await startEtcd(); … });
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { stopChild, watchChild } from "./child-process.js";
import { etcdLaunch, findEtcdBinary } from "./etcd-launch.js";

export { findEtcdBinary };

/** How long a fresh single-member etcd may take to answer /health. */
const ETCD_START_TIMEOUT_MS = 15_000;
/** How long `stop()` waits after SIGTERM before it sends SIGKILL. */
const ETCD_STOP_GRACE_MS = 3000;
const HEALTH_POLL_INTERVAL_MS = 50;
/** Free-port picking can race with another process on a busy machine: start again on new ports. */
const START_ATTEMPTS = 3;

export const ETCD_MISSING_MESSAGE = "etcd is not installed: install etcd-server to run etcd tests (sudo apt-get install -y etcd-server)";

/** The absolute path of `etcd` on the PATH, or undefined. */

const ETCD_BINARY = findEtcdBinary();
const IN_CI = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";

/**
 * `skip` option for etcd tests: the message when etcd is missing on a developer's machine,
 * false otherwise (in CI a missing etcd makes `startEtcd` throw, failing the tests).
 */
export const etcdSkipReason: string | false = ETCD_BINARY === undefined && !IN_CI ? ETCD_MISSING_MESSAGE : false;

export interface EtcdProcess {
  /** Client URL, e.g. "http://127.0.0.1:43121". */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly pid: number;
  /** etcd's own output, for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL after a grace period; resolves once it exited. Idempotent. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
const dataDirs = new Set<string>();

after(async () => {
  await Promise.all([...running].map((child) => stopChild(child, ETCD_STOP_GRACE_MS)));
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  dataDirs.clear();
});
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

/** Starts a single-member etcd and resolves once it reports itself healthy. */
export async function startEtcd(): Promise<EtcdProcess> {
  if (ETCD_BINARY === undefined) {
    throw new Error(IN_CI ? `${ETCD_MISSING_MESSAGE}; CI must install it (.ci/run does)` : ETCD_MISSING_MESSAGE);
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(ETCD_BINARY);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(binary: string): Promise<EtcdProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-etcd-"));
  dataDirs.add(dataDir);
  const { endpoint, args } = await etcdLaunch("t", dataDir);
  // Only PATH: see etcdLaunch.
  const child = spawn(binary, args, { env: { PATH: process.env.PATH ?? "" }, stdio: ["ignore", "pipe", "pipe"] });
  const output = watchChild(child, running);

  const stop = async (): Promise<void> => {
    await stopChild(child, ETCD_STOP_GRACE_MS);
    rmSync(dataDir, { recursive: true, force: true });
    dataDirs.delete(dataDir);
  };
  try {
    await waitHealthy(endpoint, child, output);
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint, dataDir, pid: child.pid as number, output, stop };
}

async function waitHealthy(endpoint: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + ETCD_START_TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`etcd exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${output()}`);
    }
    try {
      const response = await fetch(`${endpoint}/health`);
      const body = await response.text();
      if (response.status === 200 && (JSON.parse(body) as { health?: string }).health === "true") return;
      last = body;
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_INTERVAL_MS));
  }
  throw new Error(`etcd at ${endpoint} not healthy after ${ETCD_START_TIMEOUT_MS} ms (${last}):\n${output()}`);
}


/** Distinct free loopback ports (bound, read and released: the caller binds them next). */
