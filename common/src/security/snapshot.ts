/**
 * Security snapshots as values: the changes `sluice user` and `sluice acl` make, each a pure
 * function returning a new snapshot one version on, and the JSON form the in-memory registry
 * keeps in `<data>/security.json`:
 *
 *   {
 *     "format": 1,
 *     "version": 7,
 *     "users": [{ "name": "alice", "passwordHash": "scrypt$14$8$1$…", "superuser": false }…],
 *     "acls": [{ "principal": "User:alice", "operation": "produce", "resourceType": "topic",
 *                "resourceName": "orders.", "patternType": "prefix", "permission": "allow" }…]
 *   }
 *
 * Users are kept sorted by name and entries by aclKey, so equal snapshots encode equally.
 */
import { InvalidArgumentError, InvalidConfigError, UnknownAclError, UnknownUserError, UnsupportedDataFormatError, UserAlreadyExistsError } from "../errors.js";
import { aclKey, describeAcl, validateAclEntry, validateUserName } from "./acl.js";
import { isPasswordHash } from "./password.js";
import { ADMIN_USER, ANONYMOUS, PRINCIPAL_PREFIX, type AclEntry, type SecuritySnapshot, type UserRecord } from "./types.js";

/** The layout of security.json this build writes and reads. */
export const SNAPSHOT_FORMAT = 1;

/** Names no `sluice user add` may take: the built-in admin, and the identity of `--auth` off. */
const RESERVED_USER_NAMES: ReadonlySet<string> = new Set([ADMIN_USER, ANONYMOUS.name.slice(PRINCIPAL_PREFIX.length)]);

export function emptySnapshot(): SecuritySnapshot {
  return { version: 0, users: [], acls: [] };
}

export interface ApplyUserOptions {
  /** Replace an existing user of that name (a password change) instead of refusing. */
  replace?: boolean;
}

/** Adds a user, or with `replace` changes one. */
export function applyUser(snapshot: SecuritySnapshot, user: UserRecord, options: ApplyUserOptions = {}): SecuritySnapshot {
  const record = validateUser(user);
  const exists = snapshot.users.some((u) => u.name === record.name);
  if (exists && !options.replace) {
    throw new UserAlreadyExistsError(`user ${record.name} already exists; delete it first or replace it to change its password`);
  }
  const users = [...snapshot.users.filter((u) => u.name !== record.name), record].sort(byName);
  return { version: snapshot.version + 1, users, acls: snapshot.acls };
}

/** Deletes a user. Its ACL entries stay: they name a principal, which a certificate may also prove. */
export function removeUser(snapshot: SecuritySnapshot, name: string): SecuritySnapshot {
  if (RESERVED_USER_NAMES.has(name)) throw reservedName(name);
  if (!snapshot.users.some((u) => u.name === name)) {
    throw new UnknownUserError(`user ${JSON.stringify(name)} does not exist; list users with \`sluice user list\``);
  }
  return { version: snapshot.version + 1, users: snapshot.users.filter((u) => u.name !== name), acls: snapshot.acls };
}

/** Adds an entry; an entry already there leaves the snapshot (and its version) as it is. */
export function addAcl(snapshot: SecuritySnapshot, entry: AclEntry): SecuritySnapshot {
  const clean = validateAclEntry(entry);
  const key = aclKey(clean);
  if (snapshot.acls.some((e) => aclKey(e) === key)) return snapshot;
  return { version: snapshot.version + 1, users: snapshot.users, acls: [...snapshot.acls, clean].sort(byAclKey) };
}

export function removeAcl(snapshot: SecuritySnapshot, entry: AclEntry): SecuritySnapshot {
  const key = aclKey(entry);
  const acls = snapshot.acls.filter((e) => aclKey(e) !== key);
  if (acls.length === snapshot.acls.length) {
    throw new UnknownAclError(`there is no ACL entry ${describeAcl(entry)}; list them with \`sluice acl list\``);
  }
  return { version: snapshot.version + 1, users: snapshot.users, acls };
}

