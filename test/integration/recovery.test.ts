/**
 * Start-up recovery on real files: a broker killed, then its last segment damaged on disk
 * (torn tail, flipped bit), comes back with every batch before the damage, says what it
 * dropped, and takes new writes. And a graceful stop leaves a clean-shutdown marker.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { startDev, tempDir } from "../helpers/processes.js";

async function fill(nameserver: string, topic: string, batches: number): Promise<number[]> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "recovery" });
  try {
    await sluice.admin().createTopic(topic, { partitions: 1 });
    const producer = sluice.producer({ lingerMs: 0 });
    const baseOffsets: number[] = [];
    for (let i = 0; i < batches; i++) {
      const metas = await producer.send(topic, Array.from({ length: 10 }, (_, j) => ({ value: `b${i}-m${j}` })));
      baseOffsets.push(metas[0]?.offset as number);
    }
    return baseOffsets;
  } finally {
    await sluice.close();
  }
}

function segmentOf(dataDir: string, topic: string): string {
  const dir = join(dataDir, "logs", `${topic}-0`);
  const log = readdirSync(dir).filter((f) => f.endsWith(".log")).sort().at(-1) as string;
  return join(dir, log);
}

async function readValues(nameserver: string, topic: string): Promise<string[]> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "recovery-check" });
  try {
    const end = (await sluice.admin().listOffsets(topic, "latest")).get(0) ?? 0;
    const values: string[] = [];
    if (end === 0) return values;
    const consumer = sluice.consumer({ fromBeginning: true });
    for await (const m of consumer.subscribe(topic)) {
      values.push(m.value?.toString() ?? "");
      if (m.offset + 1 >= end) break;
    }
    await consumer.close();
    return values;
  } finally {
    await sluice.close();
  }
}

for (const damage of ["torn tail", "flipped bit"] as const) {
  describe(`recovery from a ${damage}`, () => {
    it(`keeps every batch before the damage, logs what it dropped and accepts writes (${damage})`, async () => {
      const dataDir = tempDir();
      const first = await startDev({ dataDir });
      await fill(first.nameserver, "fragile", 20);
      first.process.child.kill("SIGKILL");
      await new Promise((resolve) => first.process.child.once("exit", resolve));

      const segment = segmentOf(dataDir, "fragile");
      const size = statSync(segment).size;
      if (damage === "torn tail") {
        truncateSync(segment, size - 7);
      } else {
        const bytes = readFileSync(segment);
        bytes[size - 5] = (bytes[size - 5] as number) ^ 0x01;
        writeFileSync(segment, bytes);
      }

      const second = await startDev({ dataDir, extra: [] });
      try {
        const values = await readValues(second.nameserver, "fragile");
        assert.equal(values.length, 190, "19 whole batches of 10 survive; the damaged last batch is dropped");
        assert.deepEqual(values.slice(0, 3), ["b0-m0", "b0-m1", "b0-m2"]);
        assert.equal(values.at(-1), "b18-m9");
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.match(second.process.stderr(), /recovery dropped offsets 190\.\./);
        const sluice = new Sluice({ nameservers: [second.nameserver] });
        const [meta] = await sluice.producer().send("fragile", [{ value: "after" }]);
        await sluice.close();
        assert.equal(meta?.offset, 190, "new writes continue densely after the last valid batch");
      } finally {
        await second.process.stop();
      }
    });
  });
}

describe("graceful stop", () => {
  it("SIGTERM exits 0, writes the clean-shutdown marker, and a restart keeps everything", async () => {
    const dataDir = tempDir();
    const first = await startDev({ dataDir });
    await fill(first.nameserver, "calm", 5);
    assert.equal(await first.process.stop("SIGTERM"), 0);
    assert.ok(existsSync(join(dataDir, "logs", ".clean-shutdown")));
    const second = await startDev({ dataDir });
    try {
      assert.equal((await readValues(second.nameserver, "calm")).length, 50);
      assert.doesNotMatch(second.process.stderr(), /recovery dropped/);
    } finally {
      await second.process.stop();
    }
  });

  it("SIGTERM during steady produce: every batch the broker appended was acknowledged (no lost acks to resend as duplicates)", async () => {
    const dataDir = tempDir();
    const first = await startDev({ dataDir });
    const sluice = new Sluice({ nameservers: [first.nameserver], clientId: "drain", requestTimeoutMs: 3000 });
    await sluice.admin().createTopic("draining", { partitions: 2 });
    const producer = sluice.producer({ lingerMs: 1 });
    let acknowledged = 0;
    let stop = false;
    // Eight senders keep batches in flight, so some are mid-append when the signal lands.
    const senders = Array.from({ length: 8 }, async (_, s) => {
      for (let i = 0; !stop; i++) {
        try {
          // One key per send: its 20 messages go to one partition in one batch, so a send is
          // acknowledged or refused as a whole (a send split over two partitions can be half
          // acknowledged and still reject, which this count could not tell).
          await producer.send("draining", Array.from({ length: 20 }, (_, j) => ({ key: `${s}-${i}`, value: `${s}-${i}-${j}` })));
          acknowledged += 20;
        } catch {
          return; // refused or unreachable: not appended
        }
      }
    });
    while (acknowledged < 2000) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(await first.process.stop("SIGTERM"), 0);
    stop = true;
    await Promise.all(senders);
    await sluice.close().catch(() => undefined);

    const second = await startDev({ dataDir });
    const reader = new Sluice({ nameservers: [second.nameserver] });
    try {
      const ends = await reader.admin().listOffsets("draining", "latest");
      const stored = [...ends.values()].reduce((sum, end) => sum + end, 0);
      assert.equal(stored, acknowledged, "messages in the log are exactly the acknowledged ones");
    } finally {
      await reader.close();
      await second.process.stop();
    }
  });
});
