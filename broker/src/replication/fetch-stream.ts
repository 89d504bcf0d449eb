/**
 * One Replicate stream, on the slave: says hello with every local partition's log end and
 * leader-epoch history, then applies what the master sends, in order:
 *
 * - `topics`: waits for appends in flight, then lets the host create and delete topics;
 * - `truncate`: waits for appends in flight, then cuts the divergent tail (`truncateTo`) or
 *   starts the partition over (`resetTo`, also when the cut would fall below our log start);
 * - `data`: `appendReplicated` — started at once, not awaited, so consecutive chunks share a
 *   group commit (the log checks offsets synchronously, in call order); acknowledged when
 *   written, with acks coalesced into one message per event-loop turn;
 * - `high_watermarks` (and the watermark on data): `setHighWatermark(min(watermark, log end))`,
 *   applied again after each append so a watermark that arrived before its data is not lost.
 *
 * A response with an epoch older than the newest this broker knows, an error message, or a
 * failed append ends the stream; the fetcher then reconnects and the hello resynchronises.
 */
import { status as GrpcStatus, type ClientDuplexStream, type StatusObject } from "@grpc/grpc-js";
import { StaleEpochError, StorageError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import type { ReplicaPosition, ReplicaRequest, ReplicaResponse } from "../../../proto/gen/sluice/v1/replication.js";
import { partitionKey, type ReplicaHost, type ReplicaLog } from "./types.js";

/** Responses waiting to be applied before the stream is paused (the master's window bounds bytes). */
const PAUSE_AT_QUEUED = 64;
const RESUME_AT_QUEUED = 16;

export interface FetchStreamContext {
  group: string;
  brokerId: number;
  clientId: string;
  host: ReplicaHost;
  logger: Logger;
  newestEpoch(): number;
  sawEpoch(epoch: number): void;
  /** The master accepted the hello. */
  onAccepted(): void;
  onData(): void;
}

export interface FetchStreamOutcome {
  /** Why it ended; undefined when the master ended it cleanly. */
  error: Error | undefined;
  accepted: boolean;
}

export class FetchStream {
  /** Resolves once the call is over and every append it started has settled. */
  readonly ended: Promise<FetchStreamOutcome>;
  private stopped = false;
  private accepted = false;
  private failure: Error | undefined;
  private queued = 0;
  private paused = false;
  private chain: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly masterHighWatermarks = new Map<string, number>();
  private readonly pendingAcks = new Map<string, ReplicaLog>();
  private ackScheduled = false;

  constructor(
    private readonly context: FetchStreamContext,
    private readonly call: ClientDuplexStream<ReplicaRequest, ReplicaResponse>,
  ) {
    this.ended = new Promise((resolve) => {
      let over = false;
      const finish = (error?: Error) => {
        if (over) return;
        over = true;
        this.stopped = true;
        this.failure ??= error;
        void this.chain.then(() => this.settleAppends()).then(() => resolve({ error: this.failure, accepted: this.accepted }));
      };
      call.on("data", (response: ReplicaResponse) => this.receive(response));
      call.on("error", (err: Error) => finish(err));
      call.on("status", (status: StatusObject) => finish(status.code === GrpcStatus.OK ? undefined : new Error(`${GrpcStatus[status.code]}: ${status.details}`)));
      call.on("end", () => finish());
    });
  }

  /** Sends the hello. */
  start(): void {
    const partitions: ReplicaPosition[] = this.context.host.partitions().map(({ topic, partition, log }) => {
      return {
        topic,
        partition,
        logEndOffset: log.logEndOffset,
        epochs: log.leaderEpochs.entries().map(({ epoch, startOffset }) => ({ epoch, startOffset })),
      };
    });
    const { group, brokerId, clientId } = this.context;
    this.call.write({
      header: { clientId, protocolVersion: PROTOCOL_VERSION },
      hello: { group, brokerId, epoch: this.context.newestEpoch(), partitions },
    });
  }

  /** Ends the stream from this side (stop, or a switch of master). */
  cancel(): void {
    this.fail(undefined);
  }

  private receive(response: ReplicaResponse): void {
    if (this.stopped) return;
    const newest = this.context.newestEpoch();
    if (response.epoch < newest) {
      this.fail(new StaleEpochError(`the master answered at epoch ${response.epoch}, but epoch ${newest} is known: it was deposed; dropping its stream`));
      return;
    }
    this.context.sawEpoch(response.epoch);
    this.queued++;
    if (this.queued >= PAUSE_AT_QUEUED && !this.paused) {
      this.paused = true;
      this.call.pause();
    }
    this.chain = this.chain
      .then(() => this.apply(response))
      .catch((err: unknown) => this.fail(err as Error))
      .finally(() => {
        this.queued--;
        if (this.paused && this.queued <= RESUME_AT_QUEUED) {
          this.paused = false;
          this.call.resume();
        }
      });
  }

  private async apply(response: ReplicaResponse): Promise<void> {
    if (this.stopped) return;
    const { host } = this.context;
    if (response.error) throw fromWireError(response.error);
    if (response.topics) {
      await this.settleAppends();
      // A topic deleted and created again must not inherit the old one's watermark.
      for (const topic of response.topics.deleted) {
        for (const key of this.masterHighWatermarks.keys()) if (key.startsWith(`${topic}/`)) this.masterHighWatermarks.delete(key);
      }
      await host.applyTopics(response.topics);
      if (!this.accepted) {
        this.accepted = true;
        this.context.onAccepted();
      }
      return;
    }
    if (response.truncate) {
      const { topic, partition, offset, reset } = response.truncate;
      const log = this.logFor(topic, partition);
      await this.settleAppends();
      if (reset || offset < log.logStartOffset) await log.resetTo(offset);
      else if (offset < log.logEndOffset) await log.truncateTo(offset);
      this.queueAck(log);
      return;
    }
    if (response.data) {
      const { topic, partition, records, highWatermark } = response.data;
      const log = this.logFor(topic, partition);
      this.noteHighWatermark(log, highWatermark);
      const append = log.appendReplicated(records).then(
        () => {
          this.applyHighWatermark(log);
          this.queueAck(log);
        },
        (err: unknown) => this.fail(err as Error),
      );
      this.inFlight.add(append);
      void append.finally(() => this.inFlight.delete(append));
      this.context.onData();
      return;
    }
    if (response.highWatermarks) {
      for (const update of response.highWatermarks.partitions) {
        const log = host.log(update.topic, update.partition);
        if (!log) continue;
        this.noteHighWatermark(log, update.highWatermark);
        this.applyHighWatermark(log);
      }
    }
  }

  private logFor(topic: string, partition: number): ReplicaLog {
    const log = this.context.host.log(topic, partition);
    if (!log) throw new StorageError(`the master sent data for ${partitionKey(topic, partition)}, which this slave does not host; resynchronising`);
    return log;
  }

  private noteHighWatermark(log: ReplicaLog, highWatermark: number): void {
    const key = partitionKey(log.topic, log.partition);
    this.masterHighWatermarks.set(key, Math.max(highWatermark, this.masterHighWatermarks.get(key) ?? 0));
  }

  private applyHighWatermark(log: ReplicaLog): void {
    const highWatermark = this.masterHighWatermarks.get(partitionKey(log.topic, log.partition));
    if (highWatermark !== undefined) log.setHighWatermark(Math.min(highWatermark, log.logEndOffset));
  }

  private queueAck(log: ReplicaLog): void {
    this.pendingAcks.set(partitionKey(log.topic, log.partition), log);
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => this.flushAcks());
  }

  private flushAcks(): void {
    this.ackScheduled = false;
    if (this.stopped || this.pendingAcks.size === 0) return;
    const positions: ReplicaPosition[] = [];
    for (const log of this.pendingAcks.values()) {
      positions.push({ topic: log.topic, partition: log.partition, logEndOffset: log.logEndOffset, epochs: [] });
    }
    this.pendingAcks.clear();
    this.call.write({ acks: { positions } });
  }

  private async settleAppends(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private fail(error: Error | undefined): void {
    if (this.stopped) return;
    this.stopped = true;
    this.failure = error;
    if (error) this.context.logger.warn({ err: error }, "replication stream failed; reconnecting");
    this.call.cancel();
  }
}
