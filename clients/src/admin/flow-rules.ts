/**
 * Flow rules at run time: list, set and delete the ingress limits of every live broker through
 * its REST admin API (`/admin/flow` on the broker's HTTP port). Each broker enforces its own
 * copy of the rules, so a change goes to all of them; a broker that fails is named in the
 * error, after every other broker has been tried, so one slow broker never hides the others.
 *
 *   GET    /admin/flow                      → 200 {"broker", "rules": [{...FlowRule, "source", "state"}]}
 *   PUT    /admin/flow  body FlowRule       → 200 {"broker", "rule": FlowRule}
 *   DELETE /admin/flow?scope=S&limiter=L    → 200 {"broker", "deleted": {"scope", "limiter"}}
 *   errors                                  → 4xx/5xx {"code", "message", "retriable", "retryAfterMs"?}
 *
 * The advertised HTTP address has no scheme: requests are HTTPS checked against the client's
 * `tls` when it is set, and carry its `credentials` (transport/http-request.ts), so a cluster
 * with `--tls-*` and `--auth` is reached as securely as over gRPC.
 */
import {
  BrokerUnavailableError,
  InvalidConfigError,
  NoBrokersAvailableError,
  SluiceError,
  UnsupportedVersionError,
  errorFromWire,
  toSluiceError,
} from "../../../common/src/errors.js";
import { FLOW_LIMITER_KINDS, parseFlowRule, parseFlowScope, type FlowLimiterKind, type FlowRule } from "../../../common/src/flow/rules.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { httpRequest, httpUrl } from "../transport/http-request.js";
import { toClusterBroker, type ClusterBroker } from "./types.js";

/** A rule as the user writes it: parseFlowRule checks it and fills in the defaults. */
export type FlowRuleInput = Omit<FlowRule, "limiter"> & { limiter: FlowLimiterKind | (string & {}) };

/** A limiter's live state on one broker. */
export interface FlowRuleState {
  /** Tokens in a token bucket (negative: in debt), stored permits of a warm-up limiter; absent for the others. */
  available?: number;
  /** Requests waiting for this limiter now. */
  queued: number;
  /** Concurrency limiters: requests admitted and not finished. */
  inFlight?: number;
}

/** One rule as a broker enforces it: from its config file or set at run time (which wins on restart). */
export interface ListedFlowRule extends FlowRule {
  source: "config" | "runtime";
  state: FlowRuleState;
}

export interface BrokerFlowRules {
  /** `<group>/<id>`, e.g. "b1/0". */
  broker: string;
  /** The broker's HTTP host:port. */
  httpAddress: string;
  rules: ListedFlowRule[];
}

/** One broker's answer to a set or a delete. */
export interface FlowRuleChange {
  broker: string;
  httpAddress: string;
  scope: string;
  limiter: FlowLimiterKind;
  /** A set: the rule as the broker stored it, defaults filled in. Absent for a delete. */
  rule?: FlowRule;
}

/** Brokers in these states answer; a dead one is not asked (it would only add a timeout). */
const REACHABLE_STATES = new Set(["alive", "suspect"]);
/** How much of a non-JSON error body ends up in the error message. */
const BODY_PREVIEW_CHARS = 200;

interface FlowTarget {
  broker: string;
  httpAddress: string;
}

/** Every live broker's rules with their source and live state. */
export async function listFlowRules(context: ClientContext): Promise<BrokerFlowRules[]> {
  const targets = await flowTargets(context);
  return fanOut(context, targets, "list flow rules", async (target) => {
    const body = await call(context, target, "GET", "/admin/flow");
    if (!Array.isArray(body.rules)) throw unexpectedBody(target, "GET", body);
    return { broker: target.broker, httpAddress: target.httpAddress, rules: body.rules as ListedFlowRule[] };
  });
}

/**
 * Adds the rule, or replaces the rule with the same (scope, limiter), on every live broker.
 * The rule is checked here first (InvalidConfigError naming the field), so a bad rule never
 * reaches a broker, and sent with its defaults filled in so every broker holds the same values.
 */
export async function setFlowRule(context: ClientContext, rule: FlowRuleInput): Promise<FlowRuleChange[]> {
  const parsed = parseFlowRule(rule);
  const targets = await flowTargets(context);
  return fanOut(context, targets, `set flow rule (${parsed.scope}, ${parsed.limiter})`, async (target) => {
    const body = await call(context, target, "PUT", "/admin/flow", parsed);
    const stored = typeof body.rule === "object" && body.rule !== null ? (body.rule as FlowRule) : parsed;
    return { broker: target.broker, httpAddress: target.httpAddress, scope: parsed.scope, limiter: parsed.limiter, rule: stored };
  });
}

/** Removes the (scope, limiter) rule from every live broker; a broker without it fails with UNKNOWN_FLOW_RULE. */
export async function deleteFlowRule(context: ClientContext, scope: string, limiter: string): Promise<FlowRuleChange[]> {
  parseFlowScope(scope);
  if (!(FLOW_LIMITER_KINDS as readonly string[]).includes(limiter)) {
    throw new InvalidConfigError(`limiter must be one of ${FLOW_LIMITER_KINDS.join(", ")}, got ${JSON.stringify(limiter)}`);
  }
  const kind = limiter as FlowLimiterKind;
  const targets = await flowTargets(context);
  const query = new URLSearchParams({ scope, limiter }).toString();
  return fanOut(context, targets, `delete flow rule (${scope}, ${limiter})`, async (target) => {
    await call(context, target, "DELETE", `/admin/flow?${query}`);
    return { broker: target.broker, httpAddress: target.httpAddress, scope, limiter: kind };
  });
}

