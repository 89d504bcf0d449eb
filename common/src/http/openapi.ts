/**
 * An OpenAPI 3.1 document built from the routes a fastify app registers, so the document
 * at GET /docs/json cannot drift from the schemas that validate requests and serialize
 * answers. createHttpServer collects every route through fastify's onRoute hook (see
 * RouteCatalog) before any route exists, so routes added later by plugins are covered too.
 *
 * OpenAPI 3.1 takes JSON Schema 2020-12 as is, so route schemas (which fastify's Ajv and
 * fast-json-stringify read) are copied without translation, nullable types (`["string",
 * "null"]`) included.
 *
 * A route's schema may carry, besides what fastify reads (params, querystring, body,
 * response): `summary`, `description`, `tags`, and `hide: true` to leave it out.
 */
import type { RouteOptions } from "fastify";

export const OPENAPI_VERSION = "3.1.0";

// What routes may put in their schema for the document, beside what fastify itself reads.
declare module "fastify" {
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    /** Leave the route out of the OpenAPI document. */
    hide?: boolean;
  }
}

type JsonSchema = Record<string, unknown>;

/** What the generator reads of a route's `schema` option. */
export interface DocumentedSchema {
  summary?: string;
  description?: string;
  tags?: string[];
  hide?: boolean;
  params?: JsonSchema;
  querystring?: JsonSchema;
  query?: JsonSchema;
  body?: JsonSchema;
  response?: Record<string, JsonSchema>;
}

export interface DocumentedRoute {
  method: string;
  /** As registered: `/api/v1/topics/:topic`. */
  url: string;
  schema: DocumentedSchema;
}

/** Every response may also be an error in the one shape the error handlers send. */
export const ERROR_SCHEMA: JsonSchema = {
  type: "object",
  required: ["code", "message", "retriable"],
  properties: {
    code: { type: "string", description: "Stable error code (INVALID_ARGUMENT, UNKNOWN_TOPIC, NOT_FOUND, …)" },
    message: { type: "string", description: "What went wrong and what to do" },
    retriable: { type: "boolean" },
    retryAfterMs: { type: "integer", description: "When a retry makes sense, in ms" },
    field: { type: "string", description: "The request field that failed validation (400 only)" },
  },
};

/** Methods fastify adds by itself (HEAD for every GET) are not documented. */
const UNDOCUMENTED_METHODS: ReadonlySet<string> = new Set(["HEAD", "OPTIONS"]);
const OPERATION_METHODS: ReadonlySet<string> = new Set(["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"]);

/** Collects routes as fastify registers them (give `add` to an onRoute hook). */
export class RouteCatalog {
  private readonly collected: DocumentedRoute[] = [];

  add(route: Pick<RouteOptions, "method" | "url" | "schema">): void {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const schema = (route.schema ?? {}) as DocumentedSchema;
    if (schema.hide === true) return;
    for (const method of methods) {
      const upper = String(method).toUpperCase();
      if (UNDOCUMENTED_METHODS.has(upper) || !OPERATION_METHODS.has(upper)) continue;
      this.collected.push({ method: upper, url: route.url, schema });
    }
  }

  routes(): readonly DocumentedRoute[] {
    return this.collected;
  }
}

export interface OpenApiInfo {
  title: string;
  version: string;
  description?: string;
}

export interface OpenApiDocument {
  openapi: string;
  info: OpenApiInfo;
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, JsonSchema> };
}

export function openApiDocument(routes: readonly DocumentedRoute[], info: OpenApiInfo): OpenApiDocument {
  const paths: Record<string, Record<string, unknown>> = {};
  const sorted = [...routes].sort((a, b) => (a.url === b.url ? a.method.localeCompare(b.method) : a.url < b.url ? -1 : 1));
  for (const route of sorted) {
    const { path, pathParams } = openApiPath(route.url);
    paths[path] ??= {};
    paths[path][route.method.toLowerCase()] = operation(route, pathParams);
  }
  return { openapi: OPENAPI_VERSION, info, paths, components: { schemas: { Error: ERROR_SCHEMA } } };
}

