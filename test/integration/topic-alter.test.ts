/**
 * `sluice topic alter NAME --partitions N` end to end, with a real name server and two broker
 * groups as separate processes: the topic grows onto the group that held none of it, its old
 * partitions keep their data, and a running producer and a running consumer-group member pick
 * the new partitions up without being restarted. Then the same over etcd, where the topic
 * record is shared by every name server.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { credentials } from "@grpc/grpc-js";
import { Sluice } from "../../clients/src/index.js";
import type { ConsumerMessage } from "../../clients/src/consumer/options.js";
import { requestHeader } from "../../clients/src/transport/grpc.js";
import { SluiceError } from "../../common/src/errors.js";
import { BrokerClient } from "../../proto/gen/sluice/v1/broker.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";
import { runCli, startBroker, startNameServer, type ServerProcess } from "../helpers/processes.js";

/** How long a running client may take to use the new partitions (route push, then a group heartbeat). */
const PICKUP_DEADLINE_MS = 10_000;

interface Description {
  topic: string;
  partitions: { partition: number; group: string; endOffset: number }[];
}

describe("sluice topic alter", () => {
  let nameserver = "";
  const processes: ServerProcess[] = [];
  let sluice: Sluice | undefined;
  let slaveAddress = "";

  before(async () => {
    const ns = await startNameServer();
    nameserver = ns.address;
    processes.push(ns.process);
    // b1/0 registers first, so it is b1's master and b1/1 its slave.
    const master = await startBroker({ nameservers: [nameserver], name: "b1", id: 0 });
    const [slave, b2] = await Promise.all([
      startBroker({ nameservers: [nameserver], name: "b1", id: 1 }),
      startBroker({ nameservers: [nameserver], name: "b2", id: 0 }),
    ]);
    processes.push(master.process, slave.process, b2.process);
    slaveAddress = slave.address;
  });

  after(async () => {
    await sluice?.close();
    await Promise.all(processes.map((p) => p.stop()));
  });

  async function describeTopic(topic: string): Promise<Description> {
    const described = await runCli(["--json", "topic", "describe", topic], { nameserver });
    assert.equal(described.code, 0, described.stderr);
    return JSON.parse(described.stdout) as Description;
  }

  it("adds partitions: old offsets intact, a running producer writes to the new ones, a group member reads them", async (t) => {
    // Pinned to b1: automatic placement of the new partitions then uses b2 too.
    const created = await runCli(["topic", "create", "orders", "--partitions", "2", "--brokers", "b1"], { nameserver });
    assert.equal(created.code, 0, created.stderr);
    const lines = Array.from({ length: 20 }, (_, i) => `before-${i}`).join("\n") + "\n";
    const produced = await runCli(["produce", "orders"], { nameserver, input: lines });
    assert.equal(produced.code, 0, produced.stderr);
    const before = await describeTopic("orders");
    const endOffsetsBefore = before.partitions.map((p) => p.endOffset);
    assert.equal(endOffsetsBefore.reduce((a, b) => a + b, 0), 20);

    sluice = new Sluice({ nameservers: [nameserver], clientId: "topic-alter-test" });
    const producer = sluice.producer({ lingerMs: 1 });
    const consumer = sluice.consumer({ group: "billing", fromBeginning: true });
    const received: ConsumerMessage[] = [];
    const consuming = (async () => {
      for await (const message of consumer.subscribe("orders")) received.push(message);
    })();
    await waitFor(() => received.length >= 20, PICKUP_DEADLINE_MS, () => `the group member read ${received.length} of 20 messages`);
    // The producer knows the topic with its 2 partitions before the alter.
    const [warmUp] = await producer.send("orders", [{ key: "warm-up", value: Buffer.from("warm-up") }]);

    const altered = await runCli(["--json", "topic", "alter", "orders", "--partitions", "4"], { nameserver });
    assert.equal(altered.code, 0, altered.stderr);
    const alteredAtMs = Date.now();
    const fromAlter = JSON.parse(altered.stdout) as Description;
    assert.equal(fromAlter.partitions.length, 4, "--json prints the new description");
    const added = fromAlter.partitions.slice(2);
    assert.deepEqual(added.map((p) => p.endOffset), [0, 0]);
    // Placement evens out partitions per group (the consumer group's `%groups` partitions
    // count too), so b2, which held none of the topic, receives at least one.
    assert.ok(added.some((p) => p.group === "b2"), `new partitions placed on ${added.map((p) => p.group).join(", ")}`);

    const after = await describeTopic("orders");
    assert.equal(after.partitions.length, 4);
    assert.deepEqual(after.partitions.map((p) => p.group), fromAlter.partitions.map((p) => p.group));
    assert.deepEqual(
      after.partitions.slice(0, 2).map((p) => p.endOffset),
      endOffsetsBefore.map((offset, partition) => offset + (partition === warmUp!.partition ? 1 : 0)),
      "the old partitions keep their messages",
    );

    // b1's slave mirrors what its master was told: the new partitions placed on b1 too.
    const onB1 = after.partitions.filter((p) => p.group === "b1").map((p) => p.partition);
    let mirrored: number[] = [];
    await waitFor(
      async () => {
        mirrored = await hostedPartitions(slaveAddress, "orders");
        return JSON.stringify(mirrored) === JSON.stringify(onB1);
      },
      PICKUP_DEADLINE_MS,
      () => `b1's slave hosts partitions ${mirrored.join(", ")} of "orders", its group ${onB1.join(", ")}`,
    );

    // Keyed sends from the running producer: keys hash over the new count once the route
    // push arrived, so some land on partitions 2 and 3.
    const sentTo = new Set<number>();
    let round = 0;
    await waitFor(
      async () => {
        const keys = Array.from({ length: 16 }, (_, i) => ({ key: `k-${i}`, value: Buffer.from(`after-${round}-${i}`) }));
        round++;
        for (const metadata of await producer.send("orders", keys)) sentTo.add(metadata.partition);
        return sentTo.has(2) && sentTo.has(3);
      },
      PICKUP_DEADLINE_MS,
      () => `the producer only wrote to partitions ${[...sentTo].join(", ")}`,
    );
    const producerPickupMs = Date.now() - alteredAtMs;
    const grown = await describeTopic("orders");
    assert.ok(grown.partitions[2]!.endOffset > 0 && grown.partitions[3]!.endOffset > 0, "the new partitions hold messages");

    await waitFor(
      () => received.some((m) => m.partition === 2) && received.some((m) => m.partition === 3),
      PICKUP_DEADLINE_MS,
      () => `the group member read from partitions ${[...new Set(received.map((m) => m.partition))].join(", ")}`,
    );
    const consumerPickupMs = Date.now() - alteredAtMs;
    const fromNew = received.filter((m) => m.partition >= 2).map((m) => m.value!.toString());
    assert.ok(fromNew.every((v) => v.startsWith("after-")), "only messages sent after the alter are on the new partitions");
    t.diagnostic(`the producer used the new partitions ${producerPickupMs} ms after the alter, the group member ${consumerPickupMs} ms after`);

    await consumer.close();
    await consuming;
  });

  it("refuses fewer partitions with exit 1 and a one-line error, changing nothing", async () => {
    const before = await describeTopic("orders");
    const refused = await runCli(["topic", "alter", "orders", "--partitions", "3"], { nameserver });
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, "");
    assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
    assert.match(refused.stderr, /topic "orders" has 4 partitions; it cannot shrink to 3.*\[INVALID_PARTITIONS\]/);
    const same = await runCli(["topic", "alter", "orders", "--partitions", "4"], { nameserver });
    assert.equal(same.code, 1);
    assert.match(same.stderr, /already has 4/);
    const after = await describeTopic("orders");
    assert.deepEqual(after, before);
  });

  it("refuses an unknown topic", async () => {
    const refused = await runCli(["topic", "alter", "no-such-topic", "--partitions", "3"], { nameserver });
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
    assert.match(refused.stderr, /topic "no-such-topic" does not exist.*\[UNKNOWN_TOPIC\]/);
  });
});

