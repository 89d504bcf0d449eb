import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Server, ServerCredentials, credentials, type ServiceError } from "@grpc/grpc-js";
import { SluiceError } from "../../common/src/errors.js";
import { fromServiceError, unary } from "../../common/src/grpc/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../common/src/protocol.js";
import {
  BrokerService,
  type BrokerServer,
  type CreatePartitionsRequest,
  type DeleteTopicRequest,
} from "../../proto/gen/sluice/v1/broker.js";
import {
  NameServerClient,
  type CreateTopicResponse,
  type GetRoutesResponse,
  type HeartbeatResponse,
  type HostedPartition,
  type ListBrokersResponse,
  type RegisterBrokerResponse,
  type TopicRoute,
} from "../../proto/gen/sluice/v1/nameserver.js";
import { Registrar } from "../../broker/src/registration/registrar.js";
import { NameServer } from "../../nameserver/src/server.js";

const INTERVAL_MS = 100;
const header = { clientId: "nameserver-test", protocolVersion: PROTOCOL_VERSION };

/** A gRPC server implementing just the broker's admin calls, hosting partitions in a map. */
class FakeBroker {
  readonly hosted = new Map<string, HostedPartition>();
  readonly createCalls: CreatePartitionsRequest[] = [];
  readonly deleteCalls: DeleteTopicRequest[] = [];
  address = "";
  private readonly server = new Server();
  private announce: (() => Promise<void>) | undefined;

  constructor(readonly group: string) {}

  async start(): Promise<void> {
    const implementation: Partial<BrokerServer> = {
      createPartitions: unary(async (request: CreatePartitionsRequest) => {
        this.createCalls.push(request);
        for (const partition of request.partitions) {
          this.hosted.set(`${request.topic}/${partition}`, {
            topic: request.topic,
            partition,
            partitionCount: request.partitionCount,
            logEndOffset: 0,
            sizeBytes: 0,
            config: request.config,
          });
        }
        // Like the real broker: tell every name server at once (this heartbeat races the
        // creating name server's own bookkeeping, which must not mind).
        void this.announce?.();
        return { created: request.partitions };
      }),
      deleteTopic: unary(async (request: DeleteTopicRequest) => {
        this.deleteCalls.push(request);
        for (const [key, partition] of this.hosted) if (partition.topic === request.topic) this.hosted.delete(key);
        void this.announce?.();
        return {};
      }),
    };
    this.server.addService(BrokerService, implementation as BrokerServer);
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
  }

  partitionsOf(topic: string): number[] {
    return [...this.hosted.values()].filter((p) => p.topic === topic).map((p) => p.partition).sort((a, b) => a - b);
  }

