/**
 * One Queue stream to a group's coordinator.
 *
 *   client ──QueueRequest{header, open{group, topic, member_id, …}, credit_messages: prefetch}──▶
 *   client ◀──QueueResponse{deliveries[{partition, records, leases}]}── broker …
 *   client ──QueueRequest{credit_messages, correlation_id, acks, nacks, extends}──▶
 *   client ◀──QueueResponse{settled{correlation_id, errors}}──
 *   client ◀──QueueResponse{error}── (the stream is over: bad open, coordinator moved)
 *
 * The stream reports everything to its listener and never retries: the queue consumer
 * decides what a failure means.
 */
import type { ClientDuplexStream, ServiceError } from "@grpc/grpc-js";
import { BrokerUnavailableError, type SluiceError } from "../../../common/src/errors.js";
import { fromServiceError, fromWireError } from "../../../common/src/grpc/errors.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import type { QueueOpen, QueueRequest, QueueResponse } from "../../../proto/gen/sluice/v1/groups.js";
import type { BrokerConnection } from "../transport/broker-pool.js";

export interface QueueStreamListener {
  /** Deliveries and settle answers of a live stream. */
  streamResponse(stream: QueueStream, response: QueueResponse): void;
  /** The stream is over (`err` says why); it was already torn down. */
  streamClosed(stream: QueueStream, err: SluiceError): void;
}

export class QueueStream {
  closed = false;
  private call: ClientDuplexStream<QueueRequest, QueueResponse> | undefined;

  constructor(
    readonly connection: BrokerConnection,
    private readonly listener: QueueStreamListener,
  ) {}

  get address(): string {
    return this.connection.address;
  }

  /** Opens the call and sends the open request with the first credit grant. */
  start(header: RequestHeader, open: QueueOpen, creditMessages: number): void {
    const call = this.connection.openQueue();
    this.call = call;
    call.on("data", (response: QueueResponse) => {
      if (this.call !== call) return;
      this.listener.streamResponse(this, response);
      // A stream-level error ends the stream: after the answers that came with it.
      if (response.error !== undefined && this.call === call) this.abort(fromWireError(response.error));
    });
    call.on("error", (error: ServiceError) => {
      if (this.call === call) this.abort(fromServiceError(error, `broker ${this.address}`));
    });
    call.on("end", () => {
      if (this.call === call) this.abort(new BrokerUnavailableError(`broker ${this.address} ended the queue stream`));
    });
    call.write({ header, open, creditMessages, correlationId: 0, acks: [], nacks: [], extends: [] });
  }

  /** Sends one request; false once the stream is over. */
  write(request: QueueRequest): boolean {
    if (this.closed || this.call === undefined) return false;
    // Requests carry at most 1,000 small settles; HTTP/2 buffering absorbs bursts.
    this.call.write(request);
    return true;
  }

  /** Half-closes, then cancels: the consumer has already waited for what it needed. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    const call = this.call;
    this.call = undefined;
    call?.end();
    call?.cancel();
  }

  private abort(err: SluiceError): void {
    if (this.closed) return;
    this.closed = true;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.listener.streamClosed(this, err);
  }
}
