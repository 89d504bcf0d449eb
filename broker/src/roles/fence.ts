/**
 * The master's self-fence (etcd mode). A master may append and acknowledge only while it is
 * sure its etcd lease is alive, because once the lease expires the controller may promote a
 * slave: two masters would then acknowledge writes the other never sees.
 *
 * etcd renews a lease to "receipt time + TTL" on every keep-alive it answers, and receipt comes
 * after sending, so the lease lives at least until `sent time of the last answered keep-alive +
 * TTL`. The fence allows work only before that instant minus a margin (clock drift, the time the
 * request then takes):
 *
 *     allowed  ⇔  now < lastAckedSendMs + ttlMs − marginMs   and   the lease is the one armed
 *
 * The check is synchronous and reads two numbers: it runs before every append and every ack.
 * A timer would not do: after an event-loop freeze Node serves the queued requests before any
 * timer fires, so only a check made at the moment of the write is safe.
 */
import type { Clock } from "../../../common/src/clock.js";
import { NotLeaderError } from "../../../common/src/errors.js";

/** @defaultValue of `marginMs`: the master stops this long before its lease could expire. */
export const DEFAULT_FENCE_MARGIN_MS = 500;

/** What the fence reads from the broker's lease (BrokerLease implements it). */
export interface LeaseTiming {
  /** The lease held now; undefined while a lost one is being replaced. */
  readonly leaseId: string | undefined;
  /** Send time (epoch ms) of the newest keep-alive etcd answered for `leaseId`; the grant counts as the first. */
  readonly lastAckedSendMs: number;
  /** The TTL etcd applies to the lease. */
  readonly ttlMs: number;
}

/** Called before every append and every acknowledgement on the master. */
export interface Fence {
  /** Throws NotLeaderError (retriable) when this broker may not act as master right now. */
  check(): void;
}

/** Without etcd nothing can take mastership behind the broker's back: never fenced. */
export const NO_FENCE: Fence = { check: () => undefined };

export interface LeaseFenceOptions {
  lease: LeaseTiming;
  clock: Clock;
  /** @defaultValue 500 */
  marginMs?: number;
  /** Names the broker in errors, e.g. "b1/0". */
  brokerName: string;
}

export class LeaseFence implements Fence {
  readonly marginMs: number;
  private readonly lease: LeaseTiming;
  private readonly clock: Clock;
  private readonly brokerName: string;
  /** The lease mastership was taken under; undefined while not master. */
  private armedLeaseId: string | undefined;

  constructor(options: LeaseFenceOptions) {
    this.lease = options.lease;
    this.clock = options.clock;
    this.brokerName = options.brokerName;
    this.marginMs = options.marginMs ?? DEFAULT_FENCE_MARGIN_MS;
    if (!Number.isInteger(this.marginMs) || this.marginMs < 0) {
      throw new RangeError(`fence margin must be a non-negative integer of ms, got ${this.marginMs}`);
    }
  }

  /** Mastership was recorded in etcd under `leaseId`: allow work while that lease is renewed. */
  arm(leaseId: string): void {
    this.armedLeaseId = leaseId;
  }

  /** No longer master: every check throws. */
  disarm(): void {
    this.armedLeaseId = undefined;
  }

  get armed(): boolean {
    return this.armedLeaseId !== undefined;
  }

  /** Until when (epoch ms) work is allowed; -Infinity when not armed or the lease changed. */
  allowedUntilMs(): number {
    if (this.armedLeaseId === undefined || this.lease.leaseId !== this.armedLeaseId) return -Infinity;
    return this.lease.lastAckedSendMs + this.lease.ttlMs - this.marginMs;
  }

  check(): void {
    if (this.armedLeaseId === undefined) {
      throw new NotLeaderError(`broker ${this.brokerName} is not the master of its group; refresh routes and retry`);
    }
    if (this.lease.leaseId !== this.armedLeaseId) {
      throw new NotLeaderError(
        `broker ${this.brokerName} lost the etcd lease it holds mastership under (${this.armedLeaseId}); ` +
          `it stopped acting as master until etcd confirms it again; retry (routes may move to another broker)`,
      );
    }
    const now = this.clock.now();
    const allowedUntilMs = this.lease.lastAckedSendMs + this.lease.ttlMs - this.marginMs;
    if (!(now < allowedUntilMs)) {
      throw new NotLeaderError(
        `broker ${this.brokerName} could not renew its etcd lease for ${now - this.lease.lastAckedSendMs} ms ` +
          `(TTL ${this.lease.ttlMs} ms, margin ${this.marginMs} ms): it stopped acting as master, since a slave may be ` +
          `promoted; retry (routes may move to another broker)`,
      );
    }
  }
}
