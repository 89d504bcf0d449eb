/**
 * Committed offsets and group membership live in `%groups`: a broker SIGKILLed while a group
 * commits keeps every commit that was acknowledged, and the group resumes from there.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { runCli, startDev, tempDir } from "../helpers/processes.js";

describe("consumer-group offsets across a broker crash", () => {
  it("every acknowledged commit survives SIGKILL mid-traffic and the group resumes from it", async () => {
    const dataDir = tempDir();
    const first = await startDev({ dataDir });
    const total = 600;
    let lastAcked = new Map<number, number>();
    let client = new Sluice({ nameservers: [first.nameserver], clientId: "durable-group-1" });
    try {
      await client.admin().createTopic("ledger", { partitions: 3 });
      await client.producer().send("ledger", Array.from({ length: total }, (_, i) => ({ key: `k${i}`, value: `v${i}` })));
      const consumer = client.consumer({ group: "auditors", fromBeginning: true, autoCommit: false });
      let seen = 0;
      for await (const m of consumer.subscribe("ledger")) {
        seen++;
        // Commit every 25 messages and remember only commits the broker acknowledged.
        if (seen % 25 === 0) {
          const next = new Map(lastAcked);
          next.set(m.partition, m.offset + 1);
          await consumer.commit({ [m.partition]: m.offset + 1 });
          lastAcked = next;
        }
        if (seen === total / 2) break;
      }
      assert.ok(lastAcked.size > 0);
      // Killed without a chance to flush or leave.
      await first.process.stop("SIGKILL");
    } finally {
      await client.close().catch(() => undefined);
    }

    const second = await startDev({ dataDir });
    client = new Sluice({ nameservers: [second.nameserver], clientId: "durable-group-2" });
    try {
      const described = await runCli(["--json", "group", "describe", "auditors"], { nameserver: second.nameserver });
      assert.equal(described.code, 0, described.stderr);
      const partitions = (JSON.parse(described.stdout) as { partitions: Array<{ topic: string; partition: number; committedOffset: number }> }).partitions;
      for (const [partition, offset] of lastAcked) {
        const found = partitions.find((p) => p.topic === "ledger" && p.partition === partition);
        assert.equal(found?.committedOffset, offset, `partition ${partition}: committed offset after the crash`);
      }
      // A new member of the group starts exactly at the committed offsets (member sessions of
      // the killed process expire first, after the session timeout).
      // More traffic, so every partition has messages past its commit.
      await client.producer().send("ledger", Array.from({ length: 300 }, (_, i) => ({ key: `late${i}`, value: `late${i}` })));
      const consumer = client.consumer({ group: "auditors", sessionTimeoutMs: 2000 });
      const firstOffsets = new Map<number, number>();
      const deadline = Date.now() + 30_000;
      for await (const m of consumer.subscribe("ledger")) {
        if (!firstOffsets.has(m.partition)) firstOffsets.set(m.partition, m.offset);
        if ([...lastAcked.keys()].every((p) => firstOffsets.has(p)) || Date.now() > deadline) break;
      }
      for (const [partition, offset] of lastAcked) assert.equal(firstOffsets.get(partition), offset, `partition ${partition} resumed at its commit`);
    } finally {
      await client.close();
      await second.process.stop();
    }
  });
});
