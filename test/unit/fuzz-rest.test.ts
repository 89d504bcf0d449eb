/**
 * Fuzzing the REST admin API's JSON bodies: create topic (POST /api/v1/topics), add
 * partitions (PATCH /api/v1/topics/:topic) and set a flow rule (PUT /admin/flow), with random
 * JSON values, wrong types, huge strings, deep nesting, invalid UTF-8 and truncated JSON.
 *
 * Going through fastify's inject costs about a hundred times more than a decode, so the
 * 100,000 inputs per body run against what fastify would run: the body validators compiled
 * by common/src/http/validation.ts (checked against a hand-written reading of the schema, so
 * a validator that lets a wrong body through fails), their 400 message formatting, and the
 * flow route's parseFlowRule. Then a few thousand go through inject on a server built as the
 * broker builds it (createHttpServer + the console's topic routes + the flow admin routes),
 * where every answer must be a typed JSON error or a success, never a 5xx.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance, FastifySchemaValidationError } from "fastify";
import { Registry } from "prom-client";
import { MAX_TOPIC_PARTITIONS } from "../../clients/src/admin/admin.js";
import type { Admin } from "../../clients/src/index.js";
import { InvalidConfigError, InvalidPartitionsError, TopicAlreadyExistsError } from "../../common/src/errors.js";
import { parseFlowRule, type FlowRule } from "../../common/src/flow/rules.js";
import { errorReply, formatValidationError } from "../../common/src/http/error-replies.js";
import { createHttpServer } from "../../common/src/http/server.js";
import { requestValidatorCompiler } from "../../common/src/http/validation.js";
import { FlowController } from "../../broker/src/flow/flow-controller.js";
import { FlowRuleStore } from "../../broker/src/flow/rule-store.js";
import { registerFlowAdmin } from "../../broker/src/http/flow-admin.js";
import { alterTopicBody, createTopicBody } from "../../ops/console/src/schemas.js";
import { registerTopicRoutes } from "../../ops/console/src/topic-routes.js";
import { FILE_BUDGET_MS, MIN_FUZZ_ITERATIONS, describeReport, fileBudget, fuzz } from "../fuzz/driver.js";
import { checkFlowRule } from "../fuzz/flow-rule-checks.js";
import { jsonMutators } from "../fuzz/json-mutate.js";

/** Requests per route through inject (the compiled validators get MIN_FUZZ_ITERATIONS each). */
const INJECTED_PER_ROUTE = 3000;
/** A 400 may quote the field, not the client's whole value. */
const MAX_ERROR_MESSAGE_CHARS = 1000;
const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
/**
 * Mostly tree edits: a body that byte damage made unparsable never reaches a validator (the
 * inject runs cover fastify's JSON parser with byte damage too).
 */
const MUTATORS = jsonMutators(0.75);

type Validator = ((data: unknown) => boolean) & { errors?: FastifySchemaValidationError[] | null };

