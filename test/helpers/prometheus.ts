/**
 * Debian's Prometheus (`prometheus` package: /usr/bin/prometheus and /usr/bin/promtool) for the
 * tests of ops/prometheus and ops/grafana:
 *
 * - `runPromtool(args)` runs promtool to completion;
 * - `startPrometheus(files)` starts a real Prometheus on a free loopback port with its own
 *   temporary directory (config, rules, TSDB) and always kills it when the test file ends, even
 *   if a test failed or threw; its HTTP API answers `query`, `alerts` and `rules`;
 * - `promqlMetricNames(expr)` lists the metric names a PromQL expression selects, so a test can
 *   hold every shipped query to the metric names the broker and name server export.
 *
 * Without the binaries a developer's run skips those tests with a message saying what to install;
 * in CI (`CI` set) they run and fail instead, as the etcd tests do (test/helpers/etcd.ts).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after } from "node:test";
import { stopChild, watchChild } from "./child-process.js";
import { freePorts } from "./etcd-launch.js";

const PROMETHEUS_MISSING_MESSAGE =
  "prometheus/promtool are not installed: install Debian's prometheus package to run these tests (sudo apt-get install -y prometheus)";
/** How long a fresh Prometheus may take to answer /-/ready. */
const PROMETHEUS_START_TIMEOUT_MS = 15_000;
/** How long `stop()` waits after SIGTERM before it sends SIGKILL. */
const PROMETHEUS_STOP_GRACE_MS = 3000;
const POLL_INTERVAL_MS = 200;
/** Free-port picking can race with another process on a busy machine: start again on a new port. */
const START_ATTEMPTS = 3;

const IN_CI = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";

/** The absolute path of `name` on the PATH, or undefined. */
function findBinary(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

const PROMTOOL_BINARY = findBinary("promtool");
const PROMETHEUS_BINARY = findBinary("prometheus");

/** `skip` option for promtool tests: a message when it is missing outside CI, false otherwise. */
export const promtoolSkipReason: string | false = PROMTOOL_BINARY === undefined && !IN_CI ? PROMETHEUS_MISSING_MESSAGE : false;
/** `skip` option for tests that start Prometheus: a message when it is missing outside CI, false otherwise. */
export const prometheusSkipReason: string | false = PROMETHEUS_BINARY === undefined && !IN_CI ? PROMETHEUS_MISSING_MESSAGE : false;

function required(binary: string | undefined, name: string): string {
  if (binary !== undefined) return binary;
  throw new Error(IN_CI ? `${name}: ${PROMETHEUS_MISSING_MESSAGE}; CI must install it (.ci/run)` : PROMETHEUS_MISSING_MESSAGE);
}

export interface PromtoolResult {
  code: number | null;
  /** stdout and stderr together, for assertion messages. */
  output: string;
}

/** Runs `promtool <args>` in `cwd` to completion (it checks files in well under a second). */
export function runPromtool(args: string[], cwd?: string): PromtoolResult {
  const result = spawnSync(required(PROMTOOL_BINARY, "promtool"), args, { cwd, encoding: "utf8", timeout: 30_000 });
  if (result.error) throw result.error;
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

// --- PromQL metric names -----------------------------------------------------------------------

/** Words that look like identifiers in PromQL but are not metric names. */
const PROMQL_KEYWORDS = new Set(["and", "or", "unless", "offset", "bool", "atan2", "inf", "nan", "start", "end"]);

/**
 * The metric names an expression selects. Not a PromQL parser: it drops what can hold
 * identifiers that are not metric names (strings, Grafana variables, label matchers, ranges,
 * label lists of by/without/on/ignoring/group_*), then takes every remaining identifier that is
 * neither a keyword nor called like a function. Good enough for the queries we ship, and a test
 * proves it finds a name it does not know.
 */
export function promqlMetricNames(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$\w+|\[\[\w+\]\]/g, "1")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(?:by|without|on|ignoring)\s*\([^)]*\)/g, "")
    // group_left / group_right take an optional label list.
    .replace(/\b(?:group_left|group_right)(?:\s*\([^)]*\))?/g, "");
  const names = new Set<string>();
  // Numbers and durations first, so "10m" or "1e3" is never read as an identifier.
  const token = /\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])*|([A-Za-z_:][\w:]*)(\s*\()?/gi;
  for (const match of stripped.matchAll(token)) {
    const [, identifier, call] = match;
    if (identifier === undefined || call !== undefined || PROMQL_KEYWORDS.has(identifier.toLowerCase())) continue;
    names.add(identifier);
  }
  return names;
}

