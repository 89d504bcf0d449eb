/**
 * `<nameserver data>/security.json`: the users and ACLs of an in-memory registry, in the JSON
 * form of common/src/security/snapshot.ts. It holds password hashes, so it is created mode 0600.
 *
 * Every change replaces the whole file atomically: write `security.json.tmp`, fsync it, rename
 * it over `security.json`, fsync the directory. A crash leaves the old file or the new one,
 * never half of either; a leftover `.tmp` is simply overwritten by the next change.
 */
import { readFileSync } from "node:fs";
import { mkdir, open, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { InvalidConfigError } from "../../../common/src/errors.js";
import { decodeSnapshot, emptySnapshot, encodeSnapshot } from "../../../common/src/security/snapshot.js";
import type { SecuritySnapshot } from "../../../common/src/security/types.js";

export const SECURITY_FILE_NAME = "security.json";
/** Owner read and write only: the file holds password hashes. */
const SECURITY_FILE_MODE = 0o600;

/**
 * Loads the snapshot; a missing file is an empty snapshot (a first start). A file that cannot
 * be read or parsed stops the name server with InvalidConfigError naming the file, rather than
 * starting with no users and silently replacing it on the next change.
 */
export function readSecurityFile(path: string): SecuritySnapshot {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return emptySnapshot();
    throw new InvalidConfigError(`cannot read the users and ACLs file ${path} (${code ?? (err as Error).message}); check its permissions`, { cause: err });
  }
  return decodeSnapshot(text, path);
}

/** Replaces the file with `text` atomically and durably (see the top of this file). */
export async function writeSecurityFile(path: string, text: string): Promise<void> {
  const directory = dirname(path);
  await mkdir(directory, { recursive: true });
  const temporary = `${path}.tmp`;
  const file = await open(temporary, "w", SECURITY_FILE_MODE);
  try {
    // The mode given to open only applies to a new file: a leftover .tmp keeps its own.
    await file.chmod(SECURITY_FILE_MODE);
    await file.writeFile(text, "utf8");
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  const dir = await open(directory, "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** A snapshot as the codec keeps it: fields checked, users and entries sorted, duplicates gone. */
export function normalizeSnapshot(snapshot: SecuritySnapshot): SecuritySnapshot {
  return decodeSnapshot(encodeSnapshot(snapshot));
}

/** Whether two snapshots hold the same users and entries, whatever their versions. */
export function sameSecurityContent(a: SecuritySnapshot, b: SecuritySnapshot): boolean {
  return encodeSnapshot({ ...a, version: 0 }) === encodeSnapshot({ ...b, version: 0 });
}
