/**
 * One gRPC channel per broker address, shared by every producer, consumer and admin of a
 * `Sluice` client. The first use of a connection runs the Handshake, which checks that the
 * broker speaks this client's protocol version; streams open only after it succeeded.
 */
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { ClosedError, UnsupportedVersionError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import {
  BrokerClient,
  type DescribePartitionsRequest,
  type DescribePartitionsResponse,
  type FetchRequest,
  type FetchResponse,
  type HandshakeResponse,
  type ListOffsetsRequest,
  type ListOffsetsResponse,
  type ProduceRequest,
  type ProduceResponse,
  type SubscribeRequest,
} from "../../../proto/gen/sluice/v1/broker.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import {
  GroupsClient,
  type CommitOffsetsRequest,
  type CommitOffsetsResponse,
  type DescribeGroupRequest,
  type DescribeGroupResponse,
  type FetchOffsetsRequest,
  type FetchOffsetsResponse,
  type GroupHeartbeatRequest,
  type GroupHeartbeatResponse,
  type ListGroupsRequest,
  type ListGroupsResponse,
  type QueueRequest,
  type QueueResponse,
  type ResetOffsetsRequest,
  type ResetOffsetsResponse,
} from "../../../proto/gen/sluice/v1/groups.js";
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { callUnary, channelArgs } from "./grpc.js";

export interface BrokerPoolContext {
  readonly header: RequestHeader;
  /** TLS and credentials of every broker channel. @defaultValue plain text, anonymous */
  readonly channels?: SecureChannels;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

export class BrokerConnection {
  private readonly client: BrokerClient;
  // Same address and options as `client`, so grpc-js shares the one HTTP/2 connection.
  private readonly groups: GroupsClient;
  private handshake: Promise<HandshakeResponse> | undefined;
  private closed = false;
  /** True once the Handshake succeeded: the hot paths check this instead of awaiting. */
  ready = false;
  /** What the broker said about itself, once the Handshake succeeded. */
  info: HandshakeResponse | undefined;

  constructor(
    readonly address: string,
    private readonly context: BrokerPoolContext,
  ) {
    const channels = context.channels ?? PLAIN_CHANNELS;
    this.client = new BrokerClient(address, ...channelArgs(channels));
    this.groups = new GroupsClient(address, ...channelArgs(channels));
  }

  /** Runs the Handshake once; a failed one is forgotten so the next call tries again. */
  whenReady(): Promise<HandshakeResponse> {
    if (this.closed) return Promise.reject(new ClosedError(`connection to broker ${this.address}`));
    if (this.handshake === undefined) {
      const request = {
        header: this.context.header,
        minProtocolVersion: PROTOCOL_VERSION,
        maxProtocolVersion: PROTOCOL_VERSION,
      };
      const deadline = Date.now() + this.context.requestTimeoutMs;
      this.handshake = callUnary(this.client.handshake, this.client, request, deadline, this.target()).then(
        (response) => {
          checkProtocol(this.address, response);
          this.info = response;
          this.ready = true;
          this.context.logger.debug({ broker: this.address, serverVersion: response.serverVersion }, "broker handshake done");
          return response;
        },
        (err: unknown) => {
          this.handshake = undefined;
          throw err;
        },
      );
    }
    return this.handshake;
  }

  openProduce(): ClientDuplexStream<ProduceRequest, ProduceResponse> {
    return this.client.produce();
  }

  openSubscribe(): ClientDuplexStream<SubscribeRequest, FetchResponse> {
    return this.client.subscribe();
  }

  async listOffsets(request: ListOffsetsRequest, deadlineMs: number): Promise<ListOffsetsResponse> {
    await this.whenReady();
    return callUnary(this.client.listOffsets, this.client, request, deadlineMs, this.target());
  }

  async fetch(request: FetchRequest, deadlineMs: number): Promise<FetchResponse> {
    await this.whenReady();
    return callUnary(this.client.fetch, this.client, request, deadlineMs, this.target());
  }

  async describePartitions(request: DescribePartitionsRequest, deadlineMs: number): Promise<DescribePartitionsResponse> {
    await this.whenReady();
    return callUnary(this.client.describePartitions, this.client, request, deadlineMs, this.target());
  }

  async groupHeartbeat(request: GroupHeartbeatRequest, deadlineMs: number): Promise<GroupHeartbeatResponse> {
    await this.whenReady();
    return callUnary(this.groups.heartbeat, this.groups, request, deadlineMs, this.target());
  }

  async commitOffsets(request: CommitOffsetsRequest, deadlineMs: number): Promise<CommitOffsetsResponse> {
    await this.whenReady();
    return callUnary(this.groups.commitOffsets, this.groups, request, deadlineMs, this.target());
  }

  async fetchOffsets(request: FetchOffsetsRequest, deadlineMs: number): Promise<FetchOffsetsResponse> {
    await this.whenReady();
    return callUnary(this.groups.fetchOffsets, this.groups, request, deadlineMs, this.target());
  }

  async listGroups(request: ListGroupsRequest, deadlineMs: number): Promise<ListGroupsResponse> {
    await this.whenReady();
    return callUnary(this.groups.listGroups, this.groups, request, deadlineMs, this.target());
  }

  async describeGroup(request: DescribeGroupRequest, deadlineMs: number): Promise<DescribeGroupResponse> {
    await this.whenReady();
    return callUnary(this.groups.describeGroup, this.groups, request, deadlineMs, this.target());
  }

  async resetOffsets(request: ResetOffsetsRequest, deadlineMs: number): Promise<ResetOffsetsResponse> {
    await this.whenReady();
    return callUnary(this.groups.resetOffsets, this.groups, request, deadlineMs, this.target());
  }

  openQueue(): ClientDuplexStream<QueueRequest, QueueResponse> {
    return this.groups.queue();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    this.client.close();
    this.groups.close();
  }

  private target(): string {
    return `broker ${this.address}`;
  }
}

/** The versions were agreed by the broker; a broker that answers outside ours is refused. */
function checkProtocol(address: string, response: HandshakeResponse): void {
  if (response.protocolVersion !== PROTOCOL_VERSION) {
    throw new UnsupportedVersionError(
      `broker ${address} speaks protocol versions ${response.minProtocolVersion}..${response.maxProtocolVersion} ` +
        `and chose ${response.protocolVersion}; this client speaks ${PROTOCOL_VERSION}: upgrade the ${
          response.maxProtocolVersion < PROTOCOL_VERSION ? "broker" : "client"
        }`,
    );
  }
}

export class BrokerPool {
  private readonly connections = new Map<string, BrokerConnection>();
  private closed = false;

  constructor(private readonly context: BrokerPoolContext) {}

  /** The shared connection to `address` (gRPC host:port), created on first use. */
  get(address: string): BrokerConnection {
    if (this.closed) throw new ClosedError("the Sluice client");
    let connection = this.connections.get(address);
    if (connection === undefined) {
      connection = new BrokerConnection(address, this.context);
      this.connections.set(address, connection);
    }
    return connection;
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }
}