function compileBody(schema: object, url: string): Validator {
  return requestValidatorCompiler()({ schema, httpPart: "body", method: "POST", url }) as Validator;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isIntegerIn(value: unknown, min: number, max: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

function onlyKeys(body: Record<string, unknown>, keys: readonly string[]): boolean {
  return Object.keys(body).every((key) => keys.includes(key));
}

/** createTopicBody, read by hand. */
function isValidCreateTopic(body: unknown): boolean {
  if (!isPlainObject(body) || !onlyKeys(body, ["name", "partitions", "retentionMs", "retentionBytes", "brokers"])) return false;
  if (typeof body.name !== "string" || !TOPIC_NAME.test(body.name)) return false;
  if (body.partitions !== undefined && !isIntegerIn(body.partitions, 1, MAX_TOPIC_PARTITIONS)) return false;
  for (const field of ["retentionMs", "retentionBytes"]) {
    if (body[field] !== undefined && !isIntegerIn(body[field], 0, Number.MAX_SAFE_INTEGER)) return false;
  }
  const brokers = body.brokers;
  if (brokers === undefined) return true;
  return Array.isArray(brokers) && brokers.every((b) => typeof b === "string" && b !== "") && new Set(brokers).size === brokers.length;
}

/** alterTopicBody, read by hand. */
function isValidAlterTopic(body: unknown): boolean {
  return isPlainObject(body) && onlyKeys(body, ["partitions"]) && isIntegerIn(body.partitions, 1, MAX_TOPIC_PARTITIONS);
}

/** A refused body's 400, as the broker's error handler would build it. */
function checkRefusal(validate: Validator): string {
  const reply = errorReply(formatValidationError(validate.errors ?? [], "body"));
  assert.equal(reply.status, 400);
  assert.equal(reply.body.code, "INVALID_ARGUMENT");
  assert.ok(reply.body.message.length <= MAX_ERROR_MESSAGE_CHARS, `400 message of ${reply.body.message.length} characters`);
  return "refused";
}

function parseBody(input: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(input.toString("utf8")) };
  } catch {
    return { ok: false };
  }
}

/** Records what reached the cluster: only bodies the schema allows may. */
function fakeAdmin(calls: unknown[]): Admin {
  return {
    createTopic: async (name: string, settings: unknown) => {
      calls.push({ name, ...(settings as object) });
      throw new TopicAlreadyExistsError(name);
    },
    createPartitions: async (_topic: string, partitions: number) => {
      calls.push({ partitions });
      throw new InvalidPartitionsError(`topic already has more than ${partitions} partitions`);
    },
  } as unknown as Admin;
}

