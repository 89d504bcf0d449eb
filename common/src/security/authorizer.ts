/**
 * Decides whether a principal may perform an operation on a resource, from the ACLs of the
 * newest security snapshot.
 *
 * Rules, in order:
 * 1. Superusers skip every check: the built-in `admin` (and any names the server adds), users
 *    whose record says `superuser`, and the anonymous principal when `--auth` is off.
 * 2. Internal topics are checked as what they belong to: `%DLQ%G` as the group G (same
 *    operation), every other `%` topic (`%groups`) as admin on the cluster.
 * 3. An entry matching the principal (or `User:*`) and the resource that denies the operation
 *    (or denies `admin`, which stands for every operation) refuses, whatever allows it.
 * 4. An entry that allows it admits: the operation itself, or `admin` on the resource, or —
 *    for `describe` — produce/consume/alter/delete on the resource, or — for creating a topic —
 *    create (or admin) on the cluster. Implications widen allows only: denying `produce` does
 *    not deny `describe`, as in Kafka.
 * 5. Anything else is refused.
 *
 * Decisions are cached per (principal, operation, type, name): a hot path pays one Map lookup.
 * `update` installs a new snapshot and forgets every decision in the same synchronous step.
 */
import { NotAuthorizedError } from "../errors.js";
import { DLQ_TOPIC_PREFIX, GROUP_NAME_PATTERN, INTERNAL_TOPIC_PREFIX } from "../protocol.js";
import { formatResource, validateUserName } from "./acl.js";
import {
  ADMIN_USER,
  ANY_PRINCIPAL,
  CLUSTER_RESOURCE_NAME,
  PRINCIPAL_PREFIX,
  type AclEntry,
  type Operation,
  type Principal,
  type ResourceType,
  type SecuritySnapshot,
} from "./types.js";

/**
 * Decisions kept before the cache starts over. Callers choose resource names (a client may ask
 * for any topic), so the cache must not grow without bound; starting over costs one rule
 * evaluation per live (principal, resource) pair, microseconds each.
 */
export const MAX_CACHED_DECISIONS = 100_000;

/** Operations whose allow also allows `describe` on the same resource. */
const IMPLIES_DESCRIBE: ReadonlySet<Operation> = new Set<Operation>(["produce", "consume", "alter", "delete"]);

/** What a request is checked against once internal topics are mapped to their owner. */
interface CheckedResource {
  operation: Operation;
  resourceType: ResourceType;
  resourceName: string;
}

/** The entries of one principal (or of `User:*`), split by resource type. */
type EntriesByType = Map<ResourceType, AclEntry[]>;

export class Authorizer {
  private readonly builtInSuperusers: ReadonlySet<string>;
  private superusers: ReadonlySet<string> = new Set();
  private entriesByPrincipal: Map<string, EntriesByType> = new Map();
  private decisions = new Map<string, boolean>();
  private snapshotVersion = -1;

  /** @param builtInSuperusers user names (not principals) that skip every check; `admin` by default. */
  constructor(snapshot: SecuritySnapshot, builtInSuperusers: readonly string[] = [ADMIN_USER]) {
    this.builtInSuperusers = new Set(builtInSuperusers.map((name) => PRINCIPAL_PREFIX + validateUserName(name)));
    this.update(snapshot);
  }

  /** The version of the snapshot in force. */
  get version(): number {
    return this.snapshotVersion;
  }

  /** How many decisions are cached (for metrics and tests). */
  get cachedDecisions(): number {
    return this.decisions.size;
  }

  /** Installs a new snapshot: rules and cache change together, before any other check runs. */
  update(snapshot: SecuritySnapshot): void {
    const superusers = new Set(this.builtInSuperusers);
    for (const user of snapshot.users) if (user.superuser) superusers.add(PRINCIPAL_PREFIX + user.name);
    const entriesByPrincipal = new Map<string, EntriesByType>();
    for (const entry of snapshot.acls) {
      let byType = entriesByPrincipal.get(entry.principal);
      if (byType === undefined) entriesByPrincipal.set(entry.principal, (byType = new Map()));
      let list = byType.get(entry.resourceType);
      if (list === undefined) byType.set(entry.resourceType, (list = []));
      list.push(entry);
    }
    this.superusers = superusers;
    this.entriesByPrincipal = entriesByPrincipal;
    this.decisions = new Map();
    this.snapshotVersion = snapshot.version;
  }

  authorize(principal: Principal, operation: Operation, resourceType: ResourceType, resourceName: string): boolean {
    if (this.isSuperuser(principal)) return true;
    const key = `${principal.name}\u0000${operation}\u0000${resourceType}\u0000${resourceName}`;
    const cached = this.decisions.get(key);
    if (cached !== undefined) return cached;
    const decision = this.evaluate(principal.name, checkedResource(operation, resourceType, resourceName));
    if (this.decisions.size >= MAX_CACHED_DECISIONS) this.decisions.clear();
    this.decisions.set(key, decision);
    return decision;
  }

