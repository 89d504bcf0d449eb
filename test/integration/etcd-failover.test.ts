/**
 * Name servers over one etcd, brokers holding their own leases: three name servers, two
 * brokers each registered with a different single name server. A client configured with all
 * three sees both brokers; a name server SIGKILLed during steady produce and consume costs no
 * send and no acknowledged message (the broker that talked only to it stays routed: its lease,
 * not the dead name server, vouches for it); the survivors answer the same routes; a broker
 * SIGKILLed vanishes when its lease expires and its partitions lose their master everywhere.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { requestHeader } from "../../clients/src/transport/grpc.js";
import { NameServerClient } from "../../clients/src/transport/nameserver-client.js";
import { silentLogger } from "../../common/src/logger.js";
import type { TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";
import { startBroker, startNameServer } from "../helpers/processes.js";

const HEARTBEAT_INTERVAL_MS = 1000;
/** The broker's lease TTL: 3 heartbeat intervals (etcd's minimum is about 3 s anyway). */
const LEASE_TTL_MS = 3000;
const TOPIC = "failover";
const PARTITIONS = 4;

async function routeOf(address: string, topic: string): Promise<TopicRoute> {
  const client = new NameServerClient([address], { header: requestHeader("etcd-failover-probe"), logger: silentLogger });
  try {
    const { routes } = await client.getRoutes([topic], Date.now() + 2000);
    return routes[0]!;
  } finally {
    client.close();
  }
}

async function brokerGroupsOf(address: string): Promise<string[]> {
  const client = new NameServerClient([address], { header: requestHeader("etcd-failover-probe"), logger: silentLogger });
  try {
    const { brokers } = await client.listBrokers(Date.now() + 2000);
    return brokers.map((b) => b.broker!.group).sort();
  } finally {
    client.close();
  }
}

/** Leader per partition ("" = none), the shape two name servers must agree on. */
function masters(route: TopicRoute): string[] {
  return route.partitions.map((p) => p.master?.address ?? "");
}