describe("fuzz: REST admin bodies", () => {
  const reports: string[] = [];
  const remainingMs = fileBudget(FILE_BUDGET_MS);
  after(() => {
    for (const line of reports) console.log(line);
  });

  it("create topic: the compiled body validator agrees with the schema on every damaged body", async () => {
    const validate = compileBody(createTopicBody, "/api/v1/topics");
    const report = await fuzz({
      name: "rest-create-topic",
      corpusDir: "rest-create-topic",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: remainingMs(),
      mutators: MUTATORS,
      run: (input) => {
        const parsed = parseBody(input);
        if (!parsed.ok) return "not JSON";
        const expected = isValidCreateTopic(parsed.value);
        const accepted = validate(parsed.value);
        assert.equal(accepted, expected, `validator says ${accepted}, the schema says ${expected}`);
        return accepted ? "accepted" : checkRefusal(validate);
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS && report.outcomes.accepted! > 0 && report.outcomes.refused! > 0);
  });

  it("add partitions: the compiled body validator agrees with the schema on every damaged body", async () => {
    const validate = compileBody(alterTopicBody, "/api/v1/topics/:topic");
    const report = await fuzz({
      name: "rest-alter-topic",
      corpusDir: "rest-alter-topic",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: remainingMs(),
      mutators: MUTATORS,
      run: (input) => {
        const parsed = parseBody(input);
        if (!parsed.ok) return "not JSON";
        const expected = isValidAlterTopic(parsed.value);
        const accepted = validate(parsed.value);
        assert.equal(accepted, expected, `validator says ${accepted}, the schema says ${expected}`);
        return accepted ? "accepted" : checkRefusal(validate);
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS && report.outcomes.accepted! > 0 && report.outcomes.refused! > 0);
  });

  it("flow rule: the body validator and parseFlowRule refuse with a typed 400 or return a rule in range", async () => {
    const validate = compileBody({ type: "object" }, "/admin/flow");
    const report = await fuzz({
      name: "rest-flow-rule",
      corpusDir: "rest-flow-rule",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: remainingMs(),
      mutators: MUTATORS,
      run: (input) => {
        const parsed = parseBody(input);
        if (!parsed.ok) return "not JSON";
        if (!validate(parsed.value)) return checkRefusal(validate);
        let rule: FlowRule;
        try {
          rule = parseFlowRule(parsed.value, "rule");
        } catch (err) {
          assert.ok(err instanceof InvalidConfigError, `expected InvalidConfigError, got ${(err as Error)?.stack ?? String(err)}`);
          assert.equal(errorReply(err).status, 400);
          // parseFlowRule quotes the value it refuses whole (rules.ts `show`): no longer than the body, at least.
          assert.ok(err.message.length <= input.length + MAX_ERROR_MESSAGE_CHARS, `message of ${err.message.length} characters`);
          return "refused";
        }
        checkFlowRule(rule);
        return "accepted";
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS && report.outcomes.accepted! > 0 && report.outcomes.refused! > 0);
  });

  describe("through fastify inject, on a server built as the broker builds it", () => {
    let app: FastifyInstance;
    let dataDir: string;
    const adminCalls: unknown[] = [];
    let flow: FlowController;
    before(async () => {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-fuzz-rest-"));
      app = createHttpServer({ metrics: new Registry(), notReadyReason: () => null });
      registerTopicRoutes(app, { admin: () => fakeAdmin(adminCalls) });
      flow = new FlowController();
      registerFlowAdmin(app, { flow, store: new FlowRuleStore(dataDir), broker: "fuzz/0" });
      await app.ready();
    });
    after(async () => {
      await app.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    const routes = [
      { corpus: "rest-create-topic", method: "POST", url: "/api/v1/topics", valid: isValidCreateTopic },
      { corpus: "rest-alter-topic", method: "PATCH", url: "/api/v1/topics/orders", valid: isValidAlterTopic },
      { corpus: "rest-flow-rule", method: "PUT", url: "/admin/flow", valid: null },
    ] as const;
    const CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"];

    for (const route of routes) {
      it(`${route.method} ${route.url}: every answer is a typed JSON error or a success, never a 5xx`, async () => {
        const callsBefore = adminCalls.length;
        const report = await fuzz({
          name: `inject ${route.method} ${route.url}`,
          corpusDir: route.corpus,
          iterations: INJECTED_PER_ROUTE,
          maxMs: remainingMs(),
          mutators: MUTATORS,
          run: async (input) => {
            // The content type follows from the bytes, so a saved crash replays the same request.
            const contentType = CONTENT_TYPES[input.length % 7 === 0 ? (input[0] ?? 0) % CONTENT_TYPES.length : 0]!;
            const response = await app.inject({ method: route.method, url: route.url, payload: input, headers: { "content-type": contentType } });
            assert.ok(response.statusCode < 500, `answered ${response.statusCode}: ${response.body.slice(0, 300)}`);
            const body = response.json() as { code?: unknown; message?: unknown; retriable?: unknown; rule?: FlowRule };
            if (response.statusCode >= 400) {
              assert.equal(typeof body.code, "string");
              assert.equal(typeof body.message, "string");
              assert.equal(typeof body.retriable, "boolean");
              return `${response.statusCode} ${String(body.code)}`;
            }
            assert.ok(body.rule, "a 2xx is the flow route's answer");
            checkFlowRule(body.rule);
            return `${response.statusCode}`;
          },
        });
        reports.push(describeReport(report));
        assert.ok(report.iterations >= INJECTED_PER_ROUTE);
        const reached = adminCalls.slice(callsBefore);
        if (route.valid !== null) {
          // Only the fake admin's refusals (409) tell a body got through; each one was valid.
          assert.ok(reached.length > 0, "some bodies pass validation and reach the cluster");
          for (const call of reached) assert.ok(route.valid(call), `an invalid body reached the admin client: ${JSON.stringify(call).slice(0, 200)}`);
        } else {
          assert.ok(Object.keys(report.outcomes).some((k) => k.startsWith("200")), "some rules are set");
          for (const status of flow.list()) checkFlowRule(status);
        }
      });
    }
  });
});
