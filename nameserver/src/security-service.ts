/**
 * gRPC handlers of `sluice.v1.Security`: users and ACLs kept in the registry, and the
 * WatchSecurity stream brokers follow them by.
 *
 * Every handler asks the SecurityGuard first: changes need admin on the cluster, lists need
 * describe on it, and WatchSecurity (which carries password hashes) admin. Then every request
 * field is checked, and errors name the field; no password ever reaches a message or a log.
 *
 * Deleting a user keeps the ACL entries naming it, as Kafka does: an entry names a principal,
 * which a client certificate with that CN may still prove, and a user added again under the
 * same name gets its permissions back. `sluice acl delete` removes entries.
 */
import type { ServerWritableStream, ServiceError } from "@grpc/grpc-js";
import { InvalidArgumentError, NotAuthorizedError, ShuttingDownError } from "../../common/src/errors.js";
import { toServiceError, unary } from "../../common/src/grpc/errors.js";
import type { Logger } from "../../common/src/logger.js";
import { aclKey, describeAcl, parsePrincipal, validateAclEntry, validateUserName } from "../../common/src/security/acl.js";
import { hashPassword, validatePassword } from "../../common/src/security/password.js";
import { addAcl, applyUser, removeAcl, removeUser } from "../../common/src/security/snapshot.js";
import {
  ADMIN_USER,
  CLUSTER_RESOURCE_NAME,
  PRINCIPAL_PREFIX,
  type AclEntry,
  type Operation,
  type Principal,
  type SecurityGuard,
  type SecuritySnapshot,
} from "../../common/src/security/types.js";
import type {
  AclEntry as WireAclEntry,
  SecurityServer,
  SecuritySnapshot as WireSecuritySnapshot,
  UserInfo,
  WatchSecurityRequest,
} from "../../proto/gen/sluice/v1/security.js";
import type { RegistryStore } from "./registry/store.js";

export const ADMIN_IS_BUILT_IN = `${ADMIN_USER} is built in: change its password with --admin-password-file on every server`;

export interface SecurityServiceDeps {
  store: RegistryStore;
  guard: SecurityGuard;
  logger: Logger;
}

type Call = Parameters<SecurityGuard["principalOf"]>[0];

export class SecurityService {
  readonly handlers: SecurityServer;
  /** Open WatchSecurity streams, ended when the name server stops. */
  private readonly watchers = new Set<() => void>();
  private closed = false;

  constructor(private readonly deps: SecurityServiceDeps) {
    const { store, logger } = deps;
    this.handlers = {
      createUser: unary(async (request, call) => {
        const principal = this.authorize(call, "admin");
        const name = checkNewUserName(request.name);
        const password = field("password", () => validatePassword(request.password));
        const passwordHash = await hashPassword(password);
        let existed = false;
        await store.updateSecurity((current) => {
          existed = current.users.some((user) => user.name === name);
          return applyUser(current, { name, passwordHash, superuser: request.superuser }, { replace: request.replace });
        });
        logger.info({ user: name, superuser: request.superuser, replaced: existed, by: principal.name }, existed ? "user replaced" : "user created");
        return { created: !existed };
      }),

      deleteUser: unary(async (request, call) => {
        const principal = this.authorize(call, "admin");
        const name = checkNewUserName(request.name);
        await store.updateSecurity((current) => removeUser(current, name));
        logger.info({ user: name, by: principal.name }, "user deleted (its ACL entries stay)");
        return {};
      }),

      listUsers: unary(async (_request, call) => {
        this.authorize(call, "describe");
        const snapshot = await store.readSecurity();
        const users: UserInfo[] = [
          { name: ADMIN_USER, superuser: true, builtIn: true },
          ...snapshot.users.map((user) => ({ name: user.name, superuser: user.superuser, builtIn: false })),
        ];
        return { users };
      }),

      createAcl: unary(async (request, call) => {
        const principal = this.authorize(call, "admin");
        const entry = checkAcl(request.acl);
        let existed = false;
        await store.updateSecurity((current) => {
          existed = current.acls.some((e) => aclKey(e) === aclKey(entry));
          return addAcl(current, entry);
        });
        if (!existed) logger.info({ acl: describeAcl(entry), by: principal.name }, "ACL entry created");
        return { created: !existed };
      }),

      deleteAcl: unary(async (request, call) => {
        const principal = this.authorize(call, "admin");
        const entry = checkAcl(request.acl);
        await store.updateSecurity((current) => removeAcl(current, entry));
        logger.info({ acl: describeAcl(entry), by: principal.name }, "ACL entry deleted");
        return {};
      }),

      listAcls: unary(async (request, call) => {
        this.authorize(call, "describe");
        const principal = request.principal === "" ? undefined : field("principal", () => parsePrincipal(request.principal));
        const snapshot = await store.readSecurity();
        const acls = principal === undefined ? snapshot.acls : snapshot.acls.filter((entry) => entry.principal === principal);
        return { acls: acls.map(toWireAcl) };
      }),

      watchSecurity: (call) => this.watch(call),
    };
  }

