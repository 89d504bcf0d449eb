/**
 * Users and ACLs in etcd: one key per user and per ACL entry under the registry prefix, and one
 * marker key rewritten by every change so the whole security state has one version.
 *
 *   <prefix>security/users/<name>          a UserRecord as JSON
 *   <prefix>security/acls/<sha256 hex>     an AclEntry as JSON; the hash is of aclKey(entry),
 *                                          so an equal entry always lands on the same key
 *   <prefix>security/version               the time of the latest change (ms, text); its mod
 *                                          revision is the snapshot's `version`
 *
 * Why a marker: `version` must be the etcd revision of the latest change so every name server
 * reports the same number for the same state, and it must grow on deletions too (the largest
 * mod revision of the remaining keys would fall back when the newest key is deleted). Every
 * change is one transaction that compares the marker's mod revision with the one read and
 * writes the changed keys and the marker: a compare-and-swap over the whole security state.
 */
import { createHash } from "node:crypto";
import type { IKeyValue, IResponseHeader, Namespace, Watcher } from "etcd3";
import { SluiceError } from "../../../common/src/errors.js";
import { aclKey, validateAclEntry, validateUserName } from "../../../common/src/security/acl.js";
import { isPasswordHash } from "../../../common/src/security/password.js";
import type { AclEntry, SecuritySnapshot, UserRecord } from "../../../common/src/security/types.js";
import { notifySecurityListeners } from "./store.js";

export const SECURITY_PATH_PREFIX = "security/";
const USER_PATH_PREFIX = "security/users/";
const ACL_PATH_PREFIX = "security/acls/";
export const SECURITY_VERSION_PATH = "security/version";
/** Compare-and-swap attempts of one `updateSecurity` before it gives up (retriable). */
const MAX_SECURITY_CAS_ATTEMPTS = 16;

/** Runs one etcd call, mapping "etcd unreachable" to the store's retriable error. */
export type EtcdCall = <T>(operation: () => Promise<T>) => Promise<T>;

export function userPath(name: string): string {
  return USER_PATH_PREFIX + name;
}

export function aclPath(entry: AclEntry): string {
  return ACL_PATH_PREFIX + createHash("sha256").update(aclKey(entry)).digest("hex");
}

export function isSecurityPath(path: string): boolean {
  return path.startsWith(SECURITY_PATH_PREFIX);
}

/**
 * The security keys as last seen: filled from a read of the prefix, or kept current event by
 * event by a watch (the name server's registry view).
 */
export class SecurityKeySpace {
  private readonly users = new Map<string, UserRecord>();
  private readonly acls = new Map<string, AclEntry>();
  private versionRevision = 0;

  /** Builds the key space from the keys of one read of the security prefix. */
  static fromKvs(kvs: readonly IKeyValue[]): SecurityKeySpace {
    const space = new SecurityKeySpace();
    for (const kv of kvs) space.apply(kv.key.toString(), kv.value.toString(), Number(kv.mod_revision));
    return space;
  }

  get version(): number {
    return this.versionRevision;
  }

  /**
   * Applies one key's new value (`undefined`: deleted) at `modRevision`. Throws (INTERNAL, naming
   * the key) for a value that is not a valid record: someone wrote it by hand.
   */
  apply(path: string, value: string | undefined, modRevision: number): void {
    if (path === SECURITY_VERSION_PATH) {
      this.versionRevision = value === undefined ? 0 : modRevision;
    } else if (path.startsWith(USER_PATH_PREFIX)) {
      if (value === undefined) this.users.delete(path);
      else this.users.set(path, parseUser(path, value));
    } else if (path.startsWith(ACL_PATH_PREFIX)) {
      if (value === undefined) this.acls.delete(path);
      else this.acls.set(path, parseAcl(path, value));
    }
  }

  clear(): void {
    this.users.clear();
    this.acls.clear();
    this.versionRevision = 0;
  }

