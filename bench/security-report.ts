/**
 * Issue #8's figures and targets: produce throughput with TLS (and --auth) on ≥ 70 % of plain,
 * and a cached ACL check ≤ 2 µs (one check per produced batch); plus, reported without a target,
 * an ACL'd user's throughput next to admin's (the per-batch check on the path, end to end).
 */
import { ACL_CHECK_RUN, SECURITY_ACL_RUN, SECURITY_PLAIN_RUN, SECURITY_TLS_RUN } from "./plan.js";
import { isFailure, type RunOutcome, type RunRecord } from "./results.js";
import type { AclCheckFigures } from "./security-execute.js";
import type { CheckResult } from "./targets.js";

export const TLS_FRACTION_OF_PLAIN = 0.7;
/** A produced batch costs one ACL check: the target per batch is the target per check. */
export const ACL_CHECK_NS_PER_BATCH = 2_000;

/** A ratio of two runs' msgs/s: the headline and each interleaved pair of attempts. */
export interface RunRatio {
  /**
   * Median msgs/s over median msgs/s: each run's reported figure, as the other relative targets
   * of the set (e.g. flush sync against interval) are compared.
   */
  ratio: number;
  /** Attempt i of one over attempt i of the other (they ran side by side). */
  perAttempt: number[];
  /**
   * The median of perAttempt (the lower middle for an even count). On a box whose load changes
   * within seconds it scatters more than `ratio` does (each pair carries two runs' noise).
   */
  medianOfAttempts: number;
}

/** What summary.json keeps under `security`. */
export interface SecurityFigures {
  /** produce-100b-tls / produce-100b-plain; null when either was not run or failed. */
  tlsOverPlain: RunRatio | null;
  /** produce-100b-tls-alice / produce-100b-tls: the ACL'd user against the superuser, both over TLS. */
  aliceOverAdmin: RunRatio | null;
  aclCheck: AclCheckFigures | null;
}

function round(value: number, digits = 3): number {
  return Number(value.toFixed(digits));
}

function attemptRates(record: RunRecord): number[] {
  return record.attempts?.map((a) => a.msgsPerSec) ?? [record.msgsPerSec];
}

/**
 * numerator / denominator by msgs/s. The runs were interleaved attempt by attempt, so attempt i
 * of one ran next to attempt i of the other.
 */
export function ratioOf(numerator: RunRecord, denominator: RunRecord): RunRatio {
  const top = attemptRates(numerator);
  const bottom = attemptRates(denominator);
  const pairs = Math.min(top.length, bottom.length);
  const perAttempt = Array.from({ length: pairs }, (_, i) => round((top[i] as number) / (bottom[i] as number)));
  const sorted = [...perAttempt].sort((a, b) => a - b);
  return {
    ratio: round(numerator.msgsPerSec / denominator.msgsPerSec),
    perAttempt,
    medianOfAttempts: sorted[Math.floor((sorted.length - 1) / 2)] as number,
  };
}

function completed(outcomes: readonly RunOutcome[], name: string): RunRecord | undefined {
  const outcome = outcomes.find((o) => o.name === name);
  return outcome === undefined || isFailure(outcome) ? undefined : outcome;
}

export function securityFigures(outcomes: readonly RunOutcome[], aclCheck: AclCheckFigures | null): SecurityFigures {
  const plain = completed(outcomes, SECURITY_PLAIN_RUN);
  const tls = completed(outcomes, SECURITY_TLS_RUN);
  const alice = completed(outcomes, SECURITY_ACL_RUN);
  return {
    tlsOverPlain: plain && tls ? ratioOf(tls, plain) : null,
    aliceOverAdmin: tls && alice ? ratioOf(alice, tls) : null,
    aclCheck,
  };
}

/**
 * The targets of issue #8 for what was planned: the ratio (when the TLS run was planned) and the
 * ACL check (when selected); value and result are null when a run they need failed or was not selected.
 */
export function securityChecks(planned: readonly string[], figures: SecurityFigures, aclCheckPlanned: boolean): CheckResult[] {
  const checks: CheckResult[] = [];
  if (planned.includes(SECURITY_TLS_RUN)) {
    const value = figures.tlsOverPlain?.ratio ?? null;
    checks.push({
      run: SECURITY_TLS_RUN, label: "TLS + auth (admin) / plain produce 100 B msgs/s", value, bound: TLS_FRACTION_OF_PLAIN,
      comparison: "atLeast", met: value === null ? null : value >= TLS_FRACTION_OF_PLAIN,
    });
  }
  if (aclCheckPlanned) {
    const value = figures.aclCheck?.cachedNsPerCheck ?? null;
    checks.push({
      run: ACL_CHECK_RUN, label: "cached ACL check ns (one per produced batch)", value, bound: ACL_CHECK_NS_PER_BATCH,
      comparison: "atMost", met: value === null ? null : value <= ACL_CHECK_NS_PER_BATCH,
    });
  }
  return checks;
}

function msgs(record: RunRecord | undefined): string {
  return record === undefined ? "FAILED" : `${Math.round(record.msgsPerSec).toLocaleString("en-US")} msgs/s, broker ${record.brokerCpuUsPerMsg} µs CPU/msg`;
}

function ratioText(ratio: RunRatio): string {
  const pairs = ratio.perAttempt.length > 1 ? ` of the medians (per interleaved attempt: ${ratio.perAttempt.join(", ")}; their median ${ratio.medianOfAttempts})` : "";
  return `${ratio.ratio.toFixed(3)}${pairs}`;
}

/** The security section printed under the tables; empty when the group did not run. */
export function renderSecurity(outcomes: readonly RunOutcome[], figures: SecurityFigures): string {
  const lines: string[] = [];
  const runs: [string, string][] = [
    [SECURITY_PLAIN_RUN, "open"],
    [SECURITY_TLS_RUN, "TLS + --auth, as admin"],
    [SECURITY_ACL_RUN, "TLS + --auth, as alice with ACLs"],
  ];
  for (const [name, what] of runs) {
    if (outcomes.some((o) => o.name === name)) lines.push(`${name} (${what}): ${msgs(completed(outcomes, name))}`);
  }
  if (figures.tlsOverPlain) lines.push(`  TLS / plain: ${ratioText(figures.tlsOverPlain)}`);
  if (figures.aliceOverAdmin) lines.push(`  alice / admin: ${ratioText(figures.aliceOverAdmin)}`);
  const acl = figures.aclCheck;
  if (acl) {
    const spread = acl.attempts.length > 1 ? ` (attempts: ${acl.attempts.map((a) => a.cachedNsPerCheck).join(", ")} ns cached)` : "";
    lines.push(`${ACL_CHECK_RUN}: ${acl.cachedNsPerCheck} ns per cached check, ${acl.uncachedNsPerCheck} ns uncached${spread}`);
  }
  return lines.length > 0 ? lines.join("\n") + "\n" : "";
}
