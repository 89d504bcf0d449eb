/**
 * The vocabulary of Sluice security, shared by name servers (which store users and ACLs in the
 * registry), brokers (which enforce them) and the SDK/CLI (which manage them).
 *
 * A principal is `User:<name>`: a password user's name, or the common name (CN) of a verified
 * client certificate. An ACL entry allows or denies one operation on one resource pattern to
 * one principal (`User:*` matches every authenticated principal). Once `--auth` is on, anything
 * no entry allows is denied; a deny entry beats any allow; superusers skip the check.
 */

export const OPERATIONS = ["produce", "consume", "describe", "create", "alter", "delete", "admin"] as const;
export type Operation = (typeof OPERATIONS)[number];

export const RESOURCE_TYPES = ["topic", "group", "cluster"] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];

/** `literal` matches one name; `prefix` (written `orders.*` on the CLI) every name starting with it. */
export type PatternType = "literal" | "prefix";
export type Permission = "allow" | "deny";

/** The one cluster resource's name (`--resource cluster`). */
export const CLUSTER_RESOURCE_NAME = "cluster";

/** The built-in superuser whose password every server reads from `--admin-password-file`. */
export const ADMIN_USER = "admin";
export const PRINCIPAL_PREFIX = "User:";
/** An ACL principal that matches every authenticated principal. */
export const ANY_PRINCIPAL = "User:*";

export interface AclEntry {
  /** `User:alice`, or `User:*`. */
  principal: string;
  operation: Operation;
  resourceType: ResourceType;
  /** Topic or group name, the prefix of a prefix pattern, or `cluster`. */
  resourceName: string;
  patternType: PatternType;
  permission: Permission;
}

/** A user as the registry stores it: never the password, only its salted slow hash. */
export interface UserRecord {
  name: string;
  /** `scrypt$<log2 N>$<r>$<p>$<salt base64>$<hash base64>` (see password.ts). */
  passwordHash: string;
  superuser: boolean;
}

/**
 * Everything a broker needs to authenticate and authorize, as the name servers push it.
 * `version` grows with every change (the etcd revision with a shared registry), so a broker
 * keeps the newest snapshot it has seen.
 */
export interface SecuritySnapshot {
  version: number;
  users: UserRecord[];
  acls: AclEntry[];
}

/** Who is calling, once authenticated. */
export interface Principal {
  /** `User:<name>`. */
  readonly name: string;
  readonly superuser: boolean;
  /** How the identity was proven. */
  readonly method: "password" | "certificate" | "anonymous";
}

/** The identity of every caller when `--auth` is off: it may do everything. */
export const ANONYMOUS: Principal = Object.freeze({ name: "User:ANONYMOUS", superuser: true, method: "anonymous" });

/**
 * What a server's RPC handlers ask of security: who called, and may they do this. Implemented by
 * ServerSecurity (server-security.ts); with `--auth` off every caller is ANONYMOUS and `require`
 * allows everything.
 */
export interface SecurityGuard {
  /** Whether `--auth` is on (handlers may skip filtering work when it is off). */
  readonly enabled: boolean;
  /** The authenticated caller of a gRPC call (set by the authentication interceptor). */
  principalOf(call: { metadata: import("@grpc/grpc-js").Metadata }): Principal;
  /** Throws NotAuthorizedError unless `principal` may do `operation` on the resource. */
  require(principal: Principal, operation: Operation, resourceType: ResourceType, resourceName: string): void;
  /** Whether `principal` may do `operation` on the resource (for filtering lists). */
  allows(principal: Principal, operation: Operation, resourceType: ResourceType, resourceName: string): boolean;
}