  /** Ends every WatchSecurity stream (status OK): the name server is stopping. */
  close(): void {
    this.closed = true;
    const watchers = [...this.watchers];
    this.watchers.clear();
    for (const end of watchers) end();
  }

  /** The caller, once the guard allows it `operation` on the cluster; throws NOT_AUTHORIZED otherwise. */
  private authorize(call: Call, operation: Operation): Principal {
    const principal = this.deps.guard.principalOf(call);
    this.deps.guard.require(principal, operation, "cluster", CLUSTER_RESOURCE_NAME);
    return principal;
  }

  /**
   * The current snapshot, then every newer one. Subscribing before reading means no change can
   * fall between the two; versions at or below the last one sent are dropped.
   */
  private watch(call: ServerWritableStream<WatchSecurityRequest, WireSecuritySnapshot>): void {
    try {
      if (this.closed) throw new ShuttingDownError("the name server is stopping; watch users and ACLs on another name server");
      // The stream carries every password hash: only servers (the built-in admin) may follow it,
      // not a user given admin on the cluster to manage flow rules or ACLs.
      const principal = this.authorize(call, "admin");
      if (this.deps.guard.enabled && principal.name !== PRINCIPAL_PREFIX + ADMIN_USER) {
        throw new NotAuthorizedError(`${principal.name} may not watch users and ACLs: the stream carries password hashes and is for servers, which authenticate as ${ADMIN_USER}`);
      }
    } catch (err) {
      call.emit("error", toServiceError(err) as ServiceError);
      return;
    }
    let finished = false;
    // Every message is a whole snapshot: sending only versions above the last one sent keeps
    // the stream in order whichever of the first read and a change arrives first.
    let sentVersion = -1;
    const send = (snapshot: SecuritySnapshot): void => {
      if (finished || snapshot.version <= sentVersion) return;
      sentVersion = snapshot.version;
      call.write(toWireSnapshot(snapshot));
    };
    const unsubscribe = this.deps.store.watchSecurity(send);
    /** Stops following the store; true the first time only. */
    const stop = (): boolean => {
      if (finished) return false;
      finished = true;
      unsubscribe();
      this.watchers.delete(end);
      return true;
    };
    const end = (): void => {
      if (stop()) call.end();
    };
    this.watchers.add(end);
    call.once("cancelled", stop);
    call.once("close", stop);
    this.deps.store.readSecurity().then(send, (err: unknown) => {
      if (stop()) call.emit("error", toServiceError(err) as ServiceError);
    });
  }
}

/** A user name `sluice user add` / `delete` may name: valid, and not the built-in admin. */
function checkNewUserName(name: string): string {
  if (name === ADMIN_USER) throw new InvalidArgumentError(ADMIN_IS_BUILT_IN);
  return field("name", () => validateUserName(name));
}

function checkAcl(wire: WireAclEntry | undefined): AclEntry {
  if (wire === undefined) throw new InvalidArgumentError("acl: the request carries no ACL entry");
  // Its messages name the field already ("ACL field principal: …").
  return validateAclEntry({ ...wire });
}

/** Runs a check, prefixing its InvalidArgumentError with the request field it is about. */
function field<T>(name: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(`${name}: ${err.message}`);
    throw err;
  }
}

export function toWireAcl(entry: AclEntry): WireAclEntry {
  return {
    principal: entry.principal,
    operation: entry.operation,
    resourceType: entry.resourceType,
    resourceName: entry.resourceName,
    patternType: entry.patternType,
    permission: entry.permission,
  };
}

function toWireSnapshot(snapshot: SecuritySnapshot): WireSecuritySnapshot {
  return {
    version: snapshot.version,
    users: snapshot.users.map((user) => ({ name: user.name, passwordHash: user.passwordHash, superuser: user.superuser })),
    acls: snapshot.acls.map(toWireAcl),
  };
}
