/**
 * One slave's Replicate stream, on the master: after the hello it sends the topic list and
 * the truncations that make the slave's log a prefix of ours, then pushes stored batches from
 * the slave's position on every partition, round-robin so one busy partition cannot starve
 * the others.
 *
 * Flow control, from the inside out: at most `maxUnackedBytes` sent and not yet acknowledged
 * (the slave acknowledges its log end after each append; batches go whole, so the last chunk
 * may overshoot by less than one batch), gRPC's own backpressure (a write
 * that returns false waits for "drain"), and the shared catch-up throttle while the slave is
 * not in sync. The loop sleeps when every partition is caught up and wakes on the log's
 * "logEnd" events, on acks and on topic changes.
 *
 * High watermarks ride on data messages; when only the watermark moved, a `high_watermarks`
 * message carries it, coalesced to one per WATERMARK_INTERVAL_MS.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Clock } from "../../../common/src/clock.js";
import { OffsetOutOfRangeError, toSluiceError, type SluiceError } from "../../../common/src/errors.js";
import { toWireError } from "../../../common/src/grpc/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type {
  ReplicaHello,
  ReplicaPosition,
  ReplicaRequest,
  ReplicaResponse,
  ReplicaTopics,
  WatermarkUpdate,
} from "../../../proto/gen/sluice/v1/replication.js";
import { divergencePoint } from "../storage/divergence.js";
import type { ByteThrottle } from "./throttle.js";
import type { ReplicaTracker } from "./tracker.js";
import { partitionKey, type HostedPartition, type ReplicaLog } from "./types.js";

/** Watermark-only messages go out at most this often per session. */
export const WATERMARK_INTERVAL_MS = 10;

export interface SlaveSessionContext {
  epoch(): number;
  tracker: ReplicaTracker;
  /** Shared by every session; undefined when catch-up is not throttled. */
  throttle: ByteThrottle | undefined;
  maxUnackedBytes: number;
  chunkBytes: number;
  clock: Clock;
  logger: Logger;
}

interface Cursor {
  topic: string;
  partition: number;
  key: string;
  log: ReplicaLog;
  /** The next offset to send. */
  position: number;
  /** Chunks sent and not yet acknowledged, oldest first. */
  unacked: { endOffset: number; bytes: number }[];
  highWatermarkSent: number;
}

export class SlaveSession {
  readonly slaveId: number;
  private readonly cursors = new Map<string, Cursor>();
  /** The cursors in round-robin order. */
  private readonly order: Cursor[] = [];
  private nextCursor = 0;
  private unackedBytes = 0;
  private closed = false;
  private wakeUp: (() => void) | null = null;
  private readonly dirtyWatermarks = new Set<string>();
  private watermarkTimer: NodeJS.Timeout | null = null;
  private lastWatermarkMs = Number.NEGATIVE_INFINITY;
  private finished!: () => void;
  /** Resolves when the session has ended. */
  readonly done = new Promise<void>((resolve) => (this.finished = resolve));

  constructor(
    private readonly context: SlaveSessionContext,
    private readonly call: ServerDuplexStream<ReplicaRequest, ReplicaResponse>,
    slaveId: number,
  ) {
    this.slaveId = slaveId;
  }

  /**
   * Sends the topic list and truncations, and returns where the slave stands on every
   * partition once it has applied them (for the tracker, before `startPushing`).
   */
  start(hello: ReplicaHello, partitions: HostedPartition[], topics: ReplicaTopics): ReplicaPosition[] {
    this.send({ topics });
    const theirs = new Map(hello.partitions.map((p) => [partitionKey(p.topic, p.partition), p]));
    const positions: ReplicaPosition[] = [];
    for (const hosted of partitions) {
      const position = this.addCursor(hosted, theirs.get(partitionKey(hosted.topic, hosted.partition)));
      positions.push({ topic: hosted.topic, partition: hosted.partition, logEndOffset: position, epochs: [] });
    }
    return positions;
  }

  startPushing(): void {
    void this.pump().catch((err: unknown) => this.fail(err));
  }

