/**
 * The `acks: "all"` produces of one partition waiting for replication, in offset order: each
 * resolves once the partition's high watermark passes its last offset (the high watermark is
 * exactly "every counted slave holds it" in sync mode and "k recorded slaves hold it" in
 * quorum mode), or fails when the requirement can no longer be met.
 */
interface Waiter {
  lastOffset: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class PendingAcks {
  /** Ascending by lastOffset (appends, and so waits, mostly arrive in offset order). */
  private waiters: Waiter[] = [];

  get size(): number {
    return this.waiters.length;
  }

  add(lastOffset: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiters = this.waiters;
      let at = waiters.length;
      while (at > 0 && waiters[at - 1]!.lastOffset > lastOffset) at--;
      waiters.splice(at, 0, { lastOffset, resolve, reject });
    });
  }

  /** Resolves every wait for an offset below `highWatermark`. */
  resolveBelow(highWatermark: number): void {
    let done = 0;
    while (done < this.waiters.length && this.waiters[done]!.lastOffset < highWatermark) done++;
    if (done === 0) return;
    for (const waiter of this.waiters.splice(0, done)) waiter.resolve();
  }

  rejectAll(errorFor: (lastOffset: number) => Error): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(errorFor(waiter.lastOffset));
  }
}
