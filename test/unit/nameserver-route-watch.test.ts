// Route push on the name server: the first message carries the current routes, later ones only
// what changed (coalesced), subscribers see only the topics they watch, and the cluster
// state announces the changes that alter routes (a topic recorded, a broker expired).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { silentLogger } from "../../common/src/logger.js";
import type { RouteChange, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import { ClusterState } from "../../nameserver/src/cluster-state.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";
import { RouteWatch, type RouteSource } from "../../nameserver/src/route-watch.js";

const COALESCE_MS = 20;

function route(topic: string, master: string | undefined, epoch = 1): TopicRoute {
  return {
    topic,
    partitions: [
      { partition: 0, group: "b1", master: master === undefined ? undefined : { group: "b1", brokerId: 0, address: master, httpAddress: "" }, slaves: [], epoch },
    ],
    config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 },
  };
}

/** Routes the test sets by hand, with a change signal and a count of recomputations. */
class ManualSource implements RouteSource {
  routes = new Map<string, TopicRoute>();
  computations = 0;
  private readonly listeners = new Set<() => void>();

  async allRoutes(): Promise<TopicRoute[]> {
    this.computations++;
    return [...this.routes.values()];
  }

  onRouteChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(...routes: TopicRoute[]): void {
    for (const r of routes) this.routes.set(r.topic, r);
    this.announce();
  }

  delete(topic: string): void {
    this.routes.delete(topic);
    this.announce();
  }

  announce(): void {
    for (const listener of this.listeners) listener();
  }
}

interface Recorder {
  changes: RouteChange[];
  ended: boolean;
  subscriber: { topics: Set<string>; send(change: RouteChange): void; end(): void };
}

function recorder(topics: string[] = []): Recorder {
  const rec: Recorder = {
    changes: [],
    ended: false,
    subscriber: {
      topics: new Set(topics),
      send: (change) => rec.changes.push(change),
      end: () => {
        rec.ended = true;
      },
    },
  };
  return rec;
}

