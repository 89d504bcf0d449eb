/**
 * The etcd lease a broker started with `--etcd` holds for itself. The broker (not a name
 * server) keeps it alive, and sends its id with every register and heartbeat; a name server
 * over etcd writes the broker's record under it. So the record lives exactly as long as the
 * broker does: a dead broker vanishes when its lease expires, whichever name server it talked
 * to, and a dead name server costs a live broker nothing.
 *
 * One lease per broker process. When it is lost (keep-alives failed past the TTL, or etcd
 * says it expired) a new one is granted and `onNewLease` makes every name server link
 * register again, so the record is rewritten under the new lease.
 */
import { Etcd3, type Lease } from "etcd3";
import { InvalidConfigError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";

/** The lease outlives this many heartbeat intervals of silence (the name server's k = 3). */
export const LEASE_TTL_HEARTBEATS = 3;
/** etcd refuses TTLs below its own minimum (about 3 s with default election timing). */
export const MIN_LEASE_TTL_SECONDS = 3;
/** Wait between attempts to grant a lease while etcd is unreachable. */
export const LEASE_GRANT_RETRY_MS = 500;
/** Deadline of one grant or revoke call. */
const LEASE_CALL_TIMEOUT_MS = 3000;

export interface BrokerLeaseOptions {
  /** etcd client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  heartbeatIntervalMs: number;
  logger: Logger;
  /** Called with each new lease id after the first (the first is what `start` resolves). */
  onNewLease: (leaseId: string) => void;
}

/** TTL in whole seconds: 3 heartbeat intervals, at least etcd's minimum. */
export function leaseTtlSeconds(heartbeatIntervalMs: number): number {
  return Math.max(MIN_LEASE_TTL_SECONDS, Math.ceil((LEASE_TTL_HEARTBEATS * heartbeatIntervalMs) / 1000));
}

export class BrokerLease {
  readonly ttlSeconds: number;
  private readonly client: Etcd3;
  private readonly options: BrokerLeaseOptions;
  private lease: Lease | undefined;
  private currentId: string | undefined;
  private closed = false;

  constructor(options: BrokerLeaseOptions) {
    if (options.endpoints.length === 0) throw new InvalidConfigError("--etcd needs at least one URL, e.g. http://127.0.0.1:2379");
    this.options = options;
    this.ttlSeconds = leaseTtlSeconds(options.heartbeatIntervalMs);
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

  /** Revokes the lease, so the broker's record vanishes now rather than after the TTL. */
  async close(): Promise<void> {
    this.closed = true;
    const lease = this.lease;
    this.lease = undefined;
    try {
      await lease?.revoke({ deadline: Date.now() + LEASE_CALL_TIMEOUT_MS });
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, "could not revoke the etcd lease; it expires by itself");
    }
    this.client.close();
  }

  private async grant(): Promise<string> {
    const lease = this.client.lease(this.ttlSeconds);
    // Listen before anything can fail: an unheard "lost" would crash nothing but lose the event.
    lease.on("lost", (err: Error) => void this.replace(lease, err));
    const id = await lease.grant();
    if (this.closed) {
      lease.release();
      return id;
    }
    this.lease = lease;
    this.currentId = id;
    this.options.logger.info({ leaseId: id, ttlSeconds: this.ttlSeconds }, "etcd lease granted");
    return id;
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
        if (!this.closed) this.options.onNewLease(id);
        return;
      } catch (grantErr) {
        this.options.logger.debug({ err: (grantErr as Error).message }, "granting a new etcd lease failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, LEASE_GRANT_RETRY_MS).unref());
      }
    }
  }
}
