/**
 * ACL entries as people write them and as the registry keys them: parsing the CLI's forms
 * (`User:alice`, `topic:orders.*`, `produce`), checking that an entry makes sense, and the one
 * canonical identity of an entry.
 *
 * Resources on the command line:
 *   topic:orders     the topic `orders` (literal)
 *   topic:orders.*   every topic whose name starts with `orders.` (prefix; `ordersX` is not one)
 *   topic:*          every topic (prefix "")
 *   group:billing    group:bill*    group:*     the same for consumer and queue groups
 *   cluster          the cluster itself (brokers, users, ACLs, flow rules)
 */
import { InvalidArgumentError } from "../errors.js";
import { GROUP_NAME_PATTERN, TOPIC_NAME_PATTERN } from "../protocol.js";
import {
  ANY_PRINCIPAL,
  CLUSTER_RESOURCE_NAME,
  OPERATIONS,
  PRINCIPAL_PREFIX,
  RESOURCE_TYPES,
  type AclEntry,
  type Operation,
  type PatternType,
  type Permission,
  type ResourceType,
} from "./types.js";

/** User names and certificate CNs that can be principals: `User:<name>`. */
export const USER_NAME_PATTERN = /^[A-Za-z0-9._@-]{1,128}$/;
const PREFIX_WILDCARD = "*";
const PERMISSIONS: readonly Permission[] = ["allow", "deny"];

/** Which operations make sense on which resource type. */
const OPERATIONS_BY_RESOURCE: Record<ResourceType, readonly Operation[]> = {
  topic: ["produce", "consume", "describe", "create", "alter", "delete", "admin"],
  // Groups come into being when a member joins; `delete` removes an empty group's state.
  group: ["consume", "describe", "alter", "delete", "admin"],
  cluster: ["describe", "create", "alter", "admin"],
};

export interface AclResource {
  resourceType: ResourceType;
  resourceName: string;
  patternType: PatternType;
}

/** `User:alice` or `User:*`; returns the principal as given. */
export function parsePrincipal(text: string): string {
  if (typeof text === "string" && text.startsWith(PRINCIPAL_PREFIX)) {
    const name = text.slice(PRINCIPAL_PREFIX.length);
    if (name === "*" || USER_NAME_PATTERN.test(name)) return text;
  }
  throw new InvalidArgumentError(
    `${quote(text)} is not a principal: write User:<name> (1 to 128 characters from A-Z, a-z, 0-9, ".", "_", "@", "-") or ${ANY_PRINCIPAL} for everyone`,
  );
}

/** A name for `sluice user add` (and what a certificate CN must look like). Returns it. */
export function validateUserName(name: unknown): string {
  if (typeof name === "string" && name !== "*" && USER_NAME_PATTERN.test(name)) return name;
  throw new InvalidArgumentError(
    `${quote(name)} is not a valid user name: use 1 to 128 characters from A-Z, a-z, 0-9, ".", "_", "@" and "-"`,
  );
}

export function parseOperation(text: string): Operation {
  const operation = typeof text === "string" ? text.trim().toLowerCase() : text;
  if ((OPERATIONS as readonly unknown[]).includes(operation)) return operation as Operation;
  throw new InvalidArgumentError(`${quote(text)} is not an operation: use one of ${OPERATIONS.join(", ")}`);
}

export function parsePermission(text: string): Permission {
  const permission = typeof text === "string" ? text.trim().toLowerCase() : text;
  if ((PERMISSIONS as readonly unknown[]).includes(permission)) return permission as Permission;
  throw new InvalidArgumentError(`${quote(text)} is not a permission: use allow or deny`);
}

/** Parses `topic:orders`, `topic:orders.*`, `topic:*`, `group:bill*`, `cluster` (see the top). */
export function parseResource(text: string): AclResource {
  if (text === CLUSTER_RESOURCE_NAME) {
    return { resourceType: "cluster", resourceName: CLUSTER_RESOURCE_NAME, patternType: "literal" };
  }
  const colon = typeof text === "string" ? text.indexOf(":") : -1;
  const type = colon === -1 ? "" : text.slice(0, colon);
  if (type !== "topic" && type !== "group") {
    throw new InvalidArgumentError(
      `${quote(text)} is not a resource: write topic:<name>, topic:<prefix>*, group:<name>, group:<prefix>* or cluster`,
    );
  }
  const pattern = text.slice(colon + 1);
  const resource: AclResource = pattern.endsWith(PREFIX_WILDCARD)
    ? { resourceType: type, resourceName: pattern.slice(0, -PREFIX_WILDCARD.length), patternType: "prefix" }
    : { resourceType: type, resourceName: pattern, patternType: "literal" };
  checkResourceName(resource, "resource");
  return resource;
}

