/**
 * Flow rules around one run on the shared `sluice dev` (issue #6): set with the SDK before the
 * measured client starts, deleted after it whatever happened — a rule left behind would limit
 * every later run on that broker — and the broker's decisions under them counted from its
 * /metrics (`sluice_flow_requests_total{scope,limiter,result}`), before and after the run.
 */
import { Sluice } from "../clients/src/index.js";
import type { FlowRuleInput } from "../clients/src/admin/flow-rules.js";
import type { FlowRule } from "../common/src/flow/rules.js";

/** Stands for the run's (fresh, per attempt) topic in a rule's scope, e.g. `topic:{topic}`. */
export const FLOW_RULE_TOPIC = "{topic}";
/** How long the orchestrator's SDK calls (list brokers, PUT/DELETE /admin/flow) may take. */
const ADMIN_TIMEOUT_MS = 10_000;
const DECISION_RESULTS = ["admitted", "delayed", "refused"] as const;
type DecisionResult = (typeof DECISION_RESULTS)[number];

/** Rules that could not be deleted after a run: the broker would go on limiting the runs after it. */
export class FlowRulesLeftError extends Error {
  override name = "FlowRulesLeftError";
}

/** The run's rules with FLOW_RULE_TOPIC replaced by its topic. */
export function flowRulesFor(rules: readonly FlowRuleInput[], topic: string): FlowRuleInput[] {
  return rules.map((rule) => ({ ...rule, scope: rule.scope.split(FLOW_RULE_TOPIC).join(topic) }));
}

/** Produce requests one rule decided during a run, by result (see broker/src/flow/flow-metrics.ts). */
export interface FlowDecisions {
  scope: string;
  limiter: string;
  admitted: number;
  delayed: number;
  refused: number;
}

/** What a run under flow rules kept in its result file. */
export interface FlowFigures {
  /** The rules as the broker stored them (defaults filled in). */
  rules: FlowRule[];
  /** Decisions per rule from just before the client started to just after it printed its result. */
  decisions: FlowDecisions[];
  /** The rate the rules hold the run to, and msgs/s achieved / that limit (throttled runs). */
  limitMsgsPerSec?: number;
  achievedOfLimit?: number;
}

function decisionKey(scope: string, limiter: string): string {
  return `${scope} ${limiter}`;
}

function unescapeLabel(value: string): string {
  return value.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
}

/**
 * The `sluice_flow_requests_total` counters of a Prometheus text exposition, keyed by
 * `${scope} ${limiter}`. A counter exists once a rule with those labels decided a request,
 * and stays after the rule is deleted: a run's figures are differences (decisionsDuring).
 */
export function parseFlowDecisions(metricsText: string): Map<string, FlowDecisions> {
  const byRule = new Map<string, FlowDecisions>();
  for (const line of metricsText.split("\n")) {
    if (!line.startsWith("sluice_flow_requests_total{")) continue;
    const close = line.lastIndexOf("}");
    const value = Number(line.slice(close + 1).trim().split(/\s+/)[0]);
    const labels = new Map<string, string>();
    for (const match of line.slice(0, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels.set(match[1] as string, unescapeLabel(match[2] as string));
    const scope = labels.get("scope");
    const limiter = labels.get("limiter");
    const result = labels.get("result") as DecisionResult | undefined;
    if (scope === undefined || limiter === undefined || !result || !DECISION_RESULTS.includes(result) || !Number.isFinite(value)) continue;
    const key = decisionKey(scope, limiter);
    const entry = byRule.get(key) ?? { scope, limiter, admitted: 0, delayed: 0, refused: 0 };
    entry[result] += value;
    byRule.set(key, entry);
  }
  return byRule;
}

/** Each rule's decisions between two readings of the counters. */
export function decisionsDuring(before: Map<string, FlowDecisions>, after: Map<string, FlowDecisions>, rules: readonly { scope: string; limiter: string }[]): FlowDecisions[] {
  return rules.map(({ scope, limiter }) => {
    const key = decisionKey(scope, limiter);
    const from = before.get(key);
    const to = after.get(key);
    const delta = (result: DecisionResult): number => (to?.[result] ?? 0) - (from?.[result] ?? 0);
    return { scope, limiter, admitted: delta("admitted"), delayed: delta("delayed"), refused: delta("refused") };
  });
}

/** Reads the broker's flow decision counters from its HTTP port (`host:port`). */
export async function readFlowDecisions(brokerHttp: string): Promise<Map<string, FlowDecisions>> {
  const response = await fetch(`http://${brokerHttp}/metrics`, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`GET http://${brokerHttp}/metrics answered ${response.status}`);
  return parseFlowDecisions(await response.text());
}

/**
 * Sets `rules` on every broker the name server knows, runs `body`, and deletes them again —
 * also when `body` or setting a later rule throws. A rule that cannot be deleted throws
 * FlowRulesLeftError (after the others were tried).
 */
export async function withFlowRules<T>(nameserver: string, rules: readonly FlowRuleInput[], body: (stored: FlowRule[]) => Promise<T>): Promise<T> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "bench-orchestrator", requestTimeoutMs: ADMIN_TIMEOUT_MS });
  const set: FlowRuleInput[] = [];
  try {
    const stored: FlowRule[] = [];
    for (const rule of rules) {
      const changes = await sluice.admin().setFlowRule(rule);
      set.push(rule);
      const answer = changes[0]?.rule;
      if (answer) stored.push(answer);
    }
    return await body(stored);
  } finally {
    const left: string[] = [];
    for (const rule of set) {
      try {
        await sluice.admin().deleteFlowRule(rule.scope, rule.limiter);
      } catch (err) {
        left.push(`(${rule.scope}, ${rule.limiter}): ${(err as Error).message}`);
      }
    }
    await sluice.close();
    if (left.length > 0) throw new FlowRulesLeftError(`could not delete flow rules, so later runs on this broker would be limited: ${left.join("; ")}`);
  }
}
