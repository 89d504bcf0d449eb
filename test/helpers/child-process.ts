/**
 * Supervising a helper process a test starts (etcd, Prometheus): its output kept for error
 * messages, a set of the running ones for cleanup, and a stop that escalates to SIGKILL.
 */
import type { ChildProcess } from "node:child_process";

/** Keeps `child` in `running` until it exits; returns what it has written so far (stdout and stderr). */
export function watchChild(child: ChildProcess, running: Set<ChildProcess>): () => string {
  running.add(child);
  let output = "";
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  child.once("exit", () => running.delete(child));
  return () => output;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
