/**
 * Tail mode of the WebSocket consume endpoint: an ephemeral reader of a topic's partitions
 * hosted on this broker (no group, no commits), with message credit.
 *
 * Each partition keeps its own position. A pump sends what credit allows, taking one read
 * per partition per round and starting each round one partition further on, so a small
 * credit is not always spent on the first partition. It stops when the socket is full
 * (ConsumePeer.whenRoom resumes it), when credit runs out (the next `credit` frame resumes
 * it) or when every partition is caught up (an "append" on any of them resumes it). A pump
 * sends at most MAX_MESSAGES_PER_PUMP before yielding the event loop. Before each read it asks
 * its DeliveryPermission, so a revoked ACL stops the reader before another batch leaves.
 */
import { forEachRecord } from "../../../common/src/batch/reader.js";
import { InvalidArgumentError, NotLeaderError, OffsetOutOfRangeError, UnknownTopicError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { BrokerContext } from "../grpc/context.js";
import type { PartitionLog } from "../storage/partition-log.js";
import type { DeliveryPermission } from "./ws-access.js";
import { messageFrame, type TailOpenFrame } from "./ws-frames.js";
import type { ConsumeMode, ConsumePeer } from "./ws-peer.js";

/** Bytes read from a partition per step (whole batches; at least one). */
export const TAIL_READ_BYTES = 64 * 1024;
/** Messages sent in one turn of the event loop before the pump yields. */
export const MAX_MESSAGES_PER_PUMP = 1000;

interface TailPosition {
  partition: number;
  log: PartitionLog;
  nextOffset: number;
}

/** Opens a tail reader for the socket; returns the mode and its `opened` frame. */
export function openTailMode(
  peer: ConsumePeer,
  frame: TailOpenFrame,
  context: BrokerContext,
  permission: DeliveryPermission,
): { mode: ConsumeMode; openedFrame: string } {
  const record = context.topics.topic(frame.topic);
  if (record === undefined) throw new UnknownTopicError(frame.topic, " on this broker");
  const partitions = frame.partitions ?? record.partitions.filter((p) => context.topics.logs.get(frame.topic, p) !== undefined);
  if (partitions.length === 0) {
    throw new NotLeaderError(`no partition of topic "${frame.topic}" is hosted by this broker; connect to a broker that hosts it`);
  }
  if (frame.from instanceof Map) {
    for (const partition of frame.from.keys()) {
      if (!partitions.includes(partition)) {
        throw new InvalidArgumentError(`\`from\` names partition ${partition}, which this reader does not read (partitions ${partitions.join(", ")})`);
      }
    }
  }
  const positions = partitions.map((partition): TailPosition => {
    const log = context.topics.log(frame.topic, partition);
    const from = frame.from;
    const nextOffset = from === "earliest" ? log.logStartOffset : from instanceof Map ? (from.get(partition) ?? log.highWatermark) : log.highWatermark;
    if (nextOffset < log.logStartOffset || nextOffset > log.logEndOffset) {
      throw new OffsetOutOfRangeError(frame.topic, partition, nextOffset, log.logStartOffset, log.logEndOffset);
    }
    return { partition, log, nextOffset };
  });
  const reader = new TailReader(peer, frame.topic, positions, permission, context.logger);
  const openedFrame = JSON.stringify({
    type: "opened",
    mode: "tail",
    topic: frame.topic,
    partitions: positions.map((p) => ({ partition: p.partition, offset: p.nextOffset })),
  });
  return { mode: reader, openedFrame };
}

class TailReader implements ConsumeMode {
  private credit = 0;
  private cursor = 0;
  private pumpScheduled = false;
  private waitingForRoom = false;
  private closed = false;
  private readonly onAppend = (): void => this.schedulePump();

  constructor(
    private readonly peer: ConsumePeer,
    private readonly topic: string,
    private readonly positions: TailPosition[],
    private readonly permission: DeliveryPermission,
    private readonly logger: Logger,
  ) {
    for (const position of positions) position.log.on("append", this.onAppend);
  }

  grant(messages: number): void {
    this.credit += messages;
    this.schedulePump();
  }

  settle(): void {
    throw new InvalidArgumentError("a tail reader has nothing to settle: ack, nack and extend are for queue mode");
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const position of this.positions) position.log.off("append", this.onAppend);
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.pumpScheduled = false;
    if (this.closed || this.waitingForRoom) return;
    let budget = MAX_MESSAGES_PER_PUMP;
    try {
      while (this.credit > 0 && budget > 0) {
        let progressed = false;
        const count = this.positions.length;
        for (let i = 0; i < count && this.credit > 0 && budget > 0; i++) {
          if (!this.peer.hasRoom()) {
            this.waitForRoom();
            return;
          }
          // A revoked permission ends the socket (ConsumeGrant); the reader stops here.
          if (!this.permission.stillAllowed()) return;
          const position = this.positions[(this.cursor + i) % count]!;
          const before = position.nextOffset;
          const sent = this.readInto(position, Math.min(this.credit, budget));
          this.credit -= sent;
          budget -= sent;
          if (position.nextOffset !== before) progressed = true;
        }
        this.cursor = (this.cursor + 1) % count;
        if (!progressed) return;
      }
    } catch (err) {
      // A log closed under the reader (topic deleted, broker stopping) or a storage error.
      this.peer.fail(err);
      return;
    }
    if (this.credit > 0 && budget === 0) this.schedulePump();
  }

  /** Sends up to `max` messages from one read of the partition; returns how many it sent. */
  private readInto(position: TailPosition, max: number): number {
    const { log } = position;
    if (position.nextOffset < log.logStartOffset) {
      // Retention deleted what this reader had not read yet: a tail goes on from what is left.
      this.logger.info(
        { topic: this.topic, partition: position.partition, from: position.nextOffset, to: log.logStartOffset },
        "WebSocket tail reader fell behind retention; skipping deleted messages",
      );
      position.nextOffset = log.logStartOffset;
    }
    if (position.nextOffset >= log.highWatermark) return 0;
    const result = log.read(position.nextOffset, TAIL_READ_BYTES);
    let sent = 0;
    let stopped = false;
    forEachRecord(result.records, position.nextOffset, (record) => {
      if (stopped) return;
      if (sent >= max || !this.peer.hasRoom()) {
        stopped = true;
        return;
      }
      this.peer.send(messageFrame(this.topic, position.partition, record));
      sent++;
      position.nextOffset = record.offset + 1;
    });
    // Everything read was sent: skip past it, including control batches that carry no message.
    if (!stopped) position.nextOffset = Math.max(position.nextOffset, result.nextOffset);
    return sent;
  }

  private waitForRoom(): void {
    this.waitingForRoom = true;
    this.peer.whenRoom(() => {
      this.waitingForRoom = false;
      this.schedulePump();
    });
  }
}
