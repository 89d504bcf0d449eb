/**
 * Names of the files in a partition directory. A segment is three files named by the offset of
 * its first batch, zero-padded to 20 digits so that a plain directory listing sorts them:
 *
 *   00000000000000000000.log        the batches, byte for byte as served
 *   00000000000000000000.index      sparse offset index (offset-index.ts)
 *   00000000000000000000.timeindex  log-append time index (time-index.ts)
 */
import fs from "node:fs";
import path from "node:path";

export type SegmentFileKind = "log" | "index" | "timeindex";

const SEGMENT_FILE = /^(\d{20})\.(log|index|timeindex)$/;
const OFFSET_DIGITS = 20;

export function segmentFileName(baseOffset: number, kind: SegmentFileKind): string {
  return `${String(baseOffset).padStart(OFFSET_DIGITS, "0")}.${kind}`;
}

export function segmentFilePath(dir: string, baseOffset: number, kind: SegmentFileKind): string {
  return path.join(dir, segmentFileName(baseOffset, kind));
}

export function parseSegmentFileName(name: string): { baseOffset: number; kind: SegmentFileKind } | null {
  const match = SEGMENT_FILE.exec(name);
  if (!match) return null;
  const baseOffset = Number(match[1]);
  if (!Number.isSafeInteger(baseOffset)) return null;
  return { baseOffset, kind: match[2] as SegmentFileKind };
}

/** Segment files found in `dir`, by base offset, in offset order. */
export function listSegmentFiles(dir: string): Map<number, Set<SegmentFileKind>> {
  const found = new Map<number, Set<SegmentFileKind>>();
  for (const name of fs.readdirSync(dir)) {
    const parsed = parseSegmentFileName(name);
    if (!parsed) continue;
    let kinds = found.get(parsed.baseOffset);
    if (!kinds) found.set(parsed.baseOffset, (kinds = new Set()));
    kinds.add(parsed.kind);
  }
  return new Map([...found.entries()].sort((a, b) => a[0] - b[0]));
}

/** Removes a segment's files; missing ones are fine (an index may never have been written). */
export function removeSegmentFiles(dir: string, baseOffset: number): void {
  for (const kind of ["log", "index", "timeindex"] as const) {
    fs.rmSync(segmentFilePath(dir, baseOffset, kind), { force: true });
  }
}
