/**
 * The cost of an ACL check (issue #8): every produce, fetch and group call of an `--auth`
 * broker asks the authorizer, so a cached decision must cost well under 2 µs.
 *
 * Builds an authorizer over 1,000 entries for 100 principals (literal and prefix, allow and
 * deny, topics and groups, some for `User:*`), then times 1,000,000 checks that hit the
 * decision cache and 10,000 that miss it (each a resource name never asked before).
 *
 *   node --import tsx bench/acl-check.ts
 *   {"cachedNsPerCheck":…,"uncachedNsPerCheck":…}
 */
import { pathToFileURL } from "node:url";
import { Authorizer } from "../common/src/security/authorizer.js";
import type { AclEntry, Operation, Principal, ResourceType, SecuritySnapshot } from "../common/src/security/types.js";

const PRINCIPALS = 100;
const ENTRIES_PER_PRINCIPAL = 10;
const CACHED_CHECKS = 1_000_000;
const UNCACHED_CHECKS = 10_000;
/** Distinct (principal, operation, resource) questions the cached loop cycles through. */
const CACHED_QUESTIONS = 1_000;

export interface AclCheckCost {
  cachedNsPerCheck: number;
  uncachedNsPerCheck: number;
}

interface Question {
  principal: Principal;
  operation: Operation;
  resourceType: ResourceType;
  resourceName: string;
}

/** The entries of principal p: a mix like a real cluster's, ENTRIES_PER_PRINCIPAL of them. */
function entriesOf(p: number): AclEntry[] {
  const principal = p % 25 === 0 ? "User:*" : `User:u${p}`;
  const entry = (operation: Operation, resourceType: ResourceType, resourceName: string, patternType: AclEntry["patternType"], permission: AclEntry["permission"] = "allow"): AclEntry => ({
    principal,
    operation,
    resourceType,
    resourceName,
    patternType,
    permission,
  });
  const entries = [
    entry("produce", "topic", `team${p}.`, "prefix"),
    entry("consume", "topic", `team${p}.`, "prefix"),
    entry("produce", "topic", `shared.orders${p}`, "literal"),
    entry("consume", "topic", "shared.", "prefix"),
    entry("consume", "group", `team${p}.`, "prefix"),
    entry("describe", "group", `team${p}.audit`, "literal"),
    entry("produce", "topic", `team${p}.secret`, "literal", "deny"),
    entry("alter", "topic", `team${p}.config`, "literal"),
    entry("delete", "topic", `team${p}.scratch.`, "prefix"),
    entry("create", "topic", `team${p}.new.`, "prefix"),
  ];
  if (entries.length !== ENTRIES_PER_PRINCIPAL) throw new Error(`principal ${p} has ${entries.length} entries, not ${ENTRIES_PER_PRINCIPAL}`);
  return entries;
}

function buildAuthorizer(): Authorizer {
  const acls: AclEntry[] = [];
  for (let p = 0; p < PRINCIPALS; p++) acls.push(...entriesOf(p));
  const snapshot: SecuritySnapshot = { version: 1, users: [], acls };
  return new Authorizer(snapshot);
}

function question(i: number, nameSuffix: string): Question {
  const p = i % PRINCIPALS;
  const principal: Principal = { name: `User:u${p}`, superuser: false, method: "password" };
  switch (i % 4) {
    case 0:
      return { principal, operation: "produce", resourceType: "topic", resourceName: `team${p}.events${nameSuffix}` };
    case 1:
      return { principal, operation: "consume", resourceType: "topic", resourceName: `shared.feed${nameSuffix}` };
    case 2:
      return { principal, operation: "consume", resourceType: "group", resourceName: `team${p}.workers${nameSuffix}` };
    default:
      // Refused: another team's topic, the costliest answer (every entry looked at).
      return { principal, operation: "produce", resourceType: "topic", resourceName: `team${(p + 1) % PRINCIPALS}.x${nameSuffix}` };
  }
}

function timeChecks(authorizer: Authorizer, questions: readonly Question[], checks: number): { ns: number; allowed: number } {
  let allowed = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < checks; i++) {
    const q = questions[i % questions.length]!;
    if (authorizer.authorize(q.principal, q.operation, q.resourceType, q.resourceName)) allowed++;
  }
  return { ns: Number(process.hrtime.bigint() - start), allowed };
}

export function measureAclCheck(): AclCheckCost {
  const authorizer = buildAuthorizer();
  // Principal objects are made once per question, as a connection keeps its own.
  const cachedQuestions = Array.from({ length: CACHED_QUESTIONS }, (_, i) => question(i, `.${Math.floor(i / PRINCIPALS)}`));
  // Warm-up: fills the cache and lets V8 optimize both paths before anything is timed.
  timeChecks(authorizer, cachedQuestions, CACHED_QUESTIONS * 20);
  const warmMisses = Array.from({ length: UNCACHED_CHECKS }, (_, i) => question(i, `.warm${i}`));
  timeChecks(authorizer, warmMisses, UNCACHED_CHECKS);

  const cached = timeChecks(authorizer, cachedQuestions, CACHED_CHECKS);
  const misses = Array.from({ length: UNCACHED_CHECKS }, (_, i) => question(i, `.cold${i}`));
  const before = authorizer.cachedDecisions;
  const uncached = timeChecks(authorizer, misses, UNCACHED_CHECKS);
  if (authorizer.cachedDecisions - before !== UNCACHED_CHECKS) throw new Error("the uncached checks hit the cache: the measurement is wrong");
  if (cached.allowed === 0 || cached.allowed === CACHED_CHECKS) throw new Error("every check gave the same answer: the ACLs are not exercised");
  const round = (ns: number): number => Math.round(ns * 10) / 10;
  return { cachedNsPerCheck: round(cached.ns / CACHED_CHECKS), uncachedNsPerCheck: round(uncached.ns / UNCACHED_CHECKS) };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(measureAclCheck()));
}
