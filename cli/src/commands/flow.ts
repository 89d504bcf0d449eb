/**
 * `sluice flow list`, `sluice flow set --scope S --limiter L [limits…]` and `sluice flow
 * delete --scope S --limiter L`: the ingress limits of every live broker, changed at run time.
 * A rule is keyed by (scope, limiter); set adds or replaces it on every broker.
 *
 * `list --json`:   {"brokers": [{"broker", "httpAddress", "rules": [{...rule, "source", "state"}]}]}
 * `set --json`:    {"scope", "limiter", "rule", "brokers": [{"broker", "httpAddress", "scope", "limiter", "rule"}]}
 * `delete --json`: {"scope", "limiter", "brokers": [{"broker", "httpAddress", "scope", "limiter"}]}
 */
import type { Command } from "commander";
import type { BrokerFlowRules, FlowRuleInput, ListedFlowRule } from "../../../clients/src/admin/flow-rules.js";
import { InvalidArgumentError } from "../../../common/src/errors.js";
import {
  FLOW_LIMITER_KINDS,
  MAX_MAX_QUEUE_MS,
  MAX_WARM_UP_MS,
  describeFlowLimit,
  parseFlowRule,
} from "../../../common/src/flow/rules.js";
import { withClient } from "../client.js";
import { action, emit, parseInteger, table, type GlobalOptions } from "../output.js";

const LIST_COLUMNS = ["BROKER", "SCOPE", "LIMITER", "LIMIT", "MAX-QUEUE", "STATE", "SOURCE"];

/** Flags arrive as strings and are parsed in the action, so a bad value is a one-line error. */
interface SetFlags {
  scope: string;
  limiter: string;
  messagesPerSecond?: string;
  bytesPerSecond?: string;
  burst?: string;
  maxQueueMs?: string;
  warmUpMs?: string;
  coldFactor?: string;
  maxInFlight?: string;
}

interface KeyFlags {
  scope: string;
  limiter: string;
}

export function flowCommand(program: Command, globals: () => GlobalOptions): void {
  const flow = program.command("flow").description("ingress limits (rate, burst, warm-up, concurrency) per broker, topic or client, changed at run time");

  flow
    .command("list")
    .description("every live broker's flow rules with their limit, live state and source (config file or runtime)")
    .action(
      action(async () => {
        const g = globals();
        const brokers = await withClient(g, (sluice) => sluice.admin().listFlowRules());
        emit(g.json, { brokers }, () => renderList(brokers));
      }),
    );

  flow
    .command("set")
    .description("add a rule, or replace the rule with the same (scope, limiter), on every live broker")
    .requiredOption("--scope <scope>", "broker, topic:<name or glob>, or client:<clientId or glob> (* any run, ? one character)")
    .requiredOption("--limiter <kind>", FLOW_LIMITER_KINDS.join(", "))
    .option("--messages-per-second <n>", "rate limiters: messages per second (or --bytes-per-second)")
    .option("--bytes-per-second <n>", "rate limiters: bytes per second (or --messages-per-second)")
    .option("--burst <n>", "token-bucket: how many may pass at once (default: one second of rate)")
    .option("--max-queue-ms <ms>", "longest a request is held before it is refused; 0 refuses at once (default 500)")
    .option("--warm-up-ms <ms>", "warm-up: how long the rate takes to climb from rate / cold factor to rate")
    .option("--cold-factor <f>", "warm-up: the cold rate is rate / f, f > 1 (default 3)")
    .option("--max-in-flight <n>", "concurrency: requests admitted at once")
    .action(
      action(async (flags: SetFlags) => {
        const g = globals();
        // Checked before connecting: a bad rule fails without a cluster.
        const rule = parseFlowRule(ruleFromFlags(flags));
        const brokers = await withClient(g, (sluice) => sluice.admin().setFlowRule(rule));
        emit(g.json, { scope: rule.scope, limiter: rule.limiter, rule, brokers }, () =>
          `set ${rule.scope} ${rule.limiter} (${describeFlowLimit(rule)}) on ${countBrokers(brokers.length)}\n`,
        );
      }),
    );

  flow
    .command("delete")
    .description("remove the (scope, limiter) rule from every live broker")
    .requiredOption("--scope <scope>", "the rule's scope, exactly as listed")
    .requiredOption("--limiter <kind>", FLOW_LIMITER_KINDS.join(", "))
    .action(
      action(async (flags: KeyFlags) => {
        const g = globals();
        const brokers = await withClient(g, (sluice) => sluice.admin().deleteFlowRule(flags.scope, flags.limiter));
        emit(g.json, { scope: flags.scope, limiter: flags.limiter, brokers }, () =>
          `deleted ${flags.scope} ${flags.limiter} on ${countBrokers(brokers.length)}\n`,
        );
      }),
    );
}

