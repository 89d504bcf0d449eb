/**
 * Route push (WatchRoutes): tells subscribed clients when a route of a topic they watch
 * changes, so they stop using a removed broker without waiting for their refresh timer.
 *
 * The cluster state only says "routes may have changed" (after a broker registers, changes
 * role or epoch, expires, or a topic is created, learned, forgotten or deleted); the watch
 * recomputes every route and diffs it against the last routes it pushed. Diffing the result
 * rather than tracking causes keeps it correct whatever the cause (including changes an
 * external registry watch announces) and lets the signal over-approximate freely.
 *
 * Bursts are coalesced: the first signal arms a timer of `coalesceMs`, later ones join it, so
 * subscribers get at most one push per `coalesceMs`. Nothing is computed while nobody watches.
 */
import type { ServerWritableStream, ServiceError } from "@grpc/grpc-js";
import { InvalidArgumentError, ShuttingDownError } from "../../common/src/errors.js";
import { toServiceError } from "../../common/src/grpc/errors.js";
import type { Logger } from "../../common/src/logger.js";
import type { RouteChange, TopicRoute, WatchRoutesRequest } from "../../proto/gen/sluice/v1/nameserver.js";
import { isValidTopicName } from "./topic-validation.js";

/** At most one push per this many ms: a broker registering with 100 partitions is one push. */
export const DEFAULT_ROUTE_PUSH_COALESCE_MS = 50;
/** After a failed recomputation (e.g. the registry is unreachable) try again this much later. */
export const ROUTE_RECOMPUTE_RETRY_MS = 1_000;

/** Where the routes come from: every topic's current route, and a change signal. */
export interface RouteSource {
  allRoutes(): Promise<TopicRoute[]>;
  /** Calls `listener` whenever routes may have changed; returns the unsubscribe function. */
  onRouteChange(listener: () => void): () => void;
}

export interface RouteWatchOptions {
  source: RouteSource;
  logger: Logger;
  /** @defaultValue DEFAULT_ROUTE_PUSH_COALESCE_MS */
  coalesceMs?: number;
  /** @defaultValue ROUTE_RECOMPUTE_RETRY_MS */
  recomputeRetryMs?: number;
}

/** One subscriber: the topics it watches (empty = all) and where its changes go. */
export interface RouteSubscriber {
  readonly topics: ReadonlySet<string>;
  send(change: RouteChange): void;
  /** Ends the subscriber's stream: the watch is closing (the name server stops). */
  end(): void;
}

export interface RouteSnapshot {
  /** The route and its serialised form (compared to detect a change), by topic. */
  readonly routes: Map<string, { route: TopicRoute; json: string }>;
}

