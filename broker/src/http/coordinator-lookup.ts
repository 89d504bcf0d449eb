/**
 * Asks the name servers which broker coordinates a queue group, for consumers that reach a
 * broker directly (WebSocket) rather than through the SDK's FindCoordinator step.
 *
 * FindCoordinator also creates `%groups` and the group's dead-letter topic on first use, so
 * asking it first makes a browser's first queue consumer work on a fresh cluster. When no
 * name server answers, the local open decides (it fails with NOT_COORDINATOR unless this
 * broker already holds the group's state).
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { Metadata } from "@grpc/grpc-js";
import { NotCoordinatorError, SluiceError } from "../../../common/src/errors.js";
import { fromServiceError } from "../../../common/src/grpc/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import { NameServerClient, type FindCoordinatorResponse } from "../../../proto/gen/sluice/v1/nameserver.js";

/** How long one name server gets to answer. */
export const COORDINATOR_LOOKUP_TIMEOUT_MS = 3000;

export interface CoordinatorLookupOptions {
  /** TLS and credentials for calls to other servers. @defaultValue plain text, anonymous */
  channels?: SecureChannels;
  nameservers: readonly string[];
  /** This broker, as the name servers know it. */
  brokerGroup: string;
  brokerId: number;
  /** The path a consumer should use on the coordinator, for the NOT_COORDINATOR message. */
  consumePath: string;
  logger: Logger;
}

export class CoordinatorLookup {
  /** Created on first use: most brokers never serve a WebSocket queue consumer. */
  private clients: NameServerClient[] | undefined;

  constructor(private readonly options: CoordinatorLookupOptions) {}

  /** Resolves when this broker may coordinate `group`; NOT_COORDINATOR naming the right broker otherwise. */
  async ensureLocal(group: string): Promise<void> {
    this.clients ??= this.options.nameservers.map((address) => new NameServerClient(address, (this.options.channels ?? PLAIN_CHANNELS).credentials, (this.options.channels ?? PLAIN_CHANNELS).options()));
    let lastError: unknown;
    for (const [i, client] of this.clients.entries()) {
      let response: FindCoordinatorResponse;
      try {
        response = await new Promise<FindCoordinatorResponse>((resolve, reject) => {
          client.findCoordinator(
            { header: { clientId: `broker-${this.options.brokerGroup}`, protocolVersion: PROTOCOL_VERSION }, group, queue: true },
            new Metadata(),
            { deadline: Date.now() + COORDINATOR_LOOKUP_TIMEOUT_MS },
            (err, answer) => (err ? reject(fromServiceError(err, `name server ${this.options.nameservers[i]}`)) : resolve(answer)),
          );
        });
      } catch (err) {
        // "No such group name" is final; "cannot answer now" moves on to the next name server.
        if (err instanceof SluiceError && !err.retriable) throw err;
        lastError = err;
        continue;
      }
      const master = response.route?.master;
      if (master === undefined || (master.group === this.options.brokerGroup && master.brokerId === this.options.brokerId)) return;
      throw new NotCoordinatorError(
        `group "${group}" is coordinated by broker ${master.group}/${master.brokerId}; connect to ws://${master.httpAddress}${this.options.consumePath}`,
      );
    }
    this.options.logger.debug({ group, err: lastError }, "no name server answered FindCoordinator; trying to open the queue here");
  }

  close(): void {
    for (const client of this.clients ?? []) client.close();
    this.clients = undefined;
  }
}
