/**
 * A server's security: who is calling (authentication) and whether they may (authorization),
 * for every gRPC call and HTTP request of a broker or name server.
 *
 * Authentication runs once per call in a grpc-js server interceptor, before the handler sees
 * anything: a connection over a limit, a client certificate that did not verify, missing or
 * wrong credentials end the call with a typed error and a metric. The principal it proves is
 * remembered for the call's metadata object (never a header a client could forge) and read by
 * handlers through `principalOf(call)`. Authorization runs in the handlers (`require`), which
 * know the topic or group a request touches; decisions come from the Authorizer's cache.
 *
 * With `--auth` off every caller is ANONYMOUS and may do everything; a certificate that fails
 * verification against `--tls-ca` is still refused, since the client meant to present it.
 */
import type { IncomingHttpHeaders } from "node:http";
import { Metadata, ServerInterceptingCall, type ServerInterceptor, type ServerInterceptingCallInterface } from "@grpc/grpc-js";
import { AuthenticationFailedError, SluiceError, TooManyRequestsError, toSluiceError } from "../errors.js";
import { toServiceError } from "../grpc/errors.js";
import { connectionFactsOf, type ConnectionFacts } from "./connection-facts.js";
import type { Logger } from "../logger.js";
import { Authorizer } from "./authorizer.js";
import { principalFromCertificate } from "./certificate-identity.js";
import { parseBasicAuth } from "./basic-auth.js";
import { CredentialVerifier } from "./credentials.js";
import { hashPassword } from "./password.js";
import type { AuthFailureReason, SecurityMetrics } from "./security-metrics.js";
import {
  ADMIN_USER,
  ANONYMOUS,
  PRINCIPAL_PREFIX,
  type Operation,
  type Principal,
  type ResourceType,
  type SecurityGuard,
  type SecuritySnapshot,
} from "./types.js";

/** Calls in flight on one connection; past it a call is refused with TOO_MANY_REQUESTS. */
export const DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION = 1_000;

export interface ServerSecurityInit {
  /** `--auth`: callers must authenticate and ACLs apply. */
  auth: boolean;
  /** `admin`'s password (from `--admin-password-file`); required with `auth`. */
  adminPassword?: string | undefined;
  metrics: SecurityMetrics;
  logger: Logger;
  maxInFlightPerConnection?: number;
}

const EMPTY_SNAPSHOT: SecuritySnapshot = { version: 0, users: [], acls: [] };

export class ServerSecurity implements SecurityGuard {
  readonly enabled: boolean;
  private readonly authorizer: Authorizer;
  private readonly verifier: CredentialVerifier;
  private readonly principals = new WeakMap<Metadata, Principal>();
  private readonly inFlight = new Map<string, number>();
  private connectionFacts: (peer: string) => ConnectionFacts | undefined = () => undefined;

  private constructor(
    private readonly options: ServerSecurityInit,
    adminHash: string | undefined,
  ) {
    this.enabled = options.auth;
    this.authorizer = new Authorizer(EMPTY_SNAPSHOT, [ADMIN_USER]);
    this.verifier = new CredentialVerifier(EMPTY_SNAPSHOT, adminHash ? [{ name: ADMIN_USER, passwordHash: adminHash, superuser: true }] : []);
    options.metrics.setEnabled(options.auth);
  }

  /** Hashes admin's password (slow on purpose, once at start). */
  static async create(options: ServerSecurityInit): Promise<ServerSecurity> {
    if (options.auth && !options.adminPassword) {
      throw new AuthenticationFailedError("--auth needs --admin-password-file: the servers authenticate to each other as admin");
    }
    const adminHash = options.adminPassword ? await hashPassword(options.adminPassword) : undefined;
    return new ServerSecurity(options, adminHash);
  }

  /** Installs the users and ACLs in force (from the registry, or pushed by a name server). */
  update(snapshot: SecuritySnapshot): void {
    this.verifier.update(snapshot);
    this.authorizer.update(snapshot);
  }

  /** The version of the users and ACLs in force. */
  get version(): number {
    return this.authorizer.version;
  }

  /** Where the interceptor learns about a call's connection (the gRPC listener). */
  useConnectionFacts(lookup: (peer: string) => ConnectionFacts | undefined): void {
    this.connectionFacts = lookup;
  }

  principalOf(call: { metadata: Metadata }): Principal {
    if (!this.enabled) return ANONYMOUS;
    const principal = this.principals.get(call.metadata);
    // Fails closed: a handler reached without the interceptor (a wiring bug) serves nobody.
    if (principal === undefined) throw new AuthenticationFailedError("this call was not authenticated (no credentials were checked)");
    return principal;
  }

  allows(principal: Principal, operation: Operation, resourceType: ResourceType, resourceName: string): boolean {
    if (!this.enabled) return true;
    return !this.deleted(principal) && this.authorizer.authorize(principal, operation, resourceType, resourceName);
  }