export class RouteWatch {
  private readonly source: RouteSource;
  private readonly logger: Logger;
  private readonly coalesceMs: number;
  private readonly recomputeRetryMs: number;
  private readonly subscribers = new Set<RouteSubscriber>();
  private readonly unsubscribeSource: () => void;
  /** Routes as last pushed; undefined while nobody watches (nothing is kept up to date then). */
  private snapshot: RouteSnapshot | undefined;
  private version = 0;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  /** Recomputations and subscriptions run one at a time, so each subscriber's start matches the diffs after it. */
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(options: RouteWatchOptions) {
    this.source = options.source;
    this.logger = options.logger;
    this.coalesceMs = options.coalesceMs ?? DEFAULT_ROUTE_PUSH_COALESCE_MS;
    this.recomputeRetryMs = options.recomputeRetryMs ?? ROUTE_RECOMPUTE_RETRY_MS;
    this.unsubscribeSource = this.source.onRouteChange(() => this.routesMayHaveChanged());
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /**
   * Adds a subscriber and sends it the current routes of its topics (topics not known yet are
   * simply absent; they are pushed once created). Resolves once that first message is sent;
   * returns the function that removes the subscriber.
   */
  async subscribe(subscriber: RouteSubscriber): Promise<() => void> {
    const stopping = (): ShuttingDownError => new ShuttingDownError("the name server is stopping; watch routes on another name server");
    if (this.closed) throw stopping();
    await this.enqueue(async () => {
      if (this.snapshot === undefined || this.dirty) await this.recompute();
      const snapshot = this.snapshot;
      // Closed while this subscription waited its turn: close() has already ended the others.
      if (this.closed || snapshot === undefined) throw stopping();
      const routes: TopicRoute[] = [];
      for (const [topic, entry] of snapshot.routes) if (watches(subscriber, topic)) routes.push(entry.route);
      this.subscribers.add(subscriber);
      subscriber.send({ routes, deletedTopics: [], version: this.version });
      // A change announced while this snapshot was being computed is pushed as a diff.
      if (this.dirty) this.arm(this.coalesceMs);
    });
    return () => this.unsubscribe(subscriber);
  }

  /** Routes may have changed: recompute within `coalesceMs` if anyone watches. */
  routesMayHaveChanged(): void {
    if (this.closed) return;
    // Marked even without subscribers: a subscription being set up recomputes when dirty.
    this.dirty = true;
    if (this.subscribers.size > 0) this.arm(this.coalesceMs);
  }

  /** Stops pushing and ends every subscriber's stream, so a graceful shutdown need not wait for them. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribeSource();
    const subscribers = [...this.subscribers];
    this.subscribers.clear();
    for (const subscriber of subscribers) subscriber.end();
    this.snapshot = undefined;
  }

  private unsubscribe(subscriber: RouteSubscriber): void {
    this.subscribers.delete(subscriber);
    if (this.subscribers.size === 0) {
      // Nobody watches: stop keeping the snapshot current; the next subscriber recomputes it.
      this.snapshot = undefined;
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private arm(delayMs: number): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.enqueue(async () => {
        if (this.dirty && this.subscribers.size > 0) await this.recompute();
      }).catch((err: unknown) => {
        this.logger.warn({ err }, "recomputing routes for route push failed; retrying");
        if (!this.closed) this.arm(this.recomputeRetryMs);
      });
    }, delayMs);
    // Pushes serve clients; they never keep a stopping name server alive.
    this.timer.unref();
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Computes every route, pushes what changed since the last snapshot, keeps the new snapshot. */
  private async recompute(): Promise<void> {
    this.dirty = false;
    let next: RouteSnapshot;
    try {
      next = { routes: new Map((await this.source.allRoutes()).map((route) => [route.topic, { route, json: JSON.stringify(route) }])) };
    } catch (err) {
      this.dirty = true;
      throw err;
    }
    if (this.closed) return;
    const previous = this.snapshot;
    this.snapshot = next;
    if (previous === undefined) return;
    const { changed, deleted } = diffRoutes(previous, next);
    if (changed.length === 0 && deleted.length === 0) return;
    this.version++;
    for (const subscriber of this.subscribers) {
      const routes = changed.filter((route) => watches(subscriber, route.topic));
      const deletedTopics = deleted.filter((topic) => watches(subscriber, topic));
      if (routes.length > 0 || deletedTopics.length > 0) subscriber.send({ routes, deletedTopics, version: this.version });
    }
    this.logger.debug({ changed: changed.map((r) => r.topic), deleted, version: this.version, subscribers: this.subscribers.size }, "route change pushed");
  }
}

/** Routes new or different in `next`, and topics gone from it. */
export function diffRoutes(previous: RouteSnapshot, next: RouteSnapshot): { changed: TopicRoute[]; deleted: string[] } {
  const changed: TopicRoute[] = [];
  for (const [topic, entry] of next.routes) {
    if (previous.routes.get(topic)?.json !== entry.json) changed.push(entry.route);
  }
  const deleted = [...previous.routes.keys()].filter((topic) => !next.routes.has(topic));
  return { changed, deleted };
}

function watches(subscriber: RouteSubscriber, topic: string): boolean {
  return subscriber.topics.size === 0 || subscriber.topics.has(topic);
}

/**
 * The WatchRoutes handler: one subscriber per call, removed when the client cancels; the
 * stream ends (status OK) when the watch closes, so clients move to another name server.
 */
export function createWatchRoutesHandler(
  watch: RouteWatch,
  /** Topics the caller may see (authorization); the others are left out of every change. */
  visible?: (topic: string) => boolean,
): (call: ServerWritableStream<WatchRoutesRequest, RouteChange>) => void {
  return (call) => {
    const invalid = call.request.topics.find((topic) => !isValidTopicName(topic));
    if (invalid !== undefined) {
      call.emit("error", toServiceError(new InvalidArgumentError(`cannot watch routes of ${JSON.stringify(invalid)}: not a valid topic name`)) as ServiceError);
      return;
    }
    let finished = false;
    let unsubscribe: (() => void) | undefined;
    const finish = (): void => {
      finished = true;
      unsubscribe?.();
    };
    call.once("cancelled", finish);
    call.once("close", finish);
    watch
      .subscribe({
        topics: new Set(call.request.topics),
        send: (change) => {
          if (finished) return;
          if (visible === undefined) call.write(change);
          else call.write({ ...change, routes: change.routes.filter((route) => visible(route.topic)), deletedTopics: change.deletedTopics.filter(visible) });
        },
        end: () => {
          if (finished) return;
          finished = true;
          call.end();
        },
      })
      .then(
        (remove) => {
          if (finished) remove();
          else unsubscribe = remove;
        },
        (err: unknown) => {
          if (finished) return;
          finished = true;
          call.emit("error", toServiceError(err) as ServiceError);
        },
      );
  };
}
