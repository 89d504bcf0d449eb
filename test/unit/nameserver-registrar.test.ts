import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { credentials, type ServiceError } from "@grpc/grpc-js";
import { SluiceError } from "../../common/src/errors.js";
import { fromServiceError } from "../../common/src/grpc/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../common/src/protocol.js";
import { NameServerClient, type GetRoutesResponse, type HostedPartition } from "../../proto/gen/sluice/v1/nameserver.js";
import { MAX_REGISTER_RETRY_MS, retryDelayMs } from "../../broker/src/registration/nameserver-link.js";
import { Registrar } from "../../broker/src/registration/registrar.js";
import { NameServer } from "../../nameserver/src/server.js";

const INTERVAL_MS = 100;
const header = { clientId: "registrar-test", protocolVersion: PROTOCOL_VERSION };

/** A port nothing listens on: bind one, then close it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function registrar(nameservers: string[], hosted: HostedPartition[] = []): Registrar {
  return new Registrar({
    nameservers,
    broker: { cluster: "test", group: "b1", brokerId: 0, address: "127.0.0.1:10911", httpAddress: "", version: "test", role: "master", epoch: 1, weight: 1 },
    hostedPartitions: () => hosted,
    heartbeatIntervalMs: INTERVAL_MS,
    logger: silentLogger,
  });
}

async function eventually(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting until ${what}`);
}

function routes(client: NameServerClient, topics: string[]): Promise<GetRoutesResponse> {
  return new Promise((resolve, reject) =>
    client.getRoutes({ header, topics }, (err: ServiceError | null, response: GetRoutesResponse) =>
      err ? reject(fromServiceError(err)) : resolve(response),
    ),
  );
}

describe("registrar", () => {
  it("registers with a reachable name server while another is down, and stops within the bound", async () => {
    const ns = await NameServer.start({ port: 0, httpPort: null, heartbeatIntervalMs: INTERVAL_MS, logger: silentLogger });
    const down = `127.0.0.1:${await closedPort()}`;
    const r = registrar([down, ns.grpcAddress]);
    try {
      r.start();
      const started = Date.now();
      await r.whenRegistered();
      assert.ok(Date.now() - started < 1000, "the unreachable name server did not hold up the other");
      assert.equal(r.registeredCount, 1);
      const [status] = await ns.state.brokerStatuses();
      assert.equal(status?.record.group, "b1");
    } finally {
      const stopping = Date.now();
      await r.stop();
      assert.ok(Date.now() - stopping < 1500, `stop took ${Date.now() - stopping} ms`);
      assert.deepEqual(await ns.state.brokerStatuses(), [], "unregistered on stop");
      await ns.stop();
    }
  });

  it("registers again with a name server that restarted, which rebuilds its topics from the report", async () => {
    const hosted: HostedPartition[] = [
      { topic: "kept", partition: 0, partitionCount: 1, logEndOffset: 5, sizeBytes: 100, config: undefined },
    ];
    let ns = await NameServer.start({ port: 0, httpPort: null, heartbeatIntervalMs: INTERVAL_MS, logger: silentLogger });
    const address = ns.grpcAddress;
    const port = Number(address.split(":")[1]);
    const r = registrar([address], hosted);
    const client = new NameServerClient(address, credentials.createInsecure());
    try {
      r.start();
      await r.whenRegistered();
      await ns.stop();
      ns = await NameServer.start({ port, httpPort: null, heartbeatIntervalMs: INTERVAL_MS, logger: silentLogger });
      await eventually("the broker is registered with the new name server", async () => (await ns.state.brokerStatuses()).length === 1);
      const { routes: [route] } = await routes(client, ["kept"]);
      assert.equal(route?.partitions[0]?.master?.address, "127.0.0.1:10911");
      assert.equal(r.registeredCount, 1);
    } finally {
      client.close();
      await r.stop();
      await ns.stop();
    }
  });

  it("whenRegistered rejects with CLOSED when stopped before any registration", async () => {
    const r = registrar([`127.0.0.1:${await closedPort()}`]);
    r.start();
    await r.stop();
    await assert.rejects(r.whenRegistered(), (err: unknown) => err instanceof SluiceError && err.code === "CLOSED");
    assert.equal(r.registeredCount, 0);
  });

  it("rejects options it cannot work with", () => {
    assert.throws(() => registrar([]), (err: unknown) => err instanceof SluiceError && err.code === "INVALID_CONFIG");
    assert.throws(() => registrar(["localhost"]), /not "host:port"/);
  });

  it("backs off exponentially up to the cap, with bounded jitter", () => {
    const middle = () => 0.5;
    assert.deepEqual([1, 2, 3, 4].map((a) => retryDelayMs(a, middle)), [100, 200, 400, 800]);
    assert.equal(retryDelayMs(30, middle), MAX_REGISTER_RETRY_MS);
    assert.equal(retryDelayMs(1, () => 0), 80);
    assert.equal(retryDelayMs(1, () => 1), 120);
  });
});