describe("sluice topic alter over a shared etcd registry", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess | undefined;
  const processes: ServerProcess[] = [];
  const clients: Sluice[] = [];
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(processes.map((p) => p.stop()));
    await etcd?.stop();
  });

  it("a topic grown through one name server has its new partitions through the other; growing it again there is refused", async () => {
    etcd = await startEtcd();
    const [ns1, ns2] = await Promise.all([startNameServer(["--etcd", etcd.endpoint]), startNameServer(["--etcd", etcd.endpoint])]);
    processes.push(ns1.process, ns2.process);
    const broker = await startBroker({ nameservers: [ns1.address, ns2.address], name: "b1" });
    processes.push(broker.process);
    const viaFirst = new Sluice({ nameservers: [ns1.address], clientId: "alter-etcd-1" });
    const viaSecond = new Sluice({ nameservers: [ns2.address], clientId: "alter-etcd-2" });
    clients.push(viaFirst, viaSecond);

    await viaFirst.admin().createTopic("shared", { partitions: 1 });
    const grown = await viaFirst.admin().createPartitions("shared", 3);
    assert.equal(grown.partitions, 3);
    const seen = await viaSecond.admin().describeTopic("shared");
    assert.deepEqual(seen.partitions.map((p) => [p.partition, p.group]), [[0, "b1"], [1, "b1"], [2, "b1"]]);
    const [written] = await viaSecond.producer().send("shared", [{ value: "to the new partition", partition: 2 }]);
    assert.deepEqual([written!.partition, written!.offset], [2, 0]);

    await assert.rejects(viaSecond.admin().createPartitions("shared", 3), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "INVALID_PARTITIONS");
      assert.match(err.message, /has 3 partitions/);
      return true;
    });
  });
});

/** The partitions of `topic` a broker hosts, as it answers DescribePartitions. */
function hostedPartitions(address: string, topic: string): Promise<number[]> {
  const client = new BrokerClient(address, credentials.createInsecure());
  return new Promise<number[]>((resolve, reject) => {
    client.describePartitions({ header: requestHeader("topic-alter-test"), topic }, (err, response) => {
      client.close();
      if (err) reject(err);
      else resolve(response.partitions.map((p) => p.partition).sort((a, b) => a - b));
    });
  });
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${describe()} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
