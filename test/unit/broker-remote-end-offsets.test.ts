/**
 * RemoteEndOffsets, the coordinator's view of partitions other broker groups host: what it
 * caches and for how long, how long a scrape may wait for it, what survives a failure; and its
 * gRPC transport against in-process name server and broker services.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Writable } from "node:stream";
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import { pino } from "pino";
import { FakeClock } from "../../common/src/clock.js";
import { UnknownTopicError } from "../../common/src/errors.js";
import { toWireError, unary } from "../../common/src/grpc/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../common/src/protocol.js";
import { BrokerService, OffsetSpec, type ListOffsetsRequest, type ListOffsetsResponse } from "../../proto/gen/sluice/v1/broker.js";
import { NameServerService, type GetRoutesRequest, type GetRoutesResponse } from "../../proto/gen/sluice/v1/nameserver.js";
import {
  GrpcRemoteOffsetsTransport,
  RemoteEndOffsets,
  remoteKey,
  type RemoteOffsetsTransport,
  type RemotePartitionEnd,
} from "../../broker/src/groups/remote-end-offsets.js";

const TOPIC = "orders";
const TTL_MS = 5_000;
const MAX_STALE_MS = 30_000;

/** A cluster in memory: partition → master address, address → partition ends; every call counted. */
class FakeTransport implements RemoteOffsetsTransport {
  masterOf = new Map<number, string>([
    [0, "m1:1"],
    [1, "m2:1"],
  ]);
  ends = new Map<string, Map<number, RemotePartitionEnd>>([
    ["m1:1", new Map([[0, { logStartOffset: 0, highWatermark: 10 }]])],
    ["m2:1", new Map([[1, { logStartOffset: 5, highWatermark: 25 }]])],
  ]);
  /** Makes the next endOffsets calls wait for this (a slow master). */
  hold: Promise<void> | undefined;
  failing = new Set<string>();
  routeCalls = 0;
  endCalls: string[] = [];
  closed = false;

  async masters(topic: string): Promise<Map<number, string>> {
    this.routeCalls++;
    if (this.failing.has("nameserver")) throw new Error("name server unreachable");
    if (topic !== TOPIC) throw new UnknownTopicError(topic);
    return new Map(this.masterOf);
  }

  async endOffsets(address: string, _topic: string, partitions: readonly number[]): Promise<Map<number, RemotePartitionEnd>> {
    this.endCalls.push(`${address}:${[...partitions].join(",")}`);
    if (this.hold !== undefined) await this.hold;
    if (this.failing.has(address)) throw new Error(`${address} unreachable`);
    const out = new Map<number, RemotePartitionEnd>();
    for (const p of partitions) {
      const end = this.ends.get(address)?.get(p);
      if (end !== undefined) out.set(p, { ...end });
    }
    return out;
  }

  close(): void {
    this.closed = true;
  }
}

function setup(options: { refreshTimeoutMs?: number; logger?: pino.Logger } = {}) {
  const transport = new FakeTransport();
  const clock = new FakeClock(1_000_000);
  const remote = new RemoteEndOffsets({
    transport,
    clock,
    logger: options.logger ?? silentLogger,
    cacheTtlMs: TTL_MS,
    maxStaleMs: MAX_STALE_MS,
    refreshTimeoutMs: options.refreshTimeoutMs ?? 200,
  });
  return { transport, clock, remote };
}

const BOTH = [
  { topic: TOPIC, partition: 0 },
  { topic: TOPIC, partition: 1 },
];

function highWatermarks(answer: Map<string, RemotePartitionEnd>): Record<string, number> {
  return Object.fromEntries([...answer].map(([key, end]) => [key.replace("\u0000", "/"), end.highWatermark]));
}

