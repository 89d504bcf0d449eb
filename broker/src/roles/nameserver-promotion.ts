/**
 * A master without etcd hands its group over (SIGTERM) by asking a name server to promote the
 * chosen slave: the name server's PromoteBroker calls that slave's Replication.Promote with the
 * group's epoch + 1, exactly as `sluice broker promote` does. Name servers are tried in turn
 * until one answers; the first refusal that is not "unreachable" is final.
 *
 * The request is forced: the master itself has just seen the slave reach its log end, which is
 * fresher than the in-sync report the name server holds from its last heartbeat.
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { Metadata } from "@grpc/grpc-js";
import { BrokerUnavailableError, SluiceError } from "../../../common/src/errors.js";
import { fromServiceError } from "../../../common/src/grpc/errors.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import { NameServerClient, type GroupMaster } from "../../../proto/gen/sluice/v1/nameserver.js";

/** Deadline of one PromoteBroker call (the name server's call to the slave runs inside it). */
export const DEFAULT_PROMOTION_TIMEOUT_MS = 5000;

export interface NameServerPromotionOptions {
  /** TLS and credentials for calls to other servers. @defaultValue plain text, anonymous */
  channels?: SecureChannels;
  /** "host:port" of every name server, tried in this order. */
  nameservers: string[];
  cluster: string;
  group: string;
  clientId: string;
  /** @defaultValue 5000 */
  timeoutMs?: number;
}

/** The `requestPromotion` a LocalRoleManager needs. */
export function promoteThroughNameServers(options: NameServerPromotionOptions): (toBrokerId: number) => Promise<GroupMaster> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROMOTION_TIMEOUT_MS;
  return async (toBrokerId) => {
    let lastError: SluiceError | undefined;
    for (const address of options.nameservers) {
      const client = new NameServerClient(address, (options.channels ?? PLAIN_CHANNELS).credentials, (options.channels ?? PLAIN_CHANNELS).options());
      try {
        const response = await new Promise<{ master?: GroupMaster }>((resolve, reject) => {
          client.promoteBroker(
            {
              header: { clientId: options.clientId, protocolVersion: PROTOCOL_VERSION },
              cluster: options.cluster,
              group: options.group,
              brokerId: toBrokerId,
              force: true,
            },
            new Metadata(),
            { deadline: Date.now() + timeoutMs },
            (err, answer) => (err ? reject(fromServiceError(err, `name server ${address}`)) : resolve(answer)),
          );
        });
        if (response.master === undefined) throw new BrokerUnavailableError(`name server ${address} promoted nobody`);
        return response.master;
      } catch (err) {
        lastError = err instanceof SluiceError ? err : fromServiceError(err, `name server ${address}`);
        if (lastError.code !== "BROKER_UNAVAILABLE" && lastError.code !== "REQUEST_TIMED_OUT") throw lastError;
      } finally {
        client.close();
      }
    }
    throw lastError ?? new BrokerUnavailableError("no name server to ask for the promotion");
  };
}
