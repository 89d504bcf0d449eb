/**
 * The master side of replication: serves `Replicate`, one stream per slave (a new hello from
 * the same broker id replaces its old stream), and wires the master's logs to the tracker.
 *
 * - Every hosted partition is put in replicated mode (its high watermark moves only when the
 *   tracker says so), its "logEnd" events feed the tracker and wake the sessions, and each
 *   high-watermark advance the tracker computes goes to the log and then to the slaves.
 * - A stream is refused (an error message, then the end) when this broker is not the master
 *   or when the slave knows a newer epoch than ours: then we are the deposed one, and
 *   `onStaleEpoch` tells the role layer.
 * - Topic creations and deletions reach every open stream as they happen.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import {
  InvalidArgumentError,
  InvalidConfigError,
  NotLeaderError,
  StaleEpochError,
  toSluiceError,
  type SluiceError,
} from "../../../common/src/errors.js";
import { toWireError } from "../../../common/src/grpc/errors.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import type { ReplicaHello, ReplicaRequest, ReplicaResponse } from "../../../proto/gen/sluice/v1/replication.js";
import { checkHeader } from "../grpc/context.js";
import { SlaveSession } from "./slave-session.js";
import { ByteThrottle } from "./throttle.js";
import type { ReplicaTracker } from "./tracker.js";
import { partitionKey, type HostedPartition, type ReplicaSource, type TopicsChange } from "./types.js";

/** Bytes a slave may have in flight (sent, not acknowledged) on its stream. */
export const DEFAULT_MAX_UNACKED_BYTES_PER_SESSION = 4 * 1024 * 1024;
/** Largest read per data message (at least one whole batch is always sent). */
export const DEFAULT_REPLICATION_CHUNK_BYTES = 1024 * 1024;

export interface ReplicaSessionsOptions {
  group: string;
  /** This (master) broker's id. */
  brokerId: number;
  /** The group epoch this broker is master at; every response carries it. */
  epoch(): number;
  isMaster(): boolean;
  logs: ReplicaSource;
  tracker: ReplicaTracker;
  /** Catch-up rate for slaves out of sync, all sessions together; 0 = unthrottled. @defaultValue 0 */
  throttleBytesPerSecond?: number;
  /** @defaultValue DEFAULT_MAX_UNACKED_BYTES_PER_SESSION */
  maxUnackedBytesPerSession?: number;
  /** @defaultValue DEFAULT_REPLICATION_CHUNK_BYTES */
  chunkBytes?: number;
  clock?: Clock;
  logger?: Logger;
  /** A slave knows a newer epoch than ours: this broker was deposed. */
  onStaleEpoch?: (newerEpoch: number, slaveId: number) => void;
}

interface Watched {
  hosted: HostedPartition;
  onLogEnd: (logEndOffset: number) => void;
}

export class ReplicaSessions {
  private readonly options: ReplicaSessionsOptions;
  private readonly tracker: ReplicaTracker;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly maxUnackedBytes: number;
  private readonly chunkBytes: number;
  private readonly throttle: ByteThrottle | undefined;
  private readonly watched = new Map<string, Watched>();
  private readonly sessions = new Map<number, SlaveSession>();
  private readonly unsubscribe: (() => void)[] = [];
  private closed = false;

  constructor(options: ReplicaSessionsOptions) {
    const throttleBytesPerSecond = options.throttleBytesPerSecond ?? 0;
    const maxUnackedBytes = options.maxUnackedBytesPerSession ?? DEFAULT_MAX_UNACKED_BYTES_PER_SESSION;
    const chunkBytes = options.chunkBytes ?? DEFAULT_REPLICATION_CHUNK_BYTES;
    for (const [name, value, min] of [
      ["throttleBytesPerSecond", throttleBytesPerSecond, 0],
      ["maxUnackedBytesPerSession", maxUnackedBytes, 1],
      ["chunkBytes", chunkBytes, 1],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < min) throw new InvalidConfigError(`replication ${name} must be an integer ≥ ${min}, got ${value}`);
    }
    this.options = options;
    this.tracker = options.tracker;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.maxUnackedBytes = maxUnackedBytes;
    this.chunkBytes = chunkBytes;
    this.throttle = throttleBytesPerSecond > 0 ? new ByteThrottle(throttleBytesPerSecond, this.clock) : undefined;
    // Listen first: adding partitions may already advance their high watermark.
    this.unsubscribe.push(this.tracker.onHighWatermark((topic, partition, highWatermark) => this.highWatermarkMoved(topic, partition, highWatermark)));
    for (const hosted of options.logs.partitions()) this.watch(hosted);
    this.unsubscribe.push(options.logs.onTopicsChanged((change) => this.topicsChanged(change)));
  }

  /** The `Replicate` handler. */
  handle(call: ServerDuplexStream<ReplicaRequest, ReplicaResponse>): void {
    let session: SlaveSession | null = null;
    let refused = false;
    const refuse = (error: SluiceError) => {
      refused = true;
      this.logger.warn({ err: error }, "replication stream refused");
      try {
        call.write({ epoch: this.options.epoch(), error: toWireError(error) });
        call.end();
      } catch (err) {
        this.logger.debug({ err }, "refused replication stream was already gone");
      }
    };
    call.on("data", (request: ReplicaRequest) => {
      if (refused) return;
      if (session) {
        if (request.acks) session.onAcks(request.acks.positions);
        return;
      }
      try {
        session = this.open(call, request);
      } catch (err) {
        refuse(toSluiceError(err));
      }
    });
    const ended = () => {
      if (session) this.sessionEnded(session);
      else if (!refused) {
        refused = true;
        try {
          call.end();
        } catch {
          // The call is already gone.
        }
      }
    };
    call.on("end", ended);
    call.on("cancelled", ended);
    call.on("close", ended);
    call.on("error", (err) => {
      this.logger.debug({ err }, "replication stream error");
      ended();
    });
  }

