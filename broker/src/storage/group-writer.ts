/**
 * Writes one group commit: the batches queued in one tick, already stamped with dense offsets,
 * go to the active segment (rolling to new segments where the next batch would pass
 * `segmentBytes`) with one gather write per segment touched, then, under the `sync` policy,
 * one fdatasync per segment touched covers the whole group.
 *
 * All or nothing: if any write, index write or fsync fails, every segment touched is put back
 * as it was (files truncated, segments created by the group deleted) before the error is
 * rethrown, so no torn batch stays on disk. Only when that undo itself fails does the caller
 * get a `RollbackFailedError`: the files are then in an unknown state.
 */
import type { PartitionConfig } from "./config.js";
import { Segment, type PendingBatch, type SegmentMark } from "./segment.js";
import { fsyncDirectory, type StorageIo } from "./storage-io.js";

/** Relative offsets in the indexes are int32. */
const MAX_RELATIVE_OFFSET = 0x7fffffff;

export interface GroupWriteTarget {
  dir: string;
  /** The log's live segment list; rolled segments are appended to it (and removed on undo). */
  segments: Segment[];
  config: PartitionConfig;
  io: StorageIo;
}

export interface GroupWriteOutcome {
  /** Segments written to, in order; the caller commits them. */
  touched: Segment[];
  /** Whether new segment files were created (their directory entries need an fsync). */
  rolled: boolean;
}

export class RollbackFailedError extends Error {
  constructor(
    readonly writeError: unknown,
    readonly rollbackError: unknown,
  ) {
    super(`undoing a failed append also failed: ${errorMessage(rollbackError)} (the append failed with: ${errorMessage(writeError)})`);
  }
}

interface Touched {
  segment: Segment;
  mark: SegmentMark;
  created: boolean;
}

export async function writeGroup(target: GroupWriteTarget, group: readonly PendingBatch[]): Promise<GroupWriteOutcome> {
  const { config, io } = target;
  const touched: Touched[] = [];
  try {
    let active = target.segments[target.segments.length - 1]!;
    let run: PendingBatch[] = [];
    let runBytes = 0;
    const writeRun = (): void => {
      if (run.length === 0) return;
      if (touched[touched.length - 1]?.segment !== active) touched.push({ segment: active, mark: active.mark(), created: false });
      active.appendRun(run, config.indexIntervalBytes, io);
      run = [];
      runBytes = 0;
    };
    for (const pending of group) {
      if (needsRoll(active, runBytes, pending, config.segmentBytes)) {
        writeRun();
        active = Segment.create(target.dir, pending.baseOffset);
        target.segments.push(active);
        touched.push({ segment: active, mark: active.mark(), created: true });
      }
      run.push(pending);
      runBytes += pending.batch.length;
    }
    writeRun();
    const rolled = touched.some((t) => t.created);
    if (config.flush === "sync") {
      await Promise.all(touched.map((t) => t.segment.syncLog(io)));
      if (rolled) fsyncDirectory(target.dir);
    }
    return { touched: touched.map((t) => t.segment), rolled };
  } catch (err) {
    try {
      undo(target, touched);
    } catch (rollbackError) {
      throw new RollbackFailedError(err, rollbackError);
    }
    throw err;
  }
}

function needsRoll(active: Segment, runBytes: number, pending: PendingBatch, segmentBytes: number): boolean {
  const size = active.bytesWritten + runBytes;
  if (size === 0) return false; // a segment holds at least one batch, however large
  return size + pending.batch.length > segmentBytes || pending.lastOffset - active.baseOffset > MAX_RELATIVE_OFFSET;
}

function undo(target: GroupWriteTarget, touched: Touched[]): void {
  for (let i = touched.length - 1; i >= 0; i--) {
    const { segment, mark, created } = touched[i]!;
    if (created) {
      const at = target.segments.indexOf(segment);
      if (at >= 0) target.segments.splice(at, 1);
      segment.deleteFiles();
    } else {
      segment.rollbackTo(mark, target.io);
    }
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
