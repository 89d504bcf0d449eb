/**
 * Nothing acknowledged is lost: SIGKILL the broker mid-traffic, restart it on the same data,
 * and check every acknowledged message; prove that flush=sync fsyncs before each ack.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { startDev, tempDir } from "../helpers/processes.js";

interface Acked {
  partition: number;
  offset: number;
  value: string;
}

/** Reads every message of the topic from the beginning up to the current end offsets. */
async function readAll(sluice: Sluice, topic: string): Promise<Map<string, string>> {
  const ends = await sluice.admin().listOffsets(topic, "latest");
  let total = 0;
  for (const end of ends.values()) total += end;
  const seen = new Map<string, string>();
  if (total === 0) return seen;
  const consumer = sluice.consumer({ fromBeginning: true });
  for await (const m of consumer.subscribe(topic)) {
    seen.set(`${m.partition}:${m.offset}`, m.value?.toString() ?? "");
    if (seen.size >= total) break;
  }
  await consumer.close();
  return seen;
}

for (const flush of ["interval", "sync", "os"] as const) {
  describe(`flush ${flush}`, () => {
    it(`every acknowledged message survives SIGKILL of the broker mid-traffic (flush ${flush})`, async () => {
      const dataDir = tempDir();
      const first = await startDev({ dataDir, flush });
      const sluice = new Sluice({ nameservers: [first.nameserver], clientId: "durability" });
      await sluice.admin().createTopic("ledger", { partitions: 3 });
      const producer = sluice.producer({ lingerMs: 1 });
      const acked: Acked[] = [];
      let sent = 0;
      let stop = false;
      const produceLoop = (async () => {
        while (!stop) {
          const values = Array.from({ length: 50 }, () => `m-${sent++}`);
          try {
            const metas = await producer.send("ledger", values.map((value) => ({ value })));
            metas.forEach((meta, i) => acked.push({ partition: meta.partition, offset: meta.offset, value: values[i] as string }));
          } catch {
            // The broker died under this send: nothing of it was acknowledged.
            return;
          }
        }
      })();
      // Let traffic run, then kill the broker without warning.
      while (acked.length < 3000) await new Promise((resolve) => setTimeout(resolve, 10));
      first.process.child.kill("SIGKILL");
      await new Promise((resolve) => first.process.child.once("exit", resolve));
      stop = true;
      await Promise.race([produceLoop, new Promise((resolve) => setTimeout(resolve, 5000))]);
      await sluice.close().catch(() => undefined);
      assert.ok(acked.length >= 3000);

      const second = await startDev({ dataDir, flush });
      const reader = new Sluice({ nameservers: [second.nameserver], clientId: "durability-check" });
      try {
        const stored = await readAll(reader, "ledger");
        for (const a of acked) {
          assert.equal(stored.get(`${a.partition}:${a.offset}`), a.value, `acknowledged ${a.value} at ${a.partition}:${a.offset} must survive`);
        }
        // Offsets are dense from 0 in each partition.
        const ends = await reader.admin().listOffsets("ledger", "latest");
        for (const [partition, end] of ends) {
          for (let offset = 0; offset < end; offset++) assert.ok(stored.has(`${partition}:${offset}`), `offset ${partition}:${offset} readable`);
        }
        // The log accepts new writes after recovery, at the next offsets.
        const [meta] = await reader.producer().send("ledger", [{ value: "after-restart", partition: 0 }]);
        assert.equal(meta?.offset, ends.get(0));
      } finally {
        await reader.close();
        await second.process.stop();
      }
    });
  });
}

describe("flush sync", () => {
  /** Runs `sends` sequential single-message sends against a dev cluster under strace and counts fsyncs. */
  async function countSyncs(flush: "sync" | "interval", sends: number): Promise<number> {
    const dir = tempDir();
    const straceOut = join(dir, "strace.txt");
    const cluster = await startDev({
      dataDir: join(dir, "data"),
      flush,
      wrapper: ["strace", "-f", "-c", "-o", straceOut, "-e", "trace=fsync,fdatasync"],
    });
    const sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "fsync-count" });
    try {
      await sluice.admin().createTopic("synced", { partitions: 1 });
      const producer = sluice.producer({ lingerMs: 0 });
      // One at a time: each ack must be preceded by an fsync of its own batch.
      for (let i = 0; i < sends; i++) await producer.send("synced", [{ value: `v${i}` }]);
    } finally {
      await sluice.close();
      process.kill(Number(cluster.process.info.pid), "SIGTERM");
      await new Promise((resolve) => cluster.process.child.once("exit", resolve));
    }
    const summary = readFileSync(straceOut, "utf8");
    let calls = 0;
    for (const line of summary.split("\n")) {
      const match = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$/.exec(line);
      if (match) calls += Number(match[1]);
    }
    return calls;
  }

  it("fsyncs before every acknowledgement (counted with strace), unlike flush interval", async () => {
    const sends = 200;
    const synced = await countSyncs("sync", sends);
    assert.ok(synced >= sends, `flush sync: ${synced} fsync/fdatasync calls for ${sends} sequentially acknowledged batches`);
    const interval = await countSyncs("interval", sends);
    assert.ok(interval < sends / 4, `flush interval: ${interval} fsync/fdatasync calls for ${sends} batches`);
  });
});
