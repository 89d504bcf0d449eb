// Route push in the SDK: the route cache applies pushed changes at once (new topics, moved or
// removed masters, deleted topics), without a GetRoutes call, and keeps watching through
// another name server when the one it watched stops.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { fromServiceError } from "../../common/src/grpc/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../common/src/protocol.js";
import {
  NameServerClient as GeneratedNameServerClient,
  type BrokerInfo,
  type GetRoutesResponse,
  type HostedPartition,
  type TopicRoute,
} from "../../proto/gen/sluice/v1/nameserver.js";
import { RouteCache } from "../../clients/src/routing/route-cache.js";
import { requestHeader } from "../../clients/src/transport/grpc.js";
import { NameServerClient } from "../../clients/src/transport/nameserver-client.js";
import type { RouteWatch } from "../../nameserver/src/route-watch.js";
import { NameServer } from "../../nameserver/src/server.js";

const header = { clientId: "routing-push-test", protocolVersion: PROTOCOL_VERSION };
const BROKER: BrokerInfo = {
  cluster: "test",
  group: "b1",
  brokerId: 0,
  address: "127.0.0.1:10911",
  httpAddress: "",
  version: "test",
  role: "master",
  epoch: 1,
  weight: 1,
};
const EMPTY_CONFIG = { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 };

/** Counts GetRoutes calls: pushes must arrive without any. */
class CountingNameServerClient extends NameServerClient {
  getRoutesCalls = 0;

  override getRoutes(topics: string[], deadlineMs: number): Promise<GetRoutesResponse> {
    this.getRoutesCalls++;
    return super.getRoutes(topics, deadlineMs);
  }
}

function hosted(topic: string, partitionCount: number): HostedPartition[] {
  return Array.from({ length: partitionCount }, (_, partition) => ({ topic, partition, partitionCount, logEndOffset: 0, sizeBytes: 0, config: EMPTY_CONFIG }));
}

/** Plays a broker towards one name server: register, heartbeat with partitions, unregister. */
class BrokerStandIn {
  private readonly client: GeneratedNameServerClient;

  constructor(address: string) {
    this.client = new GeneratedNameServerClient(address, credentials.createInsecure());
  }

  register(partitions: HostedPartition[]): Promise<unknown> {
    return this.call((done) => this.client.registerBroker({ header, broker: BROKER, partitions, replicas: [] }, done));
  }

  heartbeat(partitions: HostedPartition[]): Promise<unknown> {
    return this.call((done) => this.client.heartbeat({ header, broker: BROKER, partitions, produceBytesPerSecond: 0, replicas: [] }, done));
  }

  unregister(): Promise<unknown> {
    return this.call((done) => this.client.unregisterBroker({ header, cluster: BROKER.cluster, group: BROKER.group, brokerId: BROKER.brokerId }, done));
  }

  close(): void {
    this.client.close();
  }

  private call<T>(invoke: (done: (err: ServiceError | null, response: T) => void) => unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      invoke((err, response) => (err ? reject(fromServiceError(err)) : resolve(response)));
    });
  }
}

async function eventually(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting until ${what}`);
}

function startNameServer(): Promise<NameServer> {
  return NameServer.start({ port: 0, httpPort: null, heartbeatIntervalMs: 1000, startupGraceMs: 0, logger: silentLogger });
}

function subscribersOf(server: NameServer): number {
  return (server as unknown as { routeWatch: RouteWatch }).routeWatch.subscriberCount;
}

describe("route push in the SDK", () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  function cache(addresses: string[], watch = true): { cache: RouteCache; client: CountingNameServerClient } {
    const client = new CountingNameServerClient(addresses, { header: requestHeader("routing-push-test"), logger: silentLogger });
    const routes = new RouteCache(client, { refreshMs: 600_000, requestTimeoutMs: 2000, logger: silentLogger, watch });
    cleanups.push(() => {
      routes.close();
      client.close();
    });
    return { cache: routes, client };
  }

  it("applies a pushed change: new and moved routes replace cached ones, deleted topics leave", () => {
    const { cache: routes } = cache(["127.0.0.1:1"], false);
    const route = (topic: string, address: string | undefined): TopicRoute => ({
      topic,
      partitions: [{ partition: 0, group: "b1", master: address === undefined ? undefined : { group: "b1", brokerId: 0, address, httpAddress: "" }, slaves: [], epoch: 1 }],
      config: EMPTY_CONFIG,
    });
    routes.applyChange({ routes: [route("orders", "10.0.0.1:1"), route("audit", "10.0.0.1:1")], deletedTopics: [], version: 1 });
    assert.deepEqual(routes.peek("orders")?.leaders, ["10.0.0.1:1"]);
    routes.applyChange({ routes: [route("orders", undefined)], deletedTopics: ["audit"], version: 2 });
    assert.deepEqual(routes.peek("orders")?.leaders, [undefined], "a removed master is forgotten at once");
    assert.equal(routes.peek("audit"), undefined);
  });

  it("learns a new topic and a removed broker by push, with no GetRoutes after the first", async () => {
    const server = await startNameServer();
    cleanups.push(() => server.stop());
    const broker = new BrokerStandIn(server.grpcAddress);
    cleanups.push(() => broker.close());
    await broker.register(hosted("first", 2));

    const { cache: routes, client } = cache([server.grpcAddress]);
    assert.equal((await routes.get("first")).partitionCount, 2);
    assert.equal(client.getRoutesCalls, 1);
    await eventually("the watch is subscribed", () => subscribersOf(server) === 1);

    await broker.heartbeat([...hosted("first", 2), ...hosted("second", 3)]);
    await eventually("the new topic is pushed", () => routes.peek("second") !== undefined);
    assert.deepEqual(routes.peek("second")!.leaders, Array(3).fill(BROKER.address));

    await broker.unregister();
    await eventually("the removed broker leaves the routes", () => routes.peek("first")?.leaders.every((l) => l === undefined) === true);
    assert.equal(client.getRoutesCalls, 1, "everything after the first lookup came by push");

    routes.close();
    await eventually("closing the cache cancels its stream", () => subscribersOf(server) === 0);
  });

  it("moves its watch to the next name server when the one it watched stops", async () => {
    const first = await startNameServer();
    const second = await startNameServer();
    cleanups.push(() => first.stop(), () => second.stop());
    const toFirst = new BrokerStandIn(first.grpcAddress);
    const toSecond = new BrokerStandIn(second.grpcAddress);
    cleanups.push(() => toFirst.close(), () => toSecond.close());
    await toFirst.register(hosted("orders", 1));
    await toSecond.register(hosted("orders", 1));

    const { cache: routes, client } = cache([first.grpcAddress, second.grpcAddress]);
    await routes.get("orders");
    await eventually("the first name server is watched", () => subscribersOf(first) === 1);
    const stoppedAt = Date.now();
    await first.stop();
    assert.ok(Date.now() - stoppedAt < 1000, "stop() ends the watch streams instead of waiting for them");
    await eventually("the second name server is watched", () => subscribersOf(second) === 1);

    await toSecond.unregister();
    await eventually("the push comes through the second name server", () => routes.peek("orders")?.leaders[0] === undefined);
    assert.equal(client.getRoutesCalls, 1);
  });
});
