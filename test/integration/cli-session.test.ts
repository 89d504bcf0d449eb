/** The README's CLI session, run against a real `sluice dev` process. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runCli, startDev, type Cluster } from "../helpers/processes.js";

describe("the README's CLI session", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startDev();
  });
  after(async () => {
    await cluster?.process.stop();
  });

  it("creates a topic, produces 100000 lines, reads them all back and describes the topic", async () => {
    const ns = cluster.nameserver;
    const created = await runCli(["topic", "create", "orders", "--partitions", "3"], { nameserver: ns });
    assert.equal(created.code, 0, created.stderr);

    const lines = Array.from({ length: 100_000 }, (_, i) => String(i + 1)).join("\n") + "\n";
    const produced = await runCli(["produce", "orders"], { nameserver: ns, input: lines });
    assert.equal(produced.code, 0, produced.stderr);
    assert.equal(produced.stdout.trim(), "100000 acknowledged");

    const consumed = await runCli(["consume", "orders", "--from-beginning", "--max-messages", "100000"], { nameserver: ns });
    assert.equal(consumed.code, 0, consumed.stderr);
    const values = consumed.stdout.trim().split("\n").map(Number);
    assert.equal(values.length, 100_000);
    assert.equal(Math.max(...values), 100_000);
    assert.equal(new Set(values).size, 100_000, "every line exactly once");

    const described = await runCli(["--json", "topic", "describe", "orders"], { nameserver: ns });
    assert.equal(described.code, 0, described.stderr);
    const description = JSON.parse(described.stdout) as { partitions: { partition: number; endOffset: number; sizeBytes: number }[] };
    assert.equal(description.partitions.length, 3);
    assert.equal(description.partitions.reduce((sum, p) => sum + p.endOffset, 0), 100_000);
    for (const p of description.partitions) assert.ok(p.sizeBytes > 0);

    const human = await runCli(["topic", "describe", "orders"], { nameserver: ns });
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /PARTITION/);
  });

  it("consume --until-end stops at the end offsets seen at start", async () => {
    const ns = cluster.nameserver;
    assert.equal((await runCli(["topic", "create", "short", "--partitions", "2"], { nameserver: ns })).code, 0);
    assert.equal((await runCli(["produce", "short"], { nameserver: ns, input: "a\nb\nc\n" })).code, 0);
    const consumed = await runCli(["consume", "short", "--from-beginning", "--until-end"], { nameserver: ns, timeoutMs: 20_000 });
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.deepEqual(consumed.stdout.trim().split("\n").sort(), ["a", "b", "c"]);
  });

  it("consume --max-messages with --timeout-ms exits non-zero when too few arrive", async () => {
    const ns = cluster.nameserver;
    assert.equal((await runCli(["topic", "create", "sparse"], { nameserver: ns })).code, 0);
    assert.equal((await runCli(["produce", "sparse"], { nameserver: ns, input: "only\n" })).code, 0);
    const consumed = await runCli(["consume", "sparse", "--from-beginning", "--max-messages", "5", "--timeout-ms", "1500"], { nameserver: ns });
    assert.notEqual(consumed.code, 0);
    assert.equal(consumed.stdout.trim(), "only");
    assert.match(consumed.stderr, /timed out/);
  });

  it("message get finds a message by offset and by timestamp", async () => {
    const ns = cluster.nameserver;
    assert.equal((await runCli(["topic", "create", "lookup"], { nameserver: ns })).code, 0);
    const before = Date.now();
    assert.equal((await runCli(["produce", "lookup", "--key", "k1"], { nameserver: ns, input: "first\nsecond\n" })).code, 0);
    const byOffset = await runCli(["--json", "message", "get", "lookup", "--partition", "0", "--offset", "1"], { nameserver: ns });
    assert.equal(byOffset.code, 0, byOffset.stderr);
    const message = JSON.parse(byOffset.stdout) as { offset: number; value: string; key: string };
    assert.equal(message.offset, 1);
    assert.equal(message.value, "second");
    assert.equal(message.key, "k1");

    const byTime = await runCli(["--json", "message", "get", "lookup", "--partition", "0", "--timestamp", new Date(before - 1).toISOString()], { nameserver: ns });
    assert.equal(byTime.code, 0, byTime.stderr);
    assert.equal((JSON.parse(byTime.stdout) as { value: string }).value, "first");
  });

  it("cluster lists the live broker", async () => {
    const result = await runCli(["--json", "cluster"], { nameserver: cluster.nameserver });
    assert.equal(result.code, 0, result.stderr);
    const { brokers } = JSON.parse(result.stdout) as { brokers: { role: string; state: string; address: string; heartbeatAgeMs: number }[] };
    assert.equal(brokers.length, 1);
    assert.equal(brokers[0]?.role, "master");
    assert.equal(brokers[0]?.state, "alive");
    assert.equal(brokers[0]?.address, cluster.broker);
  });

  it("refuses bad input with a one-line error and a non-zero exit", async () => {
    const ns = cluster.nameserver;
    const badName = await runCli(["topic", "create", "bad/name"], { nameserver: ns });
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /INVALID_TOPIC_NAME/);
    assert.equal(badName.stderr.trim().split("\n").length, 1);

    const duplicate = await runCli(["topic", "create", "orders"], { nameserver: ns });
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already exists/);

    const unknown = await runCli(["produce", "nope"], { nameserver: ns, input: "x\n" });
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /UNKNOWN_TOPIC/);

    const badAcks = await runCli(["produce", "orders", "--acks", "some"], { nameserver: ns, input: "x\n" });
    assert.equal(badAcks.code, 2);

    // Group state and dead letters are internal: deleting them would break every group.
    const internal = await runCli(["topic", "delete", "%groups"], { nameserver: ns });
    assert.equal(internal.code, 2);
    assert.match(internal.stderr, /internal to Sluice/);
    const groups = await runCli(["--json", "group", "list"], { nameserver: ns });
    assert.equal(groups.code, 0, "groups still answer");
  });
});
