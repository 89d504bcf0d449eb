/**
 * How request parts are checked against their route's JSON schema. Fastify's own compiler
 * coerces every part (`coerceTypes: "array"`), which is right for the parts that only ever
 * arrive as text and wrong for JSON bodies:
 *
 *   part                       coerced   why
 *   querystring, params,       yes       "?partition=3" and "/topics/3" are strings on the
 *   headers                              wire; a single "?tag=a" may stand for an array
 *   body                       no        JSON has types: {"name":12,"partitions":true} is a
 *                                        mistake to refuse, not a topic "12" with 1 partition
 *
 * Everything else is as fastify sets it: defaults are filled in, unknown fields are refused
 * rather than dropped (a misspelt "partiton" must not create a topic with the default
 * partition count), and validation stops at the first error (allErrors makes a crafted
 * body cost more to check than to send).
 *
 * Schemas may not use `format` (ajv-formats is not loaded): Ajv's strict mode refuses such
 * a schema when its route is registered, so the gap shows at start-up, never per request.
 */
import { Ajv, type Options } from "ajv";
import type { FastifySchemaCompiler } from "fastify";

const SHARED_OPTIONS: Options = {
  useDefaults: true,
  removeAdditional: false,
  allErrors: false,
  // Schemas are compiled once per route; registering them by $id would make two routes
  // sharing a schema object with an $id clash.
  addUsedSchema: false,
};

/** A fastify validator compiler: strict JSON bodies, coerced query strings, path params and headers. */
export function requestValidatorCompiler(): FastifySchemaCompiler<unknown> {
  const strict = new Ajv({ ...SHARED_OPTIONS, coerceTypes: false });
  const coercing = new Ajv({ ...SHARED_OPTIONS, coerceTypes: "array" });
  return ({ schema, httpPart }) => {
    // fastify names the part "body" for a body schema, also one given per content type.
    return (httpPart === "body" ? strict : coercing).compile(schema as object);
  };
}
