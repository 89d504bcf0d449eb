/**
 * The HTTP server every process has: the OpenAPI document generated from the routes'
 * schemas, 400 answers naming the failing field, the JSON 404, and the console's files —
 * all through fastify's inject, with the admin console mounted but no cluster behind it
 * (everything here is answered before a handler would need one).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { Registry } from "prom-client";
import { StorageFullError, UnknownTopicError } from "../../common/src/errors.js";
import { INTERNAL_ERROR_MESSAGE } from "../../common/src/http/error-replies.js";
import { openApiPath, type OpenApiDocument } from "../../common/src/http/openapi.js";
import { createHttpServer } from "../../common/src/http/server.js";
import type { Logger } from "../../common/src/logger.js";
import { adminConsole } from "../../ops/console/src/index.js";

const ADMIN_ROUTES: [string, string][] = [
  ["/api/v1/cluster", "get"],
  ["/api/v1/topics", "get"],
  ["/api/v1/topics", "post"],
  ["/api/v1/topics/{topic}", "get"],
  ["/api/v1/topics/{topic}", "delete"],
  ["/api/v1/topics/{topic}/messages", "get"],
  ["/api/v1/groups", "get"],
  ["/api/v1/groups/{group}", "get"],
  ["/api/v1/groups/{group}/dead-letters", "get"],
  ["/api/v1/throughput", "get"],
];

type Operation = {
  operationId: string;
  parameters?: { name: string; in: string; required: boolean; schema: Record<string, unknown>; description?: string }[];
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Record<string, unknown> }> }>;
};

/** A logger whose lines (parsed) land in `lines`. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger: Logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

describe("HTTP server: OpenAPI document, validation and errors", () => {
  let app: FastifyInstance;
  let ready: string | null = "recovering logs";
  const log = capturingLogger();

  before(async () => {
    app = createHttpServer({ metrics: new Registry(), notReadyReason: () => ready, logger: log.logger });
    // A route of the kind a process adds itself, registered after the console: covered too.
    app.put<{ Params: { name: string }; Querystring: { dryRun?: boolean } }>(
      "/things/:name",
      {
        schema: {
          summary: "Replace a thing",
          params: { type: "object", properties: { name: { type: "string", description: "The thing" } } },
          querystring: { type: "object", properties: { dryRun: { type: "boolean" } } },
          body: { type: "object", required: ["size"], properties: { size: { type: "integer", minimum: 1 } }, additionalProperties: false },
          response: { 200: { type: "object", properties: { name: { type: "string" } } } },
        },
      },
      async (request) => ({ name: request.params.name }),
    );
    app.get("/boom", async () => {
      throw new UnknownTopicError("ghost");
    });
    app.get("/crash", async () => {
      throw new Error("ENOENT: no such file or directory, open '/srv/sluice/secret'");
    });
    app.get("/full", async () => {
      throw new StorageFullError("disk /data is 99% full");
    });
    // What each request part arrives as once validated: query and path coerced, body not.
    app.post<{ Params: { count: number }; Querystring: { flag?: boolean; tags?: string[] }; Body: { size: number } }>(
      "/parts/:count",
      {
        schema: {
          params: { type: "object", properties: { count: { type: "integer" } } },
          querystring: { type: "object", properties: { flag: { type: "boolean" }, tags: { type: "array", items: { type: "string" } } } },
          body: { type: "object", required: ["size"], properties: { size: { type: "integer" }, label: { type: "string", default: "none" } } },
        },
      },
      async (request) => ({ params: request.params, query: request.query, body: request.body }),
    );
    adminConsole({ nameservers: ["127.0.0.1:1"], broker: "test/0" })(app);
    await app.ready();
  });

  after(async () => {
    await app.close();
  });

  async function document(): Promise<OpenApiDocument> {
    const response = await app.inject({ method: "GET", url: "/docs/json" });
    assert.equal(response.statusCode, 200);
    return response.json() as OpenApiDocument;
  }

  function op(doc: OpenApiDocument, path: string, method: string): Operation {
    const operation = doc.paths[path]?.[method] as Operation | undefined;
    assert.ok(operation, `${method.toUpperCase()} ${path} is documented`);
    return operation;
  }

  it("documents every admin API route, the health routes and /admin-style routes added by the process", async () => {
    const doc = await document();
    assert.equal(doc.openapi, "3.1.0");
    for (const [path, method] of ADMIN_ROUTES) op(doc, path, method);
    for (const path of ["/healthz", "/readyz", "/metrics", "/docs/json"]) op(doc, path, "get");
    op(doc, "/things/{name}", "put");
  });

  it("leaves out HEAD twins of GET routes and the console's static files", async () => {
    const doc = await document();
    for (const [path, operations] of Object.entries(doc.paths)) {
      assert.ok(!("head" in operations), `HEAD ${path} is not documented`);
      assert.ok(!path.startsWith("/console"), `${path} is hidden`);
    }
  });

  it("turns params and query strings into parameters, bodies into requestBody, response schemas into responses", async () => {
    const doc = await document();
    const put = op(doc, "/things/{name}", "put");
    assert.equal(put.operationId, "put_things_name");
    assert.deepEqual(put.parameters, [
      { name: "name", in: "path", required: true, schema: { type: "string" }, description: "The thing" },
      { name: "dryRun", in: "query", required: false, schema: { type: "boolean" } },
    ]);
    assert.deepEqual(put.requestBody?.content["application/json"]?.schema, {
      type: "object",
      required: ["size"],
      properties: { size: { type: "integer", minimum: 1 } },
      additionalProperties: false,
    });
    assert.deepEqual(put.responses["200"]?.content?.["application/json"]?.schema, { type: "object", properties: { name: { type: "string" } } });
    assert.deepEqual(put.responses["4XX"]?.content?.["application/json"]?.schema, { $ref: "#/components/schemas/Error" });
    assert.ok(doc.components.schemas.Error);

    const messages = op(doc, "/api/v1/topics/{topic}/messages", "get");
    const names = (messages.parameters ?? []).map((p) => `${p.in}:${p.name}:${p.required}`);
    assert.deepEqual(names, ["path:topic:true", "query:partition:true", "query:offset:false", "query:timestamp:false"]);
    const create = op(doc, "/api/v1/topics", "post");
    const body = create.requestBody?.content["application/json"]?.schema as { required: string[]; properties: Record<string, unknown> };
    assert.deepEqual(body.required, ["name"]);
    assert.deepEqual(Object.keys(body.properties).sort(), ["brokers", "name", "partitions", "retentionBytes", "retentionMs"]);
    assert.ok(create.responses["201"], "POST /api/v1/topics answers 201");
    const metrics = op(doc, "/metrics", "get");
    assert.ok(metrics.responses["200"]?.content?.["text/plain"], "/metrics is documented as text");
  });

  it("converts fastify paths to OpenAPI paths", () => {
    assert.deepEqual(openApiPath("/api/v1/topics/:topic/messages"), { path: "/api/v1/topics/{topic}/messages", pathParams: ["topic"] });
    assert.deepEqual(openApiPath("/files/:id(^\\d+$)/*"), { path: "/files/{id}/{wildcard}", pathParams: ["id", "*"] });
  });

  it("answers 400 naming the failing field for bad bodies and query strings", async () => {
    const cases: { url: string; method: "POST" | "GET" | "PUT" | "PATCH"; payload?: unknown; field: string }[] = [
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", partitions: 0 }, field: "partitions" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", partitions: "x" }, field: "partitions" },
      { method: "POST", url: "/api/v1/topics", payload: { partitions: 2 }, field: "name" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", partiton: 2 }, field: "partiton" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "no spaces" }, field: "name" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", retentionMs: -1 }, field: "retentionMs" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", brokers: ["b1", ""] }, field: "brokers.1" },
      // Bodies are not type-coerced: each of these used to create something.
      { method: "POST", url: "/api/v1/topics", payload: { name: 12, partitions: true }, field: "name" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", partitions: true }, field: "partitions" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", partitions: "3" }, field: "partitions" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", brokers: "local" }, field: "brokers" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", brokers: ["local", "local"] }, field: "brokers" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", retentionMs: 1e300 }, field: "retentionMs" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "orders", retentionBytes: 2 ** 53 }, field: "retentionBytes" },
      { method: "PATCH", url: "/api/v1/topics/orders", payload: { partitions: "4" }, field: "partitions" },
      { method: "GET", url: "/api/v1/topics/orders/messages?offset=3", field: "partition" },
      { method: "GET", url: "/api/v1/topics/orders/messages?partition=x&offset=3", field: "partition" },
      { method: "GET", url: "/api/v1/topics/orders/messages?partition=0&offset=-1", field: "offset" },
      { method: "GET", url: "/api/v1/topics/orders/messages?partition=0", field: "offset" },
      { method: "GET", url: "/api/v1/topics/orders/messages?partition=0&offset=1&timestamp=5", field: "timestamp" },
      { method: "GET", url: "/api/v1/topics/orders/messages?partition=0&timestamp=yesterday", field: "timestamp" },
      { method: "GET", url: "/api/v1/groups/g/dead-letters?max=0", field: "max" },
      { method: "PUT", url: "/things/a", payload: { size: 0 }, field: "size" },
    ];
    for (const c of cases) {
      const response = await app.inject({ method: c.method, url: c.url, ...(c.payload === undefined ? {} : { payload: c.payload as object }) });
      const label = `${c.method} ${c.url} ${JSON.stringify(c.payload ?? "")}`;
      assert.equal(response.statusCode, 400, label);
      const body = response.json() as { code: string; message: string; retriable: boolean; field: string };
      assert.equal(body.code, "INVALID_ARGUMENT", label);
      assert.equal(body.retriable, false, label);
      assert.equal(body.field, c.field, label);
      assert.ok(body.message.includes(`"${c.field}"`), `${label}: message names the field: ${body.message}`);
    }
    // The body as a whole is wrong: no field to name, and none made up.
    const notAnObject = await app.inject({ method: "POST", url: "/api/v1/topics", payload: [1, 2] });
    assert.equal(notAnObject.statusCode, 400);
    assert.deepEqual(notAnObject.json(), { code: "INVALID_ARGUMENT", message: "request body must be object", retriable: false });
  });

  it("answers unknown routes with a JSON 404 and maps SluiceErrors to their HTTP status, without stacks", async () => {
    for (const [method, url] of [["GET", "/api/v1/nope"], ["POST", "/nothing/here"], ["DELETE", "/api/v1/topics"]] as const) {
      const response = await app.inject({ method, url });
      assert.equal(response.statusCode, 404, `${method} ${url}`);
      const body = response.json() as { code: string; message: string; retriable: boolean };
      assert.equal(body.code, "NOT_FOUND");
      assert.equal(body.retriable, false);
      assert.match(body.message, new RegExp(`${method} ${url.replace(/\//g, "\\/")}`));
    }
    const unknown = await app.inject({ method: "GET", url: "/boom" });
    assert.equal(unknown.statusCode, 404);
    assert.deepEqual(unknown.json(), new UnknownTopicError("ghost").toJSON());
    const crash = await app.inject({ method: "GET", url: "/crash" });
    assert.equal(crash.statusCode, 500);
    assert.doesNotMatch(crash.body, /at .*\.ts:\d+/);
  });

  it("answers a 5xx that is not a SluiceError with a generic message and logs what happened", async () => {
    log.lines.length = 0;
    const crash = await app.inject({ method: "GET", url: "/crash" });
    assert.equal(crash.statusCode, 500);
    assert.deepEqual(crash.json(), { code: "INTERNAL", message: INTERNAL_ERROR_MESSAGE, retriable: false });
    assert.doesNotMatch(crash.body, /ENOENT|\/srv\/sluice/, "no internal message or path in the answer");
    const logged = log.lines.filter((line) => line.msg === "HTTP request failed");
    assert.equal(logged.length, 1, JSON.stringify(log.lines));
    const entry = logged[0] as { level: number; url: string; method: string; status: number; err: { message: string; stack: string } };
    assert.equal(entry.level, 50, "logged as an error");
    assert.deepEqual([entry.method, entry.url, entry.status], ["GET", "/crash", 500]);
    assert.match(entry.err.message, /\/srv\/sluice\/secret/);
    assert.match(entry.err.stack, /console-openapi\.test\.ts/, "the log has the stack");

    // A SluiceError's message is written for the caller: sent as is, and not logged as a failure.
    log.lines.length = 0;
    const full = await app.inject({ method: "GET", url: "/full" });
    assert.equal(full.statusCode, new StorageFullError("x").httpStatus);
    assert.deepEqual(full.json(), new StorageFullError("disk /data is 99% full").toJSON());
    assert.equal(log.lines.length, 0);
  });

  it("type-checks JSON bodies as sent, and coerces query strings and path params", async () => {
    const ok = await app.inject({ method: "POST", url: "/parts/7?flag=true&tags=a", payload: { size: 3 } });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(ok.json(), { params: { count: 7 }, query: { flag: true, tags: ["a"] }, body: { size: 3, label: "none" } });
    for (const payload of [{ size: "3" }, { size: true }, { size: 3, label: 5 }, { size: [3] }]) {
      const refused = await app.inject({ method: "POST", url: "/parts/7", payload });
      assert.equal(refused.statusCode, 400, JSON.stringify(payload));
      const field = "label" in payload ? "label" : "size";
      assert.equal((refused.json() as { field: string }).field, field, JSON.stringify(payload));
    }
    const badParam = await app.inject({ method: "POST", url: "/parts/seven", payload: { size: 3 } });
    assert.equal(badParam.statusCode, 400);
    assert.equal((badParam.json() as { field: string }).field, "count");
  });

  it("refuses to create, alter or delete internal topics, naming the topic as internal", async () => {
    const cases: { method: "POST" | "PATCH" | "DELETE"; url: string; payload?: object; field: string; topic: string; action: string }[] = [
      { method: "DELETE", url: "/api/v1/topics/%25groups", field: "topic", topic: "%groups", action: "delete" },
      { method: "DELETE", url: "/api/v1/topics/%25DLQ%25workers", field: "topic", topic: "%DLQ%workers", action: "delete" },
      { method: "PATCH", url: "/api/v1/topics/%25groups", payload: { partitions: 64 }, field: "topic", topic: "%groups", action: "alter" },
      { method: "POST", url: "/api/v1/topics", payload: { name: "%DLQ%workers" }, field: "name", topic: "%DLQ%workers", action: "create" },
    ];
    for (const c of cases) {
      // No cluster stands behind this app: an answer at all shows the request stopped before the SDK.
      const response = await app.inject({ method: c.method, url: c.url, ...(c.payload === undefined ? {} : { payload: c.payload }) });
      const label = `${c.method} ${c.url}`;
      assert.equal(response.statusCode, 400, `${label}: ${response.body}`);
      const body = response.json() as { code: string; message: string; field: string };
      assert.equal(body.code, "INVALID_ARGUMENT", label);
      assert.equal(body.field, c.field, label);
      assert.ok(body.message.includes(JSON.stringify(c.topic)), `${label}: ${body.message}`);
      assert.match(body.message, new RegExp(`internal topic.*does not ${c.action} internal topics`), label);
    }
  });

  it("keeps /healthz, /readyz and /metrics", async () => {
    assert.deepEqual((await app.inject({ method: "GET", url: "/healthz" })).json(), { status: "ok" });
    const notReady = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(notReady.statusCode, 503);
    assert.deepEqual(notReady.json(), { status: "not ready", reason: "recovering logs" });
    ready = null;
    const nowReady = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(nowReady.statusCode, 200);
    assert.deepEqual(nowReady.json(), { status: "ready" });
    const metrics = await app.inject({ method: "GET", url: "/metrics" });
    assert.equal(metrics.statusCode, 200);
    assert.match(String(metrics.headers["content-type"]), /^text\/plain/);
  });

  it("serves the console's three files with a same-origin Content-Security-Policy, and nothing else", async () => {
    for (const [url, type] of [["/console", /^text\/html/], ["/console/", /^text\/html/], ["/console/console.js", /^text\/javascript/], ["/console/console.css", /^text\/css/]] as const) {
      const response = await app.inject({ method: "GET", url });
      assert.equal(response.statusCode, 200, url);
      assert.match(String(response.headers["content-type"]), type, url);
      assert.match(String(response.headers["content-security-policy"]), /script-src 'self'/, url);
    }
    const html = (await app.inject({ method: "GET", url: "/console" })).body;
    assert.match(html, /<script type="module" src="\/console\/console.js"><\/script>/);
    assert.doesNotMatch(html, /https?:\/\//, "no third-party asset");
    // Names every object has (constructor, __proto__, toString) are no files either.
    for (const url of [
      "/console/index.ts",
      "/console/..%2F..%2Fpackage.json",
      "/console/%2e%2e%2fsrc%2findex.ts",
      "/console/constructor",
      "/console/__proto__",
      "/console/toString",
      "/console/hasOwnProperty",
    ]) {
      const response = await app.inject({ method: "GET", url });
      assert.equal(response.statusCode, 404, url);
      assert.equal((response.json() as { code: string }).code, "NOT_FOUND");
      assert.doesNotMatch(response.body, /ops\/console\/web/, `${url}: no server path in the answer`);
    }
  });
});