/** The brokers to ask: alive or suspect, with an HTTP address, from the name servers' listing. */
async function flowTargets(context: ClientContext): Promise<FlowTarget[]> {
  const deadlineMs = deadlineFromNow(context);
  const response = await context.retry.run(() => context.nameServers.listBrokers(deadlineMs), { deadlineMs });
  const brokers: ClusterBroker[] = response.brokers.map(toClusterBroker);
  const targets = brokers
    .filter((b) => REACHABLE_STATES.has(b.state) && b.httpAddress !== "")
    .map((b) => ({ broker: `${b.group}/${b.id}`, httpAddress: b.httpAddress }));
  if (targets.length === 0) {
    const known = brokers.length === 0 ? "the name servers know no broker" : `none of the ${brokers.length} known brokers is alive with an HTTP address`;
    throw new NoBrokersAvailableError(`no broker to apply flow rules to: ${known}; start one or check \`sluice cluster\``);
  }
  return targets;
}

/**
 * Runs `request` on every target at once and returns the answers in target order, or, when
 * any failed, throws one error naming each failed broker. Its code is the first failure's
 * (the same class when every failure shares it); retriable only when every failure is.
 */
async function fanOut<T>(context: ClientContext, targets: FlowTarget[], what: string, request: (target: FlowTarget) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(targets.map(request));
  const failures: { target: FlowTarget; error: SluiceError }[] = [];
  const results: T[] = [];
  settled.forEach((outcome, index) => {
    const target = targets[index] as FlowTarget;
    if (outcome.status === "fulfilled") results.push(outcome.value);
    else failures.push({ target, error: toSluiceError(outcome.reason) });
  });
  const first = failures[0];
  if (first === undefined) return results;
  // Codes per broker only when they differ: the thrown error carries the one code otherwise.
  const mixed = failures.some((f) => f.error.code !== first.error.code);
  const named = failures
    .map(({ target, error }) => `${target.broker} (${target.httpAddress}): ${error.message}${mixed ? ` [${error.code}]` : ""}`)
    .join("; ");
  const message = `${what} failed on ${failures.length} of ${targets.length} brokers: ${named}`;
  context.logger.warn({ failed: failures.map((f) => f.target.broker), brokers: targets.length }, message);
  throw combinedError(first.error, failures.map((f) => f.error), message);
}

/** The first failure's code and, when every failure is of one class, that class; the failures as its cause. */
function combinedError(first: SluiceError, errors: SluiceError[], message: string): SluiceError {
  const retriable = errors.every((e) => e.retriable);
  const combined = errorFromWire(first.code, message, retriable, first.retryAfterMs);
  const firstClass = Object.getPrototypeOf(first) as object;
  if (errors.every((e) => Object.getPrototypeOf(e) === firstClass) && Object.getPrototypeOf(combined) !== firstClass) {
    // errorFromWire knows only the classes built as (message, options); the others get
    // their class back here so `instanceof` holds for callers (fields are all SluiceError's).
    Object.setPrototypeOf(combined, firstClass);
    combined.name = first.name;
  }
  combined.cause = new AggregateError(errors, message);
  return combined;
}

/**
 * One request to one broker: the JSON body of a 2xx answer, or the broker's error decoded.
 * Secured as the client's gRPC channels are: HTTPS with its CA once `tls` is set, and its
 * password user as a Basic credential (the flow routes check ACLs like every route).
 */
async function call(context: ClientContext, target: FlowTarget, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const { tls, credentials, requestTimeoutMs } = context.options;
  const answer = await httpRequest({
    method,
    url: httpUrl(target.httpAddress, path, tls),
    body,
    timeoutMs: requestTimeoutMs,
    tls,
    credentials,
  });
  const parsed = parseJson(answer.text);
  if (answer.status >= 200 && answer.status < 300) {
    if (parsed === undefined || typeof parsed !== "object" || parsed === null) throw unexpectedBody(target, method, answer.text);
    return parsed as Record<string, unknown>;
  }
  throw errorFromAnswer(answer.status, method, path, parsed, answer.text);
}

/** A broker's error body back into its SluiceError; bodies without a Sluice code by HTTP status. */
function errorFromAnswer(status: number, method: string, path: string, parsed: unknown, text: string): SluiceError {
  const wire = parsed as { code?: unknown; message?: unknown; retriable?: unknown; retryAfterMs?: unknown } | undefined;
  if (typeof wire === "object" && wire !== null && typeof wire.code === "string" && typeof wire.message === "string") {
    return errorFromWire(
      wire.code,
      wire.message,
      typeof wire.retriable === "boolean" ? wire.retriable : undefined,
      typeof wire.retryAfterMs === "number" ? wire.retryAfterMs : undefined,
    );
  }
  const preview = text.length > BODY_PREVIEW_CHARS ? `${text.slice(0, BODY_PREVIEW_CHARS)}…` : text;
  if (status === 404) {
    return new UnsupportedVersionError(`HTTP 404 on ${method} ${path.split("?")[0]}: this broker has no flow admin API; upgrade it`);
  }
  if (status >= 500) return new BrokerUnavailableError(`HTTP ${status} on ${method} ${path.split("?")[0]}: ${preview}`);
  return errorFromWire("INTERNAL", `HTTP ${status} on ${method} ${path.split("?")[0]}: ${preview}`);
}

function unexpectedBody(target: FlowTarget, method: string, body: unknown): SluiceError {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return errorFromWire("INTERNAL", `${method} /admin/flow on ${target.httpAddress} answered an unexpected body: ${text.slice(0, BODY_PREVIEW_CHARS)}`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
