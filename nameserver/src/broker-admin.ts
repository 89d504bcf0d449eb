/**
 * The name server's calls to brokers: creating a topic's partitions on the groups placement
 * chose, and deleting a topic. One gRPC channel per broker address, reused across calls and
 * closed with the name server.
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../common/src/grpc/channel-security.js";
import { callUnary } from "../../common/src/grpc/unary-call.js";
import { MAX_GRPC_MESSAGE_BYTES, PROTOCOL_VERSION } from "../../common/src/protocol.js";
import {
  BrokerClient,
  type CreatePartitionsRequest,
  type CreatePartitionsResponse,
} from "../../proto/gen/sluice/v1/broker.js";
import type { RequestHeader } from "../../proto/gen/sluice/v1/common.js";

export interface BrokerAdminOptions {
  /** Sent in every RequestHeader so brokers can tell the name server's calls apart. */
  clientId: string;
  /** Deadline of one call to a broker. */
  requestTimeoutMs: number;
  /** TLS and credentials for calls to brokers. @defaultValue plain text, anonymous */
  channels?: SecureChannels;
}

export class BrokerAdminClients {
  private readonly clients = new Map<string, BrokerClient>();
  private readonly header: RequestHeader;

  constructor(private readonly options: BrokerAdminOptions) {
    this.header = { clientId: options.clientId, protocolVersion: PROTOCOL_VERSION };
  }

  createPartitions(address: string, request: Omit<CreatePartitionsRequest, "header">): Promise<CreatePartitionsResponse> {
    const client = this.client(address);
    return callUnary(client.createPartitions, client, { ...request, header: this.header }, this.deadlineMs(), `broker ${address}`);
  }

  async deleteTopic(address: string, topic: string): Promise<void> {
    const client = this.client(address);
    await callUnary(client.deleteTopic, client, { header: this.header, topic }, this.deadlineMs(), `broker ${address}`);
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private client(address: string): BrokerClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      const channels = this.options.channels ?? PLAIN_CHANNELS;
      client = new BrokerClient(
        address,
        channels.credentials,
        channels.options({
          "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
          "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
        }),
      );
      this.clients.set(address, client);
    }
    return client;
  }

  private deadlineMs(): number {
    return Date.now() + this.options.requestTimeoutMs;
  }
}
