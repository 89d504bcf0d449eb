/**
 * One Subscribe stream to one broker, for the partitions of one topic that broker masters.
 *
 *   client ──SubscribeRequest{topic, partitions:[{partition, offset, maxBytes}], creditBytes}──▶
 *   client ◀──FetchResponse{partitions:[{partition, records, nextOffset, error}]}── broker …
 *   client ──SubscribeRequest{creditBytes}──▶   (as the iterator consumes)
 *
 * Flow control by credit: the broker sends while it holds credit and subtracts the bytes
 * of `records` it sends. The stream grants `maxBytesInFlight` up front and gives credit
 * back in steps of a quarter of it as the application consumes, so up to three quarters of
 * the window are always granted ahead and the broker does not wait on a consumer that
 * keeps up.
 */
import type { ClientDuplexStream, ServiceError } from "@grpc/grpc-js";
import { BrokerUnavailableError, type SluiceError } from "../../../common/src/errors.js";
import { fromServiceError } from "../../../common/src/grpc/errors.js";
import type { FetchPartition, FetchResponse, SubscribeRequest } from "../../../proto/gen/sluice/v1/broker.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import type { BrokerConnection } from "../transport/broker-pool.js";

export interface SubscribeStreamListener {
  streamData(stream: SubscribeStream, response: FetchResponse): void;
  /** The stream is gone; its partitions must be subscribed again elsewhere. */
  streamClosed(stream: SubscribeStream, err: SluiceError): void;
}

/** Credit goes back to the broker once this fraction of the window was consumed. */
const CREDIT_RETURN_FRACTION = 4;

export class SubscribeStream {
  closed = false;
  private call: ClientDuplexStream<SubscribeRequest, FetchResponse> | undefined;
  /** Requests made before the stream opened, sent in order once it is. */
  private pending: SubscribeRequest[] = [];
  private headerSent = false;
  private consumedSinceGrant = 0;
  private readonly returnThreshold: number;
  /** `consumed`, bound once, for the chunks this stream delivers. */
  readonly release = (bytes: number): void => this.consumed(bytes);

  constructor(
    readonly connection: BrokerConnection,
    private readonly topic: string,
    private readonly header: RequestHeader,
    private readonly maxBytesInFlight: number,
    private readonly listener: SubscribeStreamListener,
  ) {
    this.returnThreshold = Math.max(1, Math.floor(maxBytesInFlight / CREDIT_RETURN_FRACTION));
  }

  get address(): string {
    return this.connection.address;
  }

  start(): void {
    this.connection.whenReady().then(
      () => this.open(),
      (err: unknown) => this.abort(err as SluiceError),
    );
  }

  /** Starts (or moves) the subscription of these partitions at these offsets. */
  subscribe(partitions: FetchPartition[]): void {
    this.write({ topic: this.topic, partitions, creditBytes: 0, unsubscribe: [] });
  }

  unsubscribe(partitions: number[]): void {
    this.write({ topic: this.topic, partitions: [], creditBytes: 0, unsubscribe: partitions });
  }

  /** The application consumed `bytes` of what this stream delivered. */
  consumed(bytes: number): void {
    if (this.closed) return;
    this.consumedSinceGrant += bytes;
    if (this.consumedSinceGrant >= this.returnThreshold) {
      const credit = this.consumedSinceGrant;
      this.consumedSinceGrant = 0;
      this.write({ topic: this.topic, partitions: [], creditBytes: credit, unsubscribe: [] });
    }
  }

  /** Half-closes: the broker stops streaming and ends its side. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    const call = this.call;
    this.call = undefined;
    call?.end();
    // The broker ends its side in response; don't wait for it to release the channel.
    call?.cancel();
  }

  abort(err: SluiceError): void {
    if (this.closed) return;
    this.closed = true;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.listener.streamClosed(this, err);
  }

  private write(request: SubscribeRequest): void {
    if (this.closed) return;
    if (this.call === undefined) {
      this.pending.push(request);
      return;
    }
    if (!this.headerSent) {
      request.header = this.header;
      // The whole window is granted with the first request.
      request.creditBytes += this.maxBytesInFlight;
      this.headerSent = true;
    }
    // Requests are small and rare (a few per window); HTTP/2 buffering is fine here.
    this.call.write(request);
  }

  private open(): void {
    if (this.closed) return;
    const call = this.connection.openSubscribe();
    this.call = call;
    call.on("data", (response: FetchResponse) => {
      if (this.call === call) this.listener.streamData(this, response);
    });
    call.on("error", (error: ServiceError) => {
      if (this.call === call) this.abort(fromServiceError(error, `broker ${this.address}`));
    });
    call.on("end", () => {
      if (this.call === call) this.abort(new BrokerUnavailableError(`broker ${this.address} ended the subscribe stream`));
    });
    const pending = this.pending;
    this.pending = [];
    for (const request of pending) this.write(request);
  }
}