  registrar(nameservers: string[]): Registrar {
    const registrar = new Registrar({
      nameservers,
      broker: {
        cluster: "test",
        group: this.group,
        brokerId: 0,
        address: this.address,
        httpAddress: "",
        version: "test",
        role: "master",
        epoch: 1,
        weight: 1,
      },
      hostedPartitions: () => [...this.hosted.values()],
      heartbeatIntervalMs: INTERVAL_MS,
      logger: silentLogger,
    });
    this.announce = () => registrar.heartbeatNow();
    return registrar;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

function call<T>(invoke: (done: (err: ServiceError | null, response: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    invoke((err, response) => (err ? reject(fromServiceError(err)) : resolve(response)));
  });
}

async function expectCode(promise: Promise<unknown>, code: string, messagePattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (messagePattern) assert.match(err.message, messagePattern);
    return true;
  });
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting until ${what}`);
}

function groupsOf(route: TopicRoute | undefined): string[] {
  return route?.partitions.map((p) => p.group) ?? [];
}

describe("name server with two brokers and two name servers", () => {
  let ns1: NameServer | undefined;
  let ns2: NameServer | undefined;
  const b1 = new FakeBroker("b1");
  const b2 = new FakeBroker("b2");
  let r1: Registrar | undefined;
  let r2: Registrar | undefined;
  let client1: NameServerClient;
  let client2: NameServerClient;

  const listBrokers = (client: NameServerClient) =>
    call<ListBrokersResponse>((done) => client.listBrokers({ header }, done)).then((r) => r.brokers);
  const getRoutes = (client: NameServerClient, topics: string[]) =>
    call<GetRoutesResponse>((done) => client.getRoutes({ header, topics }, done)).then((r) => r.routes);
  const createTopic = (client: NameServerClient, topic: string, partitions: number, brokerGroups: string[] = []) =>
    call<CreateTopicResponse>((done) => client.createTopic({ header, topic, partitions, brokerGroups }, done)).then((r) => r.route);

  before(async () => {
    ns1 = await NameServer.start({ port: 0, httpPort: 0, heartbeatIntervalMs: INTERVAL_MS, startupGraceMs: 0, logger: silentLogger });
    ns2 = await NameServer.start({ port: 0, httpPort: null, heartbeatIntervalMs: INTERVAL_MS, startupGraceMs: 0, logger: silentLogger });
    client1 = new NameServerClient(ns1.grpcAddress, credentials.createInsecure());
    client2 = new NameServerClient(ns2.grpcAddress, credentials.createInsecure());
    await Promise.all([b1.start(), b2.start()]);
    r1 = b1.registrar([ns1.grpcAddress, ns2.grpcAddress]);
    r2 = b2.registrar([ns1.grpcAddress, ns2.grpcAddress]);
    r1.start();
    r2.start();
    await Promise.all([r1.whenRegistered(), r2.whenRegistered()]);
  });

  after(async () => {
    await Promise.allSettled([r1?.stop(), r2?.stop()]);
    b1.stop();
    b2.stop();
    client1?.close();
    client2?.close();
    await Promise.allSettled([ns1?.stop(), ns2?.stop()]);
  });

  it("binds free ports and reports them; ready over HTTP once gRPC is bound", async () => {
    assert.match(ns1!.grpcAddress, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(ns1!.grpcAddress, "127.0.0.1:0");
    assert.equal(ns2!.httpAddress, null);
    const readyz = await fetch(`http://${ns1!.httpAddress}/readyz`);
    assert.equal(readyz.status, 200);
  });

  it("sees both brokers on both name servers", async () => {
    await eventually("each registrar is registered with both name servers", async () => r1!.registeredCount === 2 && r2!.registeredCount === 2);
    for (const client of [client1, client2]) {
      const brokers = await listBrokers(client);
      assert.deepEqual(brokers.map((b) => [b.broker?.group, b.broker?.address, b.state]), [
        ["b1", b1.address, "alive"],
        ["b2", b2.address, "alive"],
      ]);
      assert.ok(brokers.every((b) => b.heartbeatAgeMs >= 0 && b.heartbeatAgeMs < 1000));
    }
  });

  it("creates a topic with 4 partitions spread 2/2, on the brokers, routed to their masters", async () => {
    const route = await createTopic(client1, "orders", 4);
    assert.deepEqual(groupsOf(route), ["b1", "b2", "b1", "b2"]);
    assert.deepEqual(b1.partitionsOf("orders"), [0, 2]);
    assert.deepEqual(b2.partitionsOf("orders"), [1, 3]);
    const call1 = b1.createCalls.find((c) => c.topic === "orders")!;
    assert.equal(call1.header?.clientId, "nameserver");
    assert.equal(call1.partitionCount, 4);

    const [routed] = await getRoutes(client1, ["orders"]);
    assert.deepEqual(
      routed!.partitions.map((p) => p.master?.address),
      [b1.address, b2.address, b1.address, b2.address],
    );
    assert.ok(routed!.partitions.every((p) => p.epoch === 1 && p.slaves.length === 0));
  });

  it("the other name server learns the topic from the next heartbeat", async () => {
    await Promise.all([r1!.heartbeatNow(), r2!.heartbeatNow()]);
    const [route] = await getRoutes(client2, ["orders"]);
    assert.deepEqual(groupsOf(route), ["b1", "b2", "b1", "b2"]);
    assert.equal(route!.partitions[1]!.master?.address, b2.address);
    await expectCode(createTopic(client2, "orders", 1), "TOPIC_ALREADY_EXISTS");
  });

  it("rejects bad requests with stable codes", async () => {
    await expectCode(createTopic(client1, "bad name!", 1), "INVALID_TOPIC_NAME", /"bad name!".*a-z/);
    await expectCode(createTopic(client1, "fine", 0), "INVALID_ARGUMENT", /between 1 and 10000/);
    await expectCode(createTopic(client1, "fine", 10_001), "INVALID_ARGUMENT");
    await expectCode(createTopic(client1, "orders", 4), "TOPIC_ALREADY_EXISTS", /"orders"/);
    await expectCode(createTopic(client1, "fine", 2, ["b9"]), "INVALID_ARGUMENT", /"b9"/);
    await expectCode(getRoutes(client1, ["orders", "nope"]), "UNKNOWN_TOPIC", /"nope"/);
    await expectCode(
      call((done) => client1.deleteTopic({ header, topic: "nope" }, done)),
      "UNKNOWN_TOPIC",
    );
    assert.equal(b1.partitionsOf("fine").length + b2.partitionsOf("fine").length, 0, "nothing was created");
  });

  it("pins a topic to the groups asked for, and deletes it everywhere", async () => {
    const route = await createTopic(client1, "pinned", 3, ["b2"]);
    assert.deepEqual(groupsOf(route), ["b2", "b2", "b2"]);
    assert.deepEqual(b2.partitionsOf("pinned"), [0, 1, 2]);
    await Promise.all([r1!.heartbeatNow(), r2!.heartbeatNow()]);
    assert.equal((await getRoutes(client2, ["pinned"])).length, 1);

    await call((done) => client1.deleteTopic({ header, topic: "pinned" }, done));
    assert.ok(b2.deleteCalls.some((c) => c.topic === "pinned"));
    assert.deepEqual(b2.partitionsOf("pinned"), []);
    await expectCode(getRoutes(client1, ["pinned"]), "UNKNOWN_TOPIC");
    // ns2 never saw the delete: it drops the topic once no broker reports it.
    await eventually("the other name server forgets the deleted topic", async () =>
      getRoutes(client2, ["pinned"]).then(() => false, () => true),
    );
  });

  it("answers known=false to a heartbeat from a broker it never saw", async () => {
    const response = await call<HeartbeatResponse>((done) =>
      client1.heartbeat(
        {
          header,
          broker: { cluster: "test", group: "ghost", brokerId: 7, address: "127.0.0.1:1", httpAddress: "", version: "", role: "master", epoch: 0, weight: 1 },
          partitions: [],
          produceBytesPerSecond: 0,
          replicas: [],
        },
        done,
      ),
    );
    assert.equal(response.known, false);
  });

  it("expires a broker that registers and then goes silent", async () => {
    const registered = await call<RegisterBrokerResponse>((done) =>
      client1.registerBroker(
        {
          header,
          broker: { cluster: "test", group: "b3", brokerId: 0, address: "127.0.0.1:2", httpAddress: "", version: "", role: "master", epoch: 1, weight: 1 },
          partitions: [],
          replicas: [],
        },
        done,
      ),
    );
    assert.equal(registered.heartbeatIntervalMs, INTERVAL_MS);
    assert.equal(registered.expiryMs, 3 * INTERVAL_MS);
    assert.ok((await listBrokers(client1)).some((b) => b.broker?.group === "b3"));
    await eventually("the silent broker is expired", async () =>
      listBrokers(client1).then((brokers) => !brokers.some((b) => b.broker?.group === "b3")),
    );
    const metrics = await (await fetch(`http://${ns1!.httpAddress}/metrics`)).text();
    assert.match(metrics, /^sluice_nameserver_broker_expiries_total\{group="b3",broker_id="0"\} 1$/m);
    assert.match(metrics, /^sluice_nameserver_live_brokers 2$/m);
    assert.match(metrics, /^sluice_nameserver_heartbeat_age_seconds\{group="b1",broker_id="0"\} /m);
  });

  it("a broker that stops (and unregisters) disappears from routes at once", async () => {
    await r2!.stop();
    for (const client of [client1, client2]) {
      const brokers = await listBrokers(client);
      assert.deepEqual(brokers.map((b) => b.broker?.group), ["b1"]);
      const [route] = await getRoutes(client, ["orders"]);
      assert.deepEqual(
        route!.partitions.map((p) => p.master?.address),
        [b1.address, undefined, b1.address, undefined],
      );
    }
    // With b2 gone, new topics go to b1 only.
    const route = await createTopic(client1, "after", 2);
    assert.deepEqual(groupsOf(route), ["b1", "b1"]);
  });
});
