/**
 * An in-process stand-in for a name server and one broker, on one gRPC port, for testing
 * the SDK's stream plumbing without the real servers: routes point at itself, logs are
 * arrays of stamped batches in memory, Subscribe honours credit like the real broker, and
 * faults can be injected (drop a stream after N messages, refuse a batch with an error).
 *
 * Idempotent batches (producer id >= 0) follow Kafka's rules as the real broker keeps them:
 * the last five batches per producer are remembered and a retry of one is answered with its
 * first offsets, a sequence gap is OUT_OF_ORDER_SEQUENCE, an older epoch PRODUCER_FENCED.
 *
 * Flow control can be played too: hold every produce request before appending it and answer
 * with a throttle time (a broker whose limiter delays), or refuse requests with THROTTLED and
 * a retry-after (one whose limiter refuses). Every produce request is recorded in
 * `produceRequests` with how many of its partition's requests the broker held at its arrival.
 */
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
} from "@grpc/grpc-js";
import {
  OffsetOutOfRangeError,
  SluiceError,
  ThrottledError,
  UnknownTopicError,
} from "../../common/src/errors.js";
import { toServiceError, toWireError } from "../../common/src/grpc/errors.js";
import { FakeLog, producerHeader, type ProducerHeader } from "./clients-fake-log.js";
export { FakeLog, producerHeader, type ProducerHeader } from "./clients-fake-log.js";
import {
  BrokerService,
  OffsetSpec,
  type FetchResponse,
  type HandshakeRequest,
  type HandshakeResponse,
  type ListOffsetsRequest,
  type ListOffsetsResponse,
  type PartitionData,
  type ProduceRequest,
  type ProduceResponse,
  type SubscribeRequest,
} from "../../proto/gen/sluice/v1/broker.js";
import {
  NameServerService,
  type CreateTopicRequest,
  type CreateTopicResponse,
  type GetRoutesRequest,
  type GetRoutesResponse,
  type ListBrokersRequest,
  type ListBrokersResponse,
  type ListTopicsRequest,
  type ListTopicsResponse,
  type TopicRoute,
} from "../../proto/gen/sluice/v1/nameserver.js";
import type { DescribePartitionsRequest, DescribePartitionsResponse, FetchRequest } from "../../proto/gen/sluice/v1/broker.js";

export interface Faults {
  /** Error the next ProduceRequests get instead of an append (one per entry, in order). */
  produceErrors: SluiceError[];
  /** Fail the next Produce stream with UNAVAILABLE once it received this many batches (unacked). */
  dropProduceStreamAfter: number | undefined;
  /** Fail the next Subscribe stream with UNAVAILABLE once it sent this many responses. */
  dropSubscribeStreamAfter: number | undefined;
  /** Answer handshakes as a broker speaking only this protocol version. */
  handshakeVersion: number | undefined;
  /**
   * Flow control delaying: every produce request not refused is held this long (ms) before it
   * is appended and answered. A partition's requests are held side by side, and appended in
   * arrival order.
   */
  produceHoldMs: number;
  /** Flow control delaying: the `throttleTimeMs` every produce acknowledgement carries. */
  produceThrottleTimeMs: number;
  /**
   * Flow control refusing: after letting `passFirst` produce requests through, the next
   * `count` (Infinity: all) are refused with THROTTLED and this retry-after. Counts down.
   */
  throttleRefusals: { count: number; retryAfterMs: number; passFirst?: number } | undefined;
}

/** One ProduceRequest as the fake broker saw it. */
export interface ProduceRecord extends ProducerHeader {
  topic: string;
  partition: number;
  /** The batch as received. */
  batch: Buffer;
  arrivedAtMs: number;
  /** Requests of this partition the broker held or was handling at this one's arrival, this one included. */
  inFlight: number;
  /** When the broker answered it (undefined while held). */
  answeredAtMs: number | undefined;
  /** "appended", "duplicate", or the code of the error it was answered with; undefined while held. */
  result: string | undefined;
}

export class FakeCluster {
  readonly logs = new Map<string, FakeLog[]>();
  readonly faults: Faults = {
    produceErrors: [],
    dropProduceStreamAfter: undefined,
    dropSubscribeStreamAfter: undefined,
    handshakeVersion: undefined,
    produceHoldMs: 0,
    produceThrottleTimeMs: 0,
    throttleRefusals: undefined,
  };
  readonly stats = { handshakes: 0, getRoutes: 0, produceStreams: 0, subscribeStreams: 0, creditGranted: 0, bytesStreamed: 0, maxOverdraftBytes: 0 };
  /** Every produce request received (past a dropped stream's cut), in arrival order. */
  readonly produceRequests: ProduceRecord[] = [];
  address = "";
  private readonly server = new Server();
  private readonly pumps = new Set<() => void>();
  /** Per `topic/partition`: requests held or being handled now. */
  private readonly produceInFlight = new Map<string, number>();
  /** Per `topic/partition`: held requests in arrival order, with when each is due. */
  private readonly held = new Map<string, { dueAtMs: number; run: () => void }[]>();