const settle = (ms = COALESCE_MS * 4): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe("route watch (name server side of WatchRoutes)", () => {
  it("sends the current routes first, then only the routes that changed", async () => {
    const source = new ManualSource();
    source.set(route("orders", "10.0.0.1:1"), route("audit", "10.0.0.1:1"));
    const watch = new RouteWatch({ source, logger: silentLogger, coalesceMs: COALESCE_MS });
    const all = recorder();
    await watch.subscribe(all.subscriber);
    assert.equal(all.changes.length, 1);
    assert.deepEqual(all.changes[0]!.routes.map((r) => r.topic).sort(), ["audit", "orders"]);
    const firstVersion = all.changes[0]!.version;

    source.set(route("orders", "10.0.0.2:1", 2));
    await settle();
    assert.equal(all.changes.length, 2);
    assert.deepEqual(all.changes[1]!.routes.map((r) => r.topic), ["orders"], "the unchanged topic is not resent");
    assert.equal(all.changes[1]!.routes[0]!.partitions[0]!.master?.address, "10.0.0.2:1");
    assert.ok(all.changes[1]!.version > firstVersion, "the version increases with every change");

    source.delete("audit");
    await settle();
    assert.deepEqual(all.changes[2], { routes: [], deletedTopics: ["audit"], version: all.changes[1]!.version + 1 });
    watch.close();
  });

  it("coalesces a burst into one push and skips signals that change nothing", async () => {
    const source = new ManualSource();
    source.set(route("orders", "10.0.0.1:1"));
    const watch = new RouteWatch({ source, logger: silentLogger, coalesceMs: COALESCE_MS });
    const rec = recorder();
    await watch.subscribe(rec.subscriber);
    const computationsBefore = source.computations;
    for (let i = 0; i < 20; i++) source.set(route(`t${i}`, "10.0.0.1:1"));
    await settle();
    assert.equal(source.computations - computationsBefore, 1, "twenty signals within the window: one recomputation");
    assert.equal(rec.changes.length, 2);
    assert.equal(rec.changes[1]!.routes.length, 20);

    source.announce(); // nothing actually changed
    await settle();
    assert.equal(rec.changes.length, 2, "no push when the routes are the same");
    watch.close();
  });

  it("sends each subscriber only the topics it watches, and nothing after it left", async () => {
    const source = new ManualSource();
    source.set(route("orders", "10.0.0.1:1"), route("audit", "10.0.0.1:1"));
    const watch = new RouteWatch({ source, logger: silentLogger, coalesceMs: COALESCE_MS });
    const orders = recorder(["orders", "not-yet-created"]);
    const leaving = recorder();
    await watch.subscribe(orders.subscriber);
    const unsubscribe = await watch.subscribe(leaving.subscriber);
    assert.deepEqual(orders.changes[0]!.routes.map((r) => r.topic), ["orders"], "an unknown watched topic is simply absent");

    unsubscribe();
    source.set(route("audit", "10.0.0.9:1"));
    await settle();
    assert.equal(orders.changes.length, 1, "a change of an unwatched topic is not sent");
    assert.equal(leaving.changes.length, 1, "an unsubscribed watcher gets nothing more");

    source.set(route("not-yet-created", "10.0.0.1:1"));
    await settle();
    assert.deepEqual(orders.changes[1]!.routes.map((r) => r.topic), ["not-yet-created"], "a watched topic is pushed once created");
    assert.equal(watch.subscriberCount, 1);

    watch.close();
    assert.equal(orders.ended, true, "closing the watch ends its streams");
    await assert.rejects(watch.subscribe(recorder().subscriber), /stopping/);
  });

  it("keeps a failed recomputation pending and pushes once the source answers again", async () => {
    const source = new ManualSource();
    source.set(route("orders", "10.0.0.1:1"));
    const watch = new RouteWatch({ source, logger: silentLogger, coalesceMs: COALESCE_MS, recomputeRetryMs: 150 });
    const rec = recorder();
    await watch.subscribe(rec.subscriber);
    const realAllRoutes = source.allRoutes.bind(source);
    source.allRoutes = async () => {
      throw new Error("registry unreachable");
    };
    source.set(route("orders", "10.0.0.2:1"));
    await settle();
    assert.equal(rec.changes.length, 1);
    // Nothing new is announced: the watch retries on its own.
    source.allRoutes = realAllRoutes;
    await settle(300);
    assert.equal(rec.changes.length, 2);
    assert.equal(rec.changes[1]!.routes[0]!.partitions[0]!.master?.address, "10.0.0.2:1");
    watch.close();
  });

  it("the cluster state announces a recorded topic and an expired broker", async () => {
    const clock = new FakeClock(1_000_000);
    const state = new ClusterState({
      store: new MemoryRegistryStore(),
      clock,
      heartbeatIntervalMs: 1000,
      expiryMs: 3000,
      logger: silentLogger,
      learnTopicsFromReports: false,
    });
    const watch = new RouteWatch({ source: state, logger: silentLogger, coalesceMs: COALESCE_MS });
    const rec = recorder();
    await state.register(
      { cluster: "c", group: "b1", brokerId: 0, address: "127.0.0.1:10911", httpAddress: "", version: "test", role: "master", epoch: 1, weight: 1 },
      [],
    );
    await watch.subscribe(rec.subscriber);
    assert.deepEqual(rec.changes[0]!.routes, []);

    await state.recordNewTopic({ topic: "orders", partitionCount: 2, assignment: ["b1", "b1"], config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } });
    await settle();
    assert.equal(rec.changes.length, 2);
    assert.deepEqual(rec.changes[1]!.routes[0]!.partitions.map((p) => p.master?.address), ["127.0.0.1:10911", "127.0.0.1:10911"]);

    clock.advance(5000);
    const { expired } = await state.sweep();
    assert.equal(expired.length, 1);
    await settle();
    assert.equal(rec.changes.length, 3);
    assert.deepEqual(rec.changes[2]!.routes[0]!.partitions.map((p) => p.master), [undefined, undefined], "the expired master is gone from the route");

    await state.removeTopic("orders");
    await settle();
    assert.deepEqual(rec.changes[3]!.deletedTopics, ["orders"]);
    watch.close();
  });
});