  /** The slaves with an open stream. */
  connectedSlaves(): number[] {
    return [...this.sessions.keys()].sort((a, b) => a - b);
  }

  /** Ends every stream and stops following the logs; resolves when the streams have ended. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.unsubscribe.splice(0)) stop();
    for (const { hosted, onLogEnd } of this.watched.values()) hosted.log.off("logEnd", onLogEnd);
    this.watched.clear();
    const sessions = [...this.sessions.values()];
    for (const session of sessions) session.close(new NotLeaderError(`broker ${this.describeSelf()} stopped serving replication; follow the group's current master`));
    await Promise.all(sessions.map((session) => session.done));
  }

  private open(call: ServerDuplexStream<ReplicaRequest, ReplicaResponse>, request: ReplicaRequest): SlaveSession {
    const hello = request.hello;
    if (!hello) throw new InvalidArgumentError("a replication stream must start with a hello");
    checkHeader(request.header);
    this.checkHello(hello);
    const session = new SlaveSession(
      {
        epoch: this.options.epoch,
        tracker: this.tracker,
        throttle: this.throttle,
        maxUnackedBytes: this.maxUnackedBytes,
        chunkBytes: this.chunkBytes,
        clock: this.clock,
        logger: this.logger,
      },
      call,
      hello.brokerId,
    );
    // Replace first, so the old stream's end does not count as this slave disconnecting.
    const previous = this.sessions.get(hello.brokerId);
    this.sessions.set(hello.brokerId, session);
    if (previous) {
      this.logger.info({ slave: hello.brokerId }, "a new replication stream from the slave replaces its old one");
      previous.close();
    }
    const partitions = [...this.watched.values()].map((w) => w.hosted);
    const topics = this.options.logs.topics();
    const ours = new Set(topics.map((t) => t.topic));
    const deleted = [...new Set(hello.partitions.map((p) => p.topic))].filter((topic) => !ours.has(topic));
    const positions = session.start(hello, partitions, { topics, deleted });
    this.tracker.slaveConnected(hello.brokerId, positions);
    session.startPushing();
    this.logger.info({ slave: hello.brokerId, slaveEpoch: hello.epoch, partitions: partitions.length }, "slave started replicating");
    return session;
  }

  private checkHello(hello: ReplicaHello): void {
    const { group, brokerId } = this.options;
    const epoch = this.options.epoch();
    if (hello.group !== group) {
      throw new InvalidArgumentError(`broker ${this.describeSelf()} replicates group "${group}", not "${hello.group}"; check the slave's --name`);
    }
    if (hello.brokerId === brokerId) {
      throw new InvalidArgumentError(`broker id ${brokerId} is this master's own id; give the slave another --id`);
    }
    if (this.closed || !this.options.isMaster()) {
      throw new NotLeaderError(`broker ${this.describeSelf()} is not the master of ${group}; follow the group's current master`);
    }
    if (hello.epoch > epoch) {
      this.options.onStaleEpoch?.(hello.epoch, hello.brokerId);
      throw new StaleEpochError(`broker ${this.describeSelf()} is master at epoch ${epoch}, but slave ${hello.brokerId} knows epoch ${hello.epoch}: this master was deposed`);
    }
  }

  private sessionEnded(session: SlaveSession): void {
    session.close();
    if (this.sessions.get(session.slaveId) !== session) return;
    this.sessions.delete(session.slaveId);
    this.tracker.slaveDisconnected(session.slaveId);
    this.logger.info({ slave: session.slaveId }, "slave stopped replicating");
  }

  private watch(hosted: HostedPartition): void {
    const key = partitionKey(hosted.topic, hosted.partition);
    if (this.watched.has(key)) return;
    const { log, topic, partition } = hosted;
    const onLogEnd = (logEndOffset: number) => {
      this.tracker.logEndAdvanced(topic, partition, logEndOffset);
      for (const session of this.sessions.values()) session.wake();
    };
    this.watched.set(key, { hosted, onLogEnd });
    log.on("logEnd", onLogEnd);
    const offsets = log.logEndOffset - log.logStartOffset;
    this.tracker.addPartition(topic, partition, {
      logEndOffset: log.logEndOffset,
      highWatermark: log.highWatermark,
      bytesPerOffset: offsets > 0 ? log.sizeBytes / offsets : 0,
    });
  }

  private topicsChanged(change: TopicsChange): void {
    if (this.closed) return;
    const current = new Map(this.options.logs.partitions().map((hosted) => [partitionKey(hosted.topic, hosted.partition), hosted]));
    const removed: string[] = [];
    for (const [key, { hosted, onLogEnd }] of this.watched) {
      if (current.has(key)) continue;
      hosted.log.off("logEnd", onLogEnd);
      this.watched.delete(key);
      this.tracker.removePartition(hosted.topic, hosted.partition);
      removed.push(key);
    }
    const added: HostedPartition[] = [];
    for (const [key, hosted] of current) {
      if (this.watched.has(key)) continue;
      added.push(hosted);
      this.watch(hosted);
    }
    for (const session of this.sessions.values()) session.topicsChanged({ topics: change.topics, deleted: change.deleted }, added, removed);
  }

  private highWatermarkMoved(topic: string, partition: number, highWatermark: number): void {
    const watched = this.watched.get(partitionKey(topic, partition));
    if (!watched) return;
    watched.hosted.log.setHighWatermark(highWatermark);
    for (const session of this.sessions.values()) session.watermarkMoved(topic, partition);
  }

  private describeSelf(): string {
    return `${this.options.group}/${this.options.brokerId}`;
  }
}