  /** Topics were created or deleted on the master while the stream runs. */
  topicsChanged(topics: ReplicaTopics, added: HostedPartition[], removedKeys: string[]): void {
    if (this.closed) return;
    this.send({ topics });
    for (const key of removedKeys) {
      const cursor = this.cursors.get(key);
      if (!cursor) continue;
      for (const chunk of cursor.unacked) this.unackedBytes -= chunk.bytes;
      this.cursors.delete(key);
      this.order.splice(this.order.indexOf(cursor), 1);
    }
    // The slave had none of these partitions when it said hello: it creates them empty.
    for (const hosted of added) this.addCursor(hosted, undefined);
    this.wake();
  }

  onAcks(positions: ReplicaPosition[]): void {
    // A replaced stream's late acks must not move the slave back in the tracker.
    if (this.closed) return;
    for (const ack of positions) {
      const cursor = this.cursors.get(partitionKey(ack.topic, ack.partition));
      if (!cursor) continue;
      let covered = 0;
      while (covered < cursor.unacked.length && cursor.unacked[covered]!.endOffset <= ack.logEndOffset) {
        this.unackedBytes -= cursor.unacked[covered]!.bytes;
        covered++;
      }
      cursor.unacked.splice(0, covered);
      this.context.tracker.acked(this.slaveId, ack.topic, ack.partition, ack.logEndOffset);
    }
    this.wake();
  }

  /** The partition's high watermark moved on the master: tell the slave soon. */
  watermarkMoved(topic: string, partition: number): void {
    if (this.closed) return;
    this.dirtyWatermarks.add(partitionKey(topic, partition));
    if (this.watermarkTimer) return;
    const delayMs = Math.max(0, this.lastWatermarkMs + WATERMARK_INTERVAL_MS - this.context.clock.now());
    this.watermarkTimer = setTimeout(() => this.flushWatermarks(), delayMs);
  }

  wake(): void {
    const wakeUp = this.wakeUp;
    this.wakeUp = null;
    wakeUp?.();
  }

