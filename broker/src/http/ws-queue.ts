/**
 * Queue mode of the WebSocket consume endpoint: one QueueSession (queue-topic.ts) whose
 * deliveries are decoded into one frame per leased message, and whose settles are batched.
 *
 * Credit: a lease is one message, so the client's credit is handed to the session as is and
 * the session never leases more than that. A leased offset missing from the batches read
 * (it cannot be decoded) is not sent: its credit is granted back and the lease expires into
 * a redelivery, as an unanswered lease would.
 *
 * Settles: frames arriving together (one socket read, up to the next turn of the event loop)
 * go to the session as one settle call with one correlation id; its answer, sent once the
 * window is durable, is fanned out as one `settled` frame per client id. Two settles of the
 * same offset never share a call, so each error is matched to the frame it belongs to.
 *
 * Each delivery first asks the DeliveryPermission: once consume on the topic or group is
 * revoked, nothing more is sent (the socket is ended with NOT_AUTHORIZED, and the leases of
 * what was not sent go back to the group when the session closes).
 */
import { randomUUID } from "node:crypto";
import { forEachRecord } from "../../../common/src/batch/reader.js";
import type { Logger } from "../../../common/src/logger.js";
import type { QueueSettle, SettleError } from "../../../proto/gen/sluice/v1/groups.js";
import { parseQueueOpen, type QueueGroups, type QueueSettings } from "../groups/queue-groups.js";
import type { QueueSession, QueueSink } from "../groups/queue-topic.js";
import type { Lease } from "../groups/queue-window.js";
import type { CoordinatorLookup } from "./coordinator-lookup.js";
import type { DeliveryPermission } from "./ws-access.js";
import { messageFrame, settledFrame, type QueueOpenFrame, type SettleFrame } from "./ws-frames.js";
import type { ConsumeMode, ConsumePeer } from "./ws-peer.js";

export interface QueueModeServices {
  queues: QueueGroups;
  coordinators: CoordinatorLookup;
  logger: Logger;
}

/** Opens a queue session for the socket; resolves with the mode and its `opened` frame. */
export async function openQueueMode(
  peer: ConsumePeer,
  frame: QueueOpenFrame,
  services: QueueModeServices,
  permission: DeliveryPermission,
): Promise<{ mode: ConsumeMode; openedFrame: string }> {
  const settings = parseQueueOpen(
    {
      group: frame.group,
      topic: frame.topic,
      memberId: randomUUID(),
      invisibleMs: frame.invisibleMs,
      maxDeliveries: frame.maxDeliveries,
      keyOrdering: frame.keyOrdering,
      fromBeginning: frame.fromBeginning,
    },
    frame.clientId,
  );
  await services.coordinators.ensureLocal(settings.group);
  const consumer = new WebSocketQueueConsumer(peer, settings, permission, services.logger);
  const session = await services.queues.open(settings, consumer.sink);
  consumer.attach(session);
  const openedFrame = JSON.stringify({
    type: "opened",
    mode: "queue",
    group: settings.group,
    topic: settings.topic,
    memberId: settings.memberId,
    invisibleMs: settings.invisibleMs,
    maxDeliveries: settings.maxDeliveries,
  });
  return { mode: consumer, openedFrame };
}

/** A client settle waiting for its answer. */
interface AwaitedSettle {
  id: number;
  partition: number;
  offset: number;
}

class WebSocketQueueConsumer implements ConsumeMode {
  private session: QueueSession | undefined;
  private closed = false;
  private batch: SettleFrame[] = [];
  private readonly batchOffsets = new Set<string>();
  private flushScheduled = false;
  private nextCorrelationId = 1;
  private readonly awaiting = new Map<number, AwaitedSettle[]>();
  private waitingForRoom = false;

  readonly sink: QueueSink = {
    // The socket gets decoded messages, so every delivery carries its batches.
    keepsLastBatch: false,
    deliver: (partition, records, leases) => this.deliver(partition, records, leases),
    settled: (correlationId, errors) => this.answer(correlationId, errors),
  };

