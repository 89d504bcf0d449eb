/**
 * The HTTP side every Sluice process has (fastify): /healthz, /readyz, /metrics, the OpenAPI
 * document of all its routes at /docs/json, and one JSON error shape (error-replies.ts) for
 * failures and unknown paths. Callers add their own routes (admin API, console) to the
 * returned instance; every route added later is documented too.
 */
import type { IncomingHttpHeaders } from "node:http";
import Fastify, { type FastifyInstance } from "fastify";
import { Registry, collectDefaultMetrics } from "prom-client";
import { silentLogger, type Logger } from "../logger.js";
import { AuthenticationFailedError, toSluiceError } from "../errors.js";
import { openGuard } from "../security/open-guard.js";
import type { ServerTls } from "../security/tls-files.js";
import { ANONYMOUS, type Principal, type SecurityGuard } from "../security/types.js";
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
  /** HTTPS with this identity (and, with a CA, client certificates verified against it). */
  tls?: ServerTls | undefined;
  /**
   * Authentication of every request (Basic credentials or a client certificate) and the guard
   * routes check permissions with. @defaultValue none: everyone is ANONYMOUS
   */
  auth?: HttpAuth | undefined;
}

export interface HttpAuth {
  guard: SecurityGuard;
  authenticate(headers: IncomingHttpHeaders, socket: unknown): Promise<Principal>;
  /** /metrics, /healthz and /readyz answer without credentials (for scrapers and probes). */
  openMetrics: boolean;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Who sent the request (ANONYMOUS when the server runs without --auth). */
    principal: Principal;
  }
  interface FastifyInstance {
    /** Permission checks for routes: `app.securityGuard.require(request.principal, …)`. */
    securityGuard: SecurityGuard;
    /**
     * Authenticates a request that bypasses routing (a WebSocket upgrade) the way every routed
     * request is; ANONYMOUS when the server runs without --auth. Throws AuthenticationFailedError.
     */
    authenticateHeaders(headers: IncomingHttpHeaders, socket: unknown): Promise<Principal>;
  }
}

/** Paths `--open-metrics` leaves open: what scrapers and orchestrators' probes call. */
export const OPEN_METRICS_PATHS: ReadonlySet<string> = new Set(["/metrics", "/healthz", "/readyz"]);

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
    ...(options.tls
      ? {
          https: {
            cert: options.tls.cert,
            key: options.tls.key,
            ...(options.tls.ca ? { ca: options.tls.ca, requestCert: true } : {}),
            // A bad client certificate gets a 401 naming why, not a dropped handshake.
            rejectUnauthorized: false,
            minVersion: "TLSv1.2" as const,
          },
        }
      : {}),
  }) as unknown as FastifyInstance;
  installAuthentication(app, options.auth);
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

/**
 * Every request is authenticated before routing (401 with the reason and a Basic challenge when
 * it fails), except the probe and scrape paths when `openMetrics` says so.
 */
function installAuthentication(app: FastifyInstance, auth: HttpAuth | undefined): void {
  app.decorate("securityGuard", auth?.guard ?? openGuard);
  app.decorate("authenticateHeaders", auth ? (headers: IncomingHttpHeaders, socket: unknown) => auth.authenticate(headers, socket) : async () => ANONYMOUS);
  // Fastify refuses object defaults on requests (they would be shared): null, set per request.
  app.decorateRequest("principal", null as unknown as Principal);
  if (!auth) {
    app.addHook("onRequest", async (request) => {
      request.principal = ANONYMOUS;
    });
    return;
  }
  app.addHook("onRequest", async (request, reply) => {
    request.principal = ANONYMOUS;
    const path = request.url.split("?", 1)[0] ?? "";
    if (auth.openMetrics && OPEN_METRICS_PATHS.has(path)) return;
    try {
      request.principal = await auth.authenticate(request.headers, request.raw.socket);
    } catch (err) {
      const e = err instanceof AuthenticationFailedError ? err : toSluiceError(err);
      return reply.code(e.httpStatus).header("www-authenticate", 'Basic realm="sluice", charset="UTF-8"').send(e.toJSON());
    }
  });
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
