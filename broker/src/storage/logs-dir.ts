/**
 * The layout of `<dataDir>/logs`, the LogManager's directory:
 *
 *   <topic>-<partition>/              one directory per partition (segment files inside);
 *                                     topics may contain '-', so the name splits at the last one
 *   <topic>-<partition>~deleting/     a partition being deleted (renamed first, so a crash
 *                                     mid-delete never leaves half a partition that looks live)
 *   recovery-point-checkpoint         text, one line per partition: `<topic> <partition> <offset>\n`,
 *                                     the offset below which that partition was flushed
 *                                     (data and indexes); replaced atomically (temp file + rename)
 *   .clean-shutdown                   present only between a clean close and the next open
 */
import fs from "node:fs";
import path from "node:path";
import type { Logger } from "../../../common/src/logger.js";
import { fsyncDirectory, writeFileDurably } from "./storage-io.js";

export const RECOVERY_POINT_CHECKPOINT_FILE = "recovery-point-checkpoint";
export const CLEAN_SHUTDOWN_FILE = ".clean-shutdown";
/** '~' cannot appear in a topic name, so a deleting directory never parses as a partition. */
export const DELETING_DIR_SUFFIX = "~deleting";

const PARTITION_DIR = /^(.+)-(\d+)$/;

export function partitionDirName(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

export function parsePartitionDirName(name: string): { topic: string; partition: number } | null {
  const match = PARTITION_DIR.exec(name); // greedy: splits at the last '-'
  if (!match) return null;
  const partition = Number(match[2]);
  return Number.isSafeInteger(partition) ? { topic: match[1]!, partition } : null;
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic} ${partition}`;
}

/** Partition directories under `logsDir`, after removing leftovers of interrupted deletes. */
export function listPartitionDirs(logsDir: string, logger: Logger): { topic: string; partition: number; dir: string }[] {
  const found: { topic: string; partition: number; dir: string }[] = [];
  for (const entry of fs.readdirSync(logsDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const dir = path.join(logsDir, entry.name);
    if (entry.name.endsWith(DELETING_DIR_SUFFIX)) {
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    const parsed = parsePartitionDirName(entry.name);
    if (!parsed) {
      logger.warn({ dir }, "ignoring a directory in the logs directory that is not <topic>-<partition>");
      continue;
    }
    found.push({ ...parsed, dir });
  }
  return found.sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
}

export interface RecoveryPoint {
  topic: string;
  partition: number;
  offset: number;
}

/** Reads the checkpoint as a map keyed by `partitionKey`; a missing file is an empty map. */
export function readRecoveryPoints(logsDir: string, logger: Logger): Map<string, number> {
  const points = new Map<string, number>();
  let text: string;
  try {
    text = fs.readFileSync(path.join(logsDir, RECOVERY_POINT_CHECKPOINT_FILE), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return points;
    throw err;
  }
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const [topic, partition, offset, extra] = line.trim().split(/\s+/);
    const partitionNumber = Number(partition);
    const offsetNumber = Number(offset);
    if (!topic || extra !== undefined || !Number.isSafeInteger(partitionNumber) || !Number.isSafeInteger(offsetNumber) || offsetNumber < 0) {
      logger.warn({ line }, "ignoring a malformed recovery-point checkpoint line; that partition is validated from its start");
      continue;
    }
    points.set(partitionKey(topic, partitionNumber), offsetNumber);
  }
  return points;
}

/** Replaces the checkpoint atomically: a crash leaves either the old file or the new one. */
export function writeRecoveryPoints(logsDir: string, points: readonly RecoveryPoint[]): void {
  const text = points.map((p) => `${p.topic} ${p.partition} ${p.offset}\n`).join("");
  writeFileDurably(path.join(logsDir, RECOVERY_POINT_CHECKPOINT_FILE), text);
}

/**
 * The same, off the event loop: the periodic flush calls this every second, and an fsync on
 * the main thread would stall every produce and fetch behind it (it waits for the journal).
 */
export async function writeRecoveryPointsAsync(logsDir: string, points: readonly RecoveryPoint[]): Promise<void> {
  const text = points.map((p) => `${p.topic} ${p.partition} ${p.offset}\n`).join("");
  const temporary = path.join(logsDir, `${RECOVERY_POINT_CHECKPOINT_FILE}.tmp`);
  const file = await fs.promises.open(temporary, "w", 0o644);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await fs.promises.rename(temporary, path.join(logsDir, RECOVERY_POINT_CHECKPOINT_FILE));
  const dir = await fs.promises.open(logsDir, "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export function hasCleanShutdownMarker(logsDir: string): boolean {
  return fs.existsSync(path.join(logsDir, CLEAN_SHUTDOWN_FILE));
}

export function writeCleanShutdownMarker(logsDir: string, nowMs: number): void {
  writeFileDurably(path.join(logsDir, CLEAN_SHUTDOWN_FILE), `${new Date(nowMs).toISOString()}\n`);
}

/** Removed durably before anything is written, so a crash from here on is seen as unclean. */
export function removeCleanShutdownMarker(logsDir: string): void {
  fs.rmSync(path.join(logsDir, CLEAN_SHUTDOWN_FILE), { force: true });
  fsyncDirectory(logsDir);
}