async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  let last: unknown;
  while (Date.now() - started < timeoutMs) {
    try {
      const value = await check();
      if (value !== undefined) return { value, ms: Date.now() - started };
    } catch (err) {
      last = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}${last ? ` (last error: ${String(last)})` : ""}`);
}

describe("name servers over etcd with broker-held leases", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it("survive a name server SIGKILL during produce/consume and remove a SIGKILLed broker within its lease TTL", async () => {
    const nsFlags = ["--etcd", etcd.endpoint, "--heartbeat-interval-ms", String(HEARTBEAT_INTERVAL_MS)];
    const [ns1, ns2, ns3] = await Promise.all([startNameServer(nsFlags), startNameServer(nsFlags), startNameServer(nsFlags)]);
    const brokerFlags = ["--etcd", etcd.endpoint, "--heartbeat-interval-ms", String(HEARTBEAT_INTERVAL_MS)];
    // Each broker talks to ONE name server, a different one: only etcd connects them.
    const [b1, b2] = await Promise.all([
      startBroker({ nameservers: [ns1!.address], name: "b1", extra: brokerFlags }),
      startBroker({ nameservers: [ns2!.address], name: "b2", extra: brokerFlags }),
    ]);
    const all = [ns1!.address, ns2!.address, ns3!.address];
    const sluice = new Sluice({ nameservers: all, clientId: "etcd-failover", retry: { retries: 10, initialRetryMs: 100, maxRetryMs: 1000 } });
    let producing = true;
    try {
      for (const address of all) {
        await eventually(`${address} lists both brokers`, async () => ((await brokerGroupsOf(address)).join() === "b1,b2" ? true : undefined), 5000);
      }
      await sluice.admin().createTopic(TOPIC, { partitions: PARTITIONS });
      const created = await routeOf(ns3!.address, TOPIC);
      assert.deepEqual([...new Set(created.partitions.map((p) => p.group))].sort(), ["b1", "b2"], "partitions on both brokers");
      assert.ok(masters(created).every((m) => m !== ""), "every partition has a master");
      const b2Partitions = created.partitions.filter((p) => p.group === "b2").map((p) => p.partition);

      // Steady produce (one message every 10 ms, round robin) and consume, side by side.
      const acked = new Set<string>();
      const failed: string[] = [];
      const producer = sluice.producer();
      const producerLoop = (async () => {
        for (let seq = 0; producing; seq++) {
          const value = `m${seq}`;
          try {
            await producer.send(TOPIC, [{ value, partition: seq % PARTITIONS }]);
            acked.add(value);
          } catch (err) {
            failed.push(`${value}: ${(err as Error).message}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();
      const consumed = new Set<string>();
      const consumer = sluice.consumer({ fromBeginning: true });
      // Ends when the client closes (in `finally`); its messages are checked by polling below.
      void (async () => {
        for await (const message of consumer.subscribe(TOPIC)) consumed.add(String(message.value));
      })().catch(() => undefined);

      await new Promise((resolve) => setTimeout(resolve, 1000));
      ns1!.process.child.kill("SIGKILL");
      const sentBeforeKill = acked.size;
      await new Promise((resolve) => setTimeout(resolve, 4000));
      producing = false;
      await producerLoop;
      assert.deepEqual(failed, [], "no send failed after retries");
      assert.ok(acked.size > sentBeforeKill + 50, `sends continued after the kill (${sentBeforeKill} before, ${acked.size} in all)`);

      // The survivors agree, and b1 (whose only name server died) is still routed: its lease holds.
      const [via2, via3] = await Promise.all([routeOf(ns2!.address, TOPIC), routeOf(ns3!.address, TOPIC)]);
      assert.deepEqual(masters(via2), masters(via3), "the remaining name servers answer the same routes");
      assert.deepEqual(masters(via3), masters(created), "no broker lost its partitions when a name server died");

      await eventually(
        `every acknowledged message is consumed (${acked.size})`,
        async () => ([...acked].every((v) => consumed.has(v)) ? true : undefined),
        10_000,
      ).catch(() => undefined);
      const missing = [...acked].filter((v) => !consumed.has(v));
      assert.deepEqual(missing, [], "every acknowledged message is consumed");

      // A broker SIGKILLed: nothing unregisters it; its record leaves with its lease.
      b2.process.child.kill("SIGKILL");
      const killedAt = Date.now();
      const removed = await Promise.all(
        [ns2!.address, ns3!.address].map((address) =>
          eventually(
            `${address} shows b2's partitions without a master`,
            async () => {
              const route = await routeOf(address, TOPIC);
              return b2Partitions.every((p) => route.partitions[p]!.master === undefined) ? route : undefined;
            },
            2 * LEASE_TTL_MS + 2000,
          ),
        ),
      );
      const removalMs = Date.now() - killedAt;
      for (const { value: route } of removed) {
        for (const partition of route.partitions) {
          if (!b2Partitions.includes(partition.partition)) assert.notEqual(partition.master, undefined, "b1's partitions keep their master");
        }
      }
      assert.deepEqual(await brokerGroupsOf(ns3!.address), ["b1"]);
      assert.ok(removalMs <= LEASE_TTL_MS + 1500, `b2 removed ${removalMs} ms after SIGKILL; lease TTL ${LEASE_TTL_MS} ms`);
      console.log(
        `etcd failover: ${acked.size} messages acknowledged and consumed (${sentBeforeKill} before the name server kill), 0 failed; ` +
          `SIGKILLed broker removed on every name server ${removalMs} ms after the kill (lease TTL ${LEASE_TTL_MS} ms)`,
      );
    } finally {
      producing = false;
      await sluice.close();
      await Promise.all([b1.process.stop(), b2.process.stop()]);
      await Promise.all([ns1!.process.stop(), ns2!.process.stop(), ns3!.process.stop()]);
    }
  });
});