export function encodeSnapshot(snapshot: SecuritySnapshot): string {
  const stored = {
    format: SNAPSHOT_FORMAT,
    version: snapshot.version,
    users: [...snapshot.users].sort(byName).map((u) => ({ name: u.name, passwordHash: u.passwordHash, superuser: u.superuser })),
    acls: [...snapshot.acls].sort(byAclKey).map((e) => validateAclEntry(e)),
  };
  return JSON.stringify(stored, null, 2) + "\n";
}

/**
 * Reads what encodeSnapshot wrote, checking every field: a corrupt or hand-edited file stops
 * with InvalidConfigError naming `source` and what is wrong, never with a half-read snapshot.
 */
export function decodeSnapshot(text: string, source = "the security snapshot"): SecuritySnapshot {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidConfigError(`${source} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InvalidConfigError(`${source} must hold a JSON object with format, version, users and acls`);
  }
  const stored = parsed as Record<string, unknown>;
  if (typeof stored.format === "number" && Number.isInteger(stored.format) && stored.format > SNAPSHOT_FORMAT) {
    throw new UnsupportedDataFormatError(`${source} has format ${stored.format}, written by a newer Sluice; this build reads format ${SNAPSHOT_FORMAT}`);
  }
  if (stored.format !== SNAPSHOT_FORMAT) {
    throw new InvalidConfigError(`${source}: format is ${JSON.stringify(stored.format) ?? "missing"}; expected ${SNAPSHOT_FORMAT}`);
  }
  const version = stored.version;
  if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 0) {
    throw new InvalidConfigError(`${source}: version must be a non-negative integer, not ${JSON.stringify(version) ?? "missing"}`);
  }
  if (!Array.isArray(stored.users)) throw new InvalidConfigError(`${source}: users must be a list`);
  if (!Array.isArray(stored.acls)) throw new InvalidConfigError(`${source}: acls must be a list`);

  const users: UserRecord[] = [];
  const userNames = new Set<string>();
  stored.users.forEach((user: unknown, i) => {
    const record = asConfig(() => validateUser(user as UserRecord), `${source}: users[${i}]`);
    if (userNames.has(record.name)) throw new InvalidConfigError(`${source}: users[${i}]: user ${record.name} appears twice`);
    userNames.add(record.name);
    users.push(record);
  });
  // A repeated entry means nothing more than one: keep one.
  const acls = new Map<string, AclEntry>();
  stored.acls.forEach((entry: unknown, i) => {
    const clean = asConfig(() => validateAclEntry(entry), `${source}: acls[${i}]`);
    acls.set(aclKey(clean), clean);
  });
  return { version, users: users.sort(byName), acls: [...acls.values()].sort(byAclKey) };
}

/** Checks a user record and returns a clean copy of it. */
function validateUser(user: UserRecord): UserRecord {
  if (typeof user !== "object" || user === null) throw new InvalidArgumentError("a user must be an object with name, passwordHash and superuser");
  const name = validateUserName(user.name);
  if (RESERVED_USER_NAMES.has(name)) throw reservedName(name);
  if (!isPasswordHash(user.passwordHash)) {
    throw new InvalidArgumentError(`user ${name}: passwordHash is not a scrypt$<log2 N>$<r>$<p>$<salt>$<hash> string this build can verify`);
  }
  if (typeof user.superuser !== "boolean") throw new InvalidArgumentError(`user ${name}: superuser must be true or false`);
  return { name, passwordHash: user.passwordHash, superuser: user.superuser };
}

function reservedName(name: string): InvalidArgumentError {
  return name === ADMIN_USER
    ? new InvalidArgumentError(`${ADMIN_USER} is built in: its password comes from each server's --admin-password-file, and it cannot be added or deleted`)
    : new InvalidArgumentError(`${name} is reserved for callers of a server running without --auth; choose another user name`);
}

function asConfig<T>(read: () => T, where: string): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new InvalidConfigError(`${where}: ${err.message}`);
    throw err;
  }
}

function byName(a: UserRecord, b: UserRecord): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function byAclKey(a: AclEntry, b: AclEntry): number {
  const ka = aclKey(a);
  const kb = aclKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
