/**
 * One Produce stream to one broker: batches out with correlation ids, acknowledgements in.
 *
 *   client ──ProduceRequest{correlationId, topic, partition, acks, batch}──▶ broker
 *   client ◀──ProduceResponse{correlationId, baseOffset | error}─────────── broker
 *
 * Batches waiting for their acknowledgement sit in `inFlight` (a Map keeps insertion
 * order, so its first entry is the oldest). When the stream fails, every batch in flight
 * fails with a retriable error and the sender retries it after a route refresh. With
 * `acks: "none"` the broker sends nothing back, so a batch is done once written.
 */
import type { ClientDuplexStream, ServiceError } from "@grpc/grpc-js";
import { BrokerUnavailableError, type SluiceError } from "../../../common/src/errors.js";
import { fromServiceError, fromWireError } from "../../../common/src/grpc/errors.js";
import { Acks, type ProduceRequest, type ProduceResponse } from "../../../proto/gen/sluice/v1/broker.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import type { BrokerConnection } from "../transport/broker-pool.js";
import type { ProducerBatch } from "./send-call.js";

export interface ProduceStreamListener {
  /** `throttleTimeMs`: how long the broker's flow control held the batch (0: not held). */
  streamAcknowledged(batch: ProducerBatch, baseOffset: number, throttleTimeMs: number): void;
  streamFailed(batch: ProducerBatch, err: SluiceError): void;
  /** The stream can take batches: it just opened, or drained after pushing back. */
  streamWritable(stream: ProduceStream): void;
  /** The stream is gone (its batches already reported as failed); open a new one if needed. */
  streamClosed(stream: ProduceStream, err: SluiceError): void;
}

export class ProduceStream {
  readonly inFlight = new Map<number, ProducerBatch>();
  /** Open and handshaken: batches can be written. */
  ready = false;
  /** The stream's buffer is full; wait for `writable`. */
  blocked = false;
  closed = false;
  private call: ClientDuplexStream<ProduceRequest, ProduceResponse> | undefined;
  private nextCorrelationId = 1;
  private headerSent = false;

  constructor(
    readonly connection: BrokerConnection,
    private readonly header: RequestHeader,
    private readonly acks: Acks,
    private readonly listener: ProduceStreamListener,
  ) {}

  get address(): string {
    return this.connection.address;
  }

  /** Handshakes (once per connection) and opens the stream; `writable` fires when ready. */
  start(): void {
    this.connection.whenReady().then(
      () => this.open(),
      (err: unknown) => this.abort(err as SluiceError),
    );
  }

  /** Writes one batch. Call only while `ready && !blocked`. */
  send(batch: ProducerBatch, nowMs: number): void {
    const call = this.call!;
    const correlationId = this.nextCorrelationId++;
    const request: ProduceRequest = {
      header: this.headerSent ? undefined : this.header,
      correlationId,
      topic: batch.topic,
      partition: batch.partition,
      acks: this.acks,
      batch: batch.bytes,
    };
    this.headerSent = true;
    batch.sentAtMs = nowMs;
    if (this.acks !== Acks.ACKS_NONE) this.inFlight.set(correlationId, batch);
    if (!call.write(request)) {
      this.blocked = true;
      call.once("drain", () => {
        this.blocked = false;
        if (!this.closed) this.listener.streamWritable(this);
      });
    }
    if (this.acks === Acks.ACKS_NONE) batch.acknowledge(-1);
  }

  /** The oldest batch still waiting for its acknowledgement. */
  oldestInFlight(): ProducerBatch | undefined {
    for (const batch of this.inFlight.values()) return batch;
    return undefined;
  }

  /** Half-closes the stream once nothing is in flight; the broker then ends its side. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    this.call?.end();
  }

  /** Cancels the stream and fails every batch in flight with `err`. */
  abort(err: SluiceError): void {
    if (this.closed && this.inFlight.size === 0) return;
    this.closed = true;
    this.ready = false;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    const batches = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const batch of batches) this.listener.streamFailed(batch, err);
    this.listener.streamClosed(this, err);
  }

  private open(): void {
    if (this.closed) return;
    const call = this.connection.openProduce();
    this.call = call;
    call.on("data", (response: ProduceResponse) => this.onResponse(response));
    call.on("error", (error: ServiceError) => {
      if (this.call === call) this.abort(fromServiceError(error, `broker ${this.address}`));
    });
    call.on("end", () => {
      if (this.call === call) {
        this.abort(new BrokerUnavailableError(`broker ${this.address} closed the produce stream; retrying on a fresh one`));
      }
    });
    this.ready = true;
    this.listener.streamWritable(this);
  }

  private onResponse(response: ProduceResponse): void {
    const batch = this.inFlight.get(response.correlationId);
    if (batch === undefined) return; // already timed out and retried elsewhere
    this.inFlight.delete(response.correlationId);
    if (response.error !== undefined) this.listener.streamFailed(batch, fromWireError(response.error));
    else this.listener.streamAcknowledged(batch, response.baseOffset, response.throttleTimeMs);
  }
}
