/** What every broker RPC handler needs, and the checks they all make. */
import { NotLeaderError, ShuttingDownError, UnsupportedVersionError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { CLUSTER_RESOURCE_NAME, type Principal, type SecurityGuard } from "../../../common/src/security/types.js";
import type { Metadata, ServiceError } from "@grpc/grpc-js";
import { toServiceError } from "../../../common/src/grpc/errors.js";
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import type { FlowController } from "../flow/flow-controller.js";
import type { ReplicationGuard } from "../master-append.js";
import type { BrokerMetrics } from "../metrics.js";
import type { BrokerOptions } from "../options.js";
import type { TopicManager } from "../topics.js";

export interface BrokerContext {
  readonly options: BrokerOptions;
  readonly topics: TopicManager;
  readonly metrics: BrokerMetrics;
  readonly logger: Logger;
  /** Ingress flow control: every produce request is admitted, held or refused by it. */
  readonly flow: FlowController;
  /** "master" accepts produce; a slave refuses it with a redirect. */
  role(): "master" | "slave";
  /** The group's master as this slave knows it ("host:port"), for the redirect; undefined when unknown. */
  masterAddress(): string | undefined;
  /** Fence, epoch stamp, write gate and replication wait of the master's write path. */
  readonly replication: ReplicationGuard;
  shuttingDown(): boolean;
  /** Tells the name servers about a topic change now rather than at the next heartbeat. */
  announce(): void;
  /**
   * Open streams register how to finish themselves at shutdown: a produce stream ends once
   * its pending appends are acknowledged, a subscribe stream ends at once.
   */
  readonly streamClosers: Set<() => void>;
  /** Who is calling and whether they may (always allows when the broker runs without --auth). */
  readonly security: SecurityGuard;
}

/** Refuses a protocol version outside what this broker speaks. A missing header is version 1. */
export function checkHeader(header: RequestHeader | undefined): void {
  const version = header?.protocolVersion || 1;
  if (version < MIN_PROTOCOL_VERSION || version > PROTOCOL_VERSION) {
    throw new UnsupportedVersionError(
      `protocol version ${version} is not supported: this broker speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}; upgrade the ${version > PROTOCOL_VERSION ? "broker" : "client"}`,
    );
  }
}

export function checkWritable(context: BrokerContext): void {
  if (context.shuttingDown()) throw new ShuttingDownError();
  if (context.role() !== "master") {
    const master = context.masterAddress();
    throw new NotLeaderError(
      `broker ${context.options.group}/${context.options.brokerId} is a slave and does not accept produce; send to the group's master${master ? ` at ${master}` : ""} (refresh routes)`,
    );
  }
}

/**
 * Wraps a unary handler with its permission check: `check` gets the caller's principal and
 * the request, and throws NotAuthorizedError before the handler runs.
 */
export function authorized<Req, Res>(
  context: BrokerContext,
  check: (principal: Principal, request: Req) => void,
  handler: (request: Req) => Promise<Res> | Res,
): (request: Req, call: { metadata: Metadata }) => Promise<Res> | Res {
  return (request, call) => {
    check(context.security.principalOf(call), request);
    return handler(request);
  };
}

/**
 * The principal of a stream call, or undefined once the call was ended with the error (a call
 * the interceptor did not authenticate: a wiring bug, refused rather than served).
 */
export function streamPrincipal(context: BrokerContext, call: { metadata: Metadata; emit(event: "error", err: unknown): boolean }): Principal | undefined {
  try {
    return context.security.principalOf(call);
  } catch (err) {
    call.emit("error", toServiceError(err) as ServiceError);
    return undefined;
  }
}

/** Calls only other servers make (replication, the name server's topic changes): admin on cluster. */
export function clusterAdminOnly(context: BrokerContext): (principal: Principal) => void {
  return (principal) => context.security.require(principal, "admin", "cluster", CLUSTER_RESOURCE_NAME);
}

/**
 * Wraps a unary handler so each call is counted in `sluice_requests_total{api}` by outcome
 * (what availability is computed from).
 */
export function counted<Req, Res, Call = unknown>(
  metrics: BrokerMetrics,
  api: string,
  handler: (request: Req, call: Call) => Promise<Res> | Res,
): (request: Req, call: Call) => Promise<Res> {
  return async (request, call) => {
    try {
      const response = await handler(request, call);
      metrics.request(api);
      return response;
    } catch (err) {
      metrics.request(api, err);
      throw err;
    }
  };
}