  async start(): Promise<this> {
    this.server.addService(NameServerService, {
      getRoutes: this.getRoutes.bind(this),
      createTopic: this.createTopicCall.bind(this),
      listTopics: this.listTopics.bind(this),
      listBrokers: this.listBrokers.bind(this),
    });
    this.server.addService(BrokerService, {
      handshake: this.handshake.bind(this),
      produce: this.produce.bind(this),
      subscribe: this.subscribe.bind(this),
      listOffsets: this.listOffsets.bind(this),
      fetch: this.fetch.bind(this),
      describePartitions: this.describePartitions.bind(this),
    });
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    this.address = `127.0.0.1:${port}`;
    return this;
  }

  stop(): Promise<void> {
    return new Promise<void>((resolve) => this.server.tryShutdown(() => resolve())).then(() => this.server.forceShutdown());
  }

  createTopic(topic: string, partitions: number): void {
    this.logs.set(topic, Array.from({ length: partitions }, () => new FakeLog()));
  }

  deleteTopic(topic: string): void {
    this.logs.delete(topic);
  }

  log(topic: string, partition: number): FakeLog {
    const log = this.logs.get(topic)?.[partition];
    if (log === undefined) throw new UnknownTopicError(topic, " on this broker");
    return log;
  }

  private route(topic: string): TopicRoute {
    const logs = this.logs.get(topic);
    if (logs === undefined) throw new UnknownTopicError(topic, " on this name server");
    const master = { group: "b1", brokerId: 0, address: this.address, httpAddress: "" };
    return { topic, partitions: logs.map((_, partition) => ({ partition, group: "b1", master, slaves: [], epoch: 1 })), config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 } };
  }

  private createTopicCall(call: ServerUnaryCall<CreateTopicRequest, CreateTopicResponse>, callback: sendUnaryData<CreateTopicResponse>): void {
    if (this.logs.has(call.request.topic)) {
      callback(toServiceError(new SluiceError("TOPIC_ALREADY_EXISTS", `topic "${call.request.topic}" already exists`)) as never);
      return;
    }
    this.createTopic(call.request.topic, call.request.partitions);
    callback(null, { route: this.route(call.request.topic) });
  }

  private listTopics(_call: ServerUnaryCall<ListTopicsRequest, ListTopicsResponse>, callback: sendUnaryData<ListTopicsResponse>): void {
    callback(null, { topics: [...this.logs.keys()].sort().map((topic) => this.route(topic)) });
  }

  private listBrokers(_call: ServerUnaryCall<ListBrokersRequest, ListBrokersResponse>, callback: sendUnaryData<ListBrokersResponse>): void {
    const broker = { cluster: "c", group: "b1", brokerId: 0, address: this.address, httpAddress: "", version: "fake", role: "master", epoch: 3, weight: 1 };
    callback(null, { brokers: [{ broker, state: "alive", heartbeatAgeMs: 420, registeredAtMs: 0, suspicion: 0.42, partitionCount: 7 }] });
  }

  private fetch(call: ServerUnaryCall<FetchRequest, FetchResponse>, callback: sendUnaryData<FetchResponse>): void {
    const partitions = call.request.partitions.map((wanted): PartitionData => {
      const log = this.log(call.request.topic, wanted.partition);
      try {
        const { records, nextOffset } = log.read(wanted.offset, wanted.maxBytes);
        return { partition: wanted.partition, records, highWatermark: log.endOffset, logStartOffset: log.startOffset, nextOffset };
      } catch (err) {
        return { partition: wanted.partition, records: Buffer.alloc(0), highWatermark: -1, logStartOffset: -1, nextOffset: wanted.offset, error: toWireError(err) };
      }
    });
    callback(null, { topic: call.request.topic, partitions });
  }

  private describePartitions(
    call: ServerUnaryCall<DescribePartitionsRequest, DescribePartitionsResponse>,
    callback: sendUnaryData<DescribePartitionsResponse>,
  ): void {
    const logs = this.logs.get(call.request.topic) ?? [];
    callback(null, {
      partitions: logs.map((log, partition) => ({
        topic: call.request.topic,
        partition,
        logStartOffset: log.startOffset,
        logEndOffset: log.endOffset,
        highWatermark: log.endOffset,
        sizeBytes: log.batches.reduce((n, b) => n + b.bytes.length, 0),
        segments: 1,
      })),
    });
  }

  private getRoutes(call: ServerUnaryCall<GetRoutesRequest, GetRoutesResponse>, callback: sendUnaryData<GetRoutesResponse>): void {
    this.stats.getRoutes++;
    try {
      callback(null, { routes: call.request.topics.map((topic) => this.route(topic)) });
    } catch (err) {
      callback(toServiceError(err) as never);
    }
  }

  private handshake(call: ServerUnaryCall<HandshakeRequest, HandshakeResponse>, callback: sendUnaryData<HandshakeResponse>): void {
    this.stats.handshakes++;
    const only = this.faults.handshakeVersion;
    if (only !== undefined) {
      callback(null, { protocolVersion: only, minProtocolVersion: only, maxProtocolVersion: only, serverVersion: "fake" });
      return;
    }
    callback(null, { protocolVersion: call.request.maxProtocolVersion, minProtocolVersion: 1, maxProtocolVersion: 1, serverVersion: "fake" });
  }

  private produce(call: ServerDuplexStream<ProduceRequest, ProduceResponse>): void {
    this.stats.produceStreams++;
    const dropAfter = this.faults.dropProduceStreamAfter;
    this.faults.dropProduceStreamAfter = undefined;
    let received = 0;
    call.on("data", (request: ProduceRequest) => {
      received++;
      if (dropAfter !== undefined && received >= dropAfter) {
        if (received === dropAfter) call.emit("error", { code: status.UNAVAILABLE, details: "fake broker dropped the produce stream" });
        return;
      }
      const record = this.noteArrival(request);
      // Refused at arrival, like the real broker's flow control: only admitted requests are held.
      const refusal = this.faults.produceErrors.shift() ?? this.nextThrottleRefusal();
      const handle = (): void => this.handleProduce(call, request, record, refusal);
      if (refusal !== undefined) handle();
      else this.hold(`${request.topic}/${request.partition}`, this.faults.produceHoldMs, handle);
    });
    call.on("end", () => call.end());
    call.on("error", () => undefined);
  }

  /** Highest number of `topic/partition` requests the broker held at once, among those recorded. */
  maxProduceInFlight(topic: string, partition: number): number {
    let max = 0;
    for (const r of this.produceRequests) if (r.topic === topic && r.partition === partition) max = Math.max(max, r.inFlight);
    return max;
  }

  private noteArrival(request: ProduceRequest): ProduceRecord {
    const key = `${request.topic}/${request.partition}`;
    const inFlight = (this.produceInFlight.get(key) ?? 0) + 1;
    this.produceInFlight.set(key, inFlight);
    const record: ProduceRecord = {
      ...producerHeader(request.batch),
      topic: request.topic,
      partition: request.partition,
      batch: request.batch,
      arrivedAtMs: Date.now(),
      inFlight,
      answeredAtMs: undefined,
      result: undefined,
    };
    this.produceRequests.push(record);
    return record;
  }

  private nextThrottleRefusal(): ThrottledError | undefined {
    const refusals = this.faults.throttleRefusals;
    if (refusals === undefined) return undefined;
    if ((refusals.passFirst ?? 0) > 0) {
      refusals.passFirst!--;
      return undefined;
    }
    if (refusals.count <= 0) return undefined;
    refusals.count--;
    return new ThrottledError(`fake flow control: over the limit, retry in ${refusals.retryAfterMs} ms`, { retryAfterMs: refusals.retryAfterMs });
  }

  /**
   * Runs `run` after `holdMs`, never before an earlier held request of the same partition:
   * each timer runs the oldest waiting request, and due times never decrease.
   */
  private hold(key: string, holdMs: number, run: () => void): void {
    let queue = this.held.get(key);
    if (queue === undefined) this.held.set(key, (queue = []));
    if (holdMs <= 0 && queue.length === 0) {
      run();
      return;
    }
    const dueAtMs = Math.max(Date.now() + holdMs, queue.at(-1)?.dueAtMs ?? 0);
    queue.push({ dueAtMs, run });
    setTimeout(() => queue.shift()!.run(), dueAtMs - Date.now());
  }

  private handleProduce(call: ServerDuplexStream<ProduceRequest, ProduceResponse>, request: ProduceRequest, record: ProduceRecord, refusal: SluiceError | undefined): void {
    const reply = { correlationId: request.correlationId, topic: request.topic, partition: request.partition, logAppendTimeMs: 0, logStartOffset: 0, throttleTimeMs: 0 };
    let response: ProduceResponse;
    try {
      if (refusal !== undefined) throw refusal;
      const { baseOffset, duplicate } = this.log(request.topic, request.partition).append(request.batch);
      record.result = duplicate ? "duplicate" : "appended";
      response = { ...reply, baseOffset, throttleTimeMs: this.faults.produceThrottleTimeMs };
      for (const pump of this.pumps) pump();
    } catch (err) {
      record.result = err instanceof SluiceError ? err.code : "error";
      response = { ...reply, baseOffset: -1, error: toWireError(err) };
    }
    const key = `${request.topic}/${request.partition}`;
    this.produceInFlight.set(key, (this.produceInFlight.get(key) ?? 1) - 1);
    record.answeredAtMs = Date.now();
    // A held request may outlive its stream (the client cancelled it): nobody to answer.
    if (request.acks !== 1 && !call.cancelled) call.write(response);
  }

  private subscribe(call: ServerDuplexStream<SubscribeRequest, FetchResponse>): void {
    this.stats.subscribeStreams++;
    const dropAfter = this.faults.dropSubscribeStreamAfter;
    this.faults.dropSubscribeStreamAfter = undefined;
    const subscriptions = new Map<number, { nextOffset: number; maxBytes: number }>();
    let topic = "";
    let credit = 0;
    let sent = 0;
    let dead = false;
    const pump = (): void => {
      while (!dead && credit > 0) {
        const partitions: PartitionData[] = [];
        let bytes = 0;
        for (const [partition, sub] of subscriptions) {
          const log = this.log(topic, partition);
          if (sub.nextOffset >= log.endOffset || credit - bytes <= 0) continue;
          const { records, nextOffset } = log.read(sub.nextOffset, Math.min(sub.maxBytes, credit - bytes));
          sub.nextOffset = nextOffset;
          bytes += records.length;
          partitions.push({ partition, records, highWatermark: log.endOffset, logStartOffset: log.startOffset, nextOffset });
        }
        if (partitions.length === 0) return;
        credit -= bytes;
        this.stats.bytesStreamed += bytes;
        this.stats.maxOverdraftBytes = Math.max(this.stats.maxOverdraftBytes, -credit);
        call.write({ topic, partitions });
        if (dropAfter !== undefined && ++sent >= dropAfter) {
          dead = true;
          call.emit("error", { code: status.UNAVAILABLE, details: "fake broker dropped the subscribe stream" });
        }
      }
    };
    this.pumps.add(pump);
    call.on("data", (request: SubscribeRequest) => {
      if (request.topic) topic = request.topic;
      for (const partition of request.unsubscribe) subscriptions.delete(partition);
      for (const wanted of request.partitions) {
        subscriptions.delete(wanted.partition);
        try {
          const log = this.log(topic, wanted.partition);
          if (wanted.offset < log.startOffset || wanted.offset > log.endOffset) {
            throw new OffsetOutOfRangeError(topic, wanted.partition, wanted.offset, log.startOffset, log.endOffset);
          }
          subscriptions.set(wanted.partition, { nextOffset: wanted.offset, maxBytes: wanted.maxBytes });
        } catch (err) {
          const error = toWireError(err);
          call.write({ topic, partitions: [{ partition: wanted.partition, records: Buffer.alloc(0), highWatermark: -1, logStartOffset: -1, nextOffset: wanted.offset, error }] });
        }
      }
      credit += request.creditBytes;
      this.stats.creditGranted += request.creditBytes;
      pump();
    });
    const close = (): void => {
      dead = true;
      this.pumps.delete(pump);
    };
    call.on("end", () => {
      close();
      call.end();
    });
    call.on("cancelled", close);
    call.on("error", close);
  }

  private listOffsets(call: ServerUnaryCall<ListOffsetsRequest, ListOffsetsResponse>, callback: sendUnaryData<ListOffsetsResponse>): void {
    try {
      const partitions = call.request.partitions.map((wanted) => {
        const log = this.log(call.request.topic, wanted.partition);
        const offset = wanted.spec === OffsetSpec.OFFSET_SPEC_EARLIEST ? log.startOffset : log.endOffset;
        return { partition: wanted.partition, offset, timestampMs: -1 };
      });
      callback(null, { topic: call.request.topic, partitions });
    } catch (err) {
      callback(toServiceError(err) as never);
    }
  }
}