/** The rule from the flags the user gave, and only those: parseFlowRule fills in the defaults. */
export function ruleFromFlags(flags: SetFlags): FlowRuleInput {
  const rule: FlowRuleInput = { scope: flags.scope, limiter: flags.limiter };
  if (flags.messagesPerSecond !== undefined) rule.messagesPerSecond = parsePositiveNumber("messages-per-second", flags.messagesPerSecond);
  if (flags.bytesPerSecond !== undefined) rule.bytesPerSecond = parsePositiveNumber("bytes-per-second", flags.bytesPerSecond);
  if (flags.burst !== undefined) rule.burst = parseInteger("burst", 1)(flags.burst);
  if (flags.maxQueueMs !== undefined) rule.maxQueueMs = parseInteger("max-queue-ms", 0, MAX_MAX_QUEUE_MS)(flags.maxQueueMs);
  if (flags.warmUpMs !== undefined) rule.warmUpMs = parseInteger("warm-up-ms", 1, MAX_WARM_UP_MS)(flags.warmUpMs);
  if (flags.coldFactor !== undefined) rule.coldFactor = parsePositiveNumber("cold-factor", flags.coldFactor);
  if (flags.maxInFlight !== undefined) rule.maxInFlight = parseInteger("max-in-flight", 1)(flags.maxInFlight);
  return rule;
}

/** Rates and the cold factor may be fractional (0.5 messages per second is a rate). */
function parsePositiveNumber(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError(`--${name} must be a number > 0, got "${value}"`);
  }
  return n;
}

export function renderList(brokers: BrokerFlowRules[]): string {
  if (brokers.every((b) => b.rules.length === 0)) return `no flow rules on ${countBrokers(brokers.length)}\n`;
  const rows: (string | number)[][] = [];
  for (const b of brokers) {
    // A broker without rules keeps a row: a set that missed it stands out.
    if (b.rules.length === 0) rows.push([b.broker, "-", "-", "(no rules)", "-", "-", "-"]);
    for (const rule of b.rules) {
      rows.push([b.broker, rule.scope, rule.limiter, describeFlowLimit(rule), maxQueue(rule), stateOf(rule), rule.source]);
    }
  }
  return table(LIST_COLUMNS, rows);
}

function maxQueue(rule: ListedFlowRule): string {
  if (rule.maxQueueMs === undefined) return "-";
  return rule.maxQueueMs === 0 ? "0 ms (refuse)" : `${rule.maxQueueMs} ms`;
}

/** "tokens 1234 queued 3", "stored 800 queued 0", "in flight 5/2000 queued 0", "queued 3". */
export function stateOf(rule: ListedFlowRule): string {
  const state = rule.state;
  if (state === undefined || state === null) return "-";
  const queued = `queued ${state.queued ?? 0}`;
  if (rule.limiter === "concurrency") return `in flight ${state.inFlight ?? 0}/${rule.maxInFlight ?? "?"} ${queued}`;
  if (state.available === undefined) return queued;
  // Fractions of a token say nothing to a reader; a negative count is a bucket in debt.
  const label = rule.limiter === "warm-up" ? "stored" : "tokens";
  return `${label} ${Math.floor(state.available)} ${queued}`;
}

function countBrokers(n: number): string {
  return `${n} broker${n === 1 ? "" : "s"}`;
}