  constructor(
    private readonly peer: ConsumePeer,
    private readonly settings: QueueSettings,
    private readonly permission: DeliveryPermission,
    private readonly logger: Logger,
  ) {}

  attach(session: QueueSession): void {
    this.session = session;
    // The socket may have gone while the group opened.
    if (!this.peer.isOpen) this.close();
  }

  grant(messages: number): void {
    this.session?.grant(messages);
  }

  settle(frame: SettleFrame): void {
    const key = `${frame.partition}:${frame.offset}`;
    if (this.batchOffsets.has(key)) this.flush();
    this.batch.push(frame);
    this.batchOffsets.add(key);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  close(): void {
    if (this.closed) return;
    // Settles the client sent before going still count (nobody is left to answer).
    this.flush();
    this.closed = true;
    this.awaiting.clear();
    this.session?.close();
  }

  private flush(): void {
    if (this.batch.length === 0 || this.closed || this.session === undefined) return;
    const frames = this.batch;
    this.batch = [];
    this.batchOffsets.clear();
    const answered: AwaitedSettle[] = [];
    const acks: QueueSettle[] = [];
    const nacks: QueueSettle[] = [];
    const extensions: QueueSettle[] = [];
    for (const f of frames) {
      if (f.id !== undefined && this.peer.isOpen) answered.push({ id: f.id, partition: f.partition, offset: f.offset });
      const settle: QueueSettle = {
        partition: f.partition,
        offset: f.offset,
        leaseId: f.leaseId,
        delayMs: f.delayMs,
        error: f.error,
        extendMs: f.extendMs ?? this.settings.invisibleMs,
      };
      (f.verb === "ack" ? acks : f.verb === "nack" ? nacks : extensions).push(settle);
    }
    // Correlation id 0 asks the session for no answer.
    const correlationId = answered.length > 0 ? this.nextCorrelationId++ : 0;
    if (correlationId !== 0) this.awaiting.set(correlationId, answered);
    this.session.settle(correlationId, acks, nacks, extensions);
  }

  private answer(correlationId: number, errors: SettleError[]): void {
    const settles = this.awaiting.get(correlationId);
    if (settles === undefined) return;
    this.awaiting.delete(correlationId);
    // offset -1: the whole call failed (the window could not be written).
    const whole = errors.filter((e) => e.offset === -1);
    const byOffset = new Map(errors.filter((e) => e.offset !== -1).map((e) => [`${e.partition}:${e.offset}`, e]));
    for (const s of settles) {
      const own = byOffset.get(`${s.partition}:${s.offset}`);
      this.peer.send(settledFrame(s.id, own === undefined ? whole : [own, ...whole]));
    }
  }

  private deliver(partition: number, records: Buffer, leases: Lease[]): boolean {
    if (this.closed || !this.permission.stillAllowed()) return true;
    const leased = new Map(leases.map((lease) => [lease.offset, lease]));
    let firstOffset = Infinity;
    for (const lease of leases) firstOffset = Math.min(firstOffset, lease.offset);
    try {
      forEachRecord(records, firstOffset, (record) => {
        const lease = leased.get(record.offset);
        if (lease === undefined) return;
        leased.delete(record.offset);
        this.peer.send(messageFrame(this.settings.topic, partition, record, lease));
      });
    } catch (err) {
      this.logger.warn({ group: this.settings.group, topic: this.settings.topic, partition, err }, "queue batch could not be decoded for a WebSocket consumer; its leases will expire");
    }
    // The client never saw these: its credit for them still stands.
    if (leased.size > 0) this.session?.grant(leased.size);
    if (this.peer.hasRoom()) return true;
    if (!this.waitingForRoom) {
      this.waitingForRoom = true;
      this.peer.whenRoom(() => {
        this.waitingForRoom = false;
        this.session?.drained();
      });
    }
    return false;
  }
}
