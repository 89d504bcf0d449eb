/**
 * The name server's calls to brokers' Replication service: ReplicaState (the controller asks a
 * slave what it holds before promoting it) and Promote (hand promotion without etcd). One gRPC
 * channel per broker address, reused, closed with the name server.
 */
import { Metadata } from "@grpc/grpc-js";
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { fromServiceError } from "../../../common/src/grpc/errors.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import { ReplicationClient, type ReplicaStateResponse } from "../../../proto/gen/sluice/v1/replication.js";

/** What the controller and PromoteBroker need from brokers (a fake in unit tests). */
export interface ReplicaCalls {
  replicaState(address: string, timeoutMs: number): Promise<ReplicaStateResponse>;
  /** Resolves with the epoch the broker became master at. */
  promote(address: string, epoch: number, timeoutMs: number): Promise<number>;
  close(): void;
}

export class ReplicationClients implements ReplicaCalls {
  private readonly clients = new Map<string, ReplicationClient>();
  private readonly header: RequestHeader;

  constructor(
    clientId: string,
    private readonly channels: SecureChannels = PLAIN_CHANNELS,
  ) {
    this.header = { clientId, protocolVersion: PROTOCOL_VERSION };
  }

  replicaState(address: string, timeoutMs: number): Promise<ReplicaStateResponse> {
    return new Promise((resolve, reject) => {
      this.client(address).replicaState({ header: this.header }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, response) =>
        err ? reject(fromServiceError(err, `broker ${address}`)) : resolve(response),
      );
    });
  }

  promote(address: string, epoch: number, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.client(address).promote({ header: this.header, epoch }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, response) =>
        err ? reject(fromServiceError(err, `broker ${address}`)) : resolve(response.epoch),
      );
    });
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private client(address: string): ReplicationClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ReplicationClient(address, this.channels.credentials, this.channels.options());
      this.clients.set(address, client);
    }
    return client;
  }
}

/** Sum of a slave's log end offsets: what the controller compares. */
export function totalLogEnd(state: ReplicaStateResponse): number {
  return state.partitions.reduce((sum, partition) => sum + partition.logEndOffset, 0);
}
