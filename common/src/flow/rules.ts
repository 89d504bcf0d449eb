/**
 * Flow-control rules: what the YAML `flow:` list, the REST admin API (`/admin/flow`), the SDK
 * and `sluice flow set` carry, validated once here so the broker, the SDK and the CLI agree on
 * every rule and every default.
 *
 * A rule is keyed by (scope, limiter): one scope may carry several limiters (a rate and a
 * concurrency cap), but never two of the same kind.
 *
 *   {"scope": "topic:orders.*", "limiter": "token-bucket", "messagesPerSecond": 50000, "burst": 100000}
 *   {"scope": "broker", "limiter": "leaky-bucket", "bytesPerSecond": 10485760, "maxQueueMs": 0}
 *   {"scope": "client:loader-?", "limiter": "warm-up", "messagesPerSecond": 400000, "warmUpMs": 10000}
 *   {"scope": "broker", "limiter": "concurrency", "maxInFlight": 2000}
 */
import { InvalidConfigError } from "../errors.js";

export type FlowLimiterKind = "token-bucket" | "leaky-bucket" | "warm-up" | "concurrency";
export const FLOW_LIMITER_KINDS: readonly FlowLimiterKind[] = ["token-bucket", "leaky-bucket", "warm-up", "concurrency"];

/** Longest a request is held when the rule does not say: long enough to smooth bursts, short next to a produce timeout. */
export const DEFAULT_MAX_QUEUE_MS = 500;
/**
 * Longest a rule may hold a request. Well inside the SDK's default request timeout (30 s),
 * which would otherwise take a held batch for a dead broker.
 */
export const MAX_MAX_QUEUE_MS = 10_000;
/** Guava's SmoothWarmingUp default: a cold limiter starts at a third of its rate. */
export const DEFAULT_COLD_FACTOR = 3;
export const MAX_WARM_UP_MS = 3_600_000;
/** Far above any broker (1 TB/s); keeps the default burst (one second of rate) an exact integer. */
export const MAX_RATE_PER_SECOND = 1e12;

export interface FlowRule {
  /** "broker" | "topic:<name or glob>" | "client:<clientId or glob>" */
  scope: string;
  limiter: FlowLimiterKind;
  /** Rate limiters: exactly one of messagesPerSecond / bytesPerSecond (finite, > 0, may be fractional). */
  messagesPerSecond?: number;
  bytesPerSecond?: number;
  /** token-bucket only, in the rule's unit, integer >= 1. @defaultValue one second of rate, rounded up */
  burst?: number;
  /** Longest a request may be held, 0..10000; 0 refuses at once instead of delaying. @defaultValue 500 */
  maxQueueMs?: number;
  /** warm-up only, required: how long the rate climbs from rate / coldFactor to rate, 1..3600000. */
  warmUpMs?: number;
  /** warm-up only, > 1. @defaultValue 3 */
  coldFactor?: number;
  /** concurrency only, required: requests admitted at once, integer >= 1. */
  maxInFlight?: number;
}

export type FlowScope = { kind: "broker" } | { kind: "topic" | "client"; pattern: string; matches(value: string): boolean };

const RATE_FIELDS = ["messagesPerSecond", "bytesPerSecond"] as const;

/** The fields each limiter takes besides scope and limiter, in the order a normalised rule lists them. */
const FIELDS_BY_LIMITER: Record<FlowLimiterKind, readonly (keyof FlowRule)[]> = {
  "token-bucket": [...RATE_FIELDS, "burst", "maxQueueMs"],
  "leaky-bucket": [...RATE_FIELDS, "maxQueueMs"],
  "warm-up": [...RATE_FIELDS, "maxQueueMs", "warmUpMs", "coldFactor"],
  concurrency: ["maxQueueMs", "maxInFlight"],
};

const ALL_FIELDS: readonly string[] = ["scope", "limiter", ...RATE_FIELDS, "burst", "maxQueueMs", "warmUpMs", "coldFactor", "maxInFlight"];

const SCOPE_FORMS = "broker, topic:<name>, client:<id>";

/** `${scope} ${limiter}`: the identity of a rule (a client id may hold spaces; a limiter never does, so the last space splits). */
export function flowRuleKey(rule: { scope: string; limiter: string }): string {
  return `${rule.scope} ${rule.limiter}`;
}

/** What the rule counts: messages, bytes, or (concurrency) requests in flight. */
export function flowRuleUnit(rule: FlowRule): "messages" | "bytes" | "requests" {
  if (rule.limiter === "concurrency") return "requests";
  return rule.bytesPerSecond !== undefined ? "bytes" : "messages";
}

