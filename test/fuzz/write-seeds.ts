/**
 * Writes the valid examples of every fuzz corpus under test/fuzz/<dir>/ (deterministic: the
 * same bytes on every run). Crash files (`crash-*.bin`) are written by the driver and never
 * touched here. Run after changing a format:
 *
 *   node --import tsx test/fuzz/write-seeds.ts
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { corpusPath } from "./driver.js";
import { logSpans, recordSections, singleBatches } from "./seeds-batch.js";
import { configSeeds } from "./seeds-config.js";
import { jsonSeeds } from "./seeds-json.js";
import { protoSeeds } from "./seeds-proto.js";

function write(dir: string, files: Record<string, Buffer | string>, extension = "bin"): void {
  for (const [name, bytes] of Object.entries(files)) {
    const file = join(corpusPath(dir), `${name}.${extension}`);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, bytes);
  }
}

write("batch", singleBatches());
write("log", logSpans());
write("gzip", recordSections());
write("proto", protoSeeds());
for (const [dir, files] of Object.entries(jsonSeeds())) write(dir, files, "json");
for (const [dir, { files, extension }] of Object.entries(configSeeds())) write(dir, files, extension);
