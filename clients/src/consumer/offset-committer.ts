/**
 * A group member's committed offsets: what the coordinator holds for each owned partition
 * (as far as this member knows), commits of positions that moved, and lookups of committed
 * offsets for newly assigned partitions.
 *
 * Commits are sent one at a time, in the order they were asked for, so an older position
 * never overwrites a newer one; what is due is decided when a commit's turn comes, so a
 * burst of auto-commits and revocations costs one request per change, not one per call.
 */
import { fromWireError } from "../../../common/src/grpc/errors.js";
import type { SluiceError } from "../../../common/src/errors.js";
import type { GroupRpc } from "./group-rpc.js";
import { NO_OFFSET, offsetsToCommit } from "./reconcile.js";

export interface MemberIdentity {
  readonly memberId: string;
  readonly memberEpoch: number;
}

export class OffsetCommitter {
  /** partition → the offset the coordinator holds (NO_OFFSET: nothing committed). */
  private readonly committed = new Map<number, number>();
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly rpc: GroupRpc,
    private readonly topic: string,
    /** Read when a commit is sent: the member's latest id and epoch. */
    private readonly identity: () => MemberIdentity,
  ) {}

  /** Forgets partitions the member no longer owns: a later owner's commits are not ours to know. */
  forget(partitions: Iterable<number>): void {
    for (const partition of partitions) this.committed.delete(partition);
  }

  /** Committed offsets of `partitions` (NO_OFFSET when none), remembered for later comparisons. */
  async fetch(partitions: readonly number[]): Promise<Map<number, number>> {
    const response = await this.rpc.fetchOffsets([{ topic: this.topic, partitions: [...partitions] }]);
    const offsets = new Map<number, number>(partitions.map((p) => [p, NO_OFFSET]));
    for (const entry of response.offsets) {
      if (entry.topic === this.topic && offsets.has(entry.partition)) offsets.set(entry.partition, entry.offset);
    }
    for (const [partition, offset] of offsets) this.committed.set(partition, offset);
    return offsets;
  }

  /**
   * Commits `offsets` (partition → next offset to consume). Unless `always`, only those
   * that differ from what is committed. Rejects with the first refused partition's error
   * (FENCED_MEMBER when the partition moved away); the others are committed.
   */
  commit(offsets: ReadonlyMap<number, number>, always = false): Promise<void> {
    const run = (): Promise<void> => this.send(always ? new Map(offsets) : offsetsToCommit(offsets, this.committed));
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every commit asked for so far is settled. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }

  private async send(due: Map<number, number>): Promise<void> {
    if (due.size === 0) return;
    const { memberId, memberEpoch } = this.identity();
    const response = await this.rpc.commitOffsets({
      memberId,
      memberEpoch,
      offsets: [...due].map(([partition, offset]) => ({ topic: this.topic, partition, offset, metadata: "" })),
    });
    let failure: SluiceError | undefined;
    for (const result of response.results) {
      if (result.topic !== this.topic || result.error === undefined) continue;
      due.delete(result.partition);
      failure ??= fromWireError(result.error);
    }
    for (const [partition, offset] of due) this.committed.set(partition, offset);
    if (failure !== undefined) throw failure;
  }
}
