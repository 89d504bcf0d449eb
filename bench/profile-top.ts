/**
 * Prints where a process spent its CPU, from one or more `.cpuprofile` files.
 *
 *   node --import tsx bench/profile-top.ts <file.cpuprofile | dir> [--top N]
 *        [--window bench/results/<run>.json [--timed] | --from-us N --to-us N] [--json]
 *
 * `--window` restricts a long-lived broker's profile to one run (the result file records the
 * run's monotonic window: client start to result); `--timed` narrows it to the client's timed
 * part (the last `seconds` of that window). A directory means every .cpuprofile in it.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readCpuProfile, renderSummary, summarizeProfile } from "./cpuprofile.js";
import { REPO_ROOT } from "./processes.js";

function profileFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).filter((name) => name.endsWith(".cpuprofile")).sort().map((name) => join(path, name));
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: "string", default: "25" },
      window: { type: "string" },
      timed: { type: "boolean", default: false },
      "from-us": { type: "string" },
      "to-us": { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  if (positionals.length === 0) {
    process.stderr.write("usage: profile-top <file.cpuprofile | dir> [--top N] [--window result.json [--timed] | --from-us N --to-us N] [--json]\n");
    process.exit(2);
  }
  let fromUs = values["from-us"] === undefined ? undefined : Number(values["from-us"]);
  let toUs = values["to-us"] === undefined ? undefined : Number(values["to-us"]);
  if (values.window) {
    const record = JSON.parse(readFileSync(values.window, "utf8")) as { windowUs?: { from: number; to: number }; seconds?: number };
    if (!record.windowUs) throw new Error(`${values.window} has no windowUs (it is not a completed run's result)`);
    toUs = record.windowUs.to;
    fromUs = values.timed && record.seconds !== undefined ? toUs - record.seconds * 1e6 : record.windowUs.from;
  }
  const top = Number(values.top);
  const summaries = positionals.flatMap(profileFiles).map((file) => ({
    file,
    summary: summarizeProfile(readCpuProfile(file), { repoRoot: REPO_ROOT, top, ...(fromUs === undefined ? {} : { fromUs }), ...(toUs === undefined ? {} : { toUs }) }),
  }));
  if (values.json) process.stdout.write(JSON.stringify(summaries, null, 2) + "\n");
  else for (const { file, summary } of summaries) process.stdout.write(renderSummary(file, summary) + "\n");
}

main();
