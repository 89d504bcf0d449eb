/**
 * Authentication and ACLs on the HTTP port, in process: createHttpServer with a real
 * ServerSecurity (scrypt passwords, the Authorizer) and the admin REST API and flow admin
 * mounted as the broker mounts them, over an admin client that records every call. A refused
 * request must answer 401 or 403 before the client is asked anything, so "nothing changed" is
 * "the client saw no call".
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance, InjectOptions } from "fastify";
import { Registry } from "prom-client";
import { createHttpServer } from "../../common/src/http/server.js";
import { silentLogger } from "../../common/src/logger.js";
import { hashPassword } from "../../common/src/security/password.js";
import { SecurityMetrics } from "../../common/src/security/security-metrics.js";
import { ServerSecurity } from "../../common/src/security/server-security.js";
import type { AclEntry, SecuritySnapshot } from "../../common/src/security/types.js";
import type { Admin } from "../../clients/src/index.js";
import { registerFlowAdmin } from "../../broker/src/http/flow-admin.js";
import { FlowController } from "../../broker/src/flow/flow-controller.js";
import { FlowRuleStore } from "../../broker/src/flow/rule-store.js";
import { registerClusterRoutes } from "../../ops/console/src/cluster-routes.js";
import { registerGroupRoutes } from "../../ops/console/src/group-routes.js";
import { ThroughputSampler } from "../../ops/console/src/throughput.js";
import { registerTopicRoutes } from "../../ops/console/src/topic-routes.js";
import { registerConsoleFiles, WEB_FOLDER, findPackageRoot } from "../../ops/console/src/web-files.js";

const ADMIN_PASSWORD = "admin-secret-1";
const ALICE_PASSWORD = "alice-secret-1";
const TOPICS = ["%groups", "orders", "payments"];
const GROUPS = ["audit", "billing"];

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const AS_ADMIN = { authorization: basic("admin", ADMIN_PASSWORD) };
const AS_ALICE = { authorization: basic("alice", ALICE_PASSWORD) };

function allow(operation: AclEntry["operation"], resourceType: AclEntry["resourceType"], resourceName: string, principal = "User:alice"): AclEntry {
  return { principal, operation, resourceType, resourceName, patternType: "literal", permission: "allow" };
}

/** alice may describe topic orders and group billing, nothing else. */
const ALICE_ACLS: AclEntry[] = [allow("describe", "topic", "orders"), allow("describe", "group", "billing")];

const TOPIC_CONFIG = { retentionMs: 0, retentionBytes: 0, segmentBytes: 1_048_576, maxMessageBytes: 1_048_576 };

/** An admin client answering the shapes the API serializes, recording each call as "method arg". */
function recordingAdmin(calls: string[]): Admin {
  const created = (topic: string, partitions: number) => ({ topic, partitions, config: TOPIC_CONFIG, placement: [] });
  return {
    listTopics: async () => {
      calls.push("listTopics");
      return TOPICS.map((topic) => ({ topic, partitions: 1 }));
    },
    describeTopic: async (topic: string) => {
      calls.push(`describeTopic ${topic}`);
      return { topic, config: TOPIC_CONFIG, partitions: [] };
    },
    createTopic: async (topic: string, settings: { partitions?: number }) => {
      calls.push(`createTopic ${topic}`);
      return created(topic, settings.partitions ?? 1);
    },
    createPartitions: async (topic: string, partitions: number) => {
      calls.push(`createPartitions ${topic}`);
      return created(topic, partitions);
    },
    deleteTopic: async (topic: string) => {
      calls.push(`deleteTopic ${topic}`);
    },
    getMessage: async (topic: string) => {
      calls.push(`getMessage ${topic}`);
      return null;
    },
    listGroups: async () => {
      calls.push("listGroups");
      return GROUPS.map((group) => ({ group, kind: "consumer", state: "stable", members: 1 }));
    },
    describeGroup: async (group: string) => {
      calls.push(`describeGroup ${group}`);
      return { group, state: "stable", kind: "consumer", members: [], partitions: [], queue: [] };
    },
    deadLetters: async (group: string) => {
      calls.push(`deadLetters ${group}`);
      return [];
    },
    cluster: async () => {
      calls.push("cluster");
      return { brokers: [] };
    },
  } as unknown as Admin;
}

