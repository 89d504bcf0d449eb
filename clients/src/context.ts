/**
 * What producers, consumers and admins of one `Sluice` client share: the transport
 * (broker channels, name servers, and the one channel security they are all made with),
 * the route cache and the retry policy.
 */
import type { SecureChannels } from "../../common/src/grpc/channel-security.js";
import type { Logger } from "../../common/src/logger.js";
import type { RequestHeader } from "../../proto/gen/sluice/v1/common.js";
import type { ParsedSluiceOptions } from "./options.js";
import type { RetryPolicy } from "./retry.js";
import type { RouteCache } from "./routing/route-cache.js";
import type { BrokerPool } from "./transport/broker-pool.js";
import type { NameServerClient } from "./transport/nameserver-client.js";

export interface ClientContext {
  readonly options: ParsedSluiceOptions;
  readonly header: RequestHeader;
  /** TLS and credentials of every channel this client opens. */
  readonly channels: SecureChannels;
  readonly retry: RetryPolicy;
  readonly brokers: BrokerPool;
  readonly nameServers: NameServerClient;
  readonly routes: RouteCache;
  readonly logger: Logger;
}

/** The deadline (ms since the epoch) of an operation starting now. */
export function deadlineFromNow(context: ClientContext): number {
  return Date.now() + context.options.requestTimeoutMs;
}
