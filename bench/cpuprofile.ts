/**
 * Self time by function from a V8 `.cpuprofile` (what `node --cpu-prof` writes), optionally
 * restricted to a time window, so one broker profile covering several runs can be split per run.
 *
 * The file: `nodes` is the call tree (`id`, `callFrame {functionName, url, lineNumber}`,
 * `children`); `samples[i]` is the id of the node on top of the stack at sample i; `timeDeltas[i]`
 * is the µs between sample i-1 (or `startTime`) and sample i. Timestamps are µs of the
 * monotonic clock — the same clock as `process.hrtime()` in any process on the machine.
 * A sample "lasts" until the next one, so its self time is the next delta — but only up to a
 * few sampling intervals: a longer delta means the sampler itself did not run (the process was
 * descheduled on a busy machine), and charging that to whatever was on top of the stack would
 * invent hot spots. The excess is reported as "(unsampled gap)".
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A sample is charged at most this many median sampling intervals; the rest is a gap. */
const MAX_SAMPLE_INTERVALS = 4;
export const GAP_FUNCTION = "(unsampled gap)";

export interface SelfTimeRow {
  functionName: string;
  /** Script location, shortened: repo-relative, `node_modules/<pkg>/…` or `node:…`. */
  location: string;
  selfMs: number;
  /** Share of all sampled time in the window, idle included. */
  percent: number;
}

export interface ProfileSummary {
  windowMs: number;
  /** Sampled time not spent idle or in gaps: what the process actually burned. */
  busyMs: number;
  /** Time the sampler did not run (see GAP_FUNCTION). */
  gapMs: number;
  byFunction: SelfTimeRow[];
  /** The same time summed by area: a package, a repo folder, node internals, GC… */
  byArea: { area: string; selfMs: number; percent: number }[];
}

export function readCpuProfile(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
}

/** Turns a script URL into something short a reader recognises. */
export function shortLocation(url: string, repoRoot: string): string {
  if (url === "") return "";
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  const nodeModules = path.lastIndexOf("/node_modules/");
  if (nodeModules >= 0) return path.slice(nodeModules + 1);
  const root = repoRoot.endsWith("/") ? repoRoot : `${repoRoot}/`;
  return path.startsWith(root) ? path.slice(root.length) : path;
}

/** The area a location belongs to: `pkg` for node_modules/pkg (or @scope/pkg), the first two folders inside the repo, or node internals. */
export function areaOf(location: string, functionName: string): string {
  if (location === "") return functionName.startsWith("(") ? functionName : "(native)";
  if (location.startsWith("node:")) return "node internals";
  if (location.startsWith("node_modules/")) {
    const parts = location.split("/");
    return parts[1]?.startsWith("@") ? `${parts[1]}/${parts[2]}` : (parts[1] ?? location);
  }
  const parts = location.split("/");
  if (parts[0] === "dist") parts.shift();
  return parts.slice(0, Math.min(3, parts.length - 1)).join("/") || location;
}

export function summarizeProfile(
  profile: CpuProfile,
  options: { fromUs?: number; toUs?: number; repoRoot: string; top?: number },
): ProfileSummary {
  const frames = new Map<number, { functionName: string; location: string }>();
  for (const node of profile.nodes) {
    frames.set(node.id, {
      functionName: node.callFrame.functionName || "(anonymous)",
      location: shortLocation(node.callFrame.url, options.repoRoot) + (node.callFrame.url ? `:${node.callFrame.lineNumber + 1}` : ""),
    });
  }
  const fromUs = options.fromUs ?? -Infinity;
  const toUs = options.toUs ?? Infinity;
  const selfUs = new Map<string, { functionName: string; location: string; us: number }>();
  const charge = (functionName: string, location: string, us: number): void => {
    const key = `${functionName}\u0000${location}`;
    const row = selfUs.get(key);
    if (row) row.us += us;
    else selfUs.set(key, { functionName, location, us });
  };
  const sortedDeltas = [...profile.timeDeltas].sort((a, b) => a - b);
  const maxSampleUs = MAX_SAMPLE_INTERVALS * Math.max(1, sortedDeltas[sortedDeltas.length >> 1] ?? 1000);
  let windowUs = 0;
  let idleUs = 0;
  let gapUs = 0;
  let timestamp = profile.startTime;
  const count = profile.samples.length;
  for (let i = 0; i < count; i++) {
    timestamp += profile.timeDeltas[i] ?? 0;
    if (timestamp < fromUs || timestamp > toUs) continue;
    const next = profile.timeDeltas[i + 1];
    const durationUs = next === undefined ? Math.max(0, Math.min(profile.endTime, toUs) - timestamp) : next;
    const frame = frames.get(profile.samples[i] as number);
    if (!frame) continue;
    const chargedUs = Math.min(durationUs, maxSampleUs);
    windowUs += durationUs;
    gapUs += durationUs - chargedUs;
    if (frame.functionName === "(idle)") idleUs += chargedUs;
    charge(frame.functionName, frame.location, chargedUs);
  }
  if (gapUs > 0) charge(GAP_FUNCTION, "", gapUs);
  const percent = (us: number): number => (windowUs > 0 ? Number(((us * 100) / windowUs).toFixed(1)) : 0);
  const rows = [...selfUs.values()].sort((a, b) => b.us - a.us);
  const areas = new Map<string, number>();
  for (const row of rows) {
    const area = areaOf(row.location.replace(/:\d+$/, ""), row.functionName);
    areas.set(area, (areas.get(area) ?? 0) + row.us);
  }
  return {
    windowMs: Number((windowUs / 1000).toFixed(1)),
    busyMs: Number(((windowUs - idleUs - gapUs) / 1000).toFixed(1)),
    gapMs: Number((gapUs / 1000).toFixed(1)),
    byFunction: rows.slice(0, options.top ?? 25).map((r) => ({
      functionName: r.functionName,
      location: r.location,
      selfMs: Number((r.us / 1000).toFixed(1)),
      percent: percent(r.us),
    })),
    byArea: [...areas.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, selfMs: Number((us / 1000).toFixed(1)), percent: percent(us) })),
  };
}

export function renderSummary(title: string, summary: ProfileSummary, topAreas = 12): string {
  const lines = [`${title}: ${summary.windowMs} ms window, ${summary.busyMs} ms busy, ${summary.gapMs} ms not sampled (descheduled)`];
  lines.push("  self ms     %   function  (location)");
  for (const row of summary.byFunction) {
    lines.push(`  ${row.selfMs.toFixed(1).padStart(8)} ${row.percent.toFixed(1).padStart(5)}   ${row.functionName}  ${row.location ? `(${row.location})` : ""}`.trimEnd());
  }
  lines.push("  by area:");
  for (const row of summary.byArea.slice(0, topAreas)) {
    lines.push(`  ${row.selfMs.toFixed(1).padStart(8)} ${row.percent.toFixed(1).padStart(5)}   ${row.area}`);
  }
  return lines.join("\n") + "\n";
}