interface Mounted {
  app: FastifyInstance;
  security: ServerSecurity;
  registry: Registry;
  calls: string[];
  flow: FlowController;
}

/** The HTTP server as the broker builds it with --auth, the console's routes over a recording client. */
async function mount(options: { openMetrics: boolean; dataDir: string; snapshot: SecuritySnapshot }): Promise<Mounted> {
  fs.mkdirSync(options.dataDir, { recursive: true });
  const registry = new Registry();
  const security = await ServerSecurity.create({ auth: true, adminPassword: ADMIN_PASSWORD, metrics: new SecurityMetrics(registry), logger: silentLogger });
  security.update(options.snapshot);
  const app = createHttpServer({
    metrics: registry,
    notReadyReason: () => null,
    auth: { guard: security, authenticate: (headers, socket) => security.authenticateHttp(headers, socket), openMetrics: options.openMetrics },
  });
  const calls: string[] = [];
  const admin = (): Admin => recordingAdmin(calls);
  const flow = new FlowController();
  registerFlowAdmin(app, { flow, store: new FlowRuleStore(options.dataDir), broker: "test/0" });
  const sampler = new ThroughputSampler({ readEndOffsets: async () => new Map() });
  registerClusterRoutes(app, { admin, broker: "test/0", sampler });
  registerTopicRoutes(app, { admin });
  registerGroupRoutes(app, { admin });
  registerConsoleFiles(app, path.join(findPackageRoot(import.meta.url), WEB_FOLDER));
  app.addHook("onClose", async () => sampler.stop());
  await app.ready();
  return { app, security, registry, calls, flow };
}

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

/** Every admin API route with a request alice has no permission for. */
const REFUSED_FOR_ALICE: InjectOptions[] = [
  { method: "GET", url: "/api/v1/topics/payments" },
  { method: "GET", url: "/api/v1/topics/%25groups" },
  { method: "POST", url: "/api/v1/topics", payload: { name: "invoices", partitions: 2 } },
  { method: "PATCH", url: "/api/v1/topics/orders", payload: { partitions: 4 } },
  { method: "DELETE", url: "/api/v1/topics/orders" },
  { method: "GET", url: "/api/v1/topics/orders/messages?partition=0&offset=0" },
  { method: "GET", url: "/api/v1/groups/audit" },
  { method: "GET", url: "/api/v1/groups/audit/dead-letters?max=5" },
  // alice may describe billing, but its dead letters are message contents: they need consume.
  { method: "GET", url: "/api/v1/groups/billing/dead-letters?max=5" },
  { method: "GET", url: "/api/v1/cluster" },
  { method: "GET", url: "/api/v1/throughput" },
  { method: "GET", url: "/admin/flow" },
  { method: "PUT", url: "/admin/flow", payload: { scope: "broker", limiter: "concurrency", maxInFlight: 10 } },
  { method: "DELETE", url: "/admin/flow?scope=broker&limiter=concurrency" },
];

