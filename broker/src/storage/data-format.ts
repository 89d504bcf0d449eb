/**
 * The on-disk format version of a broker's data directory, Kafka `meta.properties`-style: a
 * small marker file, `<data>/FORMAT`, that says which layout the rest of the directory uses,
 * so a build never misreads a directory written by a newer one.
 *
 *   {"format":2,"writtenBy":"sluice 0.1.0","createdAt":"2025-11-24T08:32:00.000Z"}
 *
 *   format     integer; the layout of `logs/`, `meta/`, `groups/`, `role.json`, `flow-rules.json`
 *   writtenBy  the Sluice that wrote the marker (for the error message of an older build)
 *   createdAt  when the marker was written (ISO 8601)
 *
 * Versions:
 *   1  every directory written before the marker existed: no FORMAT file. Record batches are
 *      Kafka RecordBatch v2 (magic 2), `leader-epochs` files carry their own header.
 *   2  format 1 plus the marker. Nothing else changed, so upgrading 1 → 2 is writing the marker.
 *
 * The marker is replaced atomically (temporary file, fsync, rename, fsync of the directory):
 * a torn marker would stop the broker at its next start.
 *
 * When it is written matters. A new directory gets it at once, before any data, so data of a
 * future format can never be mistaken for format 1 after a crash during the first start. An
 * upgraded directory gets it only from `commit()`, which the broker calls once it has opened
 * and recovered the logs with this build: a build that fails to read the old layout leaves
 * the directory as it found it, still readable by the build that wrote it.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidConfigError, UnsupportedDataFormatError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { writeFileDurably } from "./storage-io.js";

/** The format this build writes. Bump it, and describe the new version above, when the layout changes. */
export const DATA_FORMAT_VERSION = 2;
/** The oldest format this build still opens (upgrading it in place). */
export const MIN_DATA_FORMAT_VERSION = 1;
export const DATA_FORMAT_FILE = "FORMAT";
/**
 * What a format-1 directory can hold: a directory with any of these and no marker is format 1.
 * Anything else (an empty directory, `lost+found` on a fresh volume) is a new directory.
 */
export const FORMAT_1_ENTRIES: readonly string[] = ["logs", "meta", "groups", "role.json", "flow-rules.json"];

export interface DataFormatMarker {
  format: number;
  writtenBy: string;
  createdAt: string;
}

export interface OpenedDataFormat {
  /** The format the directory has now (after `commit()` for an upgrade): DATA_FORMAT_VERSION. */
  version: number;
  /** The format found on disk when it is older than DATA_FORMAT_VERSION. */
  upgradedFrom?: number;
  /** Writes the upgraded marker; call once the logs opened. A no-op when nothing is to upgrade. */
  commit(): Promise<void>;
}

export interface DataFormatOptions {
  /** Goes into `writtenBy`. @defaultValue the version in Sluice's package.json */
  softwareVersion?: string;
  /** @defaultValue () => new Date() */
  now?: () => Date;
}

export function dataFormatPath(dataDir: string): string {
  return join(dataDir, DATA_FORMAT_FILE);
}

/**
 * Checks the data directory's format before anything in it is opened. Refuses a directory
 * written in a newer format (UNSUPPORTED_DATA_FORMAT) or with an unreadable marker
 * (INVALID_CONFIG, naming the file); marks a new directory; plans the upgrade of an older one.
 */
export async function openDataFormat(dataDir: string, logger: Logger, options: DataFormatOptions = {}): Promise<OpenedDataFormat> {
  mkdirSync(dataDir, { recursive: true });
  const file = dataFormatPath(dataDir);
  const write = (): void => writeMarker(file, options);
  const found = readDataFormat(dataDir);
  if (found === undefined) {
    if (!FORMAT_1_ENTRIES.some((entry) => existsSync(join(dataDir, entry)))) {
      write();
      logger.info({ dataDir, format: DATA_FORMAT_VERSION }, "new data directory: format marker written");
      return { version: DATA_FORMAT_VERSION, commit: async () => {} };
    }
    return upgrade(dataDir, MIN_DATA_FORMAT_VERSION, write, logger);
  }
  if (found.format > DATA_FORMAT_VERSION) {
    throw new UnsupportedDataFormatError(
      `data directory ${dataDir} has on-disk format ${found.format}` +
        (found.writtenBy ? ` (written by ${found.writtenBy})` : "") +
        `; this build (sluice ${options.softwareVersion ?? sluiceVersion()}) supports formats ` +
        `${MIN_DATA_FORMAT_VERSION} to ${DATA_FORMAT_VERSION}: upgrade Sluice to a version that reads format ${found.format}`,
    );
  }
  if (found.format < DATA_FORMAT_VERSION) return upgrade(dataDir, found.format, write, logger);
  return { version: DATA_FORMAT_VERSION, commit: async () => {} };
}

function upgrade(dataDir: string, from: number, write: () => void, logger: Logger): OpenedDataFormat {
  let committed = false;
  return {
    version: DATA_FORMAT_VERSION,
    upgradedFrom: from,
    commit: async () => {
      if (committed) return;
      write();
      committed = true;
      logger.info({ dataDir, from, to: DATA_FORMAT_VERSION }, "data directory upgraded to the current on-disk format");
    },
  };
}

/**
 * The marker's content, or undefined when there is none. A marker that cannot be read as one
 * is INVALID_CONFIG naming the file: guessing a format could misread every log behind it.
 */
export function readDataFormat(dataDir: string): { format: number; writtenBy?: string } | undefined {
  const file = dataFormatPath(dataDir);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new InvalidConfigError(`cannot read the data directory's format marker ${file}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const marker = parsed as Partial<DataFormatMarker> | undefined;
  const format = typeof marker === "object" && marker !== null ? marker.format : undefined;
  if (typeof format !== "number" || !Number.isSafeInteger(format) || format < MIN_DATA_FORMAT_VERSION) {
    throw new InvalidConfigError(
      `the data directory's format marker ${file} is corrupt (${JSON.stringify(text.slice(0, 80))}); it must hold ` +
        `JSON like {"format":${DATA_FORMAT_VERSION}}: restore it from a backup, or from the Sluice version that wrote the directory`,
    );
  }
  return typeof marker!.writtenBy === "string" ? { format, writtenBy: marker!.writtenBy } : { format };
}

function writeMarker(file: string, options: DataFormatOptions): void {
  const marker: DataFormatMarker = {
    format: DATA_FORMAT_VERSION,
    writtenBy: `sluice ${options.softwareVersion ?? sluiceVersion()}`,
    createdAt: (options.now ?? (() => new Date()))().toISOString(),
  };
  writeFileDurably(file, JSON.stringify(marker) + "\n");
}

let cachedVersion: string | undefined;

/**
 * The version in Sluice's package.json, found by walking up from this module: the same walk
 * works from the sources (tsx) and from the compiled `dist/`, which sit at different depths.
 */
export function sluiceVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown; version?: unknown };
      if (manifest.name === "sluice" && typeof manifest.version === "string") return (cachedVersion = manifest.version);
    } catch {
      // No package.json here (or not ours): keep walking up.
    }
    const parent = dirname(dir);
    if (parent === dir) return (cachedVersion = "unknown");
    dir = parent;
  }
}
