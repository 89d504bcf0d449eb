/**
 * Who may consume what over the WebSocket endpoint, with the ACLs gRPC Fetch/Subscribe use:
 * consume on the topic, and for a queue group consume on the group too.
 *
 * The upgrade request is authenticated like every HTTP request (WebSocketAuth is what the
 * HTTP server offers for requests that bypass routing). Each `open` frame is checked before
 * anything is opened; what it opened then holds a ConsumeGrant, which the mode asks before
 * every batch it delivers (a cached decision: one Map lookup per check) and which a sweep
 * re-checks every ACCESS_RECHECK_MS, so a subscription that delivers nothing stops too. An
 * ACL removed at run time thus ends a live subscription within that period after the new
 * snapshot reaches the broker, with a NOT_AUTHORIZED error frame.
 */
import type { IncomingHttpHeaders } from "node:http";
import { NotAuthorizedError, toSluiceError } from "../../../common/src/errors.js";
import type { Principal, SecurityGuard } from "../../../common/src/security/types.js";

/** How often every live subscription's permission is checked again (well inside the 1 s promise). */
export const ACCESS_RECHECK_MS = 250;

/** Authentication and permission checks for upgrades (a fastify instance from createHttpServer has both). */
export interface WebSocketAuth {
  /** The principal of an upgrade request; throws AuthenticationFailedError. */
  authenticateHeaders(headers: IncomingHttpHeaders, socket: unknown): Promise<Principal>;
  readonly securityGuard: SecurityGuard;
}

/** What the modes ask before each delivery. */
export interface DeliveryPermission {
  /**
   * Whether the subscription may still deliver. The first `false` also ends it (after the
   * caller returns, so a mode is never re-entered from its own delivery callback).
   */
  stillAllowed(): boolean;
}

export class ConsumeGrant implements DeliveryPermission {
  private ended = false;

  constructor(
    private readonly access: ConsumeAccess,
    private readonly guard: SecurityGuard,
    private readonly principal: Principal,
    private readonly topic: string,
    private readonly group: string | undefined,
    private readonly onRevoked: (err: NotAuthorizedError) => void,
  ) {}

  stillAllowed(): boolean {
    if (this.ended) return false;
    if (!this.guard.enabled) return true;
    const { guard, principal, topic, group } = this;
    if (guard.allows(principal, "consume", "topic", topic) && (group === undefined || guard.allows(principal, "consume", "group", group))) return true;
    this.ended = true;
    this.release();
    let reason: string;
    try {
      // Counts the refusal and says which ACL is missing.
      requireConsume(guard, principal, topic, group);
      reason = `${principal.name} may no longer consume from topic ${topic}`;
    } catch (err) {
      reason = toSluiceError(err).message;
    }
    const error = new NotAuthorizedError(`this subscription ended: its permission was revoked (${reason})`);
    queueMicrotask(() => this.onRevoked(error));
    return false;
  }

  /** The subscription is over: no more sweeps. */
  release(): void {
    this.access.forget(this);
  }
}

/** The live grants of one endpoint and the sweep that re-checks them. */
export class ConsumeAccess {
  private readonly live = new Set<ConsumeGrant>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly guard: SecurityGuard) {}

  /**
   * Checks an `open` frame; throws NotAuthorizedError (counted by the guard) unless the
   * principal may consume the topic (and the group, for a queue group). `onRevoked` runs once
   * if the permission goes away while the subscription lives.
   */
  grant(principal: Principal, topic: string, group: string | undefined, onRevoked: (err: NotAuthorizedError) => void): ConsumeGrant {
    requireConsume(this.guard, principal, topic, group);
    const grant = new ConsumeGrant(this, this.guard, principal, topic, group, onRevoked);
    // Without --auth nothing can be revoked: no sweep to run.
    if (!this.guard.enabled) return grant;
    this.live.add(grant);
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(() => {
        for (const live of [...this.live]) live.stillAllowed();
      }, ACCESS_RECHECK_MS);
      this.sweeper.unref();
    }
    return grant;
  }

  forget(grant: ConsumeGrant): void {
    this.live.delete(grant);
    if (this.live.size === 0) this.stopSweeping();
  }

  close(): void {
    this.live.clear();
    this.stopSweeping();
  }

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}

function requireConsume(guard: SecurityGuard, principal: Principal, topic: string, group: string | undefined): void {
  guard.require(principal, "consume", "topic", topic);
  if (group !== undefined) guard.require(principal, "consume", "group", group);
}
