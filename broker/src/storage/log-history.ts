/**
 * Rebuilds the state the log keeps beside its segments from batch headers alone: the
 * leader-epoch history (when its file is missing or damaged) and the idempotent-producer table
 * (always in memory, rebuilt at open and after a truncation). Header-only walks: records are
 * never read or decoded.
 */
import { LEADER_EPOCH_AT, baseOffsetOf, lastOffsetDeltaOf } from "../../../common/src/batch/layout.js";
import type { Logger } from "../../../common/src/logger.js";
import { LeaderEpochCache, type EpochEntry } from "./leader-epochs.js";
import { ProducerStateTable } from "./producer-state.js";
import type { Segment } from "./segment.js";

/** Kafka's "no leader epoch", the lowest value a history holds. */
const NO_LEADER_EPOCH = -1;

/**
 * Segments scanned for producer state: the newest two, so at least one whole segment of
 * history survives a roll. A producer idle for longer is forgotten, as Kafka expires them.
 */
export const PRODUCER_STATE_SEGMENTS = 2;

export interface RebuildRequest {
  /** Rebuild the leader-epoch history: walks every segment. */
  epochs: boolean;
  /** Refill this (cleared) table from the newest PRODUCER_STATE_SEGMENTS segments. */
  producers: ProducerStateTable | null;
}

/** The epoch history when asked for (else an empty list); fills `producers` when given. */
export function rebuildFromHeaders(segments: readonly Segment[], request: RebuildRequest): EpochEntry[] {
  const epochs: EpochEntry[] = [];
  const producers = request.producers;
  producers?.clear();
  const firstForProducers = Math.max(0, segments.length - PRODUCER_STATE_SEGMENTS);
  const from = request.epochs ? 0 : firstForProducers;
  for (let i = from; i < segments.length; i++) {
    const segment = segments[i]!;
    const feedProducers = producers !== null && i >= firstForProducers;
    if (!request.epochs && !feedProducers) continue;
    segment.forEachBatchHeader((header, at) => {
      const baseOffset = baseOffsetOf(header, at);
      if (request.epochs) {
        const epoch = header.readInt32BE(at + LEADER_EPOCH_AT);
        const last = epochs[epochs.length - 1];
        if (epoch >= NO_LEADER_EPOCH && (last === undefined || epoch > last.epoch)) epochs.push({ epoch, startOffset: baseOffset });
      }
      if (feedProducers) {
        const lastOffset = baseOffset + lastOffsetDeltaOf(header, at);
        producers.record(header, at, baseOffset, lastOffset, segment.appendTimeOf(baseOffset), false);
      }
    });
  }
  return epochs;
}

/**
 * Opens the epoch history (rebuilt from every batch header when its file is missing or
 * damaged, else trimmed to the log) and fills the producer table from the newest segments.
 */
export function loadHistory(
  options: { dir: string; topic: string; partition: number; logger: Logger },
  segments: readonly Segment[],
  partitionName: string,
): { epochs: LeaderEpochCache; producers: ProducerStateTable } {
  const { logger } = options;
  const { cache: epochs, problem } = LeaderEpochCache.load(options.dir);
  const producers = new ProducerStateTable(partitionName);
  const rebuilt = rebuildFromHeaders(segments, { epochs: problem !== null, producers });
  if (problem !== null) {
    // A brand-new partition has no file yet: nothing to write until its first append.
    if (rebuilt.length > 0 || problem !== "missing") {
      logger.warn({ topic: options.topic, partition: options.partition, problem, entries: rebuilt.length }, "rebuilt the leader-epoch history from batch headers");
      epochs.replaceAll(rebuilt);
    }
  } else {
    epochs.truncateFrom(segments[segments.length - 1]!.nextOffset);
    epochs.truncateBefore(segments[0]!.baseOffset);
  }
  return { epochs, producers };
}
