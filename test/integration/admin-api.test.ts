/**
 * The admin REST API on the HTTP port of a real `sluice dev`: every route's answer matches
 * what the CLI's --json prints for the same thing, bad input gets 400 naming the field,
 * unknown routes, topics and groups get 404, and /docs/json lists the routes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { runCli, startDev, type Cluster } from "../helpers/processes.js";

interface ApiAnswer<T> {
  status: number;
  body: T;
}

interface ErrorBody {
  code: string;
  message: string;
  retriable: boolean;
  field?: string;
}

interface PartitionDetails {
  partition: number;
  startOffset: number;
  endOffset: number;
  sizeBytes: number;
}

interface TopicDescription {
  topic: string;
  internal: boolean;
  config: Record<string, number>;
  partitions: PartitionDetails[];
}

interface GroupDescription {
  group: string;
  partitions: { topic: string; partition: number; lag: number; lagMs: number }[];
  [key: string]: unknown;
}

const MESSAGES = 30;
const CONSUMED = 11;

describe("admin REST API", () => {
  let cluster: Cluster;
  let sluice: Sluice;
  const cli = (...args: string[]) => runCli(args, { nameserver: cluster.nameserver });
  const cliJson = async <T>(...args: string[]): Promise<T> => {
    const result = await cli("--json", ...args);
    assert.equal(result.code, 0, `sluice ${args.join(" ")}: ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  };
  const api = async <T>(method: string, path: string, body?: unknown): Promise<ApiAnswer<T>> => {
    const response = await fetch(`http://${cluster.http}${path}`, {
      method,
      ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as T };
  };
  const get = async <T>(path: string): Promise<T> => {
    const answer = await api<T>("GET", path);
    assert.equal(answer.status, 200, `GET ${path}: ${JSON.stringify(answer.body)}`);
    return answer.body;
  };

  before(async () => {
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "admin-api-test" });
  });

  after(async () => {
    await sluice?.close();
    await cluster?.process.stop();
  });

  it("POST /api/v1/topics creates a topic the CLI then describes; 409 the second time", async () => {
    const created = await api<{ topic: string; partitions: number; config: Record<string, number> }>("POST", "/api/v1/topics", {
      name: "orders",
      partitions: 3,
      retentionMs: 3_600_000,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.topic, "orders");
    assert.equal(created.body.partitions, 3);
    const described = await cliJson<TopicDescription>("topic", "describe", "orders");
    assert.equal(described.partitions.length, 3);
    assert.equal(described.config.retentionMs, 3_600_000);
    const again = await api<ErrorBody>("POST", "/api/v1/topics", { name: "orders" });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, "TOPIC_ALREADY_EXISTS");
  });

  it("PATCH /api/v1/topics/:topic adds partitions; fewer is refused 409 and changes nothing; a bad body is refused 400", async () => {
    assert.equal((await api("POST", "/api/v1/topics", { name: "growing", partitions: 1 })).status, 201);
    const grown = await api<{ partitions: number }>("PATCH", "/api/v1/topics/growing", { partitions: 3 });
    assert.equal(grown.status, 200, JSON.stringify(grown.body));
    assert.equal(grown.body.partitions, 3);
    assert.equal((await cliJson<TopicDescription>("topic", "describe", "growing")).partitions.length, 3);
    const shrink = await api<ErrorBody>("PATCH", "/api/v1/topics/growing", { partitions: 2 });
    assert.equal(shrink.status, 409);
    assert.equal(shrink.body.code, "INVALID_PARTITIONS");
    const bad = await api<ErrorBody & { field?: string }>("PATCH", "/api/v1/topics/growing", { partitions: "many" });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, "partitions");
    assert.equal((await cliJson<TopicDescription>("topic", "describe", "growing")).partitions.length, 3, "refusals changed nothing");
  });

  it("GET /api/v1/topics and /topics/:topic show the offsets and sizes the CLI shows", async () => {
    const lines = Array.from({ length: MESSAGES }, (_, i) => `order-${i}`).join("\n") + "\n";
    const produced = await runCli(["produce", "orders", "--key", "k"], { nameserver: cluster.nameserver, input: lines });
    assert.equal(produced.code, 0, produced.stderr);
    const fromCli = await cliJson<TopicDescription>("topic", "describe", "orders");
    const one = await get<TopicDescription>("/api/v1/topics/orders");
    assert.equal(one.internal, false);
    const { internal: _internal, ...withoutFlag } = one;
    assert.deepEqual(withoutFlag, fromCli);
    assert.equal(one.partitions.reduce((sum, p) => sum + p.endOffset - p.startOffset, 0), MESSAGES);

    const all = await get<{ topics: TopicDescription[] }>("/api/v1/topics");
    const listed = await cliJson<{ topics: { topic: string }[] }>("topic", "list");
    assert.deepEqual(all.topics.map((t) => t.topic).sort(), listed.topics.map((t) => t.topic).sort());
    const orders = all.topics.find((t) => t.topic === "orders");
    assert.deepEqual(orders?.partitions, fromCli.partitions);
    assert.ok(all.topics.filter((t) => t.topic.startsWith("%")).every((t) => t.internal), "internal topics are flagged");
  });

  it("GET /api/v1/topics/:topic/messages finds the message the CLI finds, by offset and by timestamp", async () => {
    const described = await get<TopicDescription>("/api/v1/topics/orders");
    const partition = described.partitions.find((p) => p.endOffset >= 2);
    assert.ok(partition, "a partition holds two messages");
    type View = { offset: number; timestamp: string; key: string | null; value: string | null };
    const fromCli = await cliJson<View>("message", "get", "orders", "--partition", String(partition.partition), "--offset", "1");
    const fromApi = await get<View & { keyEncoding: string; valueEncoding: string; partition: number }>(
      `/api/v1/topics/orders/messages?partition=${partition.partition}&offset=1`,
    );
    assert.deepEqual(
      { offset: fromApi.offset, timestamp: fromApi.timestamp, key: fromApi.key, value: fromApi.value },
      { offset: fromCli.offset, timestamp: fromCli.timestamp, key: fromCli.key, value: fromCli.value },
    );
    assert.equal(fromApi.keyEncoding, "utf8");
    assert.equal(fromApi.valueEncoding, "utf8");

    const byTime = await get<View>(`/api/v1/topics/orders/messages?partition=${partition.partition}&timestamp=${encodeURIComponent(fromCli.timestamp)}`);
    const byTimeCli = await cliJson<View>("message", "get", "orders", "--partition", String(partition.partition), "--timestamp", fromCli.timestamp);
    assert.equal(byTime.offset, byTimeCli.offset);
    assert.equal(byTime.value, byTimeCli.value);

    const none = await api<ErrorBody>("GET", `/api/v1/topics/orders/messages?partition=${partition.partition}&offset=${partition.endOffset}`);
    assert.equal(none.status, 404, "the log end holds no message yet");
    assert.equal(none.body.code, "NOT_FOUND");
    const future = await api<ErrorBody>("GET", `/api/v1/topics/orders/messages?partition=0&timestamp=${Date.now() + 86_400_000}`);
    assert.equal(future.status, 404);
  });

  it("shows bytes that are not UTF-8 as base64, and says so", async () => {
    await sluice.admin().createTopic("blobs");
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
    await sluice.producer().send("blobs", [{ key: "k-ü", value: bytes, headers: { raw: Buffer.from([0xc3]), text: Buffer.from("yes") } }]);
    const view = await get<{ key: string; keyEncoding: string; value: string; valueEncoding: string; headers: { name: string; value: string; encoding: string }[] }>(
      "/api/v1/topics/blobs/messages?partition=0&offset=0",
    );
    assert.equal(view.key, "k-ü");
    assert.equal(view.keyEncoding, "utf8");
    assert.equal(view.valueEncoding, "base64");
    assert.deepEqual(Buffer.from(view.value, "base64"), bytes);
    assert.deepEqual(
      view.headers.sort((a, b) => a.name.localeCompare(b.name)),
      [{ name: "raw", value: "ww==", encoding: "base64" }, { name: "text", value: "yes", encoding: "utf8" }],
    );
  });

  it("GET /api/v1/groups and /groups/:group show the lag the CLI shows", async () => {
    const consumed = await cli("consume", "orders", "--group", "billing", "--from-beginning", "--max-messages", String(CONSUMED), "--timeout-ms", "15000");
    assert.equal(consumed.code, 0, consumed.stderr);
    const listed = await get<{ groups: { group: string; kind: string }[] }>("/api/v1/groups");
    assert.deepEqual(listed, await cliJson("group", "list"));
    const fromApi = await get<GroupDescription>("/api/v1/groups/billing");
    const fromCli = await cliJson<GroupDescription>("group", "describe", "billing");
    // lagMs is the age of the oldest unconsumed message: it grows between the two reads.
    const withoutAge = (d: GroupDescription) => ({ ...d, partitions: d.partitions.map(({ lagMs: _age, ...p }) => p) });
    assert.deepEqual(withoutAge(fromApi), withoutAge(fromCli));
    assert.equal(fromApi.partitions.reduce((sum, p) => sum + p.lag, 0), MESSAGES - CONSUMED);
  });

  it("GET /api/v1/groups/:group/dead-letters lists a queue group's dead letters like `sluice dlq list`", async () => {
    await sluice.admin().createTopic("jobs");
    await sluice.producer().send("jobs", [0, 1, 2, 3].map((i) => ({ value: Buffer.from(`job-${i}`) })));
    const queue = sluice.queue({ group: "workers", topic: "jobs", maxDeliveries: 1, fromBeginning: true });
    let seen = 0;
    for await (const job of queue) {
      if (seen < 3) await job.nack({ error: `failed ${seen}` });
      else await job.ack();
      if (++seen === 4) break;
    }
    type Letter = { offset: number; value: string | null; error: string; deliveries: number; source: { topic: string; partition: number; offset: number } };
    const fromCli = await cliJson<{ messages: Letter[] }>("dlq", "list", "workers");
    assert.equal(fromCli.messages.length, 3);
    const all = await get<{ deadLetters: Letter[]; truncated: boolean }>("/api/v1/groups/workers/dead-letters");
    const pick = (l: Letter) => ({ offset: l.offset, value: l.value, error: l.error, deliveries: l.deliveries, source: l.source });
    assert.deepEqual(all.deadLetters.map(pick), fromCli.messages.map(pick));
    assert.equal(all.truncated, false);
    const two = await get<{ deadLetters: Letter[]; truncated: boolean }>("/api/v1/groups/workers/dead-letters?max=2");
    assert.equal(two.deadLetters.length, 2);
    assert.equal(two.truncated, true);
    const described = await get<{ kind: string; queue: { deadLettered: number }[] }>("/api/v1/groups/workers");
    assert.equal(described.kind, "queue");
  });

  it("GET /api/v1/cluster lists the brokers `sluice cluster` lists", async () => {
    type Broker = { group: string; id: number; role: string; state: string; epoch: number; address: string; heartbeatAgeMs: number };
    const fromApi = await get<{ servedBy: string; brokers: Broker[] }>("/api/v1/cluster");
    const fromCli = await cliJson<{ brokers: Broker[] }>("cluster");
    const stable = (b: Broker) => ({ group: b.group, id: b.id, role: b.role, state: b.state, epoch: b.epoch, address: b.address });
    assert.deepEqual(fromApi.brokers.map(stable), fromCli.brokers.map(stable));
    assert.equal(fromApi.servedBy, "local/0");
    assert.ok(fromApi.brokers.every((b) => b.heartbeatAgeMs >= 0 && b.heartbeatAgeMs < 5_000));
  });

  it("GET /api/v1/throughput: the rates it reports add up to the messages produced", async () => {
    type Point = { atMs: number; spanMs: number; messagesPerSecond: number };
    type Report = { intervalMs: number; sampling: boolean; samples: number; total: Point[]; topics: { topic: string; points: Point[] }[] };
    const produced = 120;
    await sluice.admin().createTopic("clicks");
    const first = await get<Report>("/api/v1/throughput");
    assert.equal(first.intervalMs, 2_000);
    assert.equal(first.sampling, true);
    // The first call starts the sampler with a reading at once: produce once it is taken.
    for (let report = first; report.samples < 1; report = await get<Report>("/api/v1/throughput")) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await sluice.producer().send("clicks", Array.from({ length: produced }, (_, i) => ({ value: Buffer.from(`c${i}`) })));
    // rate × span = messages written between two readings; summed, every message once.
    const written = (points: Point[]) => points.reduce((sum, p) => sum + (p.messagesPerSecond * p.spanMs) / 1000, 0);
    const deadline = Date.now() + 12_000;
    let report = first;
    while (Date.now() < deadline) {
      report = await get<Report>("/api/v1/throughput");
      const clicks = report.topics.find((t) => t.topic === "clicks");
      if (clicks !== undefined && Math.round(written(clicks.points)) === produced) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const clicks = report.topics.find((t) => t.topic === "clicks");
    assert.ok(clicks, JSON.stringify(report));
    assert.equal(Math.round(written(clicks.points)), produced);
    assert.ok(Math.round(written(report.total)) >= produced, "the total counts every user topic");
    // Readings come every 2 s, or a multiple when a slow reading (a loaded machine) made the
    // sampler skip an interval: only the lower bound holds whatever the load.
    assert.ok(clicks.points.every((p) => p.spanMs >= 1_500), `readings at least ~2 s apart: ${JSON.stringify(clicks.points)}`);
  });

  it("answers 400 naming the field for bad bodies and queries", async () => {
    const cases: [string, string, unknown, string][] = [
      ["POST", "/api/v1/topics", { name: "bad", partitions: 0 }, "partitions"],
      ["POST", "/api/v1/topics", { name: "bad", partitions: "x" }, "partitions"],
      ["POST", "/api/v1/topics", { partitions: 2 }, "name"],
      ["POST", "/api/v1/topics", { name: "bad", partitions: 2, replicas: 3 }, "replicas"],
      ["GET", "/api/v1/topics/orders/messages?partition=x&offset=0", undefined, "partition"],
      ["GET", "/api/v1/topics/orders/messages?partition=0", undefined, "offset"],
      ["GET", "/api/v1/topics/orders/messages?partition=0&timestamp=soon", undefined, "timestamp"],
      ["GET", "/api/v1/groups/billing/dead-letters?max=-3", undefined, "max"],
      // Bodies are JSON and checked as sent: no coercion of numbers, booleans or strings.
      ["POST", "/api/v1/topics", { name: 12, partitions: true }, "name"],
      ["POST", "/api/v1/topics", { name: "bad", partitions: "3" }, "partitions"],
      ["POST", "/api/v1/topics", { name: "bad", brokers: "local" }, "brokers"],
      ["POST", "/api/v1/topics", { name: "bad", brokers: ["local", "local"] }, "brokers"],
      ["POST", "/api/v1/topics", { name: "bad", retentionMs: 1e300 }, "retentionMs"],
      ["PATCH", "/api/v1/topics/orders", { partitions: "9" }, "partitions"],
    ];
    for (const [method, path, body, field] of cases) {
      const answer = await api<ErrorBody>(method, path, body);
      assert.equal(answer.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
      assert.equal(answer.body.code, "INVALID_ARGUMENT");
      assert.equal(answer.body.field, field);
      assert.match(answer.body.message, new RegExp(`"${field}"`));
    }
    const listed = await cliJson<{ topics: { topic: string }[] }>("topic", "list");
    assert.ok(!listed.topics.some((t) => t.topic === "bad" || t.topic === "12"), "no refused request created anything");
    assert.equal((await cliJson<TopicDescription>("topic", "describe", "orders")).partitions.length, 3, "nor altered anything");
  });

  it("refuses to create, alter or delete internal topics: %groups and %DLQ%<group> stay, and so do the groups' offsets", async () => {
    const groupBefore = await get<GroupDescription>("/api/v1/groups/billing");
    const lettersBefore = await get<{ deadLetters: unknown[] }>("/api/v1/groups/workers/dead-letters");
    const cases: [string, string, unknown, string, string][] = [
      ["DELETE", "/api/v1/topics/%25groups", undefined, "topic", "%groups"],
      ["DELETE", "/api/v1/topics/%25DLQ%25workers", undefined, "topic", "%DLQ%workers"],
      ["PATCH", "/api/v1/topics/%25groups", { partitions: 64 }, "topic", "%groups"],
      ["POST", "/api/v1/topics", { name: "%groups" }, "name", "%groups"],
    ];
    for (const [method, path, body, field, topic] of cases) {
      const answer = await api<ErrorBody>(method, path, body);
      assert.equal(answer.status, 400, `${method} ${path}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.code, "INVALID_ARGUMENT");
      assert.equal(answer.body.field, field);
      assert.match(answer.body.message, new RegExp(`"${topic}" is an internal topic`));
    }
    const listed = await cliJson<{ topics: { topic: string }[] }>("topic", "list");
    assert.ok(listed.topics.some((t) => t.topic === "%groups"), JSON.stringify(listed));
    assert.ok(listed.topics.some((t) => t.topic === "%DLQ%workers"), JSON.stringify(listed));
    const withoutAge = (d: GroupDescription) => ({ ...d, partitions: d.partitions.map(({ lagMs: _age, ...p }) => p) });
    assert.deepEqual(withoutAge(await get<GroupDescription>("/api/v1/groups/billing")), withoutAge(groupBefore), "committed offsets kept");
    assert.deepEqual(await get<{ deadLetters: unknown[] }>("/api/v1/groups/workers/dead-letters"), lettersBefore, "dead letters kept");
  });

  it("answers 404 for unknown routes, topics and groups; DELETE removes a topic", async () => {
    const route = await api<ErrorBody>("GET", "/api/v1/nothing");
    assert.equal(route.status, 404);
    assert.deepEqual(Object.keys(route.body).sort(), ["code", "message", "retriable"]);
    assert.equal(route.body.code, "NOT_FOUND");
    assert.equal(route.body.retriable, false);
    const topic = await api<ErrorBody>("GET", "/api/v1/topics/ghost");
    assert.equal(topic.status, 404);
    assert.equal(topic.body.code, "UNKNOWN_TOPIC");
    const group = await api<ErrorBody>("GET", "/api/v1/groups/ghosts");
    assert.equal(group.status, 404);
    assert.equal(group.body.code, "UNKNOWN_GROUP");

    const deleted = await api<{ deleted: string }>("DELETE", "/api/v1/topics/blobs");
    assert.deepEqual(deleted, { status: 200, body: { deleted: "blobs" } });
    const listed = await cliJson<{ topics: { topic: string }[] }>("topic", "list");
    assert.ok(!listed.topics.some((t) => t.topic === "blobs"));
    assert.equal((await api<ErrorBody>("DELETE", "/api/v1/topics/blobs")).status, 404);
  });

  it("GET /docs/json lists every admin route with its schemas", async () => {
    const doc = await get<{ openapi: string; paths: Record<string, Record<string, unknown>> }>("/docs/json");
    assert.equal(doc.openapi, "3.1.0");
    const operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`));
    for (const expected of [
      "GET /api/v1/cluster",
      "GET /api/v1/topics",
      "POST /api/v1/topics",
      "GET /api/v1/topics/{topic}",
      "DELETE /api/v1/topics/{topic}",
      "PATCH /api/v1/topics/{topic}",
      "GET /api/v1/topics/{topic}/messages",
      "GET /api/v1/groups",
      "GET /api/v1/groups/{group}",
      "GET /api/v1/groups/{group}/dead-letters",
      "GET /api/v1/throughput",
      "GET /admin/flow",
      "PUT /admin/flow",
      "DELETE /admin/flow",
      "GET /healthz",
      "GET /readyz",
      "GET /metrics",
    ]) {
      assert.ok(operations.includes(expected), `${expected} in ${operations.join(", ")}`);
    }
  });
});
