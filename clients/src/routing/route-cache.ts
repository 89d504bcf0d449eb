/**
 * Topic routes (partition → broker group → master address), cached per client.
 *
 * Refreshed three ways, as R3 asks: on a timer for every topic in use, when a broker says
 * the route is stale (NOT_LEADER, UNKNOWN_TOPIC, BROKER_UNAVAILABLE), and on demand. Lookups
 * of one topic that overlap share one GetRoutes request, so a burst of failing batches
 * costs the name servers one call, not one per batch.
 */
import { UnknownTopicError, type ErrorCode, type SluiceError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { TopicConfig } from "../../../proto/gen/sluice/v1/common.js";
import type { PartitionRoute, TopicRoute } from "../../../proto/gen/sluice/v1/nameserver.js";
import type { NameServerClient } from "../transport/nameserver-client.js";

/** Errors after which the cached route of a topic is probably wrong. */
export const ROUTE_REFRESH_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NOT_LEADER",
  "UNKNOWN_TOPIC",
  "UNKNOWN_PARTITION",
  "BROKER_UNAVAILABLE",
  "NO_BROKERS_AVAILABLE",
  "SHUTTING_DOWN",
]);

/** A topic's route, with the master address of each partition ready for the hot path. */
export class CachedRoute {
  /** gRPC address of each partition's master; undefined while a group has no live master. */
  readonly leaders: (string | undefined)[];

  constructor(
    readonly topic: string,
    readonly partitions: readonly PartitionRoute[],
    readonly config: TopicConfig | undefined,
    readonly fetchedAtMs: number,
  ) {
    this.leaders = [];
    for (const route of partitions) this.leaders[route.partition] = route.master?.address || undefined;
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
}

export class RouteCache {
  private readonly routes = new Map<string, CachedRoute>();
  private readonly lookups = new Map<string, Promise<CachedRoute>>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly nameServers: NameServerClient,
    private readonly options: RouteCacheOptions,
  ) {
    this.timer = setInterval(() => this.refreshAll(), options.refreshMs);
    // Routes are a cache: they must not keep a finished program alive.
    this.timer.unref();
  }

  /** The cached route, without waiting; undefined when the topic was never looked up. */
  peek(topic: string): CachedRoute | undefined {
    return this.routes.get(topic);
  }

  /** The cached route, or a lookup. Throws a non-retriable UnknownTopicError when the name servers do not know it. */
  get(topic: string): Promise<CachedRoute> {
    const cached = this.routes.get(topic);
    return cached !== undefined ? Promise.resolve(cached) : this.refresh(topic);
  }

  /** Asks the name servers now; joins a lookup of the same topic already under way. */
  refresh(topic: string): Promise<CachedRoute> {
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
    this.routes.clear();
  }

  private async lookup(topic: string): Promise<CachedRoute> {
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
    if (!this.closed) this.routes.set(topic, cached);
    return cached;
  }

  /** The timer's refresh: every cached topic in one request; topics gone are dropped. */
  private refreshAll(): void {
    const topics = [...this.routes.keys()];
    if (topics.length === 0 || this.closed) return;
    this.nameServers.getRoutes(topics, Date.now() + this.options.requestTimeoutMs).then(
      (response) => {
        if (this.closed) return;
        const now = Date.now();
        const seen = new Set<string>();
        for (const route of response.routes) {
          if (route.partitions.length === 0) continue;
          seen.add(route.topic);
          this.routes.set(route.topic, CachedRoute.from(route, now));
        }
        for (const topic of topics) if (!seen.has(topic)) this.routes.delete(topic);
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
