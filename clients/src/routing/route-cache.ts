/**
 * Topic routes (partition → broker group → master and slave addresses), cached per client,
 * with what the client learnt about reaching those brokers (read-replicas.ts).
 *
 * Refreshed four ways, as R3 asks: by push (a WatchRoutes stream opened on first use, see
 * route-watcher.ts, applied as soon as it arrives), on a timer for every topic in use, when a
 * broker says the route is stale (NOT_LEADER, UNKNOWN_TOPIC, BROKER_UNAVAILABLE), and on
 * demand. Lookups of one topic that overlap share one GetRoutes request, so a burst of
 * failing batches costs the name servers one call, not one per batch.
 */
import { UnknownTopicError, type ErrorCode, type SluiceError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { TopicConfig } from "../../../proto/gen/sluice/v1/common.js";
import type { PartitionRoute, RouteChange, TopicRoute } from "../../../proto/gen/sluice/v1/nameserver.js";
import type { NameServerClient } from "../transport/nameserver-client.js";
import { BrokerReachability } from "./read-replicas.js";
import { RouteWatcher } from "./route-watcher.js";

/** Errors after which the cached route of a topic is probably wrong. */
export const ROUTE_REFRESH_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NOT_LEADER",
  "UNKNOWN_TOPIC",
  "UNKNOWN_PARTITION",
  "BROKER_UNAVAILABLE",
  "NO_BROKERS_AVAILABLE",
  "SHUTTING_DOWN",
  // A failover in progress: the broker knows a newer epoch, or stopped answering.
  "STALE_EPOCH",
  "REQUEST_TIMED_OUT",
]);

/** A topic's route, with the master address of each partition ready for the hot path. */
export class CachedRoute {
  /** gRPC address of each partition's master; undefined while a group has no live master. */
  readonly leaders: (string | undefined)[];
  /** gRPC addresses of each partition's slaves, in the name server's order (consumers may read there). */
  readonly slaves: (readonly string[])[];

  constructor(
    readonly topic: string,
    readonly partitions: readonly PartitionRoute[],
    readonly config: TopicConfig | undefined,
    readonly fetchedAtMs: number,
  ) {
    this.leaders = [];
    this.slaves = [];
    for (const route of partitions) {
      this.leaders[route.partition] = route.master?.address || undefined;
      this.slaves[route.partition] = route.slaves.map((slave) => slave.address).filter((address) => address !== "");
    }
  }

  get partitionCount(): number {
    return this.leaders.length;
  }

  static from(route: TopicRoute, now: number): CachedRoute {
    const partitions = [...route.partitions].sort((a, b) => a.partition - b.partition);
    return new CachedRoute(route.topic, partitions, route.config, now);
  }
}

/**
 * The name servers decide which topics exist, so their "no such topic" is final: retrying
 * it would only wait out the request timeout. (A broker's UNKNOWN_TOPIC stays retriable: it
 * may come from a stale route.)
 */
function finalUnknownTopic(topic: string): UnknownTopicError {
  const err = new UnknownTopicError(topic);
  Object.defineProperty(err, "retriable", { value: false });
  return err;
}

export interface RouteCacheOptions {
  readonly refreshMs: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  /** Subscribe to pushed route changes (WatchRoutes) on first use. @defaultValue true */
  readonly watch?: boolean;
}

