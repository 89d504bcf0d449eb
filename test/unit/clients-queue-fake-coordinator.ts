/**
 * An in-process stand-in for a name server and a group coordinator on one gRPC port, for
 * testing the queue consumer's plumbing (credit, filtering to leased offsets, settle
 * batching, reconnection) without the real broker. The queue model is deliberately simple:
 * every offset is available, leased (to one stream, with a lease id) or acked; a nack makes it
 * available again after its delay; a stream that ends hands its leases back at once.
 */
import { Server, ServerCredentials, status, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall } from "@grpc/grpc-js";
import { encodeBatch, stampBatch } from "../../common/src/batch/index.js";
import { SluiceError, UnknownTopicError } from "../../common/src/errors.js";
import { toServiceError, toWireError } from "../../common/src/grpc/errors.js";
import { BrokerService, type HandshakeRequest, type HandshakeResponse } from "../../proto/gen/sluice/v1/broker.js";
import {
  GroupsService,
  type QueueDelivery,
  type QueueOpen,
  type QueueRequest,
  type QueueResponse,
  type SettleError,
} from "../../proto/gen/sluice/v1/groups.js";
import {
  NameServerService,
  type FindCoordinatorRequest,
  type FindCoordinatorResponse,
  type GetRoutesRequest,
  type GetRoutesResponse,
  type TopicRoute,
} from "../../proto/gen/sluice/v1/nameserver.js";

interface Slot {
  /** The stored batch holding this offset (shared by the offsets of the batch). */
  batch: Buffer;
  state: "available" | "leased" | "acked";
  leaseId: number;
  stream: FakeQueueStream | undefined;
  deliveries: number;
  availableAtMs: number;
}

class FakeQueueStream {
  credit = 0;
  open: QueueOpen | undefined;
  dead = false;
  constructor(readonly call: ServerDuplexStream<QueueRequest, QueueResponse>) {}
}

export class FakeCoordinator {
  address = "";
  readonly topic: string;
  /** partition → offset → slot */
  readonly slots: Slot[][];
  readonly opens: QueueOpen[] = [];
  readonly requests: QueueRequest[] = [];
  readonly acked: string[] = [];
  readonly nacked: { partition: number; offset: number; error: string; delayMs: number }[] = [];
  readonly streams = new Set<FakeQueueStream>();
  /** Most leases one stream held beyond the credit granted to it (must stay 0). */
  maxCreditOverdraft = 0;
  /** Hold QueueSettled answers while true; `releaseAnswers()` sends them. */
  holdAnswers = false;
  /** Lease ids whose settles are refused with UNKNOWN_LEASE. */
  readonly refusedLeases = new Set<number>();
  private held: (() => void)[] = [];
  private nextLeaseId = 1;
  private readonly server = new Server();
  private timer: NodeJS.Timeout | undefined;

  constructor(topic: string, partitions: number) {
    this.topic = topic;
    this.slots = Array.from({ length: partitions }, () => []);
  }

