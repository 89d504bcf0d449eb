/**
 * The etcd lease a broker started with `--etcd` holds for itself. The broker (not a name
 * server) keeps it alive, and sends its id with every register and heartbeat; a name server
 * over etcd writes the broker's record under it, and the broker's role manager puts its alive
 * key (`alive/<group>/<id>`) under it. So the records live exactly as long as the broker does:
 * a dead broker vanishes when its lease expires, and the controller fails its group over.
 *
 * The TTL is short (2 s by default) because it bounds failover time. A master fences itself
 * with it: the lease tracks when the last answered keep-alive was sent (KeepaliveTracker), which
 * the fence (roles/fence.ts) reads before every append and every ack.
 *
 * One lease per broker process. When it is lost (keep-alives failed past the TTL, or etcd
 * says it expired) a new one is granted and the listeners hear its id: the registrar registers
 * again (rewriting the broker's record under it) and the role manager re-puts its alive key.
 */
import { Etcd3, type Lease } from "etcd3";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { InvalidConfigError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { LeaseTiming } from "../roles/fence.js";
import { KeepaliveTracker } from "./keepalive-tracker.js";

/** Failover starts about this long after a broker stops renewing its lease. */
export const DEFAULT_LEASE_TTL_MS = 2000;
/**
 * etcd 3.4 raises any TTL below 1.5 × its election timeout (1 s by default) to 2 s; asking for
 * less would only make the fence count from a TTL etcd does not apply.
 */
export const MIN_LEASE_TTL_SECONDS = 2;
/** Wait between attempts to grant a lease while etcd is unreachable. */
export const LEASE_GRANT_RETRY_MS = 500;
/** Deadline of one grant or revoke call. */
const LEASE_CALL_TIMEOUT_MS = 3000;

export interface BrokerLeaseOptions {
  /** etcd client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Lease TTL, rounded up to whole seconds (etcd's unit), at least 2 s. @defaultValue 2000 */
  ttlMs?: number;
  logger: Logger;
  /** Time for the fence bookkeeping (send times of keep-alives). @defaultValue systemClock */
  clock?: Clock;
  /** Called with each new lease id after the first (the first is what `start` resolves). */
  onNewLease?: (leaseId: string) => void;
}

/** TTL in whole seconds: `ttlMs` rounded up, at least etcd's minimum. */
export function leaseTtlSeconds(ttlMs: number): number {
  return Math.max(MIN_LEASE_TTL_SECONDS, Math.ceil(ttlMs / 1000));
}

export class BrokerLease implements LeaseTiming {
  readonly ttlSeconds: number;
  /** The etcd client the lease lives on; the role manager shares it (one connection per broker). */
  readonly client: Etcd3;
  private readonly options: BrokerLeaseOptions;
  private readonly clock: Clock;
  private readonly tracker: KeepaliveTracker;
  private readonly listeners = new Set<(leaseId: string) => void>();
  private lease: Lease | undefined;
  private currentId: string | undefined;
  private closed = false;

  constructor(options: BrokerLeaseOptions) {
    if (options.endpoints.length === 0) throw new InvalidConfigError("--etcd needs at least one URL, e.g. http://127.0.0.1:2379");
    const ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new InvalidConfigError(`lease TTL must be a positive number of ms, got ${ttlMs}`);
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.ttlSeconds = leaseTtlSeconds(ttlMs);
    this.tracker = new KeepaliveTracker(this.ttlSeconds * 1000);
    if (options.onNewLease !== undefined) this.listeners.add(options.onNewLease);
    this.client = new Etcd3({
      hosts: options.endpoints,
      dialTimeout: LEASE_CALL_TIMEOUT_MS,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + LEASE_CALL_TIMEOUT_MS }),
    });
  }

  /** The lease held now; undefined before `start` resolved or while a lost one is replaced. */
  get leaseId(): string | undefined {
    return this.currentId;
  }

  /** Send time (epoch ms) of the newest keep-alive (or the grant) etcd answered for the current lease. */
  get lastAckedSendMs(): number {
    return this.tracker.lastAckedSendMs;
  }

  /** The TTL etcd applies to the lease, in ms. */
  get ttlMs(): number {
    return this.tracker.ttlMs;
  }

  /** Calls `listener` with each new lease id after the first; returns the function that removes it. */
  onLeaseReplaced(listener: (leaseId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Grants the first lease; rejects naming the endpoints when etcd cannot be reached. */
  async start(): Promise<string> {
    try {
      return await this.grant();
    } catch (err) {
      throw new InvalidConfigError(
        `cannot get an etcd lease from ${this.options.endpoints.join(",")} (${(err as Error).message}); is etcd running and is --etcd right?`,
      );
    }
  }

  /** Revokes the lease, so the broker's records vanish now rather than after the TTL. */
  async close(): Promise<void> {
    this.closed = true;
    const lease = this.lease;
    this.lease = undefined;
    this.currentId = undefined;
    try {
      await lease?.revoke({ deadline: Date.now() + LEASE_CALL_TIMEOUT_MS });
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, "could not revoke the etcd lease; it expires by itself");
    }
    this.client.close();
  }

  private async grant(): Promise<string> {
    // The grant request leaves now: etcd starts the TTL when it receives it, so this is the
    // latest instant the fence may count from.
    const sentMs = this.clock.now();
    const lease = this.client.lease(this.ttlSeconds);
    // Listen before anything can fail: an unheard "lost" would crash nothing but lose the event.
    lease.on("lost", (err: Error) => void this.replace(lease, err));
    lease.on("keepaliveEstablished", () => this.ifCurrent(lease, () => this.tracker.streamReset()));
    lease.on("keepaliveFailed", () => this.ifCurrent(lease, () => this.tracker.streamReset()));
    lease.on("keepaliveFired", () => this.ifCurrent(lease, () => this.tracker.fired(this.clock.now())));
    lease.on("keepaliveSucceeded", (response: { TTL?: string }) =>
      this.ifCurrent(lease, () => this.tracker.answered(Number(response.TTL ?? 0))),
    );
    const id = await lease.grant();
    if (this.closed) {
      lease.release();
      return id;
    }
    this.tracker.granted(sentMs);
    this.lease = lease;
    this.currentId = id;
    this.options.logger.info({ leaseId: id, ttlSeconds: this.ttlSeconds }, "etcd lease granted");
    return id;
  }

  private ifCurrent(lease: Lease, apply: () => void): void {
    if (this.lease === lease) apply();
  }

  /** A lost lease is replaced until a grant succeeds or the broker stops. */
  private async replace(lost: Lease, err: Error): Promise<void> {
    // Only the lease in use matters: a grant that failed also emits "lost", and is retried here.
    if (this.closed || this.lease !== lost) return;
    this.options.logger.warn({ leaseId: this.currentId, err: err.message }, "etcd lease lost; granting a new one and registering again");
    this.currentId = undefined;
    this.lease = undefined;
    while (!this.closed) {
      try {
        const id = await this.grant();
        if (!this.closed) {
          for (const listener of this.listeners) listener(id);
        }
        return;
      } catch (grantErr) {
        this.options.logger.debug({ err: (grantErr as Error).message }, "granting a new etcd lease failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, LEASE_GRANT_RETRY_MS).unref());
      }
    }
  }
}
