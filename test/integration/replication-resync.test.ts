/**
 * The replication data path with real broker processes and no etcd (roles from role.json and
 * the name server): a restarted slave resumes from its own log end and leaves what it had
 * untouched; an empty slave catches up in full, no faster than the master's throttle; the
 * write gate refuses `acks: "all"` while no slave is in sync, appending nothing, and accepts
 * once one is; and `sluice broker promote` moves mastership by hand.
 */
import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { credentials } from "@grpc/grpc-js";
import { Sluice } from "../../clients/src/index.js";
import { encodeBatch } from "../../common/src/batch/builder.js";
import { PROTOCOL_VERSION } from "../../common/src/protocol.js";
import { Acks, BrokerClient, type ProduceResponse } from "../../proto/gen/sluice/v1/broker.js";
import { runCli } from "../helpers/processes.js";
import { take } from "../helpers/take.js";
import { eventually, masterOf, partitionBytes, startBrokerGroup, waitInSync, type GroupBroker } from "../helpers/replication.js";

function segmentFiles(dataDir: string, topic: string, partition: number): string[] {
  const dir = join(dataDir, "logs", `${topic}-${partition}`);
  return readdirSync(dir).filter((f) => f.endsWith(".log")).sort().map((f) => join(dir, f));
}

async function produce(nameserver: string, topic: string, count: number, options: { acks?: "leader" | "all"; size?: number } = {}): Promise<void> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "resync-load" });
  try {
    const producer = sluice.producer({ lingerMs: 2, acks: options.acks ?? "all" });
    const value = "x".repeat(options.size ?? 100);
    // One send of 100 at a time: batches stay small, so segments roll often.
    for (let i = 0; i < count; i += 100) {
      await producer.send(topic, Array.from({ length: Math.min(100, count - i) }, (_, j) => ({ key: `k${i + j}`, value })));
    }
  } finally {
    await sluice.close();
  }
}

async function waitSameBytes(master: GroupBroker, slave: GroupBroker, topic: string, partitions: number): Promise<void> {
  await eventually(`b1/${slave.id} holding the same bytes as b1/${master.id}`, () => {
    for (let p = 0; p < partitions; p++) {
      if (!partitionBytes(master.dataDir, topic, p).equals(partitionBytes(slave.dataDir, topic, p))) return undefined;
    }
    return true;
  }, 30_000);
}

