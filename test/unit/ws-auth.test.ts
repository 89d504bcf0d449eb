/**
 * Authentication and ACLs of the WebSocket consume endpoint, in process: the endpoint attached
 * to an HTTP server built with a real ServerSecurity, over real topic logs in a temp dir.
 * Upgrades without valid credentials are refused with 401 before upgrading; a refused `open`
 * gets a NOT_AUTHORIZED error frame and leaves the socket usable; an ACL removed while a
 * subscription lives ends it with NOT_AUTHORIZED within a second and nothing more is sent.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import { encodeBatch } from "../../common/src/batch/builder.js";
import { systemClock } from "../../common/src/clock.js";
import { createHttpServer, listenHttp } from "../../common/src/http/server.js";
import { silentLogger } from "../../common/src/logger.js";
import { hashPassword } from "../../common/src/security/password.js";
import { SecurityMetrics } from "../../common/src/security/security-metrics.js";
import { ServerSecurity } from "../../common/src/security/server-security.js";
import type { AclEntry, SecuritySnapshot } from "../../common/src/security/types.js";
import type { QueueGroups } from "../../broker/src/groups/queue-groups.js";
import type { BrokerContext } from "../../broker/src/grpc/context.js";
import { ACCESS_RECHECK_MS } from "../../broker/src/http/ws-access.js";
import { attachWebSocketConsume, WS_CONSUME_PATH, type WebSocketConsume } from "../../broker/src/http/ws-consume.js";
import { crossOriginRefusal } from "../../broker/src/http/ws-origin.js";
import { basicAuth, ConsumeClient, WS_CONSUME_PATH as CLIENT_PATH } from "../helpers/ws-consume-client.js";
import { parseBrokerOptions } from "../../broker/src/options.js";
import { TopicManager } from "../../broker/src/topics.js";
import { tempDir } from "./storage-fixtures.js";

const ADMIN_PASSWORD = "admin-secret-1";
const ALICE_PASSWORD = "alice-secret-1";
const AS_ALICE = basicAuth("alice", ALICE_PASSWORD);
const AS_ADMIN = basicAuth("admin", ADMIN_PASSWORD);
/** A batch of `count` messages "m0", "m1", …. */
const batch = (count: number): Buffer => encodeBatch(Array.from({ length: count }, (_, i) => ({ value: Buffer.from(`m${i}`) })));
/** Appends and publishes the high watermark, as a master with no slave would. */
async function appendCommitted(topics: TopicManager, topic: string, count: number): Promise<void> {
  const log = topics.log(topic, 0);
  await log.append(batch(count));
  log.setHighWatermark(log.logEndOffset);
}
/** The promise of issue #8: a revoked ACL stops a live subscription within this. */
const REVOCATION_DEADLINE_MS = 1000;

function allow(operation: AclEntry["operation"], resourceType: AclEntry["resourceType"], resourceName: string): AclEntry {
  return { principal: "User:alice", operation, resourceType, resourceName, patternType: "literal", permission: "allow" };
}

