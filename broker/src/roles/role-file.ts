/**
 * `<data>/role.json`: what a broker without etcd remembers of its group across restarts — the
 * newest group epoch it knows and who was master at it. Written atomically (temporary file,
 * fsync, rename, fsync of the directory), because a torn file would make a broker forget an
 * epoch it promised never to go below.
 *
 *   {"epoch": 2, "master": 1}      master: broker id, or null when not known yet
 */
import { readFileSync } from "node:fs";
import { writeFileDurably } from "../storage/storage-io.js";
import { join } from "node:path";
import { InternalError } from "../../../common/src/errors.js";

export const ROLE_FILE_NAME = "role.json";

export interface RoleFileContent {
  /** Newest group epoch this broker knows; 0 when it knows none. */
  epoch: number;
  /** Master at that epoch, or null. */
  master: number | null;
}

export function roleFilePath(dataDir: string): string {
  return join(dataDir, ROLE_FILE_NAME);
}

/** The file's content, or undefined when there is none (a fresh data directory). */
export function readRoleFile(dataDir: string): RoleFileContent | undefined {
  const path = roleFilePath(dataDir);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    // A directory in its place, no permission: the broker cannot start, and says which file.
    throw new InternalError(`cannot read ${path} (${(err as Error).message}); fix its permissions or restore it`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const content = parsed as Partial<RoleFileContent> | undefined;
  const epochOk = typeof content?.epoch === "number" && Number.isSafeInteger(content.epoch) && content.epoch >= 0;
  const masterOk = content?.master === null || (typeof content?.master === "number" && Number.isSafeInteger(content.master) && content.master >= 0);
  if (!epochOk || !masterOk) {
    throw new InternalError(`${path} is not a role file this version can read (${JSON.stringify(text.slice(0, 80))}); restore it or delete it to start as a new broker`);
  }
  return { epoch: content.epoch as number, master: content.master as number | null };
}

export function writeRoleFile(dataDir: string, content: RoleFileContent): void {
  const path = roleFilePath(dataDir);
  writeFileDurably(path, JSON.stringify({ epoch: content.epoch, master: content.master }) + "\n");
}
