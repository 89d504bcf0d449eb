/**
 * How far one slave is on one partition of the master, and since when it has been behind.
 *
 * "Caught up" follows Kafka's rule for a pushed stream: when the slave acknowledges an offset
 * at or past the log end the master had when it sent that data, the slave was caught up at
 * the moment of sending (so a slave that keeps pace under steady writes never looks lagging,
 * although the log end always runs a little ahead of its acks); and when its acknowledged
 * offset reaches the current log end, it is caught up now.
 */

/** Sends remembered per slave and partition; the unacknowledged-bytes window keeps far fewer. */
const MAX_REMEMBERED_SENDS = 1024;

interface Send {
  /** The master's log end when it sent the data. */
  logEndAtSend: number;
  sentAtMs: number;
}

export class PartitionProgress {
  /** The slave's log end as it last reported (everything below it matches the master). */
  ackedOffset: number;
  lastCaughtUpMs: number;
  private sends: Send[] = [];

  constructor(ackedOffset: number, nowMs: number) {
    this.ackedOffset = ackedOffset;
    this.lastCaughtUpMs = nowMs;
  }

  /** A new session starts from `ackedOffset`; sends of the old one will never be acknowledged. */
  restart(ackedOffset: number): void {
    this.ackedOffset = ackedOffset;
    this.sends = [];
  }

  forgetSends(): void {
    this.sends = [];
  }

  sent(logEndAtSend: number, nowMs: number): void {
    if (this.sends.length >= MAX_REMEMBERED_SENDS) this.sends.shift();
    this.sends.push({ logEndAtSend, sentAtMs: nowMs });
  }

  acked(offset: number, logEndOffset: number, nowMs: number): void {
    this.ackedOffset = offset;
    // Sends go out with a non-decreasing log end, so the ones this ack covers are a prefix.
    let covered = 0;
    while (covered < this.sends.length && this.sends[covered]!.logEndAtSend <= offset) {
      this.lastCaughtUpMs = Math.max(this.lastCaughtUpMs, this.sends[covered]!.sentAtMs);
      covered++;
    }
    if (covered > 0) this.sends.splice(0, covered);
    if (offset >= logEndOffset) this.lastCaughtUpMs = nowMs;
  }

  /** Milliseconds since the slave was last caught up; 0 when it is caught up now. */
  lagMs(logEndOffset: number, nowMs: number): number {
    if (this.ackedOffset >= logEndOffset) {
      this.lastCaughtUpMs = nowMs;
      return 0;
    }
    return Math.max(0, nowMs - this.lastCaughtUpMs);
  }

  lagMessages(logEndOffset: number): number {
    return Math.max(0, logEndOffset - this.ackedOffset);
  }
}