  async start(): Promise<this> {
    this.server.addService(NameServerService, {
      getRoutes: (call: ServerUnaryCall<GetRoutesRequest, GetRoutesResponse>, callback: sendUnaryData<GetRoutesResponse>) => {
        try {
          callback(null, { routes: call.request.topics.map((t) => this.route(t)) });
        } catch (err) {
          callback(toServiceError(err) as never);
        }
      },
      findCoordinator: (_call: ServerUnaryCall<FindCoordinatorRequest, FindCoordinatorResponse>, callback: sendUnaryData<FindCoordinatorResponse>) => {
        callback(null, { partition: 0, route: this.route(this.topic).partitions[0]! });
      },
    });
    this.server.addService(BrokerService, {
      handshake: (call: ServerUnaryCall<HandshakeRequest, HandshakeResponse>, callback: sendUnaryData<HandshakeResponse>) => {
        callback(null, { protocolVersion: call.request.maxProtocolVersion, minProtocolVersion: 1, maxProtocolVersion: 1, serverVersion: "fake" });
      },
    });
    this.server.addService(GroupsService, { queue: (call: ServerDuplexStream<QueueRequest, QueueResponse>) => this.queue(call) });
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    this.address = `127.0.0.1:${port}`;
    this.timer = setInterval(() => this.pump(), 10);
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const stream of this.streams) stream.call.destroy();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.server.forceShutdown();
  }

  /** Appends `values` as one batch to `partition`. */
  append(partition: number, values: string[]): void {
    const slots = this.slots[partition]!;
    const batch = encodeBatch(values.map((value, i) => ({ key: `k${slots.length + i}`, value, headers: { n: String(slots.length + i) } })));
    stampBatch(batch, slots.length, 0);
    for (let i = 0; i < values.length; i++) {
      slots.push({ batch, state: "available", leaseId: 0, stream: undefined, deliveries: 0, availableAtMs: 0 });
    }
    this.pump();
  }

  /** Fails every open stream as a broker restart would. */
  killStreams(): void {
    for (const stream of [...this.streams]) {
      this.closeStream(stream);
      stream.call.emit("error", { code: status.UNAVAILABLE, details: "fake coordinator went away" });
    }
  }

  releaseAnswers(): void {
    this.holdAnswers = false;
    for (const send of this.held.splice(0)) send();
  }

  leasedCount(): number {
    let n = 0;
    for (const slots of this.slots) for (const slot of slots) if (slot.state === "leased") n++;
    return n;
  }

  private route(topic: string): TopicRoute {
    if (topic !== this.topic) throw new UnknownTopicError(topic);
    const master = { group: "b1", brokerId: 0, address: this.address, httpAddress: "" };
    return {
      topic,
      partitions: this.slots.map((_, partition) => ({ partition, group: "b1", master, slaves: [], epoch: 1 })),
      config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 },
    };
  }

  private queue(call: ServerDuplexStream<QueueRequest, QueueResponse>): void {
    const stream = new FakeQueueStream(call);
    this.streams.add(stream);
    call.on("data", (request: QueueRequest) => {
      if (stream.dead) return;
      this.requests.push(request);
      if (request.open !== undefined) {
        stream.open = request.open;
        this.opens.push(request.open);
      }
      stream.credit += request.creditMessages;
      const errors: SettleError[] = [];
      for (const s of request.acks) {
        if (this.settleable(stream, s.partition, s.offset, s.leaseId, errors)) {
          this.slots[s.partition]![s.offset]!.state = "acked";
          this.acked.push(`${s.partition}:${s.offset}`);
        }
      }
      for (const s of request.nacks) {
        if (this.settleable(stream, s.partition, s.offset, s.leaseId, errors)) {
          const slot = this.slots[s.partition]![s.offset]!;
          slot.state = "available";
          slot.stream = undefined;
          slot.availableAtMs = Date.now() + s.delayMs;
          this.nacked.push({ partition: s.partition, offset: s.offset, error: s.error, delayMs: s.delayMs });
        }
      }
      for (const s of request.extends) this.settleable(stream, s.partition, s.offset, s.leaseId, errors);
      if (request.correlationId !== 0) {
        const send = (): void => {
          if (!stream.dead) call.write({ topic: this.topic, deliveries: [], settled: { correlationId: request.correlationId, errors } });
        };
        if (this.holdAnswers) this.held.push(send);
        else send();
      }
      this.pump();
    });
    call.on("end", () => {
      this.closeStream(stream);
      call.end();
    });
    call.on("cancelled", () => this.closeStream(stream));
    call.on("error", () => this.closeStream(stream));
  }

  private settleable(stream: FakeQueueStream, partition: number, offset: number, leaseId: number, errors: SettleError[]): boolean {
    const slot = this.slots[partition]?.[offset];
    const held = slot !== undefined && slot.state === "leased" && slot.leaseId === leaseId && slot.stream?.open?.memberId === stream.open?.memberId;
    if (held && !this.refusedLeases.has(leaseId)) return true;
    errors.push({ partition, offset, error: toWireError(new SluiceError("UNKNOWN_LEASE", `lease ${leaseId} of ${partition}:${offset} is not held`)) });
    return false;
  }

  private closeStream(stream: FakeQueueStream): void {
    if (stream.dead) return;
    stream.dead = true;
    this.streams.delete(stream);
    for (const slots of this.slots) {
      for (const slot of slots) {
        if (slot.state === "leased" && slot.stream === stream) {
          slot.state = "available";
          slot.stream = undefined;
        }
      }
    }
  }

  /** Leases available offsets to streams with credit, lowest offsets first. */
  private pump(): void {
    const now = Date.now();
    for (const stream of this.streams) {
      if (stream.dead || stream.open === undefined || stream.credit <= 0) continue;
      const deliveries: QueueDelivery[] = [];
      for (let partition = 0; partition < this.slots.length && stream.credit > 0; partition++) {
        const byBatch = new Map<Buffer, QueueDelivery>();
        this.slots[partition]!.forEach((slot, offset) => {
          if (stream.credit <= 0 || slot.state !== "available" || slot.availableAtMs > now) return;
          slot.state = "leased";
          slot.stream = stream;
          slot.leaseId = this.nextLeaseId++;
          slot.deliveries++;
          stream.credit--;
          let delivery = byBatch.get(slot.batch);
          if (delivery === undefined) byBatch.set(slot.batch, (delivery = { partition, records: slot.batch, leases: [] }));
          delivery.leases.push({ offset, deliveryCount: slot.deliveries, leaseId: slot.leaseId, deadlineMs: now + (stream.open?.invisibleMs ?? 30_000) });
        });
        deliveries.push(...byBatch.values());
      }
      if (deliveries.length > 0) {
        this.maxCreditOverdraft = Math.max(this.maxCreditOverdraft, -stream.credit);
        stream.call.write({ topic: this.topic, deliveries });
      }
    }
  }
}