/** `/topics/:topic` → `/topics/{topic}`; a regex constraint (`:id(^\\d+$)`) is dropped, `*` becomes `{wildcard}`. */
export function openApiPath(url: string): { path: string; pathParams: string[] } {
  const pathParams: string[] = [];
  const segments = url.split("/").map((segment) => {
    if (segment === "*") {
      pathParams.push("*");
      return "{wildcard}";
    }
    if (!segment.startsWith(":")) return segment;
    const name = segment.slice(1).replace(/\(.*\)$/, "");
    pathParams.push(name);
    return `{${name}}`;
  });
  return { path: segments.join("/"), pathParams };
}

function operation(route: DocumentedRoute, pathParams: string[]): Record<string, unknown> {
  const { schema } = route;
  const out: Record<string, unknown> = {
    operationId: operationId(route.method, route.url),
  };
  if (schema.summary !== undefined) out.summary = schema.summary;
  if (schema.description !== undefined) out.description = schema.description;
  if (schema.tags !== undefined) out.tags = schema.tags;
  const parameters = [...pathParameters(pathParams, schema.params), ...queryParameters(schema.querystring ?? schema.query)];
  if (parameters.length > 0) out.parameters = parameters;
  if (schema.body !== undefined) {
    out.requestBody = { required: true, content: { "application/json": { schema: schema.body } } };
  }
  out.responses = responses(schema.response);
  return out;
}

/** `GET /api/v1/topics/:topic` → `get_api_v1_topics_topic`: stable, unique per method and path. */
function operationId(method: string, url: string): string {
  const words = url.split(/[^a-zA-Z0-9]+/).filter((word) => word !== "");
  return [method.toLowerCase(), ...words].join("_");
}

function pathParameters(names: string[], params: JsonSchema | undefined): unknown[] {
  const properties = (params?.properties ?? {}) as Record<string, JsonSchema>;
  return names.map((name) => {
    const property = properties[name] ?? { type: "string" };
    return parameter(name === "*" ? "wildcard" : name, "path", true, property);
  });
}

function queryParameters(querystring: JsonSchema | undefined): unknown[] {
  if (querystring === undefined) return [];
  const properties = (querystring.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((querystring.required ?? []) as string[]);
  return Object.entries(properties).map(([name, property]) => parameter(name, "query", required.has(name), property));
}

/** OpenAPI wants a parameter's description beside its schema, not inside it. */
function parameter(name: string, location: "path" | "query", required: boolean, property: JsonSchema): Record<string, unknown> {
  const { description, ...schema } = property;
  const out: Record<string, unknown> = { name, in: location, required, schema };
  if (typeof description === "string") out.description = description;
  return out;
}

/**
 * Route response schemas keyed by status ("200", "2xx", "default"). A schema in fastify's
 * content-type form (`{ description, content: { "text/plain": { schema } } }`) is kept as is;
 * a plain schema is JSON. Error answers (the error and not-found handlers) are added to all.
 */
function responses(response: Record<string, JsonSchema> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [status, schema] of Object.entries(response ?? {})) {
    const key = status.replace(/xx$/i, "XX");
    const description = typeof schema.description === "string" ? schema.description : defaultDescription(key);
    if (schema.content !== undefined) {
      out[key] = { description, content: schema.content };
    } else {
      out[key] = { description, content: { "application/json": { schema } } };
    }
  }
  if (Object.keys(out).length === 0) out["200"] = { description: "OK" };
  const error = { content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } };
  out["4XX"] ??= { description: "Bad input (400 names the failing field), not found (404), conflict (409)…", ...error };
  out["5XX"] ??= { description: "The server could not answer; `retriable` says whether to try again", ...error };
  return out;
}

function defaultDescription(status: string): string {
  if (status.startsWith("2")) return "OK";
  if (status === "default") return "Any other answer";
  return `Status ${status}`;
}