  /** Ends the stream (with a refusal first, when given). Idempotent. */
  close(error?: SluiceError): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watermarkTimer) clearTimeout(this.watermarkTimer);
    this.watermarkTimer = null;
    try {
      if (error) this.call.write({ epoch: this.context.epoch(), error: toWireError(error) });
      this.call.end();
    } catch (err) {
      this.context.logger.debug({ err, slave: this.slaveId }, "replication stream was already gone");
    }
    this.wake();
    this.finished();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Places the slave on a partition: truncation from the epoch histories, or reset when our log starts past it. */
  private addCursor(hosted: HostedPartition, theirs: ReplicaPosition | undefined): number {
    const { log, topic, partition } = hosted;
    const slaveEnd = theirs?.logEndOffset ?? 0;
    let position = divergencePoint(
      { entries: log.leaderEpochs.entries(), logEndOffset: log.logEndOffset },
      { entries: theirs?.epochs ?? [], logEndOffset: slaveEnd },
    );
    if (position < log.logStartOffset) {
      position = log.logStartOffset;
      this.send({ truncate: { topic, partition, offset: position, reset: true } });
    } else if (position < slaveEnd) {
      this.send({ truncate: { topic, partition, offset: position, reset: false } });
    }
    if (position !== slaveEnd) {
      this.context.logger.info({ slave: this.slaveId, partition: partitionKey(topic, partition), slaveLogEnd: slaveEnd, from: position }, "slave resynchronises from a new position");
    }
    const key = partitionKey(topic, partition);
    const cursor: Cursor = { topic, partition, key, log, position, unacked: [], highWatermarkSent: -1 };
    this.cursors.set(key, cursor);
    this.order.push(cursor);
    return position;
  }

  private async pump(): Promise<void> {
    const { tracker, throttle, maxUnackedBytes, chunkBytes } = this.context;
    while (!this.closed) {
      if (this.call.writableNeedDrain) {
        await this.sleepUntilDrained();
        continue;
      }
      const cursor = this.unackedBytes < maxUnackedBytes ? this.nextBehindCursor() : undefined;
      if (!cursor) {
        await this.sleep();
        continue;
      }
      const throttled = throttle !== undefined && !tracker.isInSync(this.slaveId);
      if (throttled) {
        const delayMs = throttle.delayMs();
        if (delayMs > 0) {
          await this.sleep(delayMs);
          continue;
        }
      }
      let maxBytes = Math.min(chunkBytes, maxUnackedBytes - this.unackedBytes);
      if (throttled) maxBytes = Math.min(maxBytes, throttle.sliceBytes);
      this.sendChunk(cursor, Math.max(1, maxBytes), throttled ? throttle : undefined);
    }
  }

  private sendChunk(cursor: Cursor, maxBytes: number, throttle: ByteThrottle | undefined): void {
    const { log, topic, partition } = cursor;
    let read;
    try {
      read = log.read(cursor.position, maxBytes, "logEnd");
    } catch (err) {
      if (err instanceof OffsetOutOfRangeError && cursor.position < log.logStartOffset) {
        // Retention deleted what the slave still needed: it starts over at our log start.
        this.context.logger.warn({ slave: this.slaveId, partition: cursor.key, position: cursor.position, logStartOffset: log.logStartOffset }, "slave fell behind retention; resetting its partition");
        cursor.position = log.logStartOffset;
        this.send({ truncate: { topic, partition, offset: cursor.position, reset: true } });
        return;
      }
      throw err;
    }
    if (read.records.length === 0) return;
    const highWatermark = log.highWatermark;
    this.send({ data: { topic, partition, records: read.records, highWatermark, logStartOffset: read.logStartOffset } });
    cursor.highWatermarkSent = highWatermark;
    this.dirtyWatermarks.delete(cursor.key);
    const bytes = read.records.length;
    cursor.unacked.push({ endOffset: read.nextOffset, bytes });
    this.unackedBytes += bytes;
    this.context.tracker.dataSent(this.slaveId, topic, partition, { fromOffset: cursor.position, endOffset: read.nextOffset, bytes, logEndAtSend: log.logEndOffset });
    cursor.position = read.nextOffset;
    throttle?.take(bytes);
  }

  /** Round-robin: the next partition after the last one served that has data to send. */
  private nextBehindCursor(): Cursor | undefined {
    const cursors = this.order;
    for (let i = 0; i < cursors.length; i++) {
      const at = (this.nextCursor + i) % cursors.length;
      const cursor = cursors[at]!;
      if (cursor.position < cursor.log.logEndOffset) {
        this.nextCursor = at + 1;
        return cursor;
      }
    }
    return undefined;
  }

  private flushWatermarks(): void {
    this.watermarkTimer = null;
    if (this.closed) return;
    const updates: WatermarkUpdate[] = [];
    for (const key of this.dirtyWatermarks) {
      const cursor = this.cursors.get(key);
      if (!cursor) continue;
      const highWatermark = cursor.log.highWatermark;
      if (highWatermark <= cursor.highWatermarkSent) continue;
      cursor.highWatermarkSent = highWatermark;
      updates.push({ topic: cursor.topic, partition: cursor.partition, highWatermark, logStartOffset: cursor.log.logStartOffset });
    }
    this.dirtyWatermarks.clear();
    if (updates.length === 0) return;
    this.lastWatermarkMs = this.context.clock.now();
    this.send({ highWatermarks: { partitions: updates } });
  }

  private send(body: Omit<ReplicaResponse, "epoch">): void {
    if (this.closed) return;
    // The return value is gRPC's backpressure signal; the pump checks writableNeedDrain.
    this.call.write({ epoch: this.context.epoch(), ...body });
  }

  private sleep(timeoutMs?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = timeoutMs === undefined ? null : setTimeout(() => this.wake(), timeoutMs);
      this.wakeUp = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      if (this.closed) this.wake();
    });
  }

  private async sleepUntilDrained(): Promise<void> {
    const onDrain = () => this.wake();
    this.call.once("drain", onDrain);
    try {
      if (this.call.writableNeedDrain) await this.sleep();
    } finally {
      this.call.off("drain", onDrain);
    }
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.context.logger.error({ err, slave: this.slaveId }, "replication stream failed; ending it (the slave reconnects)");
    this.close(toSluiceError(err));
  }
}
