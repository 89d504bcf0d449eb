/**
 * Push delivery over WebSocket (`ws://<broker-http>/ws/consume`) against a real `sluice dev`:
 * message credit is never exceeded, queue settles are answered once durable, tail readers
 * follow live appends, a slow consumer does not hold up a fast one, and bad frames get an
 * error frame and a 1008 close while the broker keeps serving.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { credentials } from "@grpc/grpc-js";
import { WebSocket } from "ws";
import { Sluice } from "../../clients/src/index.js";
import { NameServerClient } from "../../proto/gen/sluice/v1/nameserver.js";
import { startDev, type Cluster } from "../helpers/processes.js";

interface MessageFrame {
  type: "message";
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
  deliveryCount?: number;
  leaseId?: number;
}

type Frame = { type: string; [field: string]: unknown };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const text = (base64: string | null): string | null => (base64 === null ? null : Buffer.from(base64, "base64").toString());

/** A `ws` client that records every frame and can wait for the ones a test expects. */
class ConsumeSocket {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      for (const wake of this.waiters) wake();
    });
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static async connect(http: string): Promise<ConsumeSocket> {
    const ws = new WebSocket(`ws://${http}/ws/consume`);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return new ConsumeSocket(ws);
  }

  /** Connects and opens; resolves once the broker answered `opened`. */
  static async open(http: string, open: Record<string, unknown>): Promise<ConsumeSocket> {
    const socket = await ConsumeSocket.connect(http);
    socket.send({ op: "open", ...open });
    const answer = await socket.waitFor((f) => f.type === "opened" || f.type === "error");
    assert.equal(answer.type, "opened", `open refused: ${JSON.stringify(answer)}`);
    return socket;
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  get messages(): MessageFrame[] {
    return this.frames.filter((f): f is Frame & MessageFrame => f.type === "message");
  }

  /** The first frame (already received or coming) that matches. */
  waitFor(match: (frame: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    return this.until(() => this.frames.find(match), timeoutMs, "a matching frame");
  }

  /** Resolves once `count` messages have arrived. */
  async waitForMessages(count: number, timeoutMs = 10_000): Promise<MessageFrame[]> {
    await this.until(() => (this.messages.length >= count ? true : undefined), timeoutMs, `${count} messages (have ${this.messages.length})`);
    return this.messages;
  }

  close(): void {
    this.ws.close();
  }

  private until<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        const found = check();
        if (found === undefined) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last frames: ${JSON.stringify(this.frames.slice(-3))}`));
      }, timeoutMs);
      this.waiters.add(wake);
      wake();
    });
  }
}

describe("WebSocket consume endpoint", () => {
  let cluster: Cluster;
  let sluice: Sluice;
  const sockets: ConsumeSocket[] = [];
  const track = (socket: ConsumeSocket): ConsumeSocket => {
    sockets.push(socket);
    return socket;
  };

  const produce = async (topic: string, count: number, from = 0, partition?: number): Promise<void> => {
    const producer = sluice.producer({ lingerMs: 0 });
    await producer.send(
      topic,
      Array.from({ length: count }, (_, i) => ({
        key: `k${from + i}`,
        value: `m${from + i}`,
        headers: { seq: String(from + i) },
        ...(partition === undefined ? {} : { partition }),
      })),
    );
  };

  const settleAll = async (socket: ConsumeSocket, messages: MessageFrame[], firstId: number): Promise<void> => {
    messages.forEach((m, i) => socket.send({ op: "ack", partition: m.partition, offset: m.offset, leaseId: m.leaseId, id: firstId + i }));
    for (let i = 0; i < messages.length; i++) {
      const settled = await socket.waitFor((f) => f.type === "settled" && f.id === firstId + i);
      assert.deepEqual(settled.errors, [], `ack ${firstId + i} accepted`);
    }
  };

  before(async () => {
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "websocket-test" });
  });
  after(async () => {
    for (const socket of sockets) socket.ws.terminate();
    await sluice?.close();
    await cluster?.process.stop();
  });

  it("queue mode: never more messages than credit; acks are answered; a second consumer gets the rest, none twice", async () => {
    await sluice.admin().createTopic("jobs", { partitions: 2 });
    await produce("jobs", 50);
    const first = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "workers", topic: "jobs", fromBeginning: true }));
    first.send({ op: "credit", messages: 10 });
    await first.waitForMessages(10);
    await sleep(300);
    assert.equal(first.messages.length, 10, "exactly the credit granted, no more");
    for (const m of first.messages) {
      assert.equal(m.deliveryCount, 1);
      assert.equal(typeof m.leaseId, "number");
      assert.equal(text(m.value), `m${text(m.key)!.slice(1)}`);
      assert.equal(text(m.headers.seq ?? null), text(m.key)!.slice(1));
    }
    await settleAll(first, first.messages, 1);

    const second = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "workers", topic: "jobs" }));
    second.send({ op: "credit", messages: 100 });
    const rest = await second.waitForMessages(40);
    await settleAll(second, rest, 1);

    const all = [...first.messages, ...second.messages].map((m) => `${m.partition}:${m.offset}`);
    assert.equal(all.length, 50);
    assert.equal(new Set(all).size, 50, "no message delivered twice");
    assert.deepEqual(new Set([...first.messages, ...second.messages].map((m) => text(m.value))).size, 50);

    // Everything is acked: more credit brings nothing.
    first.send({ op: "credit", messages: 10 });
    await sleep(300);
    assert.equal(first.messages.length + second.messages.length, 50);
  });

  it("queue mode: a nack with a delay redelivers with deliveryCount 2; a stale lease is refused", async () => {
    await sluice.admin().createTopic("retries", { partitions: 1 });
    await produce("retries", 1);
    const socket = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "retry-group", topic: "retries", fromBeginning: true }));
    socket.send({ op: "credit", messages: 5 });
    const [delivered] = await socket.waitForMessages(1);
    assert.equal(delivered!.deliveryCount, 1);
    const nackedAt = Date.now();
    socket.send({ op: "nack", partition: 0, offset: delivered!.offset, leaseId: delivered!.leaseId, delayMs: 400, error: "try later", id: 7 });
    assert.deepEqual((await socket.waitFor((f) => f.type === "settled" && f.id === 7)).errors, []);
    const again = (await socket.waitForMessages(2))[1]!;
    assert.ok(Date.now() - nackedAt >= 350, "redelivered after the delay");
    assert.equal(again.offset, delivered!.offset);
    assert.equal(again.deliveryCount, 2);
    assert.notEqual(again.leaseId, delivered!.leaseId);

    socket.send({ op: "ack", partition: 0, offset: delivered!.offset, leaseId: delivered!.leaseId, id: 8 });
    const stale = await socket.waitFor((f) => f.type === "settled" && f.id === 8);
    assert.deepEqual((stale.errors as Array<{ code: string }>).map((e) => e.code), ["UNKNOWN_LEASE"]);
    socket.send({ op: "extend", partition: 0, offset: again.offset, leaseId: again.leaseId, extendMs: 60_000, id: 9 });
    socket.send({ op: "ack", partition: 0, offset: again.offset, leaseId: again.leaseId, id: 10 });
    assert.deepEqual((await socket.waitFor((f) => f.type === "settled" && f.id === 9)).errors, []);
    assert.deepEqual((await socket.waitFor((f) => f.type === "settled" && f.id === 10)).errors, []);
  });

  it("queue mode: consumers opening a fresh group at the same moment never get the same message", async () => {
    await sluice.admin().createTopic("racing", { partitions: 2 });
    await produce("racing", 200);
    // Create the group's internal topics first, as an SDK consumer's FindCoordinator does, so
    // the opens below reach the broker's queue groups together rather than one by one.
    const nameserver = new NameServerClient(cluster.nameserver, credentials.createInsecure());
    await new Promise((resolve, reject) =>
      nameserver.findCoordinator({ group: "racers", queue: true }, (err, answer) => (err ? reject(err) : resolve(answer))),
    );
    nameserver.close();
    const racers = await Promise.all([0, 1, 2, 3, 4].map(async () => track(await ConsumeSocket.connect(cluster.http))));
    for (const socket of racers) socket.send({ op: "open", mode: "queue", group: "racers", topic: "racing", fromBeginning: true });
    for (const socket of racers) socket.send({ op: "credit", messages: 1000 });
    const deadline = Date.now() + 5000;
    const delivered = (): MessageFrame[] => racers.flatMap((socket) => socket.messages);
    while (delivered().length < 200 && Date.now() < deadline) await sleep(20);
    await sleep(300);
    const offsets = delivered().map((m) => `${m.partition}:${m.offset}`);
    assert.equal(new Set(offsets).size, 200, "every message delivered");
    assert.equal(offsets.length, 200, "and each to one consumer only");
  });

  it("tail mode: receives live appends with keys, values and headers", async () => {
    await sluice.admin().createTopic("orders", { partitions: 2 });
    await produce("orders", 5);
    const socket = track(await ConsumeSocket.open(cluster.http, { mode: "tail", topic: "orders" }));
    const opened = socket.frames[0]!;
    assert.equal((opened.partitions as unknown[]).length, 2);
    socket.send({ op: "credit", messages: 100 });
    await sleep(200);
    assert.equal(socket.messages.length, 0, "from latest: nothing older");
    await produce("orders", 20, 5);
    const messages = await socket.waitForMessages(20);
    assert.deepEqual(messages.map((m) => text(m.value)).sort(), Array.from({ length: 20 }, (_, i) => `m${5 + i}`).sort());
    for (const m of messages) {
      assert.equal(m.topic, "orders");
      assert.equal(text(m.key), `k${text(m.value)!.slice(1)}`);
      assert.equal(text(m.headers.seq ?? null), text(m.value)!.slice(1));
      assert.equal(m.leaseId, undefined);
    }

    const earliest = track(await ConsumeSocket.open(cluster.http, { mode: "tail", topic: "orders", partitions: [0, 1], from: "earliest" }));
    earliest.send({ op: "credit", messages: 7 });
    await earliest.waitForMessages(7);
    await sleep(200);
    assert.equal(earliest.messages.length, 7, "credit caps a tail reader too");
    earliest.send({ op: "credit", messages: 100 });
    assert.equal((await earliest.waitForMessages(25)).length, 25);
  });

  it("a slow consumer (credit 1, never more) does not slow a fast one on the same topic", async () => {
    await sluice.admin().createTopic("firehose", { partitions: 1 });
    const slowTail = track(await ConsumeSocket.open(cluster.http, { mode: "tail", topic: "firehose" }));
    const fastTail = track(await ConsumeSocket.open(cluster.http, { mode: "tail", topic: "firehose" }));
    const slowQueue = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "fire-workers", topic: "firehose" }));
    const fastQueue = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "fire-workers", topic: "firehose" }));
    slowTail.send({ op: "credit", messages: 1 });
    slowQueue.send({ op: "credit", messages: 1 });
    fastTail.send({ op: "credit", messages: 1000 });
    fastQueue.send({ op: "credit", messages: 1000 });
    await sleep(100);
    const started = Date.now();
    await produce("firehose", 500);
    await fastTail.waitForMessages(500, 10_000);
    await fastQueue.waitForMessages(499, 10_000);
    const elapsedMs = Date.now() - started;
    await sleep(200);
    assert.equal(slowTail.messages.length, 1);
    // Whichever session leads the first lease round, the slow one holds at most its one credit.
    assert.ok(slowQueue.messages.length <= 1, `the slow queue consumer got ${slowQueue.messages.length}`);
    assert.equal(fastTail.messages.length, 500);
    assert.equal(fastQueue.messages.length + slowQueue.messages.length, 500);
    assert.deepEqual(fastTail.messages.map((m) => m.offset), Array.from({ length: 500 }, (_, i) => i), "in order, none skipped");
    assert.ok(elapsedMs < 10_000, `fast consumers done in ${elapsedMs} ms`);
  });

  it("a consumer that stops reading is not flooded: the broker stops sending to it and the group goes on", async () => {
    await sluice.admin().createTopic("bulky", { partitions: 1 });
    const staller = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "bulk-workers", topic: "bulky" }));
    const reader = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "bulk-workers", topic: "bulky" }));
    // The staller asks for everything, then stops reading its socket.
    (staller.ws as unknown as { _socket: Socket })._socket.pause();
    staller.send({ op: "credit", messages: 100_000 });
    reader.send({ op: "credit", messages: 100_000 });
    await sleep(100);
    const total = 400;
    const big = "x".repeat(64 * 1024);
    const producer = sluice.producer({ lingerMs: 0 });
    for (let i = 0; i < total; i += 20) {
      await producer.send("bulky", Array.from({ length: 20 }, (_, j) => ({ key: `k${i + j}`, value: big })));
    }
    // What the staller took is bounded by socket buffers (kernel + the broker's 1 MiB), not by its credit.
    const deadline = Date.now() + 20_000;
    let last = -1;
    while (Date.now() < deadline) {
      await sleep(300);
      if (reader.messages.length === last) break;
      last = reader.messages.length;
    }
    (staller.ws as unknown as { _socket: Socket })._socket.resume();
    await sleep(500);
    assert.equal(staller.messages.length + reader.messages.length, total);
    assert.ok(staller.messages.length < total / 3, `the stalled consumer was sent ${staller.messages.length} of ${total}`);
  });

  it("bad frames get an error frame and a 1008 close; the broker keeps serving", async () => {
    const cases: Array<{ name: string; send: (ws: WebSocket) => void; code: string }> = [
      { name: "not JSON", send: (ws) => ws.send("{nope"), code: "INVALID_ARGUMENT" },
      { name: "JSON that is not an object", send: (ws) => ws.send("[1,2]"), code: "INVALID_ARGUMENT" },
      { name: "unknown op", send: (ws) => ws.send(JSON.stringify({ op: "subscribe" })), code: "INVALID_ARGUMENT" },
      { name: "credit before open", send: (ws) => ws.send(JSON.stringify({ op: "credit", messages: 5 })), code: "INVALID_ARGUMENT" },
      { name: "open without topic", send: (ws) => ws.send(JSON.stringify({ op: "open", mode: "tail" })), code: "INVALID_ARGUMENT" },
      { name: "queue open without group", send: (ws) => ws.send(JSON.stringify({ op: "open", mode: "queue", topic: "jobs" })), code: "INVALID_ARGUMENT" },
      { name: "unknown mode", send: (ws) => ws.send(JSON.stringify({ op: "open", mode: "broadcast", topic: "jobs" })), code: "INVALID_ARGUMENT" },
      { name: "frame over 64 KiB", send: (ws) => ws.send(JSON.stringify({ op: "open", mode: "tail", topic: "x".repeat(70_000) })), code: "INVALID_ARGUMENT" },
      { name: "binary frame", send: (ws) => ws.send(Buffer.from('{"op":"open"}')), code: "INVALID_ARGUMENT" },
      { name: "tail of an unknown topic", send: (ws) => ws.send(JSON.stringify({ op: "open", mode: "tail", topic: "nowhere" })), code: "UNKNOWN_TOPIC" },
      {
        name: "tail from an offset past the end",
        send: (ws) => ws.send(JSON.stringify({ op: "open", mode: "tail", topic: "jobs", from: { "0": 1_000_000 } })),
        code: "OFFSET_OUT_OF_RANGE",
      },
      {
        name: "queue of an internal topic",
        send: (ws) => ws.send(JSON.stringify({ op: "open", mode: "queue", group: "g", topic: "%groups" })),
        code: "INVALID_ARGUMENT",
      },
      {
        name: "second open",
        send: (ws) => {
          ws.send(JSON.stringify({ op: "open", mode: "tail", topic: "jobs" }));
          ws.send(JSON.stringify({ op: "open", mode: "tail", topic: "jobs" }));
        },
        code: "INVALID_ARGUMENT",
      },
      {
        name: "negative credit",
        send: (ws) => {
          ws.send(JSON.stringify({ op: "open", mode: "tail", topic: "jobs" }));
          ws.send(JSON.stringify({ op: "credit", messages: -5 }));
        },
        code: "INVALID_ARGUMENT",
      },
      {
        name: "ack in tail mode",
        send: (ws) => {
          ws.send(JSON.stringify({ op: "open", mode: "tail", topic: "jobs" }));
          ws.send(JSON.stringify({ op: "ack", partition: 0, offset: 0, leaseId: 1 }));
        },
        code: "INVALID_ARGUMENT",
      },
    ];
    for (const c of cases) {
      const socket = track(await ConsumeSocket.connect(cluster.http));
      c.send(socket.ws);
      const error = await socket.waitFor((f) => f.type === "error");
      assert.equal(error.code, c.code, `${c.name}: ${String(error.message)}`);
      assert.equal(typeof error.message, "string");
      assert.equal(typeof error.retriable, "boolean");
      const closed = await socket.closed;
      assert.equal(closed.code, 1008, `${c.name} closes with 1008`);
    }
    const health = await fetch(`http://${cluster.http}/healthz`);
    assert.equal(health.status, 200);
    const elsewhere = new WebSocket(`ws://${cluster.http}/ws/elsewhere`);
    const refused = await new Promise<Error>((resolve) => elsewhere.once("error", resolve));
    assert.match(refused.message, /404/, "another path is not upgraded");
    const still = track(await ConsumeSocket.open(cluster.http, { mode: "tail", topic: "jobs", from: "earliest" }));
    still.send({ op: "credit", messages: 3 });
    assert.equal((await still.waitForMessages(3)).length, 3, "a new consumer is served");
  });

  it("broker shutdown closes open sockets with SHUTTING_DOWN and 1001, and the process exits promptly", async () => {
    const queue = track(await ConsumeSocket.open(cluster.http, { mode: "queue", group: "workers", topic: "jobs" }));
    const tail = track(await ConsumeSocket.open(cluster.http, { mode: "tail", topic: "jobs" }));
    const started = Date.now();
    const exitCode = await cluster.process.stop("SIGTERM");
    assert.equal(exitCode, 0);
    assert.ok(Date.now() - started < 10_000, `stopped in ${Date.now() - started} ms`);
    for (const socket of [queue, tail]) {
      const error = await socket.waitFor((f) => f.type === "error", 1000);
      assert.equal(error.code, "SHUTTING_DOWN");
      assert.equal(error.retriable, true);
      assert.equal((await socket.closed).code, 1001);
    }
  });
});