  require(principal: Principal, operation: Operation, resourceType: ResourceType, resourceName: string): void {
    if (!this.enabled) return;
    // A stream outlives the check of its credentials: a user deleted since may do nothing more.
    if (this.deleted(principal)) {
      throw new AuthenticationFailedError(`user ${principal.name.slice(PRINCIPAL_PREFIX.length)} no longer exists; connect again with current credentials`);
    }
    if (this.authorizer.authorize(principal, operation, resourceType, resourceName)) return;
    this.options.metrics.authorizationDenied(operation, resourceType);
    this.authorizer.require(principal, operation, resourceType, resourceName);
  }

  /** A password user removed after the call authenticated (certificates name no stored user). */
  private deleted(principal: Principal): boolean {
    return principal.method === "password" && !this.verifier.isUser(principal.name);
  }

  /** The grpc-js interceptor that authenticates every call and bounds calls per connection. */
  interceptor(): ServerInterceptor {
    return (_method, call) => this.intercept(call);
  }

  /**
   * Authenticates an HTTP request (admin API, console, WebSocket upgrade) from its headers
   * and, over TLS, its client certificate. Throws AuthenticationFailedError.
   */
  async authenticateHttp(headers: IncomingHttpHeaders, socket: unknown): Promise<Principal> {
    return this.authenticate(headers.authorization, connectionFactsOf(socket), "http");
  }

  private intercept(call: ServerInterceptingCallInterface): ServerInterceptingCall {
    const peer = call.getPeer();
    let counted = false;
    const release = (): void => {
      if (!counted) return;
      counted = false;
      const left = (this.inFlight.get(peer) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(peer);
      else this.inFlight.set(peer, left);
    };
    const refuse = (err: SluiceError): void => {
      const status = toServiceError(err);
      call.sendStatus({ code: err.grpcStatus, details: err.message, ...(status.metadata ? { metadata: status.metadata } : {}) });
    };
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const facts = this.connectionFacts(peer);
            if (facts?.refusedBecause) return refuse(new TooManyRequestsError(facts.refusedBecause));
            const max = this.options.maxInFlightPerConnection ?? DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION;
            const current = this.inFlight.get(peer) ?? 0;
            if (current >= max) {
              return refuse(new TooManyRequestsError(`this connection has ${current} calls in flight, the limit (--max-in-flight-per-connection ${max}); wait for some to finish or open another connection`));
            }
            this.inFlight.set(peer, current + 1);
            counted = true;
            const header = metadata.get("authorization")[0];
            // Handlers never see the password (nor could they log it).
            metadata.remove("authorization");
            this.authenticate(typeof header === "string" ? header : undefined, facts, "grpc").then(
              (principal) => {
                this.principals.set(metadata, principal);
                nextMetadata(metadata);
              },
              (err: unknown) => {
                release();
                refuse(toSluiceError(err));
              },
            );
          },
          onCancel: release,
        });
      },
      sendStatus: (status, next) => {
        release();
        next(status);
      },
    });
  }

  private async authenticate(header: string | undefined, facts: ConnectionFacts | undefined, transport: "grpc" | "http"): Promise<Principal> {
    if (facts?.certificatePresented && facts.verifiedCertificate === undefined) {
      const reason: AuthFailureReason =
        facts.certificateError === "CERT_HAS_EXPIRED" ? "certificate_expired" : /ISSUER|SELF_SIGNED|UNABLE_TO_VERIFY|UNTRUSTED/.test(facts.certificateError ?? "") ? "certificate_untrusted" : "certificate_invalid";
      this.options.metrics.authenticationFailed(reason, transport);
      throw new AuthenticationFailedError(
        `client certificate refused: ${facts.certificateError} (${certificateAdvice(facts.certificateError)})`,
      );
    }
    if (!this.enabled) return ANONYMOUS;
    if (header !== undefined) {
      const basic = parseBasicAuth(header);
      if (!basic) {
        this.options.metrics.authenticationFailed("malformed_credentials", transport);
        throw new AuthenticationFailedError('the authorization header is not "Basic base64(user:password)"');
      }
      try {
        return await this.verifier.verify(basic.username, basic.password);
      } catch (err) {
        if (err instanceof AuthenticationFailedError) this.options.metrics.authenticationFailed("bad_credentials", transport);
        throw err;
      }
    }
    if (facts?.verifiedCertificate) {
      try {
        return { name: principalFromCertificate(facts.verifiedCertificate), superuser: false, method: "certificate" };
      } catch (err) {
        // The CN becomes a principal ACLs name: a certificate that names no valid user is refused.
        this.options.metrics.authenticationFailed("certificate_invalid", transport);
        throw err;
      }
    }
    this.options.metrics.authenticationFailed("missing_credentials", transport);
    throw new AuthenticationFailedError(
      "authentication required: this server runs with --auth; pass --user and --password-file (SDK: credentials) or a client certificate",
    );
  }
}

function certificateAdvice(code: string | undefined): string {
  if (code === "CERT_HAS_EXPIRED") return "the certificate has expired: issue a new one";
  if (code === "CERT_NOT_YET_VALID") return "the certificate is not valid yet: check the clocks";
  return "it does not chain to the server's --tls-ca: use a certificate signed by the cluster's CA";
}
