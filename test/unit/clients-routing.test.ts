// Routes and transport: shared lookups, refresh on stale-route errors and on a timer,
// name-server failover, and the protocol check of the handshake.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BrokerUnavailableError, InvalidArgumentError, NotLeaderError, SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { Sluice } from "../../clients/src/index.js";
import { RouteCache } from "../../clients/src/routing/route-cache.js";
import { requestHeader } from "../../clients/src/transport/grpc.js";
import { NameServerClient } from "../../clients/src/transport/nameserver-client.js";
import { FakeCluster } from "./clients-fake-cluster.js";

/** A loopback address nothing listens on: connections are refused at once. */
const DEAD_ADDRESS = "127.0.0.1:1";

describe("routing and transport", () => {
  let cluster: FakeCluster;
  const cleanups: (() => void | Promise<void>)[] = [];

  before(async () => {
    cluster = await new FakeCluster().start();
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await cluster.stop();
  });

  function routeCache(nameservers: string[], refreshMs = 60_000): RouteCache {
    const client = new NameServerClient(nameservers, { header: requestHeader("routing-test"), logger: silentLogger });
    const cache = new RouteCache(client, { refreshMs, requestTimeoutMs: 2000, logger: silentLogger });
    cleanups.push(() => {
      cache.close();
      client.close();
    });
    return cache;
  }

  it("concurrent lookups of one topic share one GetRoutes request", async () => {
    cluster.createTopic("shared-lookup", 4);
    const cache = routeCache([cluster.address]);
    const before = cluster.stats.getRoutes;
    const routes = await Promise.all(Array.from({ length: 10 }, () => cache.get("shared-lookup")));
    assert.equal(cluster.stats.getRoutes - before, 1);
    assert.ok(routes.every((r) => r === routes[0]));
    assert.equal(routes[0]!.partitionCount, 4);
    assert.deepEqual(routes[0]!.leaders, Array(4).fill(cluster.address));
    await cache.get("shared-lookup");
    assert.equal(cluster.stats.getRoutes - before, 1, "a cached route costs nothing");
  });

  it("refreshes on errors that mean a stale route, not on others", async () => {
    cluster.createTopic("stale", 1);
    const cache = routeCache([cluster.address]);
    await cache.get("stale");
    const before = cluster.stats.getRoutes;
    cache.noteError("stale", new InvalidArgumentError("bad request"));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(cluster.stats.getRoutes, before, "INVALID_ARGUMENT says nothing about routes");
    cache.noteError("stale", new NotLeaderError("moved"));
    cache.noteError("stale", new BrokerUnavailableError("gone"));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(cluster.stats.getRoutes, before + 1, "NOT_LEADER and BROKER_UNAVAILABLE share one refresh");
  });

  it("refreshes cached routes on its timer and drops deleted topics", async () => {
    cluster.createTopic("timed", 1);
    const cache = routeCache([cluster.address], 100);
    await cache.get("timed");
    const before = cluster.stats.getRoutes;
    await new Promise((r) => setTimeout(r, 350));
    assert.ok(cluster.stats.getRoutes - before >= 2, `${cluster.stats.getRoutes - before} timed refreshes in 350 ms`);
    cluster.deleteTopic("timed");
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(cache.peek("timed"), undefined, "a topic the name server no longer knows leaves the cache");
  });

  it("the name server's 'no such topic' is final, not retried", async () => {
    const cache = routeCache([cluster.address]);
    await assert.rejects(cache.get("never-created"), (e: unknown) => e instanceof SluiceError && e.code === "UNKNOWN_TOPIC" && e.retriable === false);
  });

  it("fails over to the next name server when one cannot be reached", async () => {
    cluster.createTopic("failover", 2);
    const cache = routeCache([DEAD_ADDRESS, cluster.address]);
    const route = await cache.get("failover");
    assert.equal(route.partitionCount, 2);
    const allDead = routeCache([DEAD_ADDRESS, "127.0.0.1:2"]);
    await assert.rejects(allDead.get("failover"), (e: unknown) => {
      assert.ok(e instanceof SluiceError);
      assert.equal(e.code, "BROKER_UNAVAILABLE");
      assert.match(e.message, /no name server could answer \(127\.0\.0\.1:1: .*; 127\.0\.0\.1:2: /);
      return true;
    });
  });

  it("refuses a broker that does not speak this client's protocol version", async () => {
    cluster.createTopic("versions", 1);
    cluster.faults.handshakeVersion = 7;
    const sluice = new Sluice({ nameservers: [cluster.address], retry: { retries: 1, initialRetryMs: 10, maxRetryMs: 10 }, requestTimeoutMs: 2000 });
    try {
      await assert.rejects(sluice.producer().send("versions", [{ value: "x" }]), (e: unknown) => {
        assert.ok(e instanceof SluiceError);
        assert.equal(e.code, "UNSUPPORTED_VERSION");
        assert.match(e.message, /speaks protocol versions 7\.\.7 and chose 7; this client speaks 1: upgrade the client/);
        return true;
      });
    } finally {
      cluster.faults.handshakeVersion = undefined;
      await sluice.close();
    }
  });

  it("a send to an unreachable broker keeps trying until the send timeout (its group may be failing over), then fails", async () => {
    // Routes point at the fake, but the broker at that address is stopped.
    const lonely = await new FakeCluster().start();
    lonely.createTopic("unreachable", 1);
    const sluice = new Sluice({ nameservers: [lonely.address], retry: { retries: 2, initialRetryMs: 10, maxRetryMs: 20 }, requestTimeoutMs: 3000 });
    try {
      await sluice.admin().listOffsets("unreachable", "latest"); // warm the route cache
      await lonely.stop();
      const started = Date.now();
      await assert.rejects(sluice.producer().send("unreachable", [{ value: "x" }]), (e: unknown) => e instanceof SluiceError && e.code === "BROKER_UNAVAILABLE");
      const elapsedMs = Date.now() - started;
      assert.ok(elapsedMs >= 2500 && elapsedMs < 6000, `gave up at the send timeout, after ${elapsedMs} ms`);
    } finally {
      await sluice.close();
    }
  });
});