describe("RemoteEndOffsets cache", () => {
  it("asks each partition's master once per address and serves the answer until it is cacheTtlMs old", async () => {
    const { transport, clock, remote } = setup();
    const first = await remote.lookup(BOTH);
    assert.deepEqual(first.get(remoteKey(TOPIC, 1)), { logStartOffset: 5, highWatermark: 25 });
    assert.deepEqual(highWatermarks(first), { "orders/0": 10, "orders/1": 25 });
    assert.equal(transport.routeCalls, 1);
    assert.deepEqual(transport.endCalls.sort(), ["m1:1:0", "m2:1:1"]);

    transport.ends.get("m1:1")!.set(0, { logStartOffset: 0, highWatermark: 99 });
    clock.advance(TTL_MS - 1);
    assert.deepEqual(highWatermarks(await remote.lookup(BOTH)), { "orders/0": 10, "orders/1": 25 }, "cached within the TTL");
    assert.equal(transport.routeCalls, 1);

    clock.advance(1);
    assert.deepEqual(highWatermarks(await remote.lookup(BOTH)), { "orders/0": 99, "orders/1": 25 }, "asked again at the TTL");
    assert.equal(transport.routeCalls, 2);
    assert.equal(transport.endCalls.length, 4);
  });

  it("a scrape waits at most refreshTimeoutMs; the late answer fills the cache for the next scrape", async () => {
    const { transport, remote } = setup({ refreshTimeoutMs: 100 });
    let release!: () => void;
    transport.hold = new Promise((resolve) => (release = resolve));
    const startedMs = performance.now();
    const answer = await remote.lookup(BOTH);
    const waitedMs = performance.now() - startedMs;
    assert.equal(answer.size, 0, "nothing known yet: left out");
    assert.ok(waitedMs >= 90 && waitedMs < 1_000, `waited ${waitedMs} ms`);

    release();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(highWatermarks(await remote.lookup(BOTH)), { "orders/0": 10, "orders/1": 25 });
    assert.equal(transport.routeCalls, 1, "served from the late answer, not asked again");
  });

  it("concurrent scrapes share one refresh", async () => {
    const { transport, remote } = setup();
    const [a, b] = await Promise.all([remote.lookup(BOTH), remote.lookup(BOTH)]);
    assert.equal(a.size, 2);
    assert.equal(b.size, 2);
    assert.equal(transport.routeCalls, 1);
    assert.equal(transport.endCalls.length, 2);
  });

  it("after a failed refresh the last answer is served until maxStaleMs, retried once per TTL, then left out", async () => {
    const { transport, clock, remote } = setup();
    await remote.lookup(BOTH);
    transport.failing.add("m1:1");

    clock.advance(TTL_MS);
    assert.deepEqual(highWatermarks(await remote.lookup(BOTH)), { "orders/0": 10, "orders/1": 25 }, "stale but within maxStaleMs");
    assert.equal(transport.endCalls.length, 4);
    await remote.lookup(BOTH);
    assert.equal(transport.endCalls.length, 4, "a failure is not retried before the TTL");

    clock.advance(MAX_STALE_MS - TTL_MS + 1);
    assert.deepEqual(highWatermarks(await remote.lookup(BOTH)), { "orders/1": 25 }, "too old: partition 0 is left out, partition 1 was refreshed");

    transport.failing.delete("m1:1");
    clock.advance(TTL_MS);
    assert.deepEqual(highWatermarks(await remote.lookup(BOTH)), { "orders/0": 10, "orders/1": 25 }, "back once its master answers");
  });

  it("leaves out partitions whose master is unreachable or missing, keeps the others, and logs at debug", async () => {
    const lines: string[] = [];
    const logger = pino(
      { level: "debug" },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    );
    const { transport, remote } = setup({ logger });
    transport.failing.add("m2:1");
    transport.masterOf.delete(0);
    assert.deepEqual(highWatermarks(await remote.lookup(BOTH)), {});
    transport.masterOf.set(0, "m1:1");
    transport.failing.delete("m2:1");

    const other = await remote.lookup([{ topic: "gone", partition: 0 }]);
    assert.equal(other.size, 0, "a deleted topic is left out");
    const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string; topic: string });
    assert.ok(logged.length >= 3, lines.join(""));
    assert.ok(logged.every((l) => l.level === 20), "debug only");
    assert.ok(logged.some((l) => l.topic === "gone"));
    assert.ok(logged.some((l) => /m2:1 unreachable/.test(JSON.stringify(l))));
  });

  it("asks at once for a partition newly wanted while the topic's answer is fresh", async () => {
    const { transport, remote } = setup();
    await remote.lookup([{ topic: TOPIC, partition: 0 }]);
    assert.equal(transport.routeCalls, 1);
    const both = await remote.lookup(BOTH);
    assert.equal(transport.routeCalls, 2);
    assert.deepEqual(highWatermarks(both), { "orders/0": 10, "orders/1": 25 });
  });

  it("close() closes the transport; later lookups answer nothing and ask nobody", async () => {
    const { transport, remote } = setup();
    remote.close();
    assert.equal(transport.closed, true);
    assert.equal((await remote.lookup(BOTH)).size, 0);
    assert.equal(transport.routeCalls, 0);
  });
});