  /** Like authorize, but throws NotAuthorizedError saying which ACL would let the call through. */
  require(principal: Principal, operation: Operation, resourceType: ResourceType, resourceName: string): void {
    if (this.authorize(principal, operation, resourceType, resourceName)) return;
    const checked = checkedResource(operation, resourceType, resourceName);
    const asked = `${principal.name} may not ${phrase(operation, resourceType, resourceName)}`;
    const mapped =
      checked.resourceType !== resourceType || checked.resourceName !== resourceName || checked.operation !== operation
        ? ` (it needs ${checked.operation} on ${resourceLabel(checked.resourceType, checked.resourceName)})`
        : "";
    const resource = formatResource({ ...checked, patternType: "literal" });
    throw new NotAuthorizedError(
      `${asked}${mapped}; ask an admin: sluice acl add --principal ${principal.name} --operation ${checked.operation} --resource ${resource}`,
    );
  }

  /** The names among `names` the principal may describe (ListTopics, ListGroups). */
  filterDescribable(principal: Principal, resourceType: ResourceType, names: Iterable<string>): string[] {
    const visible: string[] = [];
    for (const name of names) if (this.authorize(principal, "describe", resourceType, name)) visible.push(name);
    return visible;
  }

  /**
   * The principal's own flag counts only for the anonymous identity (`--auth` off); for a
   * proven identity the snapshot in force decides, so revoking a superuser takes effect on
   * long-lived streams too, which keep the Principal they authenticated with.
   */
  private isSuperuser(principal: Principal): boolean {
    if (principal.method === "anonymous") return principal.superuser;
    return this.superusers.has(principal.name);
  }

  private evaluate(principalName: string, checked: CheckedResource): boolean {
    const own = verdict(this.entriesByPrincipal.get(principalName), checked);
    if (own === "deny") return false;
    const anyone = principalName === ANY_PRINCIPAL ? "none" : verdict(this.entriesByPrincipal.get(ANY_PRINCIPAL), checked);
    if (anyone === "deny") return false;
    return own === "allow" || anyone === "allow";
  }
}

/** What one principal's entries (its own, or those of `User:*`) say: a deny wins over an allow. */
function verdict(byType: EntriesByType | undefined, checked: CheckedResource): "allow" | "deny" | "none" {
  if (byType === undefined) return "none";
  let allowed = false;
  const entries = byType.get(checked.resourceType);
  if (entries !== undefined) {
    for (const entry of entries) {
      if (!matchesName(entry, checked.resourceName)) continue;
      if (entry.permission === "deny") {
        if (entry.operation === checked.operation || entry.operation === "admin") return "deny";
      } else if (allowsOperation(entry.operation, checked.operation)) {
        allowed = true;
      }
    }
  }
  // Creating a topic: create (or admin) on the cluster covers every topic.
  const clusterEntries = checked.resourceType === "topic" && checked.operation === "create" ? byType.get("cluster") : undefined;
  if (clusterEntries !== undefined) {
    for (const entry of clusterEntries) {
      if (entry.operation !== "create" && entry.operation !== "admin") continue;
      if (entry.permission === "deny") return "deny";
      allowed = true;
    }
  }
  return allowed ? "allow" : "none";
}

function allowsOperation(granted: Operation, requested: Operation): boolean {
  if (granted === requested || granted === "admin") return true;
  return requested === "describe" && IMPLIES_DESCRIBE.has(granted);
}

function matchesName(entry: AclEntry, name: string): boolean {
  return entry.patternType === "literal" ? entry.resourceName === name : name.startsWith(entry.resourceName);
}

/** Maps internal topics to the resource that governs them (see the rules at the top). */
function checkedResource(operation: Operation, resourceType: ResourceType, resourceName: string): CheckedResource {
  if (resourceType !== "topic" || !resourceName.startsWith(INTERNAL_TOPIC_PREFIX)) return { operation, resourceType, resourceName };
  if (resourceName.startsWith(DLQ_TOPIC_PREFIX)) {
    const group = resourceName.slice(DLQ_TOPIC_PREFIX.length);
    if (GROUP_NAME_PATTERN.test(group)) return { operation, resourceType: "group", resourceName: group };
  }
  return { operation: "admin", resourceType: "cluster", resourceName: CLUSTER_RESOURCE_NAME };
}

const VERBS: Record<Operation, string> = {
  produce: "produce to",
  consume: "consume from",
  describe: "describe",
  create: "create",
  alter: "alter",
  delete: "delete",
  admin: "administer",
};

function phrase(operation: Operation, resourceType: ResourceType, resourceName: string): string {
  const verb = operation === "consume" && resourceType === "group" ? "consume in" : VERBS[operation];
  return `${verb} ${resourceLabel(resourceType, resourceName)}`;
}

function resourceLabel(resourceType: ResourceType, resourceName: string): string {
  return resourceType === "cluster" ? "the cluster" : `${resourceType} ${resourceName}`;
}
