/**
 * The HTTP side every Sluice process has (fastify): /healthz, /readyz, /metrics, the OpenAPI
 * document of all its routes at /docs/json, and one JSON error shape (error-replies.ts) for
 * failures and unknown paths. Callers add their own routes (admin API, console) to the
 * returned instance; every route added later is documented too.
 */
import Fastify, { type FastifyInstance } from "fastify";
import { Registry, collectDefaultMetrics } from "prom-client";
import { silentLogger, type Logger } from "../logger.js";
import { errorReply, formatValidationError, notFoundBody } from "./error-replies.js";
import { RouteCatalog, openApiDocument } from "./openapi.js";
import { requestValidatorCompiler } from "./validation.js";

export interface HttpServerOptions {
  /** Prometheus registry whose metrics /metrics exposes. */
  metrics: Registry;
  /** Why the process cannot serve yet, or null when it can. */
  notReadyReason: () => string | null;
  /** Title of the OpenAPI document. @defaultValue "Sluice HTTP API" */
  apiTitle?: string;
  /**
   * Where failures the caller cannot act on go (a handler's bug, a missing file): their
   * answer only says "internal error", the details are logged here. @defaultValue silent
   */
  logger?: Logger;
}

/**
 * Routes a process adds to its HTTP server from outside its own package (the admin REST API
 * and console that `sluice broker` mounts). Called before the server listens.
 */
export type HttpPlugin = (app: FastifyInstance) => void;

export const DEFAULT_API_TITLE = "Sluice HTTP API";
/** The version of the HTTP API the document describes (the admin API's prefix is /api/v1). */
export const HTTP_API_VERSION = "1";
export const MAX_REQUEST_BODY_BYTES = 1024 * 1024;

const HEALTH_SCHEMA = {
  type: "object",
  required: ["status"],
  properties: { status: { type: "string" }, reason: { type: "string", description: "Why the process cannot serve yet" } },
};

export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const logger = options.logger ?? silentLogger;
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_REQUEST_BODY_BYTES,
    schemaErrorFormatter: formatValidationError,
  });
  // JSON bodies are checked as sent, query strings and path params coerced (validation.ts).
  app.setValidatorCompiler(requestValidatorCompiler());
  // First, so every route registered afterwards, by this process or a plugin, is collected.
  const catalog = new RouteCatalog();
  app.addHook("onRoute", (route) => catalog.add(route));

  app.get(
    "/healthz",
    { schema: { summary: "200 while the process is alive", tags: ["health"], response: { 200: HEALTH_SCHEMA } } },
    async () => ({ status: "ok" }),
  );
  app.get(
    "/readyz",
    {
      schema: {
        summary: "200 when the process can serve, 503 with the reason otherwise",
        tags: ["health"],
        response: { 200: HEALTH_SCHEMA, 503: HEALTH_SCHEMA },
      },
    },
    async (_request, reply) => {
      const reason = options.notReadyReason();
      if (reason !== null) return reply.code(503).send({ status: "not ready", reason });
      return { status: "ready" };
    },
  );
  app.get(
    "/metrics",
    {
      schema: {
        summary: "Prometheus metrics (text exposition format)",
        tags: ["health"],
        response: { 200: { description: "Prometheus text format 0.0.4", content: { "text/plain": { schema: { type: "string" } } } } },
      },
    },
    async (_request, reply) => {
      const body = await options.metrics.metrics();
      return reply.header("content-type", options.metrics.contentType).send(body);
    },
  );
  app.get(
    "/docs/json",
    {
      schema: {
        summary: "This OpenAPI 3.1 document: every route of this process with its schemas",
        tags: ["docs"],
        response: { 200: { type: "object", additionalProperties: true, properties: { openapi: { type: "string" } } } },
      },
    },
    async () => openApiDocument(catalog.routes(), { title: options.apiTitle ?? DEFAULT_API_TITLE, version: HTTP_API_VERSION }),
  );

  app.setErrorHandler((err, request, reply) => {
    const { status, body, internal } = errorReply(err);
    if (internal) logger.error({ err, method: request.method, url: request.url, status }, "HTTP request failed");
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(notFoundBody(request.method, request.url)));
  return app;
}

/** A registry with process metrics (CPU, memory, event-loop lag, GC), prefixed sluice_. */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "sluice_" });
  return registry;
}

/** Binds the server and returns "host:port" as bound (port 0 picks a free port). */
export async function listenHttp(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const address = app.server.address();
  if (address === null || typeof address === "string") return `${host}:${port}`;
  return `${host}:${address.port}`;
}