describe("WebSocket consume: authentication and ACLs", () => {
  const { dir, cleanup } = tempDir();
  let topics: TopicManager;
  let security: ServerSecurity;
  let registry: Registry;
  let app: FastifyInstance;
  let endpoint: WebSocketConsume;
  let http: string;
  let users: SecuritySnapshot["users"];
  let version = 1;
  let queueOpens = 0;
  const clients: ConsumeClient[] = [];
  const track = (client: ConsumeClient): ConsumeClient => {
    clients.push(client);
    return client;
  };
  const setAcls = (acls: AclEntry[]): void => security.update({ version: ++version, users, acls });

  before(async () => {
    const options = parseBrokerOptions({ group: "local", dataDir: dir, flush: "os", nameservers: ["127.0.0.1:1"] });
    topics = await TopicManager.open(options, systemClock, silentLogger);
    await topics.createPartitions("orders", [0], 1, {});
    await topics.createPartitions("payments", [0], 1, {});
    await appendCommitted(topics, "orders", 3);
    registry = new Registry();
    security = await ServerSecurity.create({ auth: true, adminPassword: ADMIN_PASSWORD, metrics: new SecurityMetrics(registry), logger: silentLogger });
    users = [{ name: "alice", passwordHash: await hashPassword(ALICE_PASSWORD), superuser: false }];
    setAcls([allow("consume", "topic", "orders")]);
    app = createHttpServer({
      metrics: registry,
      notReadyReason: () => null,
      auth: { guard: security, authenticate: (headers, socket) => security.authenticateHttp(headers, socket), openMetrics: false },
    });
    http = await listenHttp(app, "127.0.0.1", 0);
    const activeStreams = { inc: () => undefined, dec: () => undefined };
    const context = {
      options,
      topics,
      metrics: { activeStreams },
      logger: silentLogger,
      shuttingDown: () => false,
      streamClosers: new Set<() => void>(),
      security,
    } as unknown as BrokerContext;
    // A queue open that got past the checks would reach this.
    const queues = {
      open: async () => {
        queueOpens++;
        throw new Error("the test's queue groups open nothing");
      },
    } as unknown as QueueGroups;
    endpoint = attachWebSocketConsume(app.server, { context, queues, auth: app });
  });

  after(async () => {
    for (const client of clients) client.terminate();
    endpoint?.close();
    await app?.close();
    await topics?.close();
    cleanup();
  });

  it("refuses an upgrade without valid credentials with 401 and a Basic challenge, before upgrading", async () => {
    assert.equal(CLIENT_PATH, WS_CONSUME_PATH);
    for (const headers of [{}, basicAuth("alice", "wrong-password"), basicAuth("nobody", "whatever-1"), { authorization: "Basic !!" }]) {
      const result = await ConsumeClient.attempt(http, headers);
      assert.ok(!(result instanceof ConsumeClient), `upgraded with ${JSON.stringify(headers)}`);
      assert.equal(result.status, 401);
      assert.match(String(result.headers["www-authenticate"]), /^Basic realm="sluice"/);
      assert.equal((JSON.parse(result.body) as { code: string }).code, "AUTHENTICATION_FAILED");
    }
  });

  it("refuses an upgrade from a page of another origin with 403, even with valid credentials, before authenticating", async () => {
    const failuresBefore = await authenticationFailures();
    for (const origin of ["http://evil.example", `http://localhost:${http.split(":")[1]}`, `http://127.0.0.1:1`, "null"]) {
      const result = await ConsumeClient.attempt(http, { ...AS_ADMIN, origin });
      assert.ok(!(result instanceof ConsumeClient), `upgraded with Origin ${origin}`);
      assert.equal(result.status, 403, origin);
      assert.equal(result.headers["www-authenticate"], undefined, "no login prompt for a cross-site page");
      const body = JSON.parse(result.body) as { code: string; message: string };
      assert.equal(body.code, "NOT_AUTHORIZED");
      assert.match(body.message, /^cross-origin WebSocket upgrade refused: Origin /);
    }
    // Refused before the credentials were looked at: a bad password from another origin is not counted.
    const refused = await ConsumeClient.attempt(http, { ...basicAuth("alice", "wrong-password"), origin: "http://evil.example" });
    assert.ok(!(refused instanceof ConsumeClient) && refused.status === 403);
    assert.equal(await authenticationFailures(), failuresBefore);
  });

  it("upgrades a page of the broker's own origin, and a program that sends no Origin", async () => {
    for (const headers of [{ ...AS_ALICE, origin: `http://${http}` }, AS_ALICE]) {
      const client = track(await ConsumeClient.connect(http, headers));
      client.send({ op: "open", mode: "tail", topic: "orders", from: "earliest" });
      const opened = await client.next((f) => f.type === "opened" || f.type === "error");
      assert.equal(opened.type, "opened", JSON.stringify(opened));
      client.terminate();
    }
  });

  it("answers a refused open with NOT_AUTHORIZED and keeps the socket usable for an allowed topic", async () => {
    const client = track(await ConsumeClient.connect(http, AS_ALICE));
    client.send({ op: "open", mode: "tail", topic: "payments", from: "earliest" });
    // Sent before the refusal arrives: meant for the refused subscription, dropped with it.
    client.send({ op: "credit", messages: 10 });
    const refused = await client.next((f) => f.type === "error");
    assert.equal(refused.code, "NOT_AUTHORIZED");
    assert.equal(refused.retriable, false);
    assert.match(String(refused.message), /User:alice may not consume from topic payments/);

    // A queue group needs consume on the group too; the group is never opened.
    client.send({ op: "open", mode: "queue", topic: "orders", group: "workers" });
    const refusedGroup = await client.next((f) => f.type === "error" && f !== refused);
    assert.equal(refusedGroup.code, "NOT_AUTHORIZED");
    assert.match(String(refusedGroup.message), /consume in group workers/);
    assert.equal(queueOpens, 0);

    client.send({ op: "open", mode: "tail", topic: "orders", from: "earliest" });
    const opened = await client.next((f) => f.type === "opened");
    assert.equal(opened.topic, "orders");
    client.send({ op: "credit", messages: 10 });
    await client.waitForMessages(3);
    assert.ok(client.messages().every((m) => m.topic === "orders"));
  });

  it("ends a live subscription with NOT_AUTHORIZED within a second of the ACL's removal, sending nothing more", async (t) => {
    const client = track(await ConsumeClient.connect(http, AS_ALICE));
    client.send({ op: "open", mode: "tail", topic: "orders", from: "latest" });
    await client.next((f) => f.type === "opened");
    client.send({ op: "credit", messages: 100 });
    await appendCommitted(topics, "orders", 2);
    await client.waitForMessages(2);

    const revokedAtMs = Date.now();
    setAcls([]);
    // Appended right after the change: the reader checks before each batch, so none of it leaves.
    await appendCommitted(topics, "orders", 5);
    const ended = await client.next((f) => f.type === "error", REVOCATION_DEADLINE_MS);
    const closed = await client.closed;
    assert.equal(ended.code, "NOT_AUTHORIZED");
    assert.match(String(ended.message), /permission was revoked/);
    assert.equal(closed.code, 1008);
    t.diagnostic(`ended ${closed.atMs - revokedAtMs} ms after the change`);
    assert.ok(closed.atMs - revokedAtMs <= REVOCATION_DEADLINE_MS, `ended ${closed.atMs - revokedAtMs} ms after the change`);
    assert.equal(client.messages().length, 2, "nothing appended after the revocation was sent");
    setAcls([allow("consume", "topic", "orders")]);
  });

  it("ends an idle subscription too (the periodic re-check), and counts the refusal", async (t) => {
    const client = track(await ConsumeClient.connect(http, AS_ALICE));
    client.send({ op: "open", mode: "tail", topic: "orders", from: "latest" });
    await client.next((f) => f.type === "opened");
    const deniedBefore = await deniedCount();
    const revokedAtMs = Date.now();
    setAcls([]);
    const ended = await client.next((f) => f.type === "error", REVOCATION_DEADLINE_MS);
    assert.equal(ended.code, "NOT_AUTHORIZED");
    const closed = await client.closed;
    t.diagnostic(`idle subscription ended ${closed.atMs - revokedAtMs} ms after the change`);
    assert.ok(closed.atMs - revokedAtMs <= ACCESS_RECHECK_MS * 2 + 100, `ended ${closed.atMs - revokedAtMs} ms after the change`);
    assert.equal(await deniedCount(), deniedBefore + 1);
    setAcls([allow("consume", "topic", "orders")]);
  });

  it("lets admin consume any topic", async () => {
    const client = track(await ConsumeClient.connect(http, AS_ADMIN));
    client.send({ op: "open", mode: "tail", topic: "payments", from: "earliest" });
    const opened = await client.next((f) => f.type === "opened" || f.type === "error");
    assert.equal(opened.type, "opened", JSON.stringify(opened));
  });

  async function authenticationFailures(): Promise<number> {
    const metric = await registry.getSingleMetric("sluice_authentication_failures_total")?.get();
    return (metric?.values ?? []).reduce((sum, v) => sum + v.value, 0);
  }

  async function deniedCount(): Promise<number> {
    const metric = await registry.getSingleMetric("sluice_authorization_denied_total")?.get();
    return metric?.values.find((v) => v.labels.operation === "consume" && v.labels.resource_type === "topic")?.value ?? 0;
  }
});