describe("HTTP authentication and ACLs (admin API, flow admin, console)", () => {
  let dataDir: string;
  let closed: Mounted;
  let open: Mounted;
  const snapshot = async (): Promise<SecuritySnapshot> => ({
    version: 1,
    users: [{ name: "alice", passwordHash: await hashPassword(ALICE_PASSWORD), superuser: false }],
    acls: ALICE_ACLS,
  });

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-http-auth-"));
    const users = await snapshot();
    closed = await mount({ openMetrics: false, dataDir: path.join(dataDir, "closed"), snapshot: users });
    open = await mount({ openMetrics: true, dataDir: path.join(dataDir, "open"), snapshot: users });
  });
  after(async () => {
    await closed?.app.close();
    await open?.app.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  describe("authentication", () => {
    it("answers 401 with a Basic challenge to a request without credentials, before any route runs", async () => {
      for (const url of ["/api/v1/topics", "/api/v1/cluster", "/admin/flow", "/console", "/console/console.js", "/docs/json", "/metrics", "/no/such/route"]) {
        const response = await closed.app.inject({ method: "GET", url });
        assert.equal(response.statusCode, 401, url);
        assert.match(String(response.headers["www-authenticate"]), /^Basic realm="sluice"/, url);
        const body = response.json() as { code: string; retriable: boolean };
        assert.equal(body.code, "AUTHENTICATION_FAILED", url);
        assert.equal(body.retriable, false);
      }
      const create = await closed.app.inject({ method: "POST", url: "/api/v1/topics", payload: { name: "invoices" } });
      assert.equal(create.statusCode, 401);
      assert.deepEqual(closed.calls, [], "the admin client was never called");
    });

    it("answers 401 to a wrong password, an unknown user and a malformed header, with the same message for the first two", async () => {
      const wrong = await closed.app.inject({ method: "GET", url: "/api/v1/topics", headers: { authorization: basic("alice", "not-her-password") } });
      const unknown = await closed.app.inject({ method: "GET", url: "/api/v1/topics", headers: { authorization: basic("mallory", "whatever-1") } });
      const malformed = await closed.app.inject({ method: "GET", url: "/api/v1/topics", headers: { authorization: "Bearer abc" } });
      for (const response of [wrong, unknown, malformed]) {
        assert.equal(response.statusCode, 401);
        assert.match(String(response.headers["www-authenticate"]), /^Basic /);
      }
      assert.match((wrong.json() as { message: string }).message, /unknown user or wrong password/);
      assert.match((unknown.json() as { message: string }).message, /unknown user or wrong password/);
      assert.ok(!wrong.body.includes("not-her-password"), "the password is not echoed");
      assert.deepEqual(closed.calls, []);
      assert.ok((await counter(closed.registry, "sluice_authentication_failures_total", { reason: "bad_credentials", transport: "http" })) >= 2);
    });

    it("leaves /metrics, /healthz and /readyz open only with openMetrics, and nothing else", async () => {
      for (const url of ["/metrics", "/healthz", "/readyz"]) {
        assert.equal((await closed.app.inject({ method: "GET", url })).statusCode, 401, `${url} without openMetrics`);
        assert.equal((await open.app.inject({ method: "GET", url })).statusCode, 200, `${url} with openMetrics`);
        assert.equal((await closed.app.inject({ method: "GET", url, headers: AS_ALICE })).statusCode, 200, `${url} with credentials`);
      }
      for (const url of ["/api/v1/topics", "/admin/flow", "/console", "/docs/json", "/metrics/../api/v1/topics"]) {
        assert.equal((await open.app.inject({ method: "GET", url })).statusCode, 401, `${url} stays closed with openMetrics`);
      }
    });

    it("serves the console to an authenticated user (its fetches then carry the browser's credentials)", async () => {
      const page = await closed.app.inject({ method: "GET", url: "/console", headers: AS_ALICE });
      assert.equal(page.statusCode, 200);
      const script = await closed.app.inject({ method: "GET", url: "/console/console.js", headers: AS_ALICE });
      assert.equal(script.statusCode, 200);
      assert.match(script.body, /credentials: "same-origin"/);
    });
  });

  describe("authorization", () => {
    it("lists only the topics and groups alice may describe, describing no other", async () => {
      closed.calls.length = 0;
      const topics = await closed.app.inject({ method: "GET", url: "/api/v1/topics", headers: AS_ALICE });
      assert.equal(topics.statusCode, 200);
      assert.deepEqual((topics.json() as { topics: { topic: string }[] }).topics.map((t) => t.topic), ["orders"]);
      const groups = await closed.app.inject({ method: "GET", url: "/api/v1/groups", headers: AS_ALICE });
      assert.deepEqual((groups.json() as { groups: { group: string }[] }).groups.map((g) => g.group), ["billing"]);
      assert.deepEqual(closed.calls, ["listTopics", "describeTopic orders", "listGroups"], "hidden topics cost no describe");
      const one = await closed.app.inject({ method: "GET", url: "/api/v1/topics/orders", headers: AS_ALICE });
      assert.equal(one.statusCode, 200);
      assert.equal((await closed.app.inject({ method: "GET", url: "/api/v1/groups/billing", headers: AS_ALICE })).statusCode, 200);
    });

    it("refuses every other route with 403 NOT_AUTHORIZED naming the missing ACL, and changes nothing", async () => {
      closed.calls.length = 0;
      const deniedBefore = await counter(closed.registry, "sluice_authorization_denied_total", { operation: "create", resource_type: "topic" });
      const rulesBefore = JSON.stringify(closed.flow.list());
      for (const request of REFUSED_FOR_ALICE) {
        const label = `${request.method} ${request.url}`;
        const response = await closed.app.inject({ ...request, headers: AS_ALICE });
        assert.equal(response.statusCode, 403, `${label}: ${response.body}`);
        const body = response.json() as { code: string; message: string; retriable: boolean };
        assert.equal(body.code, "NOT_AUTHORIZED", label);
        assert.equal(body.retriable, false, label);
        assert.match(body.message, /^User:alice may not .*; ask an admin: sluice acl add --principal User:alice --operation \w+ --resource \S+/, label);
      }
      assert.deepEqual(closed.calls, [], "the admin client saw no call: nothing was read, created, altered or deleted");
      assert.equal(JSON.stringify(closed.flow.list()), rulesBefore, "no flow rule changed");
      assert.ok(!fs.existsSync(path.join(dataDir, "closed", "flow-rules.json")), "no flow rule was stored");
      assert.equal(await counter(closed.registry, "sluice_authorization_denied_total", { operation: "create", resource_type: "topic" }), deniedBefore + 1);
      const internal = await closed.app.inject({ method: "GET", url: "/api/v1/topics/%25groups", headers: AS_ALICE });
      assert.match((internal.json() as { message: string }).message, /it needs admin on the cluster/);
    });

    it("lets admin do everything", async () => {
      closed.calls.length = 0;
      const topics = await closed.app.inject({ method: "GET", url: "/api/v1/topics", headers: AS_ADMIN });
      assert.deepEqual((topics.json() as { topics: { topic: string }[] }).topics.map((t) => t.topic), TOPICS);
      const groups = await closed.app.inject({ method: "GET", url: "/api/v1/groups", headers: AS_ADMIN });
      assert.deepEqual((groups.json() as { groups: { group: string }[] }).groups.map((g) => g.group), GROUPS);
      const expected: Record<string, number> = { POST: 201 };
      for (const request of REFUSED_FOR_ALICE) {
        const response = await closed.app.inject({ ...request, headers: AS_ADMIN });
        const status = request.url?.toString().includes("/messages") ? 404 : (expected[request.method as string] ?? 200);
        assert.equal(response.statusCode, status, `${request.method} ${request.url}: ${response.body}`);
      }
      assert.ok(closed.calls.includes("createTopic invoices"));
      assert.ok(closed.calls.includes("createPartitions orders"));
      assert.ok(closed.calls.includes("deleteTopic orders"));
      assert.ok(closed.calls.includes("getMessage orders"));
      assert.ok(closed.calls.includes("deadLetters audit"));
      assert.ok(closed.calls.includes("cluster"));
    });

    it("applies an ACL added at run time to the next request", async () => {
      closed.calls.length = 0;
      const refused = await closed.app.inject({ method: "POST", url: "/api/v1/topics", payload: { name: "invoices" }, headers: AS_ALICE });
      assert.equal(refused.statusCode, 403);
      const current = await snapshot();
      closed.security.update({ ...current, version: 2, acls: [...ALICE_ACLS, allow("create", "topic", "invoices")] });
      try {
        const created = await closed.app.inject({ method: "POST", url: "/api/v1/topics", payload: { name: "invoices" }, headers: AS_ALICE });
        assert.equal(created.statusCode, 201, created.body);
        assert.deepEqual(closed.calls, ["createTopic invoices"]);
      } finally {
        closed.security.update({ ...current, version: 3 });
      }
    });

    it("shows a group's dead letters to consume on the group, not to describe", async () => {
      closed.calls.length = 0;
      const url = "/api/v1/groups/billing/dead-letters?max=5";
      const refused = await closed.app.inject({ method: "GET", url, headers: AS_ALICE });
      assert.equal(refused.statusCode, 403);
      assert.match((refused.json() as { message: string }).message, /--operation consume --resource group:billing$/);
      const current = await snapshot();
      closed.security.update({ ...current, version: 4, acls: [...ALICE_ACLS, allow("consume", "group", "billing")] });
      try {
        const shown = await closed.app.inject({ method: "GET", url, headers: AS_ALICE });
        assert.equal(shown.statusCode, 200, shown.body);
        assert.deepEqual(shown.json(), { group: "billing", deadLetters: [], truncated: false });
        assert.deepEqual(closed.calls, ["deadLetters billing"], "read only once allowed");
      } finally {
        closed.security.update({ ...current, version: 5 });
      }
    });
  });
});