describe("GrpcRemoteOffsetsTransport (in-process gRPC services)", () => {
  const server = new Server();
  let address = "";
  const listOffsetsRequests: ListOffsetsRequest[] = [];
  const header = { clientId: "remote-ends-test", protocolVersion: PROTOCOL_VERSION };

  before(async () => {
    server.addService(NameServerService, {
      getRoutes: unary(async (request: GetRoutesRequest): Promise<GetRoutesResponse> => {
        if (request.topics[0] !== TOPIC) throw new UnknownTopicError(request.topics[0] ?? "");
        const master = { group: "b2", brokerId: 0, address, httpAddress: "" };
        return {
          routes: [
            {
              topic: TOPIC,
              partitions: [
                { partition: 0, group: "b2", master, slaves: [], epoch: 1 },
                { partition: 1, group: "b3", slaves: [], epoch: 1 },
              ],
            },
          ],
        };
      }),
    });
    server.addService(BrokerService, {
      listOffsets: (call: ServerUnaryCall<ListOffsetsRequest, ListOffsetsResponse>, done: sendUnaryData<ListOffsetsResponse>) => {
        listOffsetsRequests.push(call.request);
        done(null, {
          topic: call.request.topic,
          partitions: call.request.partitions.map((p) =>
            p.partition === 7
              ? { partition: 7, offset: -1, timestampMs: -1, error: toWireError(new UnknownTopicError(TOPIC)) }
              : { partition: p.partition, offset: p.spec === OffsetSpec.OFFSET_SPEC_EARLIEST ? 3 : 40 + p.partition, timestampMs: -1 },
          ),
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    address = `127.0.0.1:${port}`;
  });
  after(() => server.forceShutdown());

  it("takes routes from whichever name server answers, and both ends from one ListOffsets per master", async () => {
    // Port 1 refuses connections: the live name server still answers within the deadline.
    const transport = new GrpcRemoteOffsetsTransport(["127.0.0.1:1", address], header);
    try {
      const masters = await transport.masters(TOPIC, Date.now() + 2_000);
      assert.deepEqual([...masters], [[0, address]], "a partition without a live master is absent");
      await assert.rejects(transport.masters("gone", Date.now() + 2_000), { code: "UNKNOWN_TOPIC" });

      const ends = await transport.endOffsets(address, TOPIC, [0, 2, 7], Date.now() + 2_000);
      assert.deepEqual(
        [...ends],
        [
          [0, { logStartOffset: 3, highWatermark: 40 }],
          [2, { logStartOffset: 3, highWatermark: 42 }],
        ],
        "a refused partition is absent, the others answered",
      );
      assert.deepEqual(
        listOffsetsRequests.at(-1)!.partitions.map((p) => `${p.partition}:${p.spec}`),
        ["0:1", "0:0", "2:1", "2:0", "7:1", "7:0"],
      );
      await assert.rejects(transport.endOffsets(address, TOPIC, [7], Date.now() + 2_000), { code: "UNKNOWN_TOPIC" }, "all refused: a failure");
    } finally {
      transport.close();
    }
    await assert.rejects(transport.endOffsets(address, TOPIC, [0], Date.now() + 2_000), { code: "CLOSED" });
  });

  it("a master that does not answer fails the call at the deadline", async () => {
    const transport = new GrpcRemoteOffsetsTransport([address], header);
    try {
      const startedMs = Date.now();
      // 10.255.255.1 is not routed: connecting hangs until the deadline.
      await assert.rejects(transport.endOffsets("10.255.255.1:10911", TOPIC, [0], Date.now() + 300));
      assert.ok(Date.now() - startedMs < 2_000);
    } finally {
      transport.close();
    }
  });
});
