/**
 * The broker's gRPC contract, spoken directly (no SDK): a corrupt or oversized batch is
 * refused with a typed error and nothing is appended; an unsupported protocol version is
 * refused; stored bytes come back exactly as they were sent; flow control holds and refuses
 * batches on the stream as the contract says.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, type ClientDuplexStream } from "@grpc/grpc-js";
import { after, before, describe, it } from "node:test";
import { encodeBatch } from "../../common/src/batch/index.js";
import { RECORDS_AT } from "../../common/src/batch/layout.js";
import { fromServiceError } from "../../common/src/grpc/errors.js";
import { Sluice } from "../../clients/src/index.js";
import {
  Acks,
  BrokerClient,
  OffsetSpec,
  type ProduceRequest,
  type ProduceResponse,
} from "../../proto/gen/sluice/v1/broker.js";
import { startDev, tempDir, type Cluster } from "../helpers/processes.js";

const header = { clientId: "protocol-test", protocolVersion: 1 };

function produceOnce(client: BrokerClient, request: Omit<ProduceRequest, "header">): Promise<ProduceResponse> {
  return new Promise((resolve, reject) => {
    const stream: ClientDuplexStream<ProduceRequest, ProduceResponse> = client.produce();
    stream.once("data", (response: ProduceResponse) => {
      resolve(response);
      stream.end();
    });
    stream.once("error", reject);
    stream.write({ header, ...request });
  });
}

function endOffset(client: BrokerClient, topic: string): Promise<number> {
  return new Promise((resolve, reject) =>
    client.listOffsets({ header, topic, partitions: [{ partition: 0, spec: OffsetSpec.OFFSET_SPEC_LATEST, timestampMs: 0 }] }, (err, res) =>
      err ? reject(err) : resolve(res.partitions[0]?.offset ?? -1),
    ),
  );
}

describe("broker protocol", () => {
  let cluster: Cluster;
  let client: BrokerClient;
  before(async () => {
    cluster = await startDev();
    const sluice = new Sluice({ nameservers: [cluster.nameserver] });
    await sluice.admin().createTopic("raw", { partitions: 1 });
    await sluice.close();
    client = new BrokerClient(cluster.broker, credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await cluster?.process.stop();
  });

  it("appends a valid batch and serves back the same bytes with the offset stamped", async () => {
    const batch = encodeBatch([{ value: "one" }, { value: "two" }]);
    const original = Buffer.from(batch);
    const response = await produceOnce(client, { correlationId: 7, topic: "raw", partition: 0, acks: Acks.ACKS_LEADER, batch });
    assert.equal(response.error, undefined);
    assert.equal(response.correlationId, 7);
    const base = response.baseOffset;
    const fetched = await new Promise<Buffer>((resolve, reject) =>
      client.fetch({ header, topic: "raw", partitions: [{ partition: 0, offset: base, maxBytes: 1 << 20 }], maxWaitMs: 0, minBytes: 0, maxBytes: 1 << 20 }, (err, res) =>
        err ? reject(err) : resolve(res.partitions[0]?.records as Buffer),
      ),
    );
    assert.equal(fetched.length, original.length);
    assert.equal(Number(fetched.readBigInt64BE(0)), base, "base offset stamped");
    assert.deepEqual(fetched.subarray(12 + 4), original.subarray(12 + 4), "everything after the broker's prefix is byte-identical");
  });

  it("answers an idempotent producer's resent batch with its first offsets and appends nothing; refuses a sequence gap", async () => {
    const producer = { producerId: 4242, producerEpoch: 0 };
    const first = await produceOnce(client, { correlationId: 20, topic: "raw", partition: 0, acks: Acks.ACKS_ALL, batch: encodeBatch([{ value: "a" }, { value: "b" }], { ...producer, baseSequence: 0 }) });
    assert.equal(first.error, undefined);
    const end = await endOffset(client, "raw");
    const again = await produceOnce(client, { correlationId: 21, topic: "raw", partition: 0, acks: Acks.ACKS_ALL, batch: encodeBatch([{ value: "a" }, { value: "b" }], { ...producer, baseSequence: 0 }) });
    assert.equal(again.error, undefined);
    assert.equal(again.baseOffset, first.baseOffset, "the retry gets the first attempt's offset");
    assert.equal(await endOffset(client, "raw"), end, "nothing appended twice");
    const gap = await produceOnce(client, { correlationId: 22, topic: "raw", partition: 0, acks: Acks.ACKS_ALL, batch: encodeBatch([{ value: "c" }], { ...producer, baseSequence: 5 }) });
    assert.equal(gap.error?.code, "OUT_OF_ORDER_SEQUENCE");
    assert.equal(await endOffset(client, "raw"), end);
  });

  it("flow control on one stream: held acks carry throttleTimeMs, a batch past maxQueueMs is THROTTLED with the rule and a retry-after, another topic is not held", async () => {
    const sluice = new Sluice({ nameservers: [cluster.nameserver] });
    await sluice.admin().createTopic("paced", { partitions: 1 });
    await sluice.admin().createTopic("unpaced", { partitions: 1 });
    await sluice.close();
    const put = await fetch(`http://${cluster.http}/admin/flow`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ scope: "topic:paced", limiter: "token-bucket", messagesPerSecond: 10, burst: 1, maxQueueMs: 250 }),
    });
    assert.equal(put.status, 200, await put.clone().text());
    try {
      const stream: ClientDuplexStream<ProduceRequest, ProduceResponse> = client.produce();
      const answered: ProduceResponse[] = [];
      const done = new Promise<void>((resolve, reject) => {
        stream.on("data", (response: ProduceResponse) => {
          answered.push(response);
          if (answered.length === 5) resolve();
        });
        stream.once("error", reject);
      });
      // One token at once, then one every 100 ms: waits of 0, 100, 200 ms, and 300 > 250 refused.
      for (let i = 1; i <= 4; i++) {
        stream.write({ header: i === 1 ? header : undefined, correlationId: i, topic: "paced", partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: `p${i}` }]) });
      }
      stream.write({ correlationId: 9, topic: "unpaced", partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: "free" }]) });
      await done;
      stream.end();
      const by = new Map(answered.map((r) => [r.correlationId, r]));
      assert.equal(by.get(1)?.throttleTimeMs, 0);
      assert.ok((by.get(2)?.throttleTimeMs ?? 0) >= 60, `held about 100 ms, got ${by.get(2)?.throttleTimeMs}`);
      assert.ok((by.get(3)?.throttleTimeMs ?? 0) >= 160, `held about 200 ms, got ${by.get(3)?.throttleTimeMs}`);
      assert.deepEqual([by.get(2)!.baseOffset - by.get(1)!.baseOffset, by.get(3)!.baseOffset - by.get(1)!.baseOffset], [1, 2], "held batches appended in order");
      const refused = by.get(4)!;
      assert.equal(refused.error?.code, "THROTTLED");
      assert.equal(refused.error?.retriable, true);
      assert.ok((refused.error?.retryAfterMs ?? 0) >= 100, `retryAfterMs ${refused.error?.retryAfterMs}`);
      assert.match(refused.error?.message ?? "", /topic:paced token-bucket \(10 messages\/s, burst 1\): bucket empty, this batch would wait \d+ ms, more than maxQueueMs 250/);
      assert.equal(by.get(9)?.throttleTimeMs, 0, "another topic on the same stream is not held");
      assert.ok(answered.indexOf(by.get(9)!) < answered.indexOf(by.get(2)!), "the other topic was answered before the held batches");
      assert.equal(await endOffset(client, "paced"), by.get(1)!.baseOffset + 3, "the refused batch appended nothing");
    } finally {
      await fetch(`http://${cluster.http}/admin/flow?scope=topic:paced&limiter=token-bucket`, { method: "DELETE" });
    }
  });

  it("flow control: batches held when their stream goes away are never appended, and their limits are given back", async () => {
    const sluice = new Sluice({ nameservers: [cluster.nameserver] });
    await sluice.admin().createTopic("dropped", { partitions: 1 });
    await sluice.close();
    const put = await fetch(`http://${cluster.http}/admin/flow`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ scope: "topic:dropped", limiter: "leaky-bucket", messagesPerSecond: 1, maxQueueMs: 5000 }),
    });
    assert.equal(put.status, 200, await put.clone().text());
    try {
      const stream: ClientDuplexStream<ProduceRequest, ProduceResponse> = client.produce();
      stream.on("error", () => undefined);
      const first = new Promise<ProduceResponse>((resolve) => stream.once("data", resolve));
      // The first passes at once; the next two are held 1 s and 2 s.
      for (let i = 1; i <= 3; i++) {
        stream.write({ header: i === 1 ? header : undefined, correlationId: i, topic: "dropped", partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: `d${i}` }]) });
      }
      assert.equal((await first).error, undefined);
      const queued = async (): Promise<number> => {
        const listing = (await (await fetch(`http://${cluster.http}/admin/flow`)).json()) as { rules: { scope: string; state: { queued: number } }[] };
        return listing.rules.find((r) => r.scope === "topic:dropped")!.state.queued;
      };
      // The broker may read the two later batches just after answering the first.
      const deadline = Date.now() + 2_000;
      while ((await queued()) < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(await queued(), 2);
      stream.cancel();
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      assert.equal(await endOffset(client, "dropped"), 1, "the held batches of the cancelled stream were not appended");
      assert.equal(await queued(), 0);
    } finally {
      await fetch(`http://${cluster.http}/admin/flow?scope=topic:dropped&limiter=leaky-bucket`, { method: "DELETE" });
    }
  });

  it("refuses a batch whose CRC does not match, and appends nothing", async () => {
    const before = await endOffset(client, "raw");
    const batch = encodeBatch([{ value: "flip me" }]);
    batch[RECORDS_AT + 3] = (batch[RECORDS_AT + 3] as number) ^ 0xff;
    const response = await produceOnce(client, { correlationId: 8, topic: "raw", partition: 0, acks: Acks.ACKS_LEADER, batch });
    assert.equal(response.error?.code, "CORRUPT_BATCH");
    assert.equal(response.error?.retriable, false);
    assert.match(response.error?.message ?? "", /CRC/);
    assert.equal(await endOffset(client, "raw"), before);
  });

  it("refuses truncated bytes and an unknown partition with typed errors", async () => {
    const before = await endOffset(client, "raw");
    const batch = encodeBatch([{ value: "cut" }]).subarray(0, 40);
    const truncated = await produceOnce(client, { correlationId: 9, topic: "raw", partition: 0, acks: Acks.ACKS_LEADER, batch });
    assert.equal(truncated.error?.code, "CORRUPT_BATCH");
    const unknown = await produceOnce(client, { correlationId: 10, topic: "raw", partition: 5, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: "x" }]) });
    assert.equal(unknown.error?.code, "UNKNOWN_PARTITION");
    assert.match(unknown.error?.message ?? "", /has 1 partition; partition 5 does not exist/);
    const noTopic = await produceOnce(client, { correlationId: 11, topic: "ghost", partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: "x" }]) });
    assert.equal(noTopic.error?.code, "UNKNOWN_TOPIC");
    assert.equal(await endOffset(client, "raw"), before);
  });

  it("subscribe: a refused partition reports its error and the others still stream on the same credit", { timeout: 10_000 }, async () => {
    await produceOnce(client, { correlationId: 20, topic: "raw", partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: "streamed" }]) });
    const stream = client.subscribe();
    const seen: { partition: number; code?: string; bytes: number }[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on("data", (response: { partitions: { partition: number; error?: { code: string }; records: Buffer }[] }) => {
        for (const p of response.partitions) seen.push({ partition: p.partition, code: p.error?.code, bytes: p.records.length });
        if (seen.some((s) => s.partition === 0 && s.bytes > 0) && seen.some((s) => s.partition === 7)) resolve();
      });
      stream.on("error", reject);
    });
    stream.write({ header, topic: "raw", partitions: [{ partition: 7, offset: 0, maxBytes: 0 }, { partition: 0, offset: 0, maxBytes: 0 }], creditBytes: 1 << 20, unsubscribe: [] });
    await done;
    stream.cancel();
    assert.equal(seen.find((s) => s.partition === 7)?.code, "UNKNOWN_PARTITION");
    assert.ok(seen.some((s) => s.partition === 0 && s.bytes > 0));
  });

  it("refuses to create partitions of a topic it already has, leaving its configuration alone", async () => {
    const describe = (): Promise<number> =>
      new Promise((resolve, reject) =>
        client.describePartitions({ header, topic: "raw" }, (err, res) => (err ? reject(err) : resolve(res.partitions[0]?.config?.retentionMs ?? -1))),
      );
    const before = await describe();
    const err = await new Promise<unknown>((resolve) =>
      client.createPartitions(
        { header, topic: "raw", partitions: [0, 1], partitionCount: 2, config: { retentionMs: 1, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } },
        (e) => resolve(e),
      ),
    );
    assert.equal(fromServiceError(err).code, "TOPIC_ALREADY_EXISTS");
    assert.equal(await describe(), before, "a name server that has not relearned the topic cannot reconfigure it");
  });

  it("refuses a protocol version it does not speak", async () => {
    const err = await new Promise<unknown>((resolve) =>
      client.listOffsets({ header: { clientId: "future", protocolVersion: 99 }, topic: "raw", partitions: [] }, (e) => resolve(e)),
    );
    assert.equal(fromServiceError(err).code, "UNSUPPORTED_VERSION");
  });

  it("answers a fetch below the log start or past the end with OFFSET_OUT_OF_RANGE", async () => {
    const end = await endOffset(client, "raw");
    const data = await new Promise<{ code?: string; message?: string }>((resolve, reject) =>
      client.fetch({ header, topic: "raw", partitions: [{ partition: 0, offset: end + 100, maxBytes: 1024 }], maxWaitMs: 0, minBytes: 0, maxBytes: 1024 }, (err, res) =>
        err ? reject(err) : resolve({ code: res.partitions[0]?.error?.code, message: res.partitions[0]?.error?.message }),
      ),
    );
    assert.equal(data.code, "OFFSET_OUT_OF_RANGE");
    assert.match(data.message ?? "", /valid offsets are 0\.\./);
  });

  it("long-poll fetch waits for new data and answers as soon as it is appended", async () => {
    const end = await endOffset(client, "raw");
    const started = Date.now();
    const pending = new Promise<number>((resolve, reject) =>
      client.fetch({ header, topic: "raw", partitions: [{ partition: 0, offset: end, maxBytes: 1 << 20 }], maxWaitMs: 5000, minBytes: 1, maxBytes: 1 << 20 }, (err, res) =>
        err ? reject(err) : resolve(res.partitions[0]?.records.length ?? 0),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    await produceOnce(client, { correlationId: 12, topic: "raw", partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: "wake" }]) });
    assert.ok((await pending) > 0);
    assert.ok(Date.now() - started < 4000, "answered on append, not at the deadline");
  });
});

describe("broker protocol: shutdown with batches held by flow control", () => {
  it("answers held batches SHUTTING_DOWN at once on SIGTERM, appends none of them, and exits without waiting out their holds", async () => {
    const cluster = await startDev();
    const client = new BrokerClient(cluster.broker, credentials.createInsecure());
    try {
      const sluice = new Sluice({ nameservers: [cluster.nameserver] });
      await sluice.admin().createTopic("held", { partitions: 1 });
      await sluice.admin().setFlowRule({ scope: "topic:held", limiter: "leaky-bucket", messagesPerSecond: 1, maxQueueMs: 5000 });
      await sluice.close();
      const stream: ClientDuplexStream<ProduceRequest, ProduceResponse> = client.produce();
      stream.on("error", () => undefined);
      const answered: ProduceResponse[] = [];
      stream.on("data", (response: ProduceResponse) => answered.push(response));
      // The first passes at once; the next two would be held 1 s and 2 s.
      for (let i = 1; i <= 3; i++) {
        stream.write({ header: i === 1 ? header : undefined, correlationId: i, topic: "held", partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: `h${i}` }]) });
      }
      const deadline = Date.now() + 2_000;
      while (answered.length < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const stopping = Date.now();
      await cluster.process.stop("SIGTERM");
      const stopMs = Date.now() - stopping;
      assert.deepEqual(answered.map((r) => [r.correlationId, r.error?.code ?? "ok"]), [[1, "ok"], [2, "SHUTTING_DOWN"], [3, "SHUTTING_DOWN"]]);
      assert.ok(stopMs < 1_500, `shutdown took ${stopMs} ms: it waited out the holds`);
      const again = await startDev({ dataDir: cluster.dataDir });
      const reader = new BrokerClient(again.broker, credentials.createInsecure());
      try {
        assert.equal(await endOffset(reader, "held"), 1, "only the batch that passed was appended");
      } finally {
        reader.close();
        await again.process.stop();
      }
    } finally {
      client.close();
      await cluster.process.stop();
    }
  });
});

describe("broker protocol: the broker-wide budget of held batches", () => {
  it("refuses with THROTTLED naming maxHeldProduceBytes a batch that would be held past the budget, appending nothing of it", async () => {
    const dir = tempDir("sluice-held-budget-");
    const config = join(dir, "sluice.yaml");
    writeFileSync(config, JSON.stringify({ maxHeldProduceBytes: 4096, flow: [{ scope: "topic:budget", limiter: "leaky-bucket", messagesPerSecond: 1, maxQueueMs: 5000 }] }));
    const cluster = await startDev({ extra: ["--config", config] });
    const client = new BrokerClient(cluster.broker, credentials.createInsecure());
    try {
      const sluice = new Sluice({ nameservers: [cluster.nameserver] });
      await sluice.admin().createTopic("budget", { partitions: 2 });
      await sluice.close();
      const stream: ClientDuplexStream<ProduceRequest, ProduceResponse> = client.produce();
      stream.on("error", () => undefined);
      const answered: ProduceResponse[] = [];
      stream.on("data", (response: ProduceResponse) => answered.push(response));
      const value = "x".repeat(3000);
      // 1 passes at once; 2 is held (the budget's first batch always fits); 3 would pass 4096 bytes held.
      for (let i = 1; i <= 3; i++) {
        stream.write({ header: i === 1 ? header : undefined, correlationId: i, topic: "budget", partition: i === 1 ? 0 : 1, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value }]) });
      }
      const deadline = Date.now() + 5_000;
      while (answered.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      const refused = answered.find((r) => r.correlationId === 3);
      assert.equal(refused?.error?.code, "THROTTLED");
      assert.match(refused?.error?.message ?? "", /maxHeldProduceBytes 4096/);
      assert.equal(answered.find((r) => r.correlationId === 1)?.error, undefined);
      assert.equal(answered.find((r) => r.correlationId === 2), undefined, "batch 2 is still held");
      stream.cancel();
      assert.equal(await endOffset(client, "budget"), 1, "partition 0 has the batch that passed");
    } finally {
      client.close();
      await cluster.process.stop();
    }
  });
});