/**
 * The limit in words, for `sluice flow list` and throttling errors: "50000 messages/s, burst
 * 100000", "10485760 bytes/s", "400000 messages/s, warm-up 10000 ms x3", "2000 in flight".
 */
export function describeFlowLimit(rule: FlowRule): string {
  if (rule.limiter === "concurrency") return `${rule.maxInFlight ?? "?"} in flight`;
  const unit = flowRuleUnit(rule);
  const rate = `${(unit === "bytes" ? rule.bytesPerSecond : rule.messagesPerSecond) ?? "?"} ${unit}/s`;
  if (rule.limiter === "token-bucket" && rule.burst !== undefined) return `${rate}, burst ${rule.burst}`;
  if (rule.limiter === "warm-up") {
    return `${rate}, warm-up ${rule.warmUpMs ?? "?"} ms x${rule.coldFactor ?? DEFAULT_COLD_FACTOR}`;
  }
  return rate;
}

/**
 * Parses a scope. `where` is the rule's location (`flow[2]`, `config file sluice.yaml: flow[0]`)
 * and prefixes the error message, as in parseFlowRule.
 */
export function parseFlowScope(scope: string, where?: string): FlowScope {
  const field = fieldName(where, "scope");
  if (typeof scope !== "string") {
    throw new InvalidConfigError(`${field} must be a string (${SCOPE_FORMS}), got ${show(scope)}`);
  }
  if (scope === "broker") return { kind: "broker" };
  const colon = scope.indexOf(":");
  const kind = colon < 0 ? "" : scope.slice(0, colon);
  if (kind !== "topic" && kind !== "client") {
    throw new InvalidConfigError(`${field} ${JSON.stringify(scope)} is not one of ${SCOPE_FORMS}`);
  }
  const pattern = scope.slice(colon + 1);
  if (pattern === "") {
    const what = kind === "topic" ? "topic:<name or glob>, e.g. topic:orders.*" : "client:<clientId or glob>, e.g. client:loader-?";
    throw new InvalidConfigError(`${field} ${JSON.stringify(scope)} names no ${kind}: use ${what}`);
  }
  return { kind, pattern, matches: globMatcher(pattern) };
}

/**
 * `*` matches any run of characters (also none), `?` exactly one; every other character is
 * itself — topic names hold `.` and `-`, client ids anything, so nothing else is special.
 */
function globMatcher(pattern: string): (value: string) => boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return (value) => value === pattern;
  let source = "";
  for (const char of pattern) {
    if (char === "*") source += ".*";
    else if (char === "?") source += ".";
    else source += char.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
  }
  // `s`: `.` also matches line breaks; `u`: `?` is one character, not one UTF-16 unit.
  const regex = new RegExp(`^${source}$`, "su");
  return (value) => regex.test(value);
}

/**
 * Validates one rule and returns it normalised: only its own fields, in a fixed order, with
 * every default filled in (burst, maxQueueMs, coldFactor), so config file, broker and CLI show
 * the same values. Throws InvalidConfigError naming the field, prefixed by `where`
 * (`flow[2].burst must be an integer >= 1, got 0`).
 */
export function parseFlowRule(input: unknown, where?: string): FlowRule {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new InvalidConfigError(
      `${where ?? "a flow rule"} must be an object like {"scope": "topic:orders", "limiter": "token-bucket", "messagesPerSecond": 1000}, got ${show(input)}`,
    );
  }
  const raw = input as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!ALL_FIELDS.includes(key)) {
      throw new InvalidConfigError(`${fieldName(where, key)} is not a flow rule field; the fields are ${ALL_FIELDS.join(", ")}`);
    }
  }
  const scope = raw.scope;
  if (scope === undefined) throw new InvalidConfigError(`${fieldName(where, "scope")} is required (${SCOPE_FORMS})`);
  parseFlowScope(scope as string, where);
  const limiter = parseLimiter(raw.limiter, where);

  const allowed = FIELDS_BY_LIMITER[limiter];
  for (const key of ALL_FIELDS) {
    if (key === "scope" || key === "limiter" || raw[key] === undefined) continue;
    if (!allowed.includes(key as keyof FlowRule)) {
      throw new InvalidConfigError(
        `${fieldName(where, key)} does not apply to limiter ${limiter}; it takes ${allowed.join(", ")}`,
      );
    }
  }

  const rule: FlowRule = { scope: scope as string, limiter };
  if (limiter !== "concurrency") {
    const [unitField, ratePerSecond] = parseRate(raw, limiter, where);
    rule[unitField] = ratePerSecond;
    if (limiter === "token-bucket") {
      rule.burst = raw.burst === undefined ? Math.ceil(ratePerSecond) : integerField(raw.burst, fieldName(where, "burst"), 1);
    }
  }
  rule.maxQueueMs =
    raw.maxQueueMs === undefined ? DEFAULT_MAX_QUEUE_MS : integerField(raw.maxQueueMs, fieldName(where, "maxQueueMs"), 0, MAX_MAX_QUEUE_MS);
  if (limiter === "warm-up") {
    if (raw.warmUpMs === undefined) {
      throw new InvalidConfigError(
        `${fieldName(where, "warmUpMs")} is required for limiter warm-up: how long the rate takes to climb from rate / coldFactor to rate`,
      );
    }
    rule.warmUpMs = integerField(raw.warmUpMs, fieldName(where, "warmUpMs"), 1, MAX_WARM_UP_MS);
    rule.coldFactor = raw.coldFactor === undefined ? DEFAULT_COLD_FACTOR : coldFactorField(raw.coldFactor, fieldName(where, "coldFactor"));
  }
  if (limiter === "concurrency") {
    if (raw.maxInFlight === undefined) {
      throw new InvalidConfigError(`${fieldName(where, "maxInFlight")} is required for limiter concurrency: how many requests may be admitted at once`);
    }
    rule.maxInFlight = integerField(raw.maxInFlight, fieldName(where, "maxInFlight"), 1);
  }
  return rule;
}

