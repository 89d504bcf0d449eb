/**
 * etcd lost while a name server runs: it keeps answering its last known routes, /readyz
 * answers 503 naming the endpoint, a write fails with retriable NOT_READY naming it too; when
 * etcd comes back (same ports, same data directory) the name server is ready again and sees
 * a topic written through another client after the restart (it watches again).
 *
 * The etcd here is this file's own process (not the shared helper's) because it must be
 * stopped and started again on the same ports and data directory.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { requestHeader } from "../../clients/src/transport/grpc.js";
import { NameServerClient } from "../../clients/src/transport/nameserver-client.js";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { EtcdRegistryStore } from "../../nameserver/src/registry/etcd-store.js";
import type { BrokerRecord, TopicRecord } from "../../nameserver/src/registry/store.js";
import { NameServer } from "../../nameserver/src/server.js";
import { etcdSkipReason, findEtcdBinary } from "../helpers/etcd.js";

const CLUSTER = "outage";
const ETCD_START_TIMEOUT_MS = 15_000;

interface RestartableEtcd {
  endpoint: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const dataDirs: string[] = [];
const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) child.kill("SIGKILL");
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve) => {
      const server = createServer();
      server.listen(0, "127.0.0.1", () => resolve(server));
    })),
  );
  const ports = servers.map((server) => (server.address() as { port: number }).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

async function restartableEtcd(): Promise<RestartableEtcd> {
  const binary = findEtcdBinary()!;
  const [clientPort, peerPort] = await freePorts(2);
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-etcd-outage-"));
  dataDirs.push(dataDir);
  let child: ChildProcess | undefined;
  return {
    endpoint,
    async start() {
      child = spawn(
        binary,
        ["--name", "t", "--data-dir", dataDir, "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
          "--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl, "--initial-cluster", `t=${peerUrl}`,
          "--logger", "zap", "--log-level", "error"],
        { env: { PATH: process.env.PATH ?? "" }, stdio: "ignore" },
      );
      children.add(child);
      const deadline = Date.now() + ETCD_START_TIMEOUT_MS;
      while (Date.now() < deadline) {
        const healthy = await fetch(`${endpoint}/health`).then((r) => r.status === 200, () => false);
        if (healthy) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`etcd at ${endpoint} did not become healthy`);
    },
    async stop() {
      const running = child;
      if (running === undefined || running.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        running.once("exit", () => resolve());
        running.kill("SIGKILL");
      });
      children.delete(running);
    },
  };
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return { value, ms: Date.now() - started };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}`);
}

async function readyz(httpAddress: string): Promise<{ status: number; reason: string }> {
  const response = await fetch(`http://${httpAddress}/readyz`);
  const body = (await response.json()) as { reason?: string };
  return { status: response.status, reason: body.reason ?? "" };
}

function topic(name: string): TopicRecord {
  return { topic: name, partitionCount: 1, assignment: ["b1"], config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } };
}

describe("a name server losing etcd", { skip: etcdSkipReason }, () => {
  it("serves its last routes while not ready, refuses writes with NOT_READY, and recovers when etcd returns", async () => {
    const etcd = await restartableEtcd();
    await etcd.start();
    // A broker record under a long lease (as a broker with --etcd writes it) and a topic.
    const raw = new Etcd3({ hosts: [etcd.endpoint] });
    const leaseId = await raw.lease(120, { autoKeepAlive: false }).grant();
    raw.close();
    const writer = new EtcdRegistryStore({ endpoints: [etcd.endpoint], cluster: CLUSTER });
    const broker: BrokerRecord = {
      cluster: "sluice", group: "b1", brokerId: 0, address: "127.0.0.1:1", httpAddress: "127.0.0.1:2", version: "t",
      role: "master", epoch: 1, weight: 1, registeredAtMs: Date.now(), leaseId, lastHeartbeatMs: Date.now(),
    };
    await writer.putBroker(broker, { leaseId });
    await writer.createTopic(topic("before"));
    await writer.close();

    const store = await EtcdRegistryStore.connect({ endpoints: [etcd.endpoint], cluster: CLUSTER, requestTimeoutMs: 1000, dialTimeoutMs: 1000 });
    const server = await NameServer.start({ store, port: 0, httpPort: 0, heartbeatIntervalMs: 500, logger: silentLogger });
    const client = new NameServerClient([server.grpcAddress], { header: requestHeader("etcd-outage"), logger: silentLogger });
    const masterOf = async (name: string): Promise<string | undefined> =>
      (await client.getRoutes([name], Date.now() + 2000)).routes[0]?.partitions[0]?.master?.address;
    try {
      assert.equal((await readyz(server.httpAddress!)).status, 200);
      assert.equal(await masterOf("before"), "127.0.0.1:1");

      await etcd.stop();
      const lost = await waitFor("/readyz answers 503", async () => {
        const answer = await readyz(server.httpAddress!);
        return answer.status === 503 ? answer : undefined;
      }, 5000);
      assert.match(lost.value.reason, new RegExp(`etcd at ${etcd.endpoint} is unreachable`));
      assert.equal(await masterOf("before"), "127.0.0.1:1", "the last known route is still served");

      await assert.rejects(
        server.state.register({ ...broker, brokerId: 1, role: "slave", address: "127.0.0.1:3" }, []),
        (err: unknown) => {
          assert.ok(err instanceof SluiceError);
          assert.equal(err.code, "NOT_READY");
          assert.equal(err.retriable, true);
          assert.match(err.message, new RegExp(etcd.endpoint));
          return true;
        },
      );

      await etcd.start();
      const recovered = await waitFor("/readyz answers 200 again", async () => ((await readyz(server.httpAddress!)).status === 200 ? true : undefined), 15_000);
      const lateWriter = new EtcdRegistryStore({ endpoints: [etcd.endpoint], cluster: CLUSTER });
      await lateWriter.createTopic(topic("after"));
      await lateWriter.close();
      const seen = await waitFor("a topic written after the restart is routed", async () => ((await masterOf("after")) !== undefined ? true : undefined), 5000);
      console.log(`etcd outage: not ready ${lost.ms} ms after etcd stopped; ready ${recovered.ms} ms after it restarted; new topic seen ${seen.ms} ms later`);
    } finally {
      client.close();
      await server.stop();
      await etcd.stop();
    }
  });
});