describe("replication without etcd", () => {
  it("a restarted slave resumes from its log end; its older segments stay as they were", async (t) => {
    const group = await startBrokerGroup({ size: 2, brokerArgs: ["--segment-bytes", "65536"] });
    const sluice = new Sluice({ nameservers: [group.nameserver], clientId: "resync-admin" });
    await sluice.admin().createTopic("resume", { partitions: 1 });
    await sluice.close();
    await produce(group.nameserver, "resume", 3000);
    const [master, slave] = [group.brokers.get(0)!, group.brokers.get(1)!];
    await waitSameBytes(master, slave, "resume", 1);
    const before = segmentFiles(slave.dataDir, "resume", 0).slice(0, -1).map((f) => ({ f, mtimeMs: statSync(f).mtimeMs, size: statSync(f).size }));
    assert.ok(before.length >= 2, "several closed segments on the slave");

    slave.process.child.kill("SIGKILL");
    await new Promise((resolve) => slave.process.child.once("exit", resolve));
    await produce(group.nameserver, "resume", 3000, { acks: "leader" });
    const restarted = await group.start(1);
    await waitSameBytes(master, restarted, "resume", 1);
    for (const { f, mtimeMs, size } of before) {
      assert.equal(statSync(f).size, size, `${f} kept its size`);
      assert.equal(statSync(f).mtimeMs, mtimeMs, `${f} was not rewritten: the slave resumed from its own end`);
    }
    t.diagnostic(`partial resync: ${before.length} closed segments untouched, ${segmentFiles(restarted.dataDir, "resume", 0).length} segments identical to the master's`);
  });

  it("an empty slave catches up in full under the master's throttle, byte for byte", async (t) => {
    const rate = 1_000_000;
    const group = await startBrokerGroup({ size: 1, brokerArgs: ["--replication-throttle-bytes", String(rate)] });
    const sluice = new Sluice({ nameservers: [group.nameserver], clientId: "throttle-admin" });
    await sluice.admin().createTopic("bulk", { partitions: 2 });
    await sluice.close();
    await produce(group.nameserver, "bulk", 3000, { acks: "leader", size: 1000 });
    const master = group.brokers.get(0)!;
    const bytes = [0, 1].reduce((sum, p) => sum + partitionBytes(master.dataDir, "bulk", p).length, 0);
    const started = Date.now();
    const slave = await group.start(1);
    await waitSameBytes(master, slave, "bulk", 2);
    const tookMs = Date.now() - started;
    const floorMs = (bytes / rate) * 1000 * 0.8;
    t.diagnostic(`full catch-up of ${bytes} bytes at ${rate} B/s took ${tookMs} ms (no faster than ${Math.round(floorMs)} ms allowed)`);
    assert.ok(tookMs >= floorMs, `catch-up took ${tookMs} ms, faster than the throttle allows (${Math.round(floorMs)} ms)`);
  });

  it("the write gate refuses acks=all while no slave is in sync (nothing appended), then accepts; promote moves mastership by hand", async (t) => {
    const group = await startBrokerGroup({ size: 1, brokerArgs: ["--replication", "sync"] });
    const sluice = new Sluice({ nameservers: [group.nameserver], clientId: "gate", requestTimeoutMs: 1500 });
    try {
      await sluice.admin().createTopic("gated", { partitions: 1 });
      const refused = await sluice.producer({ acks: "all" }).send("gated", [{ value: "refused" }]).then(
        () => undefined,
        (err: { code?: string; message?: string }) => err,
      );
      assert.equal(refused?.code, "NOT_ENOUGH_REPLICAS", `refused with ${refused?.code}: ${refused?.message}`);
      assert.match(refused?.message ?? "", /in sync/);
      assert.equal((await sluice.admin().listOffsets("gated", "latest")).get(0), 0, "nothing was appended");
      t.diagnostic(`write gate: ${refused?.message}`);

      await group.start(1);
      await waitInSync(group.nameserver, 1);
      const [meta] = await sluice.producer({ acks: "all" }).send("gated", [{ value: "accepted" }]);
      assert.equal(meta?.offset, 0);

      const unforced = await runCli(["broker", "promote", "--name", "b1", "--id", "1"], { nameserver: group.nameserver });
      assert.notEqual(unforced.code, 0, "a live master is not replaced behind its back");
      assert.match(unforced.stderr, /alive and master/);
      const promoted = await runCli(["broker", "promote", "--name", "b1", "--id", "1", "--force"], { nameserver: group.nameserver });
      assert.equal(promoted.code, 0, promoted.stderr);
      const master = await eventually("b1/1 as master", async () => {
        const m = await masterOf(group.nameserver);
        return m?.id === 1 ? m : undefined;
      });
      assert.ok(master.epoch >= 2);
      const [after] = await sluice.producer({ acks: "leader" }).send("gated", [{ value: "after promote" }]);
      assert.equal(after?.offset, 1);
    } finally {
      await sluice.close();
    }
  });

  it("a slave refuses produce naming its master, and serves reads while the master is gone", async () => {
    const group = await startBrokerGroup({ size: 2 });
    const sluice = new Sluice({ nameservers: [group.nameserver], clientId: "slave-reads" });
    try {
      await sluice.admin().createTopic("reads", { partitions: 2 });
      await produce(group.nameserver, "reads", 500);
      await waitInSync(group.nameserver, 1);
      const [master, slave] = [group.brokers.get(0)!, group.brokers.get(1)!];

      const client = new BrokerClient(slave.address, credentials.createInsecure());
      const call = client.produce();
      const response = await new Promise<ProduceResponse>((resolve, reject) => {
        call.once("data", resolve);
        call.once("error", reject);
        call.write({
          header: { clientId: "to-a-slave", protocolVersion: PROTOCOL_VERSION },
          correlationId: 1,
          topic: "reads",
          partition: 0,
          acks: Acks.ACKS_LEADER,
          batch: encodeBatch([{ value: "to a slave" }]),
        });
      });
      call.end();
      client.close();
      assert.equal(response.error?.code, "NOT_LEADER");
      assert.ok(response.error?.message.includes(master.address), response.error?.message);

      master.process.child.kill("SIGKILL");
      await eventually("b1/0 gone from the routes", async () => ((await masterOf(group.nameserver)) === undefined ? true : undefined), 10_000);
      const consumer = sluice.consumer({ fromBeginning: true });
      // Bounded: a consumer that stalls fails here, saying how far it got, instead of hanging the file.
      const messages = await take(consumer.subscribe("reads"), 500, 20_000).finally(() => consumer.close());
      assert.equal(messages.length, 500, "every message read from the slave");
      for (const m of messages) assert.equal(m.value?.length, 100);
    } finally {
      await sluice.close();
    }
  });
});
