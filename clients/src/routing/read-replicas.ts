/**
 * Where a consumer reads a partition from. Its master while the route names one this client
 * can reach; otherwise the first slave it can reach, as RocketMQ consumers do. A slave serves
 * reads up to the high watermark the master published, so it never shows a message that a
 * failover could take away; it may only lag a little behind the master.
 *
 * "Can reach" is what this client learnt: a broker whose connection, handshake or stream
 * failed with UNREACHABLE_CODES is marked down and skipped for UNREACHABLE_FOR_MS, or until a
 * request to it succeeds again. Readers move back to the master once the route names a
 * reachable one (see Subscription's master check). When every candidate is marked down the
 * master (else the first slave) is tried anyway: the marks may be older than the recovery.
 */
import { NoBrokersAvailableError, UnknownPartitionError, type ErrorCode } from "../../../common/src/errors.js";
import type { CachedRoute } from "./route-cache.js";

/** How long a broker that could not be reached is skipped by readers. */
export const UNREACHABLE_FOR_MS = 10_000;

/** Failures that say "this broker cannot be reached now", not "it refused the request". */
export const UNREACHABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "BROKER_UNAVAILABLE",
  "REQUEST_TIMED_OUT",
  "SHUTTING_DOWN",
  "NOT_READY",
]);

export class BrokerReachability {
  /** address → when it was marked down (ms since the epoch). */
  private readonly downSince = new Map<string, number>();

  constructor(
    private readonly unreachableForMs = UNREACHABLE_FOR_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** A request to `address` failed with `code`: marks it down when the code says unreachable. */
  noteFailure(address: string, code: ErrorCode): boolean {
    if (!UNREACHABLE_CODES.has(code)) return false;
    this.downSince.set(address, this.now());
    return true;
  }

  /** Skips `address` for reads for a while, whatever failed there. */
  markDown(address: string): void {
    this.downSince.set(address, this.now());
  }

  /** A request to `address` succeeded. */
  noteSuccess(address: string): void {
    this.downSince.delete(address);
  }

  isDown(address: string): boolean {
    const since = this.downSince.get(address);
    if (since === undefined) return false;
    if (this.now() - since < this.unreachableForMs) return true;
    this.downSince.delete(address);
    return false;
  }
}

export interface ReadReplica {
  readonly address: string;
  /** True when a slave serves the read (the master is missing or marked down). */
  readonly slave: boolean;
}

/** The replica to read `partition` from; undefined when the route names neither master nor slave. */
export function chooseReadReplica(route: CachedRoute, partition: number, reachability: BrokerReachability): ReadReplica | undefined {
  const master = route.leaders[partition];
  if (master !== undefined && !reachability.isDown(master)) return { address: master, slave: false };
  const slaves = route.slaves[partition] ?? [];
  for (const address of slaves) if (!reachability.isDown(address)) return { address, slave: true };
  if (master !== undefined) return { address: master, slave: false };
  const first = slaves[0];
  return first === undefined ? undefined : { address: first, slave: true };
}

/**
 * Groups partitions by the replica to read them from. Throws UnknownPartitionError for a
 * partition past the route's count, NoBrokersAvailableError for one with no live replica.
 */
export function partitionsByReplica(
  route: CachedRoute,
  partitions: readonly number[],
  reachability: BrokerReachability,
): Map<string, number[]> {
  const byAddress = new Map<string, number[]>();
  for (const partition of partitions) {
    if (partition >= route.partitionCount) throw new UnknownPartitionError(route.topic, partition, route.partitionCount);
    const replica = chooseReadReplica(route, partition, reachability);
    if (replica === undefined) {
      throw new NoBrokersAvailableError(`partition ${route.topic}/${partition} has no live master nor slave; retry once its broker group is back`);
    }
    let list = byAddress.get(replica.address);
    if (list === undefined) byAddress.set(replica.address, (list = []));
    list.push(partition);
  }
  return byAddress;
}
