/**
 * The data directory's on-disk format: a broker started on a directory written by the previous
 * format (test/fixtures/data-format-1, see its HOW-MADE.md) reads every message and group
 * offset back and marks the directory with the current format; a directory of a newer format
 * is refused before anything in it is touched.
 */
import assert from "node:assert/strict";
import { cpSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { DATA_FORMAT_FILE } from "../../broker/src/storage/data-format.js";
import { REPO_ROOT, runCli, startDev, tempDir } from "../helpers/processes.js";

const FIXTURE = join(REPO_ROOT, "test", "fixtures", "data-format-1");

function copyFixture(): string {
  const dataDir = tempDir("sluice-format-");
  cpSync(FIXTURE, dataDir, { recursive: true });
  return dataDir;
}

/** Every message of `topic` as "partition:offset value", in partition then offset order, and the end offsets. */
async function readTopic(client: Sluice, topic: string, count: number): Promise<{ messages: string[]; ends: Record<number, number> }> {
  const consumer = client.consumer({ fromBeginning: true });
  const found: Array<{ partition: number; offset: number; text: string }> = [];
  // Closing the consumer ends the loop should fewer messages than expected be there.
  const timer = setTimeout(() => void consumer.close(), 10_000);
  try {
    const ends = Object.fromEntries(await consumer.endOffsets(topic)) as Record<number, number>;
    for await (const m of consumer.subscribe(topic)) {
      found.push({ partition: m.partition, offset: m.offset, text: `${m.partition}:${m.offset} ${m.value?.toString()}` });
      if (found.length >= count) break;
    }
    found.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
    return { messages: found.map((m) => m.text), ends };
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
}

function numbered(prefix: string, from: number, to: number, partition = 0): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `${partition}:${i + from - 1} ${prefix}-${i + from}`);
}

async function committedOffset(nameserver: string, group: string, topic: string, partition: number): Promise<number | undefined> {
  const described = await runCli(["--json", "group", "describe", group], { nameserver });
  assert.equal(described.code, 0, described.stderr);
  const { partitions } = JSON.parse(described.stdout) as { partitions: Array<{ topic: string; partition: number; committedOffset: number }> };
  return partitions.find((p) => p.topic === topic && p.partition === partition)?.committedOffset;
}

function marker(dataDir: string): { format: number; writtenBy: string; createdAt: string } {
  return JSON.parse(readFileSync(join(dataDir, DATA_FORMAT_FILE), "utf8")) as { format: number; writtenBy: string; createdAt: string };
}

/** Every file under `dir` with its bytes. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    files.set(path, entry.isFile() ? readFileSync(path, "hex") : "<dir>");
  }
  return files;
}

describe("on-disk format versions", () => {
  it("a broker on a format-1 directory reads every message and group offset, marks it format 2, appends after, and reads it all again after a restart", async () => {
    const dataDir = copyFixture();
    assert.throws(() => readFileSync(join(dataDir, DATA_FORMAT_FILE)), "the fixture has no marker (format 1)");

    const first = await startDev({ dataDir });
    let client = new Sluice({ nameservers: [first.nameserver], clientId: "format-upgrade-1" });
    let upgraded: ReturnType<typeof marker>;
    try {
      const orders = await readTopic(client, "orders", 100);
      assert.deepEqual(orders.messages, numbered("order", 1, 100));
      assert.deepEqual(orders.ends, { 0: 100, 1: 0 }, "partition 1 is empty");
      const jobs = await readTopic(client, "jobs", 20);
      assert.deepEqual(jobs.messages, numbered("job", 1, 20));
      assert.equal(await committedOffset(first.nameserver, "billing", "orders", 0), 60);

      upgraded = marker(dataDir);
      assert.equal(upgraded.format, 2);
      assert.match(upgraded.writtenBy, /^sluice \d+\.\d+\.\d+/);

      const producer = client.producer({ acks: "all" });
      const [order] = await producer.send("orders", [{ key: "k", value: "order-101" }]);
      const [job] = await producer.send("jobs", [{ value: "job-21" }]);
      assert.deepEqual({ partition: order!.partition, offset: order!.offset }, { partition: 0, offset: 100 });
      assert.deepEqual({ partition: job!.partition, offset: job!.offset }, { partition: 0, offset: 20 });
    } finally {
      await client.close();
      await first.process.stop();
    }

    const second = await startDev({ dataDir });
    client = new Sluice({ nameservers: [second.nameserver], clientId: "format-upgrade-2" });
    try {
      assert.deepEqual((await readTopic(client, "orders", 101)).messages, numbered("order", 1, 101));
      assert.deepEqual((await readTopic(client, "jobs", 21)).messages, numbered("job", 1, 21));
      assert.equal(await committedOffset(second.nameserver, "billing", "orders", 0), 60);
      assert.deepEqual(marker(dataDir), upgraded, "a format-2 directory keeps its marker as it was");
    } finally {
      await client.close();
      await second.process.stop();
    }
  });

  it("a directory of a newer format (99) is refused: exit 1, one line naming both versions, the directory untouched", async () => {
    const dataDir = copyFixture();
    writeFileSync(join(dataDir, DATA_FORMAT_FILE), '{"format":99,"writtenBy":"sluice 9.0.0","createdAt":"2030-01-01T00:00:00.000Z"}\n');
    const before = snapshot(dataDir);
    const run = await runCli(["dev", "--data", dataDir, "--nameserver-port", "0", "--broker-port", "0", "--http-port", "0"], { timeoutMs: 20_000 });
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stderr.split("\n").filter((line) => line.trim() !== "");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /format 99/);
    assert.match(lines[0]!, /formats 1 to 2/);
    assert.match(lines[0]!, /upgrade Sluice/);
    assert.match(lines[0]!, /UNSUPPORTED_DATA_FORMAT/);
    assert.equal(run.stdout, "", "it never reported itself started");
    assert.deepEqual(snapshot(dataDir), before);
  });
});