  /** Copies, users sorted by name and entries by their canonical key, so equal states compare equal. */
  snapshot(): SecuritySnapshot {
    return {
      version: this.versionRevision,
      users: [...this.users.values()].map((user) => ({ ...user })).sort((a, b) => compare(a.name, b.name)),
      acls: [...this.acls.values()].map((entry) => ({ ...entry })).sort((a, b) => compare(aclKey(a), aclKey(b))),
    };
  }
}

/** The security state now, read in one consistent range read. */
export async function readSecurity(keys: Namespace, call: EtcdCall): Promise<SecuritySnapshot> {
  const response = await call(() => keys.getAll().prefix(SECURITY_PATH_PREFIX).exec());
  return SecurityKeySpace.fromKvs(response.kvs).snapshot();
}

/**
 * Reads the state, applies `change` and writes the keys that differ in one transaction guarded
 * by the marker's mod revision; runs `change` again when another writer came in between. A
 * change that alters nothing writes nothing and resolves the state read. `onWritten` gets the
 * response header of a successful write (its revision is the new version).
 */
export async function updateSecurity(
  keys: Namespace,
  call: EtcdCall,
  change: (current: SecuritySnapshot) => SecuritySnapshot,
  onWritten: (header: IResponseHeader) => void,
): Promise<SecuritySnapshot> {
  for (let attempt = 1; attempt <= MAX_SECURITY_CAS_ATTEMPTS; attempt++) {
    const response = await call(() => keys.getAll().prefix(SECURITY_PATH_PREFIX).exec());
    const current = SecurityKeySpace.fromKvs(response.kvs).snapshot();
    const next = change(structuredClone(current));
    const { puts, deletes } = securityWrites(current, next);
    if (puts.length === 0 && deletes.length === 0) return current;
    const operations = [
      ...deletes.map((path) => keys.delete().key(path)),
      ...puts.map(([path, value]) => keys.put(path).value(value)),
      keys.put(SECURITY_VERSION_PATH).value(String(Date.now())),
    ];
    const swapped = await call(() => keys.if(SECURITY_VERSION_PATH, "Mod", "==", current.version).then(...operations).commit());
    if (swapped.succeeded) {
      onWritten(swapped.header);
      return { version: Number(swapped.header.revision), users: sortedUsers(next.users), acls: sortedAcls(next.acls) };
    }
  }
  throw new SluiceError("NOT_READY", `users and ACLs were changed by someone else ${MAX_SECURITY_CAS_ATTEMPTS} times while this name server updated them; retry`);
}

/**
 * `watchSecurity` of a bare etcd store (a name server uses its registry view instead): an etcd
 * watch on the security prefix, opened with the first listener and cancelled after the last.
 * Any event (or a reconnection, after which etcd3 resumes the watch) triggers one re-read of
 * the whole state; listeners get it when its version is above the last one they got, so
 * overlapping re-reads never deliver an older state after a newer one.
 */
export class EtcdSecurityWatch {
  private readonly listeners = new Set<(snapshot: SecuritySnapshot) => void>();
  private watcher: Promise<Watcher | undefined> | undefined;
  private rereadScheduled = false;
  private deliveredVersion = 0;

  constructor(
    private readonly keys: Namespace,
    private readonly read: () => Promise<SecuritySnapshot>,
  ) {}