// --- A real Prometheus ---------------------------------------------------------------------------

export interface PrometheusSample {
  metric: Record<string, string>;
  value: number;
}

export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: "pending" | "firing";
}

export interface PrometheusRule {
  name: string;
  type: "recording" | "alerting";
  health: string;
  lastError?: string;
}

export interface PrometheusProcess {
  /** e.g. "http://127.0.0.1:41233" */
  readonly url: string;
  readonly dir: string;
  /** An instant query; NaN values are kept as NaN. */
  query(expr: string): Promise<PrometheusSample[]>;
  alerts(): Promise<PrometheusAlert[]>;
  rules(): Promise<PrometheusRule[]>;
  /** Prometheus's own log, for failure messages. */
  output(): string;
  /** SIGTERM, then SIGKILL after a grace period; resolves once it exited. Idempotent. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
const dirs = new Set<string>();

after(async () => {
  await Promise.all([...running].map((child) => stopChild(child, PROMETHEUS_STOP_GRACE_MS)));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
});
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * Starts Prometheus with `files` (name → content) written to a fresh temporary directory;
 * `files["prometheus.yml"]` is its configuration, and relative `rule_files` resolve there.
 * Resolves once /-/ready answers 200.
 */
export async function startPrometheus(files: Record<string, string>): Promise<PrometheusProcess> {
  const binary = required(PROMETHEUS_BINARY, "prometheus");
  if (files["prometheus.yml"] === undefined) throw new Error("startPrometheus needs files[\"prometheus.yml\"]");
  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(binary, files);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(binary: string, files: Record<string, string>): Promise<PrometheusProcess> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-prometheus-"));
  dirs.add(dir);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const [port] = await freePorts(1);
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    binary,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  const output = watchChild(child, running);

  const stop = async (): Promise<void> => {
    await stopChild(child, PROMETHEUS_STOP_GRACE_MS);
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
  };
  try {
    await waitReady(url, child, output);
  } catch (err) {
    await stop();
    throw err;
  }
  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`Prometheus ${path}: ${body.error ?? response.status}`);
    return body.data;
  };
  return {
    url,
    dir,
    output: output,
    stop,
    query: async (expr) => {
      const data = await api<{ resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] }>(
        `/api/v1/query?query=${encodeURIComponent(expr)}`,
      );
      if (data.resultType !== "vector") throw new Error(`expected a vector from ${expr}, got ${data.resultType}`);
      return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    alerts: async () => (await api<{ alerts: PrometheusAlert[] }>("/api/v1/alerts")).alerts,
    rules: async () => {
      const data = await api<{ groups: { rules: PrometheusRule[] }[] }>("/api/v1/rules");
      return data.groups.flatMap((g) => g.rules);
    },
  };
}

async function waitReady(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + PROMETHEUS_START_TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output()}`);
    }
    try {
      const response = await fetch(`${url}/-/ready`);
      if (response.status === 200) return;
      last = await response.text();
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  throw new Error(`prometheus at ${url} not ready after ${PROMETHEUS_START_TIMEOUT_MS} ms (${last}):\n${output()}`);
}


/**
 * Polls `probe` until it returns something other than undefined, or fails after `timeoutMs`
 * with `what` and the last value seen (`describe()`), so a stuck wait says what it waited for.
 */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, describe: () => string = () => ""): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ""}\n${describe()}`);
}