/** The CLI form of an entry's resource, the inverse of parseResource. */
export function formatResource(resource: AclResource): string {
  if (resource.resourceType === "cluster") return CLUSTER_RESOURCE_NAME;
  const suffix = resource.patternType === "prefix" ? PREFIX_WILDCARD : "";
  return `${resource.resourceType}:${resource.resourceName}${suffix}`;
}

/**
 * Checks every field of an entry (one from a request, a file or the registry) and returns a
 * clean copy holding only the known fields. Errors name the field that is wrong.
 */
export function validateAclEntry(entry: unknown): AclEntry {
  if (typeof entry !== "object" || entry === null) throw new InvalidArgumentError("an ACL entry must be an object");
  const input = entry as Record<string, unknown>;
  const field = (name: string, check: () => unknown): void => {
    try {
      check();
    } catch (err) {
      throw new InvalidArgumentError(`ACL field ${name}: ${(err as Error).message}`);
    }
  };
  field("principal", () => parsePrincipal(input.principal as string));
  field("permission", () => {
    if (!(PERMISSIONS as readonly unknown[]).includes(input.permission)) throw new Error(`${quote(input.permission)} is not allow or deny`);
  });
  field("operation", () => {
    if (!(OPERATIONS as readonly unknown[]).includes(input.operation)) throw new Error(`${quote(input.operation)} is not one of ${OPERATIONS.join(", ")}`);
  });
  field("resourceType", () => {
    if (!(RESOURCE_TYPES as readonly unknown[]).includes(input.resourceType)) throw new Error(`${quote(input.resourceType)} is not one of ${RESOURCE_TYPES.join(", ")}`);
  });
  field("patternType", () => {
    if (input.patternType !== "literal" && input.patternType !== "prefix") throw new Error(`${quote(input.patternType)} is not literal or prefix`);
  });
  const clean: AclEntry = {
    principal: input.principal as string,
    operation: input.operation as Operation,
    resourceType: input.resourceType as ResourceType,
    resourceName: input.resourceName as string,
    patternType: input.patternType as PatternType,
    permission: input.permission as Permission,
  };
  checkResourceName(clean, "ACL field resourceName");
  const allowed = OPERATIONS_BY_RESOURCE[clean.resourceType];
  if (!allowed.includes(clean.operation)) {
    throw new InvalidArgumentError(
      `ACL field operation: ${clean.operation} does not apply to ${clean.resourceType === "cluster" ? "the cluster" : `a ${clean.resourceType}`}; use one of ${allowed.join(", ")}`,
    );
  }
  return clean;
}

/**
 * The canonical identity of an entry: equal for equal entries, stable across versions (the
 * registry keys entries by a hash of it), unambiguous because no field may contain `|`.
 */
export function aclKey(entry: AclEntry): string {
  return [entry.permission, entry.principal, entry.operation, entry.resourceType, entry.patternType, entry.resourceName].join("|");
}

/** One line for the CLI: `ALLOW User:alice produce topic:orders.*`. */
export function describeAcl(entry: AclEntry): string {
  return `${entry.permission.toUpperCase()} ${entry.principal} ${entry.operation} ${formatResource(entry)}`;
}

/** The name of a resource (or prefix) fits its type; `where` starts the error message. */
function checkResourceName(resource: AclResource, where: string): void {
  const { resourceType, resourceName, patternType } = resource;
  if (typeof resourceName !== "string") throw new InvalidArgumentError(`${where}: the name must be a string`);
  if (resourceType === "cluster") {
    if (resourceName !== CLUSTER_RESOURCE_NAME || patternType !== "literal") {
      throw new InvalidArgumentError(`${where}: the cluster resource is written \`cluster\` (name "cluster", literal), not ${quote(resourceName)}`);
    }
    return;
  }
  const pattern = resourceType === "topic" ? TOPIC_NAME_PATTERN : GROUP_NAME_PATTERN;
  const what = resourceType === "topic" ? "topic" : "group";
  if (patternType === "prefix") {
    // A prefix is any beginning of a valid name, the empty one included (`topic:*`).
    if (resourceName === "" || pattern.test(resourceName)) return;
    throw new InvalidArgumentError(
      `${where}: ${quote(resourceName + PREFIX_WILDCARD)} is not a ${what} prefix: only a trailing * may follow the characters a ${what} name can have (a-z, A-Z, 0-9, ".", "_", "-")`,
    );
  }
  if (pattern.test(resourceName) && resourceName !== "." && resourceName !== "..") return;
  const internal = resourceName.startsWith("%")
    ? " (internal % topics are governed by their group or by the cluster, not by topic ACLs)"
    : "";
  throw new InvalidArgumentError(
    `${where}: ${quote(resourceName)} is not a valid ${what} name${internal}; use the characters a-z, A-Z, 0-9, ".", "_", "-", or end with * for a prefix`,
  );
}

function quote(value: unknown): string {
  if (value === "") return "an empty string";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
