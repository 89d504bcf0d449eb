/**
 * The one JSON shape every HTTP error answer has, whichever part of fastify produced it:
 *
 *   { "code": "INVALID_ARGUMENT", "message": "request body field \"partitions\" must be >= 1",
 *     "retriable": false, "field": "partitions" }
 *
 * `code` is a SluiceError code, or NOT_FOUND for a path no route serves. A validation
 * failure names the field (`field` is its path inside the body, query string or path, dotted).
 * No answer ever carries a stack trace, and a 5xx that is not a SluiceError carries no
 * message of its own either (INTERNAL_ERROR_MESSAGE): the server logs it instead.
 */
import type { FastifySchemaValidationError } from "fastify";
import { SluiceError } from "../errors.js";

export interface ErrorBody {
  code: string;
  message: string;
  retriable: boolean;
  retryAfterMs?: number;
  field?: string;
}

/** What a validation failure carries from the formatter to the error handler. */
export class RequestValidationError extends Error {
  readonly statusCode = 400;
  constructor(
    message: string,
    /** Path of the failing field inside its part ("partitions", "brokers.0"); "" for the part itself. */
    readonly field: string,
  ) {
    super(message);
    this.name = "RequestValidationError";
  }
}

/** The request part fastify validated (its SchemaErrorDataVar, which the package does not export). */
export type RequestPart = "body" | "headers" | "params" | "querystring";

const PART_NAMES: Record<RequestPart, string> = {
  body: "request body",
  querystring: "query string",
  params: "path",
  headers: "request headers",
};

/**
 * fastify's schemaErrorFormatter: Ajv stops at the first error (fastify's default), which
 * is reported with the field it concerns — including a missing or unknown property, which
 * Ajv reports on the parent object.
 */
export function formatValidationError(errors: FastifySchemaValidationError[], part: RequestPart): Error {
  const first = errors[0];
  const where = PART_NAMES[part] ?? part;
  if (first === undefined) return new RequestValidationError(`invalid ${where}`, "");
  const base = first.instancePath.split("/").filter((segment) => segment !== "").map(unescapePointer);
  const params = first.params;
  if (first.keyword === "required" && typeof params.missingProperty === "string") {
    const field = [...base, params.missingProperty].join(".");
    return new RequestValidationError(`${where} is missing the required field "${field}"`, field);
  }
  if (first.keyword === "additionalProperties" && typeof params.additionalProperty === "string") {
    const field = [...base, params.additionalProperty].join(".");
    return new RequestValidationError(`${where} has the unknown field "${field}"`, field);
  }
  const field = base.join(".");
  const problem = first.message ?? `fails the "${first.keyword}" rule`;
  const allowed = first.keyword === "enum" && Array.isArray(params.allowedValues) ? `: ${params.allowedValues.map((v) => JSON.stringify(v)).join(", ")}` : "";
  if (field === "") return new RequestValidationError(`${where} ${problem}${allowed}`, "");
  return new RequestValidationError(`${where} field "${field}" ${problem}${allowed}`, field);
}

/** JSON Pointer escapes (RFC 6901): ~1 is "/", ~0 is "~". */
function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, "/").replace(/~0/g, "~");
}

/** What the caller of a failed 5xx request is told when the failure is not a SluiceError. */
export const INTERNAL_ERROR_MESSAGE = "internal error; see the server's log";

export interface ErrorReply {
  status: number;
  body: ErrorBody;
  /**
   * The answer withholds what went wrong (a bug, a failed file read): its message may
   * carry paths or internals, so only the server's log gets it.
   */
  internal: boolean;
}

/** Status and body for anything thrown in a handler or raised by fastify itself. */
export function errorReply(err: unknown): ErrorReply {
  // SluiceError messages are written for the caller, 5xx ones included (STORAGE_FULL, NOT_READY).
  if (err instanceof SluiceError) return { status: err.httpStatus, body: err.toJSON(), internal: false };
  if (err instanceof RequestValidationError) {
    const body: ErrorBody = { code: "INVALID_ARGUMENT", message: err.message, retriable: false };
    if (err.field !== "") body.field = err.field;
    return { status: 400, body, internal: false };
  }
  const declared = (err as { statusCode?: unknown }).statusCode;
  const status = typeof declared === "number" && declared >= 400 && declared <= 599 ? declared : 500;
  if (status >= 500) return { status, body: { code: "INTERNAL", message: INTERNAL_ERROR_MESSAGE, retriable: false }, internal: true };
  // fastify's own 4xx (bad JSON, unsupported media type, body too large) are the caller's to fix.
  const message = err instanceof Error ? err.message : String(err);
  const code = status === 404 ? "NOT_FOUND" : "INVALID_ARGUMENT";
  return { status, body: { code, message, retriable: false }, internal: false };
}

/** Longest part of an unknown URL repeated in the answer. */
const MAX_ECHOED_URL_CHARS = 200;

export function notFoundBody(method: string, url: string): ErrorBody {
  const shown = url.length > MAX_ECHOED_URL_CHARS ? `${url.slice(0, MAX_ECHOED_URL_CHARS)}…` : url;
  return { code: "NOT_FOUND", message: `no route serves ${method} ${shown}; GET /docs/json lists the routes`, retriable: false };
}