export class RouteCache {
  /** Brokers this client recently failed to reach: reads go to another replica for a while. */
  readonly reachability = new BrokerReachability();
  private readonly routes = new Map<string, CachedRoute>();
  private readonly lookups = new Map<string, Promise<CachedRoute>>();
  private readonly timer: NodeJS.Timeout;
  private readonly watcher: RouteWatcher | undefined;
  /** Pushes applied so far; a lookup that started before a topic's latest push must not undo it. */
  private pushCount = 0;
  private readonly lastPushOf = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly nameServers: NameServerClient,
    private readonly options: RouteCacheOptions,
  ) {
    this.timer = setInterval(() => this.refreshAll(), options.refreshMs);
    // Routes are a cache: they must not keep a finished program alive.
    this.timer.unref();
    if (options.watch !== false) {
      this.watcher = new RouteWatcher(nameServers, (change) => this.applyChange(change), { logger: options.logger });
    }
  }

  /** The cached route, without waiting; undefined when the topic was never looked up. */
  peek(topic: string): CachedRoute | undefined {
    return this.routes.get(topic);
  }

  /** The cached route, or a lookup. Throws a non-retriable UnknownTopicError when the name servers do not know it. */
  get(topic: string): Promise<CachedRoute> {
    this.watcher?.start();
    const cached = this.routes.get(topic);
    return cached !== undefined ? Promise.resolve(cached) : this.refresh(topic);
  }

  /** Asks the name servers now; joins a lookup of the same topic already under way. */
  refresh(topic: string): Promise<CachedRoute> {
    this.watcher?.start();
    let lookup = this.lookups.get(topic);
    if (lookup === undefined) {
      lookup = this.lookup(topic).finally(() => this.lookups.delete(topic));
      this.lookups.set(topic, lookup);
    }
    return lookup;
  }

  /** Starts a refresh when `err` says the route may be stale; failures are left to the caller's retry. */
  noteError(topic: string, err: SluiceError): void {
    if (this.closed || !ROUTE_REFRESH_CODES.has(err.code)) return;
    this.refresh(topic).catch(() => undefined);
  }

  forget(topic: string): void {
    this.routes.delete(topic);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.watcher?.close();
    this.routes.clear();
  }

  /**
   * Applies a pushed change at once: new routes replace cached ones (so sends move off a
   * removed broker now, not at the next timer tick), deleted topics leave the cache. Routes
   * of topics this client never used are kept too: a first send to them needs no lookup.
   */
  applyChange(change: RouteChange): void {
    if (this.closed) return;
    const now = Date.now();
    const push = ++this.pushCount;
    for (const route of change.routes) {
      this.lastPushOf.set(route.topic, push);
      if (route.partitions.length === 0) this.routes.delete(route.topic);
      else this.routes.set(route.topic, CachedRoute.from(route, now));
    }
    for (const topic of change.deletedTopics) {
      this.lastPushOf.set(topic, push);
      this.routes.delete(topic);
    }
  }

  /** True when a push about `topic` arrived after `sinceCount` pushes: it is newer than a lookup started then. */
  private pushedSince(topic: string, sinceCount: number): boolean {
    return (this.lastPushOf.get(topic) ?? 0) > sinceCount;
  }

  private async lookup(topic: string): Promise<CachedRoute> {
    const pushesBefore = this.pushCount;
    let response;
    try {
      response = await this.nameServers.getRoutes([topic], Date.now() + this.options.requestTimeoutMs);
    } catch (err) {
      if ((err as SluiceError).code !== "UNKNOWN_TOPIC") throw err;
      this.routes.delete(topic);
      throw finalUnknownTopic(topic);
    }
    const route = response.routes.find((r) => r.topic === topic);
    if (route === undefined || route.partitions.length === 0) {
      this.routes.delete(topic);
      throw finalUnknownTopic(topic);
    }
    const cached = CachedRoute.from(route, Date.now());
    if (this.pushedSince(topic, pushesBefore)) return this.routes.get(topic) ?? cached;
    if (!this.closed) this.routes.set(topic, cached);
    return cached;
  }

  /** The timer's refresh: every cached topic in one request; topics gone are dropped. */
  private refreshAll(): void {
    const topics = [...this.routes.keys()];
    if (topics.length === 0 || this.closed) return;
    const pushesBefore = this.pushCount;
    this.nameServers.getRoutes(topics, Date.now() + this.options.requestTimeoutMs).then(
      (response) => {
        if (this.closed) return;
        const now = Date.now();
        const seen = new Set<string>();
        for (const route of response.routes) {
          if (route.partitions.length === 0) continue;
          seen.add(route.topic);
          if (this.pushedSince(route.topic, pushesBefore)) continue;
          this.routes.set(route.topic, CachedRoute.from(route, now));
        }
        for (const topic of topics) if (!seen.has(topic) && !this.pushedSince(topic, pushesBefore)) this.routes.delete(topic);
      },
      (err: unknown) => {
        // A name server that refuses the whole request over one deleted topic: ask per topic.
        if ((err as SluiceError).code === "UNKNOWN_TOPIC") {
          for (const topic of topics) this.refresh(topic).catch(() => undefined);
          return;
        }
        this.options.logger.debug({ err }, "periodic route refresh failed; keeping the cached routes");
      },
    );
  }
}
