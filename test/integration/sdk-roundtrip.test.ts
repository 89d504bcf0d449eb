/** The SDK against real processes: a name server and a broker started as separate commands. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice, SluiceError } from "../../clients/src/index.js";
import { startBroker, startNameServer } from "../helpers/processes.js";

describe("SDK round trip through a separate name server and broker", () => {
  let nameserver: Awaited<ReturnType<typeof startNameServer>>;
  let broker: Awaited<ReturnType<typeof startBroker>>;
  let sluice: Sluice;

  before(async () => {
    nameserver = await startNameServer();
    broker = await startBroker({ nameservers: [nameserver.address] });
    sluice = new Sluice({ nameservers: [nameserver.address], clientId: "roundtrip" });
  });
  after(async () => {
    await sluice?.close();
    await broker?.process.stop();
    await nameserver?.process.stop();
  });

  it("keeps order per partition and per key, and returns keys, values and headers intact", async () => {
    await sluice.admin().createTopic("events", { partitions: 4 });
    const producer = sluice.producer({ lingerMs: 2 });
    const keys = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
    const total = 20_000;
    const messages = Array.from({ length: total }, (_, i) => ({
      key: keys[i % keys.length] as string,
      value: Buffer.from(`${i}`),
      headers: { seq: String(i) },
    }));
    const sends = [];
    for (let i = 0; i < total; i += 1000) sends.push(producer.send("events", messages.slice(i, i + 1000)));
    const metas = (await Promise.all(sends)).flat();
    assert.equal(metas.length, total);

    // Every key maps to one partition.
    const partitionOfKey = new Map<string, number>();
    metas.forEach((meta, i) => {
      const key = messages[i]?.key as string;
      const known = partitionOfKey.get(key);
      if (known === undefined) partitionOfKey.set(key, meta.partition);
      else assert.equal(meta.partition, known, `key ${key} stays on one partition`);
    });

    const consumer = sluice.consumer({ fromBeginning: true });
    const lastSeqOfKey = new Map<string, number>();
    const lastOffsetOfPartition = new Map<number, number>();
    let count = 0;
    for await (const m of consumer.subscribe("events")) {
      const seq = Number(m.value?.toString());
      const key = m.key?.toString() as string;
      assert.equal(m.headers.seq?.toString(), String(seq));
      assert.equal(key, keys[seq % keys.length]);
      const previousOffset = lastOffsetOfPartition.get(m.partition) ?? -1;
      assert.equal(m.offset, previousOffset + 1, "offsets arrive dense and in order per partition");
      lastOffsetOfPartition.set(m.partition, m.offset);
      assert.ok((lastSeqOfKey.get(key) ?? -1) < seq, "per-key order holds");
      lastSeqOfKey.set(key, seq);
      if (++count === total) break;
    }
    await consumer.close();
    assert.equal(count, total);
  });

  it("round-trips null keys, empty values and gzip-compressed batches", async () => {
    await sluice.admin().createTopic("mixed", { partitions: 1 });
    const producer = sluice.producer({ compression: "gzip", lingerMs: 0 });
    const big = "x".repeat(10_000);
    const metas = await producer.send("mixed", [
      { value: "plain" },
      { key: null, value: "" },
      { key: "k", value: big, headers: { a: "1", b: Buffer.from([0, 1, 2]) } },
    ]);
    assert.deepEqual(metas.map((m) => m.offset), [0, 1, 2]);
    const consumer = sluice.consumer({ fromBeginning: true });
    const got = [];
    for await (const m of consumer.subscribe("mixed")) {
      got.push(m);
      if (got.length === 3) break;
    }
    await consumer.close();
    assert.equal(got[0]?.value?.toString(), "plain");
    assert.equal(got[0]?.key, null);
    assert.equal(got[1]?.value?.length, 0);
    assert.equal(got[2]?.value?.toString(), big);
    assert.deepEqual(got[2]?.headers.b, Buffer.from([0, 1, 2]));
  });

  it("close() right after send() delivers the send, even while its route is still being looked up", async () => {
    const fresh = new Sluice({ nameservers: [nameserver.address], clientId: "close-early" });
    const producer = fresh.producer();
    const sent = producer.send("events", [{ value: "last words" }]);
    await producer.close();
    const [meta] = await sent;
    assert.ok((meta?.offset ?? -1) >= 0);
    await fresh.close();
  });

  it("a reader from the end sees only new messages", async () => {
    await sluice.admin().createTopic("live", { partitions: 2 });
    const producer = sluice.producer({ lingerMs: 0 });
    await producer.send("live", [{ value: "old-1" }, { value: "old-2" }]);
    const consumer = sluice.consumer({ fromBeginning: false });
    const iterator = consumer.subscribe("live")[Symbol.asyncIterator]();
    const next = iterator.next();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await producer.send("live", [{ value: "new-1" }]);
    const first = await next;
    assert.equal(first.value?.value?.toString(), "new-1");
    await consumer.close();
  });

  it("answers bad requests with typed errors that change nothing", async () => {
    await assert.rejects(sluice.admin().createTopic("white space"), (e: unknown) => e instanceof SluiceError && e.code === "INVALID_TOPIC_NAME");
    await assert.rejects(sluice.admin().createTopic("events", { partitions: 2 }), (e: unknown) => e instanceof SluiceError && e.code === "TOPIC_ALREADY_EXISTS");
    const producer = sluice.producer({ lingerMs: 0 });
    await assert.rejects(
      producer.send("events", [{ value: "x", partition: 9 }]),
      (e: unknown) => e instanceof SluiceError && e.code === "UNKNOWN_PARTITION" && /partition 9/.test(e.message),
    );
    const before = await sluice.admin().listOffsets("events", "latest");
    await assert.rejects(
      producer.send("events", [{ value: Buffer.alloc(9 * 1024 * 1024) }]),
      (e: unknown) => e instanceof SluiceError && e.code === "MESSAGE_TOO_LARGE",
    );
    assert.deepEqual(await sluice.admin().listOffsets("events", "latest"), before, "nothing was appended");
    await assert.rejects(
      sluice.admin().getMessage("events", 0, { offset: 10_000_000 }),
      (e: unknown) => e instanceof SluiceError && e.code === "OFFSET_OUT_OF_RANGE",
    );
  });
});
