/**
 * Replication under operations, real processes over a real etcd:
 * - a rolling restart of all three brokers (slaves first, then the master, which hands
 *   mastership to an in-sync slave on SIGTERM) under idempotent `acks: "all"` load: no error
 *   reaches the application and no acknowledged message is lost or stored twice;
 * - group offsets and queue state survive the SIGKILL of the master that coordinated them;
 * - a former master with an unreplicated tail (async mode, frozen mid-traffic) truncates it
 *   when it returns and ends up byte-identical to the new master.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";
import { runCli } from "../helpers/processes.js";
import {
  checkAcked,
  createTopic,
  eventually,
  masterOf,
  newMasterOtherThan,
  partitionBytes,
  readAllKeys,
  startBrokerGroup,
  startLoad,
  waitInSync,
} from "../helpers/replication.js";

describe("replication under operations (etcd)", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess;
  beforeEach(async () => {
    etcd = await startEtcd();
  });
  afterEach(async () => {
    await etcd?.stop();
  });

  it("a rolling restart of all three brokers under load: no error reaches the application, nothing acknowledged is lost", async (t) => {
    const group = await startBrokerGroup({ etcd: etcd.endpoint, brokerArgs: ["--replication", "sync"] });
    await waitInSync(group.nameserver, 2);
    await createTopic(group.nameserver, "rolling", 3);
    const load = startLoad({ nameserver: group.nameserver, topic: "rolling", producers: 2, inFlight: 4 });
    await eventually("traffic", () => (load.result.acked.size >= 200 ? true : undefined));
    const order: number[] = [];
    for (const id of [1, 2, 0]) {
      const broker = group.brokers.get(id)!;
      const wasMaster = (await masterOf(group.nameserver))?.id === id;
      const code = await broker.process.stop("SIGTERM");
      assert.equal(code, 0, `b1/${id} exited cleanly`);
      if (wasMaster) {
        await newMasterOtherThan(group.nameserver, id);
      }
      await group.start(id);
      await waitInSync(group.nameserver, 2, 30_000);
      order.push(id);
      const ackedNow = load.result.acked.size;
      await eventually("traffic after the restart", () => (load.result.acked.size >= ackedNow + 100 ? true : undefined));
    }
    const result = await load.stop();
    const counts = await readAllKeys(group.nameserver, "rolling");
    const { lost, duplicated } = checkAcked(result.acked.keys(), counts);
    const master = await masterOf(group.nameserver);
    t.diagnostic(`rolling restart of b1/${order.join(", b1/")}: ${result.acked.size} acknowledged, ${lost.length} lost, ${duplicated.length} duplicated, ${result.errors.length} errors reached the application; master now b1/${master?.id} epoch ${master?.epoch}`);
    assert.deepEqual(result.errors.slice(0, 5), [], `${result.errors.length} errors reached the application`);
    assert.deepEqual(lost.slice(0, 10), []);
    assert.deepEqual(duplicated.slice(0, 10), []);
  });

  it("group offsets and queue acks survive the SIGKILL of the master that coordinated them", async (t) => {
    const group = await startBrokerGroup({ etcd: etcd.endpoint, brokerArgs: ["--replication", "sync"] });
    await waitInSync(group.nameserver, 2);
    const client = new Sluice({ nameservers: [group.nameserver], clientId: "group-state" });
    try {
      await client.admin().createTopic("ledger", { partitions: 2 });
      await client.producer({ acks: "all" }).send("ledger", Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })));

      const committed = new Map<number, number>();
      const consumer = client.consumer({ group: "auditors", fromBeginning: true, autoCommit: false });
      let seen = 0;
      for await (const m of consumer.subscribe("ledger")) {
        if (++seen % 20 === 0) {
          await consumer.commit({ [m.partition]: m.offset + 1 });
          committed.set(m.partition, m.offset + 1);
        }
        if (seen === 100) break;
      }
      await consumer.close();

      const acked = new Set<string>();
      const queue = client.queue({ group: "workers", topic: "ledger", fromBeginning: true, prefetch: 10 });
      for await (const job of queue) {
        await job.ack();
        acked.add(job.key?.toString() ?? "");
        if (acked.size === 120) break;
      }
      await queue.close();

      group.brokers.get(0)!.process.child.kill("SIGKILL");
      const promoted = await newMasterOtherThan(group.nameserver, 0);

      const described = await eventually("the group described by the new coordinator", async () => {
        const r = await runCli(["--json", "group", "describe", "auditors"], { nameserver: group.nameserver });
        return r.code === 0 ? r : undefined;
      });
      const partitions = (JSON.parse(described.stdout) as { partitions: Array<{ topic: string; partition: number; committedOffset: number }> }).partitions;
      for (const [partition, offset] of committed) {
        assert.equal(partitions.find((p) => p.partition === partition)?.committedOffset, offset, `ledger/${partition} commit after failover`);
      }

      const again = client.queue({ group: "workers", topic: "ledger", prefetch: 10 });
      const redelivered: string[] = [];
      let rest = 0;
      for await (const job of again) {
        const key = job.key?.toString() ?? "";
        if (acked.has(key)) redelivered.push(key);
        await job.ack();
        if (++rest + acked.size - redelivered.length >= 200) break;
      }
      await again.close();
      t.diagnostic(`after failover to b1/${promoted.id}: ${committed.size} group commits kept, ${acked.size} queue acks kept, ${redelivered.length} acked messages redelivered`);
      assert.deepEqual(redelivered, [], "no acknowledged queue message is delivered again");
    } finally {
      await client.close();
    }
  });

  it("a former master with an unreplicated tail truncates it and ends byte-identical to the new master", async (t) => {
    const group = await startBrokerGroup({ etcd: etcd.endpoint, brokerArgs: ["--replication", "async"] });
    await waitInSync(group.nameserver, 2);
    await createTopic(group.nameserver, "tail", 1);
    const load = startLoad({ nameserver: group.nameserver, topic: "tail", producers: 2, inFlight: 16, acks: "leader", idempotent: false });
    await eventually("traffic", () => (load.result.acked.size >= 2000 ? true : undefined));
    const old = group.brokers.get(0)!;
    old.process.child.kill("SIGSTOP");
    const promoted = await newMasterOtherThan(group.nameserver, 0);
    const oldBytes = partitionBytes(old.dataDir, "tail", 0).length;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    old.process.child.kill("SIGCONT");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await load.stop();
    const master = group.brokers.get(promoted.id)!;
    await eventually("the former master byte-identical to the new one", () =>
      partitionBytes(old.dataDir, "tail", 0).equals(partitionBytes(master.dataDir, "tail", 0)) ? true : undefined, 20_000);
    t.diagnostic(`former master held ${oldBytes} bytes when frozen; now identical to b1/${promoted.id} (${partitionBytes(master.dataDir, "tail", 0).length} bytes)`);
  });
});
