/**
 * Which keep-alive of the broker's etcd lease was last answered, and when it was sent: the
 * instant the master's fence counts from (see roles/fence.ts).
 *
 * etcd3's Lease sends keep-alives on one stream and etcd answers them in order, so answers
 * match sends first-in first-out. A stream that breaks (or is replaced) takes its unanswered
 * keep-alives with it: their send times are dropped, so a late answer on a new stream is never
 * credited to an older send.
 *
 *   granted(sentMs)   the grant request was sent at sentMs and answered: it counts as a keep-alive
 *   fired(nowMs)      a keep-alive was sent                 → queued
 *   answered(ttl)     the oldest queued one was answered    → lastAckedSendMs = its send time
 *   streamReset()     the keep-alive stream opened or failed → queue dropped
 */

/**
 * More unanswered keep-alives than this means etcd stopped answering (etcd3 drops the stream
 * after one TTL of silence anyway). Further sends are not queued: answers then match older
 * sends, which only makes the fence stricter, never looser.
 */
const MAX_UNANSWERED = 64;

export class KeepaliveTracker {
  private unanswered: number[] = [];
  private ackedSendMs = 0;
  private reportedTtlMs = 0;

  constructor(private readonly requestedTtlMs: number) {}

  /** Send time (epoch ms) of the newest answered keep-alive or grant; 0 before the grant. */
  get lastAckedSendMs(): number {
    return this.ackedSendMs;
  }

  /**
   * The TTL etcd applies: what its keep-alive answers report, or the requested one before the
   * first answer. etcd raises a TTL below its minimum (2 s for etcd 3.4 with default timing),
   * and the answer says so.
   */
  get ttlMs(): number {
    return this.reportedTtlMs > 0 ? this.reportedTtlMs : this.requestedTtlMs;
  }

  /** A new lease: its grant request left at `sentMs`; nothing of the previous lease counts. */
  granted(sentMs: number): void {
    this.unanswered = [];
    this.ackedSendMs = sentMs;
    this.reportedTtlMs = 0;
  }

  fired(nowMs: number): void {
    if (this.unanswered.length < MAX_UNANSWERED) this.unanswered.push(nowMs);
  }

  /** An answer arrived; `ttlSeconds` as etcd reported it (0 or absent: unknown). */
  answered(ttlSeconds?: number): void {
    const sentMs = this.unanswered.shift();
    if (sentMs === undefined) return; // an answer to a send from a stream already dropped
    if (sentMs > this.ackedSendMs) this.ackedSendMs = sentMs;
    if (ttlSeconds !== undefined && Number.isFinite(ttlSeconds) && ttlSeconds > 0) this.reportedTtlMs = ttlSeconds * 1000;
  }

  streamReset(): void {
    this.unanswered = [];
  }
}