/**
 * Validates a list of rules (`where` defaults to "flow"; element i is `${where}[i]`) and
 * refuses two rules with the same (scope, limiter), naming both positions.
 */
export function parseFlowRules(input: unknown, where = "flow"): FlowRule[] {
  if (!Array.isArray(input)) {
    throw new InvalidConfigError(`${where} must be a list of flow rules, got ${show(input)}`);
  }
  const firstIndexByKey = new Map<string, number>();
  return input.map((item, index) => {
    const rule = parseFlowRule(item, `${where}[${index}]`);
    const key = flowRuleKey(rule);
    const first = firstIndexByKey.get(key);
    if (first !== undefined) {
      throw new InvalidConfigError(
        `${where}[${index}] repeats the (${rule.scope}, ${rule.limiter}) rule of ${where}[${first}]; each (scope, limiter) pair may appear once`,
      );
    }
    firstIndexByKey.set(key, index);
    return rule;
  });
}

function parseLimiter(value: unknown, where: string | undefined): FlowLimiterKind {
  if (typeof value === "string" && (FLOW_LIMITER_KINDS as readonly string[]).includes(value)) return value as FlowLimiterKind;
  const field = fieldName(where, "limiter");
  if (value === undefined) throw new InvalidConfigError(`${field} is required: one of ${FLOW_LIMITER_KINDS.join(", ")}`);
  throw new InvalidConfigError(`${field} must be one of ${FLOW_LIMITER_KINDS.join(", ")}, got ${show(value)}`);
}

function parseRate(raw: Record<string, unknown>, limiter: FlowLimiterKind, where: string | undefined): ["messagesPerSecond" | "bytesPerSecond", number] {
  const given = RATE_FIELDS.filter((field) => raw[field] !== undefined);
  if (given.length === 2) {
    throw new InvalidConfigError(
      `${fieldName(where, "messagesPerSecond")} and ${fieldName(where, "bytesPerSecond")} are both set; a rule limits one of them (write two rules with different limiters to cap both)`,
    );
  }
  const field = given[0];
  if (field === undefined) {
    throw new InvalidConfigError(`${fieldName(where, "messagesPerSecond")} or ${fieldName(where, "bytesPerSecond")} is required for limiter ${limiter}`);
  }
  const value = raw[field];
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > MAX_RATE_PER_SECOND) {
    throw new InvalidConfigError(`${fieldName(where, field)} must be a number > 0 and at most ${MAX_RATE_PER_SECOND}, got ${show(value)}`);
  }
  return [field, value];
}

function integerField(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max) return value;
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
  throw new InvalidConfigError(`${field} must be an integer ${range}, got ${show(value)}`);
}

function coldFactorField(value: unknown, field: string): number {
  if (typeof value === "number" && Number.isFinite(value) && value > 1) return value;
  throw new InvalidConfigError(`${field} must be a number > 1 (the cold rate is rate / coldFactor), got ${show(value)}`);
}

function fieldName(where: string | undefined, field: string): string {
  return where === undefined || where === "" ? field : `${where}.${field}`;
}

/** A value as the user wrote it: NaN and Infinity stay readable, strings keep their quotes. */
function show(value: unknown): string {
  if (typeof value === "number" || value === undefined) return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