describe("WebSocket upgrade Origin check", () => {
  const refused = (headers: Record<string, string>, encrypted = false): boolean => crossOriginRefusal(headers, encrypted) !== undefined;

  it("lets through an upgrade without Origin, and an Origin naming the Host's host and port", () => {
    assert.equal(refused({ host: "broker.internal:8080" }), false);
    assert.equal(refused({ host: "broker.internal:8080", origin: "http://broker.internal:8080" }), false);
    assert.equal(refused({ host: "Broker.Internal:8080", origin: "HTTP://broker.INTERNAL:8080" }), false, "host names compare without case");
    assert.equal(refused({ host: "[::1]:8080", origin: "http://[::1]:8080" }), false);
    assert.equal(refused({ host: "[0:0::1]:8080", origin: "http://[::1]:8080" }), false, "IPv6 compared normalized");
  });

  it("fills in default ports: 80 for http, 443 for https and for a Host reached over TLS", () => {
    assert.equal(refused({ host: "console.example", origin: "http://console.example" }), false);
    assert.equal(refused({ host: "console.example:80", origin: "http://console.example" }), false);
    assert.equal(refused({ host: "console.example", origin: "https://console.example" }, true), false);
    assert.equal(refused({ host: "console.example:443", origin: "https://console.example" }, true), false);
    assert.equal(refused({ host: "console.example", origin: "https://console.example" }, false), true, "443 vs 80");
  });

  it("refuses another host, another port, an opaque or malformed Origin, and a missing or malformed Host", () => {
    assert.equal(refused({ host: "broker.internal:8080", origin: "http://evil.example" }), true);
    assert.equal(refused({ host: "broker.internal:8080", origin: "http://broker.internal:8081" }), true);
    assert.equal(refused({ host: "broker.internal:8080", origin: "http://broker.internal" }), true);
    assert.equal(refused({ host: "127.0.0.1:8080", origin: "http://localhost:8080" }), true, "names are not resolved");
    assert.equal(refused({ host: "broker.internal:8080", origin: "http://broker.internal.evil.example:8080" }), true);
    assert.equal(refused({ host: "broker.internal:8080", origin: "null" }), true);
    assert.equal(refused({ host: "broker.internal:8080", origin: "file:///tmp/page.html" }), true);
    assert.equal(refused({ origin: "http://broker.internal:8080" }), true);
    assert.equal(refused({ host: "evil@broker.internal:8080", origin: "http://broker.internal:8080" }), true);
  });

  it("quotes the headers in its message, cut to a bounded length", () => {
    const message = crossOriginRefusal({ host: "b:1", origin: `http://${"x".repeat(5000)}.example` }, false) ?? "";
    assert.match(message, /^cross-origin WebSocket upgrade refused: Origin "http:\/\/x+…" is not this server \(Host "b:1"\)/);
    assert.ok(message.length < 400);
  });
});
