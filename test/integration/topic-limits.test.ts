/**
 * Caps on topic and partition counts: a `sluice dev` started with `--max-topics 3
 * --max-partitions-per-topic 4` refuses what would pass them, with one line naming the limit
 * and the flag, and creates or changes nothing.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { runCli, startDev, type Cluster } from "../helpers/processes.js";

function refusedWithOneLine(run: { code: number | null; stdout: string; stderr: string }, ...patterns: RegExp[]): void {
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.split("\n").filter((line) => line.trim() !== "");
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0]!, /\[LIMIT_EXCEEDED\]$/);
  for (const pattern of patterns) assert.match(lines[0]!, pattern);
}

describe("topic and partition limits", () => {
  let cluster: Cluster;
  let client: Sluice;
  before(async () => {
    cluster = await startDev({ extra: ["--max-topics", "3", "--max-partitions-per-topic", "4"] });
    client = new Sluice({ nameservers: [cluster.nameserver], clientId: "topic-limits" });
  });
  after(async () => {
    await client?.close();
    await cluster?.process.stop();
  });

  it("refuses a 5-partition topic and a 4th topic, creating nothing; refuses an alter past the limit, leaving the topic as it was", async () => {
    const admin = client.admin();
    await admin.createTopic("orders", { partitions: 2 });
    await admin.createTopic("jobs", { partitions: 1 });

    const wide = await runCli(["topic", "create", "wide", "--partitions", "5"], { nameserver: cluster.nameserver });
    refusedWithOneLine(wide, /5 partitions/, /limit is 4 per topic/, /maxPartitionsPerTopic/, /--max-partitions-per-topic/);

    await admin.createTopic("audit", { partitions: 4 });
    const fourth = await runCli(["topic", "create", "extra"], { nameserver: cluster.nameserver });
    refusedWithOneLine(fourth, /has 3 topics and the limit is 3/, /maxTopics/, /--max-topics/);

    const alter = await runCli(["topic", "alter", "orders", "--partitions", "5"], { nameserver: cluster.nameserver });
    refusedWithOneLine(alter, /"orders" has 2 partitions and cannot grow to 5/, /maxPartitionsPerTopic/, /--max-partitions-per-topic/);

    const topics = (await admin.listTopics()).filter((t) => !t.topic.startsWith("%"));
    assert.deepEqual(
      topics.map((t) => `${t.topic}:${t.partitions}`).sort(),
      ["audit:4", "jobs:1", "orders:2"],
      "nothing created, orders unchanged",
    );
    // The refusal was the limit's: within it the same alter goes through.
    await admin.createPartitions("orders", 4);
    assert.equal((await admin.describeTopic("orders")).partitions.length, 4);
  });
});
