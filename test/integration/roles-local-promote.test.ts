/**
 * Roles without etcd, end to end in one process: a real name server, two "brokers" made of a
 * registrar, a LocalRoleManager and a gRPC server answering Replication.Promote, wired the way
 * the broker wires them (a role change updates what the registrar reports). The name server's
 * heartbeat answers tell the slave its master; `sluice broker promote`'s RPC promotes the slave
 * at epoch 2; the old master learns of the higher epoch from its next heartbeat and steps down.
 * The master's replica report reaches ListBrokers for `sluice cluster`.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { Metadata, Server, ServerCredentials, credentials } from "@grpc/grpc-js";
import { fromServiceError, unary } from "../../common/src/grpc/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../common/src/protocol.js";
import {
  NameServerClient,
  type BrokerStatus,
  type GroupMaster,
  type PromoteBrokerRequest,
  type ReplicaStatus,
} from "../../proto/gen/sluice/v1/nameserver.js";
import { ReplicationService, type ReplicationServer } from "../../proto/gen/sluice/v1/replication.js";
import { Registrar } from "../../broker/src/registration/registrar.js";
import { LocalRoleManager } from "../../broker/src/roles/local-role-manager.js";
import { promoteThroughNameServers } from "../../broker/src/roles/nameserver-promotion.js";
import { NameServer } from "../../nameserver/src/server.js";

const INTERVAL_MS = 100;
const header = { clientId: "roles-test", protocolVersion: PROTOCOL_VERSION };
const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A broker reduced to its role: registrar + LocalRoleManager + Replication.Promote. */
async function startBroker(nameserver: string, brokerId: number, replicas: () => ReplicaStatus[] = () => []) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-roles-it-"));
  const grpc = new Server();
  let roles: LocalRoleManager | undefined;
  grpc.addService(ReplicationService, {
    promote: unary(async (request: { epoch: number }) => {
      await (roles as LocalRoleManager).promote(request.epoch);
      return { epoch: request.epoch };
    }),
  } as unknown as ReplicationServer);
  const port = await new Promise<number>((resolve, reject) =>
    grpc.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  const address = `127.0.0.1:${port}`;
  roles = new LocalRoleManager({
    group: "b1",
    brokerId,
    dataDir,
    logger: silentLogger,
    requestPromotion: promoteThroughNameServers({ nameservers: [nameserver], cluster: "test", group: "b1", clientId: `b1-${brokerId}` }),
  });
  const first = await roles.start();
  const info = { cluster: "test", group: "b1", brokerId, address, httpAddress: "", version: "t", role: first.role, epoch: first.epoch, weight: 1 };
  const registrar = new Registrar({
    nameservers: [nameserver],
    broker: info,
    hostedPartitions: () => [],
    heartbeatIntervalMs: INTERVAL_MS,
    replicaStatus: () => (roles?.current().role === "master" ? replicas() : []),
    onGroupMaster: (master) => roles?.observeGroupMaster(master),
    logger: silentLogger,
  });
  // What the broker's wiring does: report every role change at once.
  roles.onChange((change) => {
    registrar.setBroker({ ...info, role: change.role, epoch: change.epoch });
    void registrar.heartbeatNow();
  });
  registrar.start();
  await registrar.whenRegistered();
  cleanups.push(async () => {
    await registrar.stop();
    grpc.forceShutdown();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return { roles, address };
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) assert.fail(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function call<T>(invoke: (done: (err: Error | null, response: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => invoke((err, response) => (err ? reject(fromServiceError(err)) : resolve(response))));
}

describe("roles without etcd", () => {
  it("a slave learns its master from heartbeats; hand promotion moves mastership to epoch 2 and the old master steps down", async () => {
    const ns = await NameServer.start({ port: 0, httpPort: null, heartbeatIntervalMs: INTERVAL_MS, startupGraceMs: 0, logger: silentLogger });
    cleanups.push(() => ns.stop());
    const client = new NameServerClient(ns.grpcAddress, credentials.createInsecure());
    cleanups.push(() => client.close());

    let slaveInSync = false;
    const b0 = await startBroker(ns.grpcAddress, 0, () => [
      { brokerId: 1, inSync: slaveInSync, connected: true, lagMessages: slaveInSync ? 0 : 12, lagBytes: slaveInSync ? 0 : 2048, lagMs: slaveInSync ? 0 : 900 },
    ]);
    const b1 = await startBroker(ns.grpcAddress, 1);
    assert.deepEqual(b0.roles.current(), { role: "master", epoch: 1 });
    await waitFor("b1/1 follows b1/0", () => {
      const role = b1.roles.current();
      return role.role === "slave" && role.master?.address === b0.address;
    });
    assert.deepEqual(b1.roles.current(), { role: "slave", epoch: 1, master: { brokerId: 0, address: b0.address } });

    // The master's view of its slave reaches ListBrokers.
    const slaveStatus = async (): Promise<BrokerStatus | undefined> => {
      const listed = await call<{ brokers: BrokerStatus[] }>((done) => client.listBrokers({ header }, done));
      return listed.brokers.find((status) => status.broker?.brokerId === 1);
    };
    await waitFor("the slave's replication is listed", async () => (await slaveStatus())?.replication !== undefined);
    assert.deepEqual((await slaveStatus())?.replication, { brokerId: 1, inSync: false, connected: true, lagMessages: 12, lagBytes: 2048, lagMs: 900 });

    const promote = (force: boolean): Promise<{ master?: GroupMaster }> => {
      const request: PromoteBrokerRequest = { header, cluster: "", group: "b1", brokerId: 1, force };
      return call((done) => client.promoteBroker(request, new Metadata(), { deadline: Date.now() + 5000 }, done));
    };
    await assert.rejects(promote(false), /not in sync with master b1\/0 \(lag 900 ms \/ 2048 B\)/);
    slaveInSync = true;
    await waitFor("the slave is reported in sync", async () => (await slaveStatus())?.replication?.inSync === true);

    await assert.rejects(promote(false), /b1\/0 is alive and master/);
    const promoted = await promote(true);
    assert.deepEqual(promoted.master, { brokerId: 1, epoch: 2, address: b1.address });
    assert.deepEqual(b1.roles.current(), { role: "master", epoch: 2 });
    await waitFor("b1/0 steps down and follows b1/1", () => {
      const role = b0.roles.current();
      return role.role === "slave" && role.master?.brokerId === 1;
    });
    assert.deepEqual(b0.roles.current(), { role: "slave", epoch: 2, master: { brokerId: 1, address: b1.address } });

    // SIGTERM hand-off back: b1/1 asks the name server, which promotes b1/0 at epoch 3.
    await b1.roles.handOff(0);
    assert.deepEqual(b1.roles.current(), { role: "slave", epoch: 3, master: { brokerId: 0, address: b0.address } });
    assert.deepEqual(b0.roles.current(), { role: "master", epoch: 3 });
  });
});
