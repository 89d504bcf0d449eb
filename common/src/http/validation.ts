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
 *
 * A JSON body nested deeper than MAX_BODY_DEPTH is refused before its schema is checked:
 * the 1 MiB body limit still lets a client send half a million levels (`[[[[…`), and any
 * recursive code that meets such a value later — JSON.stringify or String() quoting it in an
 * error message, as parseFlowRule does for PUT /admin/flow — overflows the stack, a RangeError
 * that ends as an untyped 500 instead of the 400 the client earned.
 */
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from "ajv";
import type { FastifySchemaCompiler } from "fastify";

const SHARED_OPTIONS: Options = {
  useDefaults: true,
  removeAdditional: false,
  allErrors: false,
  // Schemas are compiled once per route; registering them by $id would make two routes
  // sharing a schema object with an $id clash.
  addUsedSchema: false,
};

/** Deepest nesting of arrays and objects a JSON body may have; admin bodies need three levels at most. */
export const MAX_BODY_DEPTH = 32;

const TOO_DEEP: ErrorObject = {
  keyword: "maxDepth",
  instancePath: "",
  schemaPath: "#",
  params: { limit: MAX_BODY_DEPTH },
  message: `must not nest arrays and objects more than ${MAX_BODY_DEPTH} levels deep`,
};

/** A fastify validator compiler: strict JSON bodies, coerced query strings, path params and headers. */
export function requestValidatorCompiler(): FastifySchemaCompiler<unknown> {
  const strict = new Ajv({ ...SHARED_OPTIONS, coerceTypes: false });
  const coercing = new Ajv({ ...SHARED_OPTIONS, coerceTypes: "array" });
  return ({ schema, httpPart }) => {
    // fastify names the part "body" for a body schema, also one given per content type.
    if (httpPart !== "body") return coercing.compile(schema as object);
    return refusingDeepNesting(strict.compile(schema as object));
  };
}

/**
 * `validate` behind a nesting check. It stays an Ajv function to fastify: `schemaEnv` tells
 * fastify to pass the request as parent, so that defaults can be filled into the body itself.
 */
function refusingDeepNesting(validate: ValidateFunction): ValidateFunction {
  const guarded = function (this: unknown, data: unknown, dataCxt?: Parameters<ValidateFunction>[1]): boolean {
    if (nestedDeeperThan(data, MAX_BODY_DEPTH)) {
      guarded.errors = [TOO_DEEP];
      return false;
    }
    const valid = validate.call(this, data, dataCxt);
    guarded.errors = validate.errors;
    return valid;
  } as ValidateFunction;
  guarded.schema = validate.schema;
  guarded.schemaEnv = validate.schemaEnv;
  return guarded;
}

/** Whether arrays and objects nest more than `maxDepth` levels; iterative, so no depth can overflow it. */
export function nestedDeeperThan(value: unknown, maxDepth: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  const pending: { node: object; depth: number }[] = [{ node: value, depth: 1 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.depth > maxDepth) return true;
    const children = Array.isArray(next.node) ? (next.node as unknown[]) : Object.values(next.node);
    for (const child of children) {
      if (typeof child === "object" && child !== null) pending.push({ node: child, depth: next.depth + 1 });
    }
  }
  return false;
}
