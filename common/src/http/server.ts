/**
 * The HTTP side every Sluice process has (fastify): /healthz, /readyz and /metrics.
 * Callers add their own routes (admin API, console) to the returned instance.
 */
import Fastify, { type FastifyInstance } from "fastify";
import { Registry, collectDefaultMetrics } from "prom-client";
import { SluiceError } from "../errors.js";

export interface HttpServerOptions {
  /** Prometheus registry whose metrics /metrics exposes. */
  metrics: Registry;
  /** Why the process cannot serve yet, or null when it can. */
  notReadyReason: () => string | null;
}

/**
 * Routes a process adds to its HTTP server from outside its own package (the admin REST API
 * and console that `sluice broker` mounts). Called before the server listens.
 */
export type HttpPlugin = (app: FastifyInstance) => void;

export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const reason = options.notReadyReason();
    if (reason !== null) return reply.code(503).send({ status: "not ready", reason });
    return { status: "ready" };
  });
  app.get("/metrics", async (_request, reply) => {
    const body = await options.metrics.metrics();
    return reply.header("content-type", options.metrics.contentType).send(body);
  });
  app.setErrorHandler((err, _request, reply) => {
    if (err instanceof SluiceError) {
      return reply.code(err.httpStatus).send(err.toJSON());
    }
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    // Never send a stack trace; validation errors name the failing field.
    const message = err instanceof Error ? err.message : String(err);
    return reply.code(status).send({ code: status === 400 ? "INVALID_ARGUMENT" : "INTERNAL", message, retriable: false });
  });
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
