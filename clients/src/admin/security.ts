/**
 * Users and ACLs, through the name servers' Security service (kept in their registry, followed
 * by every broker). Inputs are checked here first, so a typo fails at once with the field named
 * and without a round trip; the name server checks them again.
 *
 * Changes are not retried after a timeout (the first attempt may have done it), as for topics;
 * lists are. With several name servers each on its own in-memory registry, a change reaches
 * only the one that answers: give them a shared registry (`--etcd`) to share users and ACLs.
 */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import {
  formatResource,
  parseOperation,
  parsePermission,
  parsePrincipal,
  parseResource,
  validateAclEntry,
  validateUserName,
} from "../../../common/src/security/acl.js";
import { validatePassword } from "../../../common/src/security/password.js";
import type { AclEntry, Operation, Permission } from "../../../common/src/security/types.js";
import type { AclEntry as WireAclEntry } from "../../../proto/gen/sluice/v1/security.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { checkBoolean, checkKnownKeys } from "../options.js";

export interface CreateUserOptions {
  /** A superuser skips every ACL check. @defaultValue false */
  superuser?: boolean;
  /** Change an existing user's password and superuser flag instead of failing with USER_ALREADY_EXISTS. @defaultValue false */
  replace?: boolean;
}

/** What `createUser` did. */
export interface UserChange {
  name: string;
  /** False: an existing user was replaced (`replace: true`). */
  created: boolean;
}

/** A user as listed: never a password, nor its hash. */
export interface UserListing {
  name: string;
  superuser: boolean;
  /** `admin`, whose password every server reads from `--admin-password-file`. */
  builtIn: boolean;
}

/** An ACL entry as people write it (the CLI's words). */
export interface AclInput {
  /** `User:alice`, or `User:*` for every authenticated principal. */
  principal: string;
  /** produce, consume, describe, create, alter, delete or admin. */
  operation: Operation | (string & {});
  /** `topic:orders`, `topic:orders.*` (prefix), `topic:*`, `group:billing`, `group:bill*` or `cluster`. */
  resource: string;
  /** @defaultValue "allow" */
  permission?: Permission;
}

/** An entry as stored, with its resource also written the CLI's way. */
export interface AclListing extends AclEntry {
  /** e.g. `topic:orders.*`. */
  resource: string;
}

/** What `createAcl` did. */
export interface AclChange {
  acl: AclListing;
  /** False: the same entry existed already (nothing changed). */
  created: boolean;
}

export interface ListAclsOptions {
  /** Only the entries naming exactly this principal (`User:*` entries are not included). @defaultValue every entry */
  principal?: string;
}

export async function createUser(context: ClientContext, name: string, password: string, options: CreateUserOptions = {}): Promise<UserChange> {
  checkKnownKeys("createUser", options, ["superuser", "replace"]);
  const request = {
    name: validateUserName(name),
    password: validatePassword(password),
    superuser: checkBoolean("superuser", options.superuser ?? false),
    replace: checkBoolean("replace", options.replace ?? false),
  };
  const response = await context.nameServers.createUser(request, deadlineFromNow(context));
  return { name: request.name, created: response.created };
}

export async function deleteUser(context: ClientContext, name: string): Promise<void> {
  await context.nameServers.deleteUser(validateUserName(name), deadlineFromNow(context));
}

export async function listUsers(context: ClientContext): Promise<UserListing[]> {
  const response = await context.retry.run(() => context.nameServers.listUsers(deadlineFromNow(context)), { deadlineMs: deadlineFromNow(context) });
  return response.users.map((user) => ({ name: user.name, superuser: user.superuser, builtIn: user.builtIn }));
}

export async function createAcl(context: ClientContext, input: AclInput): Promise<AclChange> {
  const entry = toAclEntry(input);
  const response = await context.nameServers.createAcl(entry, deadlineFromNow(context));
  return { acl: toListing(entry), created: response.created };
}

export async function deleteAcl(context: ClientContext, input: AclInput): Promise<void> {
  await context.nameServers.deleteAcl(toAclEntry(input), deadlineFromNow(context));
}

export async function listAcls(context: ClientContext, options: ListAclsOptions = {}): Promise<AclListing[]> {
  checkKnownKeys("listAcls", options, ["principal"]);
  const principal = options.principal === undefined ? "" : parsePrincipal(options.principal);
  const response = await context.retry.run(() => context.nameServers.listAcls(principal, deadlineFromNow(context)), {
    deadlineMs: deadlineFromNow(context),
  });
  return response.acls.map(toListing);
}

/** Parses and checks an entry as written (`topic:orders.*`…); errors name the field. */
export function toAclEntry(input: AclInput): AclEntry {
  if (typeof input !== "object" || input === null) {
    throw new InvalidArgumentError(`an ACL entry is { principal: "User:alice", operation: "produce", resource: "topic:orders", permission?: "allow" | "deny" }`);
  }
  checkKnownKeys("ACL entry", input, ["principal", "operation", "resource", "permission"]);
  const entry: AclEntry = {
    principal: parsePrincipal(input.principal),
    operation: parseOperation(input.operation),
    ...parseResource(input.resource),
    permission: parsePermission(input.permission ?? "allow"),
  };
  // Catches what each part alone cannot: an operation that does not apply to the resource.
  return validateAclEntry(entry);
}

/** Taken as the server sends it: a newer server's words are shown, not refused. */
function toListing(entry: AclEntry | WireAclEntry): AclListing {
  const listed = {
    principal: entry.principal,
    operation: entry.operation,
    resourceType: entry.resourceType,
    resourceName: entry.resourceName,
    patternType: entry.patternType,
    permission: entry.permission,
  } as AclEntry;
  return { ...listed, resource: formatResource(listed) };
}
