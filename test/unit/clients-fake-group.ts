/**
 * An in-process stand-in for one broker group (a master and its slaves, each on its own gRPC
 * port) and a name server whose routes the test sets, for testing the SDK's failover paths
 * without real brokers: idempotent dedup, retries across a master change, reads from slaves.
 *
 * Replication is perfect and instant: every broker of the group serves the same in-memory
 * logs, so a batch appended through one master is there when another takes over. Only the
 * master accepts produce (a slave answers NOT_LEADER); every broker serves Subscribe and
 * ListOffsets. Logs keep Kafka's idempotence rules per producer id: the last five batches are
 * remembered, a retry of one is answered with its offsets, a gap is OUT_OF_ORDER_SEQUENCE,
 * an older epoch PRODUCER_FENCED, a newer epoch must start at sequence 0.
 */
import { Server, ServerCredentials, status, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall } from "@grpc/grpc-js";
import { NotLeaderError, SluiceError, UnknownTopicError } from "../../common/src/errors.js";
import { toServiceError, toWireError } from "../../common/src/grpc/errors.js";
import { FakeLog, producerHeader, type ProducerHeader } from "./clients-fake-log.js";
export { producerHeader, type ProducerHeader } from "./clients-fake-log.js";
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
import { NameServerService, type GetRoutesRequest, type GetRoutesResponse, type TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";

export interface BrokerFaults {
  /** Errors the next ProduceRequests get instead of an append, one per entry in order; null lets one through. */
  produceErrors: (SluiceError | null)[];
  /** Break the next Produce stream (UNAVAILABLE) right after appending this many batches, unacknowledged. */
  breakAfterAppends: number | undefined;
  /** Append but never answer (a broker about to die). */
  holdAcks: boolean;
  /** Neither append nor answer (a frozen broker, SIGSTOP). */
  frozen: boolean;
}

/** What a broker saw of one ProduceRequest. */
export interface ReceivedBatch extends ProducerHeader {
  partition: number;
  /** "appended", "duplicate", or the error code it was answered with. */
  result: string;
}

export class FakeGroupBroker {
  role: "master" | "slave" = "slave";
  readonly faults: BrokerFaults = { produceErrors: [], breakAfterAppends: undefined, holdAcks: false, frozen: false };
  readonly received: ReceivedBatch[] = [];
  readonly stats = { subscribeStreams: 0, bytesStreamed: 0, listOffsets: 0 };
  address = "";
  private server: Server | undefined;
  private port = 0;
  private readonly pumps = new Set<() => void>();

  constructor(
    readonly id: number,
    private readonly group: FakeGroup,
  ) {}

  get running(): boolean {
    return this.server !== undefined;
  }

  /** Starts serving, on the same port as before after a stop(). */
  async start(): Promise<void> {
    const server = new Server();
    server.addService(BrokerService, {
      handshake: this.handshake.bind(this),
      produce: this.produce.bind(this),
      subscribe: this.subscribe.bind(this),
      listOffsets: this.listOffsets.bind(this),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${this.port}`, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    this.address = `127.0.0.1:${this.port}`;
    this.server = server;
  }

  /** Stops at once, breaking every stream (a killed process). */
  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
    this.pumps.clear();
  }

  /** New data in the group's logs: push it on this broker's subscribe streams. */
  wake(): void {
    for (const pump of this.pumps) pump();
  }

  private handshake(call: ServerUnaryCall<HandshakeRequest, HandshakeResponse>, callback: sendUnaryData<HandshakeResponse>): void {
    callback(null, { protocolVersion: call.request.maxProtocolVersion, minProtocolVersion: 1, maxProtocolVersion: 1, serverVersion: "fake" });
  }

  private produce(call: ServerDuplexStream<ProduceRequest, ProduceResponse>): void {
    let breakAfter = this.faults.breakAfterAppends;
    this.faults.breakAfterAppends = undefined;
    let broken = false;
    call.on("data", (request: ProduceRequest) => {
      if (broken || this.faults.frozen) return;
      const seen: ReceivedBatch = { ...producerHeader(request.batch), partition: request.partition, result: "appended" };
      this.received.push(seen);
      const reply = { correlationId: request.correlationId, topic: request.topic, partition: request.partition, logAppendTimeMs: 0, logStartOffset: 0, throttleTimeMs: 0 };
      try {
        if (this.role !== "master") throw new NotLeaderError(`broker ${this.id} is a slave`);
        const injected = this.faults.produceErrors.shift();
        if (injected) throw injected;
        const { baseOffset, duplicate } = this.group.log(request.topic, request.partition).append(request.batch);
        if (duplicate) seen.result = "duplicate";
        this.group.wakeAll();
        if (breakAfter !== undefined && --breakAfter === 0) {
          broken = true;
          call.emit("error", { code: status.UNAVAILABLE, details: "fake broker dropped the produce stream" });
          return;
        }
        if (!this.faults.holdAcks) call.write({ ...reply, baseOffset });
      } catch (err) {
        seen.result = (err as SluiceError).code;
        call.write({ ...reply, baseOffset: -1, error: toWireError(err) });
      }
    });
    call.on("end", () => call.end());
    call.on("error", () => undefined);
  }

  private subscribe(call: ServerDuplexStream<SubscribeRequest, FetchResponse>): void {
    this.stats.subscribeStreams++;
    const subscriptions = new Map<number, { nextOffset: number; maxBytes: number }>();
    let topic = "";
    let credit = 0;
    let dead = false;
    const pump = (): void => {
      while (!dead && credit > 0) {
        const partitions: PartitionData[] = [];
        for (const [partition, sub] of subscriptions) {
          const log = this.group.log(topic, partition);
          if (sub.nextOffset >= log.endOffset) continue;
          const { records, nextOffset } = log.read(sub.nextOffset, sub.maxBytes);
          sub.nextOffset = nextOffset;
          credit -= records.length;
          this.stats.bytesStreamed += records.length;
          partitions.push({ partition, records, highWatermark: log.endOffset, logStartOffset: 0, nextOffset });
        }
        if (partitions.length === 0) return;
        call.write({ topic, partitions });
      }
    };
    this.pumps.add(pump);
    call.on("data", (request: SubscribeRequest) => {
      if (request.topic) topic = request.topic;
      for (const partition of request.unsubscribe) subscriptions.delete(partition);
      for (const wanted of request.partitions) subscriptions.set(wanted.partition, { nextOffset: wanted.offset, maxBytes: wanted.maxBytes });
      credit += request.creditBytes;
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
    this.stats.listOffsets++;
    try {
      const partitions = call.request.partitions.map((wanted) => {
        const log = this.group.log(call.request.topic, wanted.partition);
        return { partition: wanted.partition, offset: wanted.spec === OffsetSpec.OFFSET_SPEC_EARLIEST ? 0 : log.endOffset, timestampMs: -1 };
      });
      callback(null, { topic: call.request.topic, partitions });
    } catch (err) {
      callback(toServiceError(err) as never);
    }
  }
}

export class FakeGroup {
  readonly brokers: FakeGroupBroker[] = [];
  readonly logs = new Map<string, FakeLog[]>();
  /** What the name server says; `undefined` master = the group has no live master. */
  routeMaster: FakeGroupBroker | undefined;
  routeSlaves: FakeGroupBroker[] = [];
  nameserverAddress = "";
  private readonly nameServer = new Server();

  static async start(brokerCount: number): Promise<FakeGroup> {
    const group = new FakeGroup();
    for (let id = 0; id < brokerCount; id++) {
      const broker = new FakeGroupBroker(id, group);
      await broker.start();
      group.brokers.push(broker);
    }
    group.promote(group.brokers[0]!);
    group.nameServer.addService(NameServerService, { getRoutes: group.getRoutes.bind(group) });
    const port = await new Promise<number>((resolve, reject) =>
      group.nameServer.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    group.nameserverAddress = `127.0.0.1:${port}`;
    return group;
  }

  /** Makes `broker` the master (the others slaves) and the routes say so. */
  promote(broker: FakeGroupBroker): void {
    for (const other of this.brokers) other.role = other === broker ? "master" : "slave";
    this.routeMaster = broker;
    this.routeSlaves = this.brokers.filter((b) => b !== broker);
  }

  createTopic(topic: string, partitions: number): void {
    this.logs.set(topic, Array.from({ length: partitions }, () => new FakeLog(1)));
  }

  log(topic: string, partition: number): FakeLog {
    const log = this.logs.get(topic)?.[partition];
    if (log === undefined) throw new UnknownTopicError(topic, " in the fake group");
    return log;
  }

  wakeAll(): void {
    for (const broker of this.brokers) broker.wake();
  }

  async stop(): Promise<void> {
    for (const broker of this.brokers) broker.stop();
    this.nameServer.forceShutdown();
  }

  private route(topic: string): TopicRoute {
    const logs = this.logs.get(topic);
    if (logs === undefined) throw new UnknownTopicError(topic, " on this name server");
    const address = (broker: FakeGroupBroker) => ({ group: "g", brokerId: broker.id, address: broker.address, httpAddress: "" });
    const master = this.routeMaster === undefined ? undefined : address(this.routeMaster);
    const slaves = this.routeSlaves.map(address);
    return {
      topic,
      partitions: logs.map((_, partition) => ({ partition, group: "g", ...(master === undefined ? {} : { master }), slaves, epoch: 1 })),
      config: { retentionMs: 0, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 },
    };
  }

  private getRoutes(call: ServerUnaryCall<GetRoutesRequest, GetRoutesResponse>, callback: sendUnaryData<GetRoutesResponse>): void {
    try {
      callback(null, { routes: call.request.topics.map((topic) => this.route(topic)) });
    } catch (err) {
      callback(toServiceError(err) as never);
    }
  }
}
