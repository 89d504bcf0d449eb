/**
 * The two in-sync sets of a master, and the write that moves one towards the other.
 *
 * `desired` is the tracker's current judgement; `recorded` is what `recordInSync` last made
 * durable (etcd), which is what failover promotes from. One write at a time carries the
 * whole desired set; when it lands, `recorded` takes that value and `onRecorded` lets the
 * tracker re-evaluate waits (a slave that left stops counting only now). A failed write is
 * retried by the next `record()` call (the tracker's tick).
 *
 * Which slaves count for waits and the high watermark: in `sync` and `async` mode, the union
 * (a joining slave counts at once, a leaving one until its removal is recorded); in `quorum`
 * mode, the recorded set only, since the controller's arithmetic (hear |set| − k + 1 members)
 * is over the recorded set.
 */
import type { Logger } from "../../../common/src/logger.js";
import type { ReplicationMode } from "./types.js";

export interface InSyncSetsOptions {
  group: string;
  mode: ReplicationMode;
  initial: readonly number[];
  recordInSync: (ids: number[]) => Promise<void>;
  onRecorded: () => void;
  logger: Logger;
}

export class InSyncSets {
  private desiredSet: Set<number>;
  private recordedSet: Set<number>;
  private recording = false;
  private unconfirmedSets: Set<number>[] = [];
  private closed = false;

  constructor(private readonly options: InSyncSetsOptions) {
    this.desiredSet = new Set(options.initial);
    this.recordedSet = new Set(options.initial);
  }

  get desired(): ReadonlySet<number> {
    return this.desiredSet;
  }

  get recorded(): ReadonlySet<number> {
    return this.recordedSet;
  }

  /**
   * Sets that may be in the registry besides `recorded`: the one a running write carries, and
   * those of failed writes (a write that timed out may still have landed) until a write succeeds.
   */
  get unconfirmed(): readonly ReadonlySet<number>[] {
    return this.unconfirmedSets;
  }

  /** No write runs and the desired set is the recorded one. */
  get settled(): boolean {
    const { desiredSet, recordedSet } = this;
    return this.unconfirmedSets.length === 0 && desiredSet.size === recordedSet.size && [...desiredSet].every((id) => recordedSet.has(id));
  }

  /** Whether the slave's acks count for waits and the high watermark. */
  counts(brokerId: number): boolean {
    return this.recordedSet.has(brokerId) || (this.options.mode.kind !== "quorum" && this.desiredSet.has(brokerId));
  }

  counted(): number[] {
    const ids = [...this.recordedSet];
    if (this.options.mode.kind !== "quorum") for (const id of this.desiredSet) if (!this.recordedSet.has(id)) ids.push(id);
    return ids;
  }

  setDesired(next: Set<number>): void {
    this.desiredSet = next;
    this.record();
  }

  /** Starts writing the desired set when it differs from the recorded one and no write is running. */
  record(): void {
    if (this.closed || this.recording) return;
    const { desiredSet, recordedSet } = this;
    if (desiredSet.size === recordedSet.size && [...desiredSet].every((id) => recordedSet.has(id))) return;
    const ids = [...desiredSet].sort((a, b) => a - b);
    const { group, logger } = this.options;
    this.recording = true;
    this.unconfirmedSets.push(new Set(ids));
    let write: Promise<void>;
    try {
      write = Promise.resolve(this.options.recordInSync(ids));
    } catch (err) {
      write = Promise.reject(err);
    }
    write.then(
      () => {
        this.recording = false;
        // Writes are compare-and-swaps made one at a time: this one landing supersedes them all.
        this.unconfirmedSets = [];
        if (this.closed) return;
        logger.info({ group, inSync: ids, previous: [...this.recordedSet].sort((a, b) => a - b) }, "in-sync slaves recorded");
        this.recordedSet = new Set(ids);
        this.options.onRecorded();
        this.record();
      },
      (err: unknown) => {
        this.recording = false;
        // A failed write may still have landed (a timeout): keep counting as if it had, until
        // the next write settles it.
        if (this.closed) return;
        logger.warn({ err, group, inSync: ids }, "recording the in-sync slaves failed; retrying at the next tick");
      },
    );
  }

  close(): void {
    this.closed = true;
  }
}
