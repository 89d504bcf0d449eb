/**
 * Checks user names and passwords against the users of the newest snapshot and the built-in
 * ones (`admin`), fast enough to run on every call.
 *
 * Clients send their password with every call, so a server cannot afford scrypt (tens of ms) each
 * time. After one successful scrypt check it keeps, per user, HMAC-SHA256(key, password) under a
 * random key of this process, together with the stored hash it was checked against. A later call
 * with the same password and an unchanged stored hash is one HMAC and a constant-time compare;
 * a changed or deleted user no longer matches, and a memory dump shows no passwords, only MACs
 * useless without the key.
 *
 * Names cannot be probed: an unknown user and a wrong password get the same message, and an
 * unknown user costs the same scrypt (against a random hash) as a known one.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { AuthenticationFailedError, TooManyRequestsError } from "../errors.js";
import { USER_NAME_PATTERN } from "./acl.js";
import { HASH_BYTES, SALT_BYTES, SCRYPT_BLOCK_SIZE, SCRYPT_LOG2_N, SCRYPT_PARALLELISM, hashPassword, verifyPassword } from "./password.js";
import { ADMIN_USER, PRINCIPAL_PREFIX, type Principal, type SecuritySnapshot, type UserRecord } from "./types.js";

const HMAC_KEY_BYTES = 32;
/**
 * A stored hash check passes an instant after the snapshot changed under it at most this many
 * times before the call fails: it would take a user re-keyed every few milliseconds to get there.
 */
const MAX_VERIFY_ATTEMPTS = 3;

interface VerifiedPassword {
  /** The stored hash the password was checked against. */
  passwordHash: string;
  mac: Buffer;
}

export class CredentialVerifier {
  private readonly hmacKey = randomBytes(HMAC_KEY_BYTES);
  private readonly builtInUsers: ReadonlyMap<string, UserRecord>;
  private users: ReadonlyMap<string, UserRecord> = new Map();
  private principals: ReadonlyMap<string, Principal> = new Map();
  private userPrincipals: ReadonlySet<string> = new Set();
  private readonly verified = new Map<string, VerifiedPassword>();
  private readonly inFlight = new Map<string, Promise<boolean>>();
  /** What unknown users are checked against, so they cost what known ones do. */
  private readonly decoyHash = [
    "scrypt",
    SCRYPT_LOG2_N,
    SCRYPT_BLOCK_SIZE,
    SCRYPT_PARALLELISM,
    randomBytes(SALT_BYTES).toString("base64"),
    randomBytes(HASH_BYTES).toString("base64"),
  ].join("$");

  /** @param builtInUsers users no snapshot can change or remove (`admin`); they win over a snapshot's. */
  constructor(snapshot: SecuritySnapshot, builtInUsers: readonly UserRecord[] = []) {
    this.builtInUsers = new Map(builtInUsers.map((u) => [u.name, u]));
    this.update(snapshot);
  }

  /** A verifier whose built-in `admin` (a superuser) has the given password, hashed now. */
  static async withAdminPassword(adminPassword: string, snapshot: SecuritySnapshot): Promise<CredentialVerifier> {
    const admin: UserRecord = { name: ADMIN_USER, passwordHash: await hashPassword(adminPassword), superuser: true };
    return new CredentialVerifier(snapshot, [admin]);
  }

  /** Installs the users of a new snapshot and forgets what was verified for changed or deleted ones. */
  update(snapshot: SecuritySnapshot): void {
    const users = new Map<string, UserRecord>();
    for (const user of snapshot.users) users.set(user.name, user);
    for (const [name, user] of this.builtInUsers) users.set(name, user);
    const principals = new Map<string, Principal>();
    for (const user of users.values()) {
      principals.set(user.name, Object.freeze({ name: PRINCIPAL_PREFIX + user.name, superuser: user.superuser, method: "password" as const }));
    }
    this.users = users;
    this.principals = principals;
    this.userPrincipals = new Set([...principals.values()].map((principal) => principal.name));
    for (const [name, entry] of this.verified) {
      if (users.get(name)?.passwordHash !== entry.passwordHash) this.verified.delete(name);
    }
  }

  /** The principal of a user whose password is right; AuthenticationFailedError otherwise. */
  async verify(username: string, password: string): Promise<Principal> {
    const refused = (): AuthenticationFailedError =>
      new AuthenticationFailedError(`unknown user or wrong password for ${displayName(username)}`);
    // A name no user can have needs no decoy: it says nothing about who exists.
    if (typeof username !== "string" || typeof password !== "string" || !USER_NAME_PATTERN.test(username)) throw refused();
    const mac = createHmac("sha256", this.hmacKey).update(password, "utf8").digest();
    for (let attempt = 0; attempt < MAX_VERIFY_ATTEMPTS; attempt++) {
      const user = this.users.get(username);
      if (user === undefined) {
        await this.check(username, password, mac, this.decoyHash);
        throw refused();
      }
      const known = this.verified.get(username);
      if (known !== undefined && known.passwordHash === user.passwordHash && timingSafeEqual(known.mac, mac)) {
        return this.principals.get(username)!;
      }
      // A password other than the cached one still costs a full scrypt, so the time of a
      // refusal says nothing about whether the user exists or logged in lately.
      if (!(await this.check(username, password, mac, user.passwordHash))) throw refused();
      const current = this.users.get(username);
      // The snapshot may have changed while scrypt ran: only a hash still in force counts.
      if (current?.passwordHash === user.passwordHash) {
        this.verified.set(username, { passwordHash: user.passwordHash, mac });
        return this.principals.get(username)!;
      }
    }
    throw refused();
  }

  /**
   * Whether a principal names a user now (built-in or in the snapshot in force). Asked on every
   * produce batch, so it is one lookup of the principal's name as it stands.
   */
  isUser(principalName: string): boolean {
    return this.userPrincipals.has(principalName);
  }

  /** One scrypt per distinct (user, password, stored hash) at a time, shared by concurrent calls. */
  private check(username: string, password: string, mac: Buffer, passwordHash: string): Promise<boolean> {
    const key = `${username}\u0000${mac.toString("base64")}\u0000${passwordHash}`;
    let pending = this.inFlight.get(key);
    if (pending === undefined) {
      pending = this.scrypts.run(() => verifyPassword(password, passwordHash)).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  private readonly scrypts = new ScryptSlots();
}

/**
 * scrypt runs on libuv's thread pool (4 threads), which the broker's file I/O shares. Anyone
 * can make a server run one (a wrong password, an unknown user), so they run one at a time and
 * at most MAX_WAITING_SCRYPTS wait: past that a caller is refused at once (TOO_MANY_REQUESTS)
 * instead of queueing work that would hold up fsyncs and reads for everyone.
 */
const MAX_RUNNING_SCRYPTS = 1;
const MAX_WAITING_SCRYPTS = 32;

class ScryptSlots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= MAX_RUNNING_SCRYPTS) {
      if (this.waiting.length >= MAX_WAITING_SCRYPTS) {
        throw new TooManyRequestsError(`${MAX_WAITING_SCRYPTS} password checks are already waiting; retry in a moment`, { retryAfterMs: 100 });
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running += 1;
    }
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter; only when none waits is it freed.
      if (next) next();
      else this.running -= 1;
    }
  }
}

/** The user name as an error may show it: as given when it is a valid name, else quoted and cut. */
function displayName(username: unknown): string {
  if (typeof username === "string" && USER_NAME_PATTERN.test(username)) return username;
  const text = JSON.stringify(typeof username === "string" ? username.slice(0, 64) : username) ?? String(username);
  return text;
}
