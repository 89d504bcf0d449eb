/** What parseFlowRule promises about a rule it returns, for the fuzzers that reach it (REST, flow-rules.json, config). */
import assert from "node:assert/strict";
import { FLOW_LIMITER_KINDS, MAX_MAX_QUEUE_MS, MAX_RATE_PER_SECOND, MAX_WARM_UP_MS, type FlowRule } from "../../common/src/flow/rules.js";

function isIntegerIn(value: unknown, min: number, max: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

export function checkFlowRule(rule: FlowRule): void {
  assert.ok(rule.scope === "broker" || /^(topic|client):./su.test(rule.scope), `scope ${rule.scope}`);
  assert.ok(FLOW_LIMITER_KINDS.includes(rule.limiter));
  if (rule.limiter !== "concurrency") {
    const rates = [rule.messagesPerSecond, rule.bytesPerSecond].filter((r) => r !== undefined);
    assert.equal(rates.length, 1);
    assert.ok(Number.isFinite(rates[0]) && rates[0]! > 0 && rates[0]! <= MAX_RATE_PER_SECOND);
  }
  if (rule.limiter === "token-bucket") assert.ok(isIntegerIn(rule.burst, 1, Number.MAX_SAFE_INTEGER));
  assert.ok(isIntegerIn(rule.maxQueueMs, 0, MAX_MAX_QUEUE_MS));
  if (rule.limiter === "warm-up") assert.ok(isIntegerIn(rule.warmUpMs, 1, MAX_WARM_UP_MS) && rule.coldFactor! > 1 && Number.isFinite(rule.coldFactor));
  if (rule.limiter === "concurrency") assert.ok(isIntegerIn(rule.maxInFlight, 1, Number.MAX_SAFE_INTEGER));
}