  subscribe(listener: (snapshot: SecuritySnapshot) => void): () => void {
    this.listeners.add(listener);
    this.watcher ??= this.open();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  close(): void {
    this.listeners.clear();
    this.stop();
  }

  private async open(): Promise<Watcher | undefined> {
    let watcher: Watcher;
    try {
      watcher = await this.keys.watch().prefix(SECURITY_PATH_PREFIX).create();
    } catch {
      // etcd is down: the next subscriber tries again.
      this.watcher = undefined;
      return undefined;
    }
    const reread = (): void => this.scheduleReread();
    watcher.on("put", reread);
    watcher.on("delete", reread);
    watcher.on("connected", reread);
    // etcd3 re-establishes the watch by itself; a listener must exist or the event would throw.
    watcher.on("error", () => undefined);
    // A change between the subscriber's own read and the watch starting is caught here.
    reread();
    return watcher;
  }

  private stop(): void {
    const watcher = this.watcher;
    this.watcher = undefined;
    void watcher?.then((w) => w?.cancel()).catch(() => undefined);
  }

  /** One re-read per burst of events: a transaction's events arrive together, synchronously. */
  private scheduleReread(): void {
    if (this.rereadScheduled) return;
    this.rereadScheduled = true;
    queueMicrotask(() => {
      this.rereadScheduled = false;
      if (this.listeners.size === 0) return;
      this.read().then(
        (snapshot) => {
          if (snapshot.version <= this.deliveredVersion) return;
          this.deliveredVersion = snapshot.version;
          notifySecurityListeners(this.listeners, snapshot);
        },
        // Unreachable etcd: the reconnection's "connected" event re-reads.
        () => undefined,
      );
    });
  }
}

/** The keys to put (path, JSON) and delete to turn `current` into `next`. */
export function securityWrites(current: SecuritySnapshot, next: SecuritySnapshot): { puts: [string, string][]; deletes: string[] } {
  const before = recordsByPath(current);
  const after = recordsByPath(next);
  const puts: [string, string][] = [];
  for (const [path, json] of after) if (before.get(path) !== json) puts.push([path, json]);
  const deletes = [...before.keys()].filter((path) => !after.has(path));
  return { puts, deletes };
}

function recordsByPath(snapshot: SecuritySnapshot): Map<string, string> {
  const records = new Map<string, string>();
  for (const user of snapshot.users) {
    records.set(userPath(user.name), JSON.stringify({ name: user.name, passwordHash: user.passwordHash, superuser: user.superuser }));
  }
  for (const entry of snapshot.acls) {
    const clean = validateAclEntry(entry);
    records.set(aclPath(clean), JSON.stringify(clean));
  }
  return records;
}

/** The users as written: the stored fields only, sorted by name. */
function sortedUsers(users: readonly UserRecord[]): UserRecord[] {
  return users.map((user) => ({ name: user.name, passwordHash: user.passwordHash, superuser: user.superuser })).sort((a, b) => compare(a.name, b.name));
}

/** The entries as written: clean copies, one per canonical key, sorted by it. */
function sortedAcls(acls: readonly AclEntry[]): AclEntry[] {
  const unique = new Map(acls.map((entry) => [aclKey(entry), validateAclEntry(entry)]));
  return [...unique.values()].sort((a, b) => compare(aclKey(a), aclKey(b)));
}

function parseUser(path: string, value: string): UserRecord {
  const record = parseJson(path, value) as Partial<UserRecord> | null;
  try {
    if (typeof record !== "object" || record === null) throw new Error("not an object");
    const name = validateUserName(record.name);
    if (userPath(name) !== path) throw new Error(`it names user "${name}"`);
    if (!isPasswordHash(record.passwordHash)) throw new Error("passwordHash is not a scrypt hash");
    if (typeof record.superuser !== "boolean") throw new Error("superuser is not true or false");
    return { name, passwordHash: record.passwordHash, superuser: record.superuser };
  } catch (err) {
    throw corrupt(path, (err as Error).message);
  }
}

function parseAcl(path: string, value: string): AclEntry {
  let entry: AclEntry;
  try {
    entry = validateAclEntry(parseJson(path, value));
  } catch (err) {
    throw corrupt(path, (err as Error).message);
  }
  if (aclPath(entry) !== path) throw corrupt(path, "the key is not the hash of the entry it holds");
  return entry;
}

function parseJson(path: string, value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch {
    throw corrupt(path, "not JSON");
  }
}

function corrupt(path: string, reason: string): SluiceError {
  return new SluiceError("INTERNAL", `registry key ${path} does not hold a valid security record (${reason}); fix or delete it with etcdctl`);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
