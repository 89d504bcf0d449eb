/** The name server checks the protocol version of every request, as brokers do. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { SluiceError } from "../../common/src/errors.js";
import { fromServiceError } from "../../common/src/grpc/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../../common/src/protocol.js";
import { NameServerClient, type BrokerInfo, type GetRoutesResponse, type ListBrokersResponse } from "../../proto/gen/sluice/v1/nameserver.js";
import { NameServer } from "../../nameserver/src/server.js";
import { checkProtocolVersion } from "../../nameserver/src/service.js";

const TOO_NEW = { clientId: "from-the-future", protocolVersion: PROTOCOL_VERSION + 1 };
const CURRENT = { clientId: "today", protocolVersion: PROTOCOL_VERSION };

function call<T>(invoke: (done: (err: ServiceError | null, response: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    invoke((err, response) => (err ? reject(fromServiceError(err)) : resolve(response)));
  });
}

function isUnsupportedVersion(upgrade: "name server" | "client") {
  return (err: unknown): boolean => {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    assert.equal(err.code, "UNSUPPORTED_VERSION", err.message);
    assert.equal(err.retriable, false);
    assert.match(err.message, new RegExp(`speaks ${MIN_PROTOCOL_VERSION}\\.\\.${PROTOCOL_VERSION}`));
    assert.match(err.message, new RegExp(`upgrade the ${upgrade}`));
    return true;
  };
}

const broker: BrokerInfo = {
  cluster: "c",
  group: "b1",
  brokerId: 0,
  address: "127.0.0.1:1",
  httpAddress: "",
  version: "test",
  role: "master",
  epoch: 1,
  weight: 1,
};

describe("name server protocol version check", () => {
  let nameserver: NameServer;
  let client: NameServerClient;
  before(async () => {
    nameserver = await NameServer.start({ port: 0, httpPort: null, startupGraceMs: 0, logger: silentLogger });
    client = new NameServerClient(nameserver.grpcAddress, credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await nameserver?.stop();
  });

  it("accepts the current version and a request without a header (version 1)", async () => {
    assert.deepEqual((await call<GetRoutesResponse>((done) => client.getRoutes({ header: CURRENT, topics: [] }, done))).routes, []);
    assert.deepEqual((await call<GetRoutesResponse>((done) => client.getRoutes({ header: undefined, topics: [] }, done))).routes, []);
  });

  it("refuses a newer version on every kind of call before it does anything", async () => {
    await assert.rejects(call((done) => client.getRoutes({ header: TOO_NEW, topics: [] }, done)), isUnsupportedVersion("name server"));
    await assert.rejects(
      call((done) => client.registerBroker({ header: TOO_NEW, broker, partitions: [], replicas: [] }, done)),
      isUnsupportedVersion("name server"),
    );
    // Without brokers a creation would fail NO_BROKERS_AVAILABLE: this one never got that far.
    await assert.rejects(
      call((done) => client.createTopic({ header: TOO_NEW, topic: "orders", partitions: 1, brokerGroups: [], config: undefined }, done)),
      isUnsupportedVersion("name server"),
    );
    assert.deepEqual((await call<ListBrokersResponse>((done) => client.listBrokers({ header: CURRENT }, done))).brokers, [], "the broker was not registered");
  });

  it("refuses a newer version on WatchRoutes (a server stream)", async () => {
    const stream = client.watchRoutes({ header: TOO_NEW, topics: [] });
    const error = await new Promise<SluiceError>((resolve) => {
      stream.on("data", () => assert.fail("no route change expected"));
      stream.on("error", (err: ServiceError) => resolve(fromServiceError(err)));
    });
    assert.ok(isUnsupportedVersion("name server")(error));
  });

  it("names the side to upgrade: the name server for a newer client, the client below the minimum", () => {
    assert.doesNotThrow(() => checkProtocolVersion({ clientId: "x", protocolVersion: PROTOCOL_VERSION }));
    if (MIN_PROTOCOL_VERSION > 1) {
      assert.throws(() => checkProtocolVersion({ clientId: "x", protocolVersion: MIN_PROTOCOL_VERSION - 1 }), isUnsupportedVersion("client"));
    }
    assert.throws(() => checkProtocolVersion({ clientId: "x", protocolVersion: PROTOCOL_VERSION + 5 }), isUnsupportedVersion("name server"));
  });
});
