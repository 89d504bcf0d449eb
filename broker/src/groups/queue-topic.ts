/**
 * One queue group's topic: a QueueWindow per local partition, the sessions consuming it, the
 * pump that leases offsets to sessions with credit, the dead-letter mover and the grouped
 * commit of windows. See queue-groups.ts for the semantics.
 */
import { baseOffsetOf, lastOffsetDeltaOf } from "../../../common/src/batch/layout.js";
import { forEachRecord } from "../../../common/src/batch/reader.js";
import { encodeBatch } from "../../../common/src/batch/builder.js";
import { UnknownLeaseError, toSluiceError } from "../../../common/src/errors.js";
import { toWireError } from "../../../common/src/grpc/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { murmur2 } from "../../../common/src/murmur2.js";
import { DLQ_HEADERS, dlqTopicOf } from "../../../common/src/protocol.js";
import type { QueuePartitionState, QueueSettle, SettleError } from "../../../proto/gen/sluice/v1/groups.js";
import type { PartitionLog } from "../storage/partition-log.js";
import type { TopicManager } from "../topics.js";
import type { GroupCoordinator } from "./coordinator.js";
import { QueueWindow, type Lease, type WindowSnapshot } from "./queue-window.js";
import { windowKey } from "./state-keys.js";

/** Shortest gap between two window commits: settles arriving meanwhile share the next one. */
export const QUEUE_COMMIT_INTERVAL_MS = 5;
/**
 * Most leases a session takes from one partition per round. Rounds repeat while anything is
 * leased, so a large append is dealt out across consumers in slices of this size instead of
 * going whole to whichever consumer leads the round.
 */
export const LEASES_PER_ROUND = 64;
/** Longest nack delay or lease extension accepted (12 h); longer values are capped. */
const MAX_SETTLE_MS = 12 * 60 * 60 * 1000;
/** Key hashes remembered (key ordering) before those below the window are pruned. */
const KEY_CACHE_PRUNE_AT = 50_000;

/** Where a session's deliveries and settle answers go (a gRPC stream or a WebSocket). */
export interface QueueSink {
  /**
   * The consumer keeps the last stored batch it received for each partition, so a delivery
   * whose leases fall in that batch need not carry it again (see QueueDelivery in groups.proto).
   */
  readonly keepsLastBatch: boolean;
  /** Sends leased offsets with the stored batches holding them; false when the transport is full. */
  deliver(partition: number, records: Buffer, leases: Lease[]): boolean;
  /** Answers a settle request once it is durable. */
  settled(correlationId: number, errors: SettleError[]): void;
}

export interface QueueSession {
  readonly memberId: string;
  /** More messages the consumer can take. */
  grant(messages: number): void;
  settle(correlationId: number, acks: readonly QueueSettle[], nacks: readonly QueueSettle[], extensions: readonly QueueSettle[]): void;
  /** The transport can take more after `deliver` returned false. */
  drained(): void;
  /** Leases still held are released for redelivery now. */
  close(): void;
}

interface SessionState {
  memberId: string;
  clientId: string;
  invisibleMs: number;
  credit: number;
  blocked: boolean;
  closed: boolean;
  sink: QueueSink;
  /** Partition index this session's next lease round starts at. */
  cursor: number;
  /** Offsets of the last stored batch sent per partition (sinks that keep it only). */
  lastBatch: Map<number, BatchRange>;
}

/** First and last offset of one stored batch. */
interface BatchRange {
  first: number;
  last: number;
}

interface PartitionQueue {
  partition: number;
  log: PartitionLog;
  window: QueueWindow;
  committedVersion: number;
  onAppend: () => void;
  movingDead: boolean;
  deadLettered: number;
  redelivered: number;
  /** Key hash per offset (key ordering only); NaN for a record without key. */
  keys: Map<number, number>;
}

/** Where a queue topic reports its redeliveries and dead letters (Prometheus counters). */
export interface QueueCounters {
  redelivered(group: string, count: number): void;
  deadLettered(group: string, count: number): void;
}

export interface QueueTopicOptions {
  counters?: QueueCounters;
  group: string;
  topic: string;
  coordinator: GroupCoordinator;
  topics: TopicManager;
  logger: Logger;
  fromBeginning: boolean;
}

export class QueueTopic {
  private readonly partitions: PartitionQueue[] = [];
  private readonly sessions: SessionState[] = [];
  private maxDeliveries = 5;
  private keyOrdering = false;
  private pumpScheduled = false;
  private dueTimer: NodeJS.Timeout | undefined;
  private dueAtMs = Infinity;
  private nextSessionIndex = 0;
  private pendingSettles: Array<{ session: SessionState; correlationId: number; errors: SettleError[] }> = [];
  private committing = false;
  /** The commit in progress, for close() to wait on. */
  private running: Promise<void> | undefined;
  private commitTimer: NodeJS.Timeout | undefined;
  private lastCommitMs = 0;
  private closed = false;

  private constructor(private readonly options: QueueTopicOptions) {}

  static async open(options: QueueTopicOptions): Promise<QueueTopic> {
    const queue = new QueueTopic(options);
    const { coordinator, topics, group, topic } = options;
    const record = topics.topic(topic)!;
    const fresh: Array<{ key: string; value: WindowSnapshot }> = [];
    for (const partition of [...record.partitions].sort((a, b) => a - b)) {
      const log = topics.logs.get(topic, partition);
      if (log === undefined) continue;
      const key = windowKey(group, topic, partition);
      const stored = coordinator.store.get<WindowSnapshot>(key);
      let window: QueueWindow;
      if (stored !== undefined) {
        window = QueueWindow.restore(stored);
      } else {
        // A new queue group starts at the end unless asked for everything; recorded at once
        // so "the end" means the end when the group was created, not when it next commits.
        window = new QueueWindow(options.fromBeginning ? log.logStartOffset : log.highWatermark);
        fresh.push({ key, value: window.snapshot() });
      }
      const pq: PartitionQueue = {
        partition,
        log,
        window,
        committedVersion: stored === undefined ? -1 : window.version,
        onAppend: () => queue.schedulePump(),
        movingDead: false,
        deadLettered: 0,
        redelivered: 0,
        keys: new Map(),
      };
      queue.partitions.push(pq);
    }
    if (fresh.length > 0) await coordinator.write(group, fresh);
    for (const pq of queue.partitions) {
      if (pq.committedVersion === -1) pq.committedVersion = pq.window.version;
      pq.log.on("append", pq.onAppend);
    }
    return queue;
  }

  /** Writes fresh windows for a group with no consumers attached (reset-offsets). */
  static async resetStored(coordinator: GroupCoordinator, group: string, topic: string, offsets: Map<number, number>): Promise<void> {
    await coordinator.write(
      group,
      [...offsets].map(([partition, offset]) => ({ key: windowKey(group, topic, partition), value: new QueueWindow(offset).snapshot() })),
    );
  }

  configure(maxDeliveries: number, keyOrdering: boolean): void {
    this.maxDeliveries = maxDeliveries;
    this.keyOrdering = keyOrdering;
  }

  attach(settings: { memberId: string; clientId: string; invisibleMs: number }, sink: QueueSink): QueueSession {
    const state: SessionState = { ...settings, credit: 0, blocked: false, closed: false, sink, cursor: this.sessions.length, lastBatch: new Map() };
    this.sessions.push(state);
    return {
      memberId: settings.memberId,
      grant: (messages) => {
        if (state.closed || messages <= 0) return;
        state.credit += messages;
        this.schedulePump();
      },
      settle: (correlationId, acks, nacks, extensions) => this.settle(state, correlationId, acks, nacks, extensions),
      drained: () => {
        state.blocked = false;
        this.schedulePump();
      },
      close: () => this.detach(state),
    };
  }

  members(): Array<{ memberId: string; clientId: string; topic: string }> {
    return this.sessions.map((s) => ({ memberId: s.memberId, clientId: s.clientId, topic: this.options.topic }));
  }

  describe(): QueuePartitionState[] {
    return this.partitions.map((pq) => {
      const stats = pq.window.stats();
      return {
        topic: this.options.topic,
        partition: pq.partition,
        startOffset: pq.window.startOffset,
        endOffset: pq.log.highWatermark,
        inFlight: stats.leased,
        delayed: stats.delayed,
        deadPending: stats.dead,
        redelivered: stats.redeliveries,
        deadLettered: pq.deadLettered,
      };
    });
  }

  async reset(offsets: Map<number, number>): Promise<void> {
    for (const pq of this.partitions) {
      const offset = offsets.get(pq.partition);
      if (offset !== undefined) pq.window.reset(offset);
    }
    await this.commit();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pq of this.partitions) pq.log.off("append", pq.onAppend);
    clearTimeout(this.dueTimer);
    clearTimeout(this.commitTimer);
    await this.running?.catch(() => undefined);
    await this.commit().catch(() => undefined);
  }

  private detach(state: SessionState): void {
    if (state.closed) return;
    state.closed = true;
    const index = this.sessions.indexOf(state);
    if (index >= 0) this.sessions.splice(index, 1);
    for (const pq of this.partitions) pq.window.releaseMember(state.memberId);
    this.schedulePump();
    this.scheduleCommit();
  }

  private settle(
    session: SessionState,
    correlationId: number,
    acks: readonly QueueSettle[],
    nacks: readonly QueueSettle[],
    extensions: readonly QueueSettle[],
  ): void {
    const errors: SettleError[] = [];
    const nowMs = this.options.coordinator.now();
    const refuse = (s: QueueSettle, verb: string): void => {
      errors.push({
        partition: s.partition,
        offset: s.offset,
        error: toWireError(
          new UnknownLeaseError(
            `cannot ${verb} ${this.options.topic}/${s.partition}@${s.offset}: the lease is not held (it expired and the message was redelivered, or it was never leased to this consumer)`,
          ),
        ),
      });
    };
    for (const s of acks) {
      const pq = this.partitionQueue(s.partition);
      if (pq === undefined || pq.window.ack(session.memberId, s.offset, s.leaseId) !== "ok") refuse(s, "ack");
    }
    for (const s of nacks) {
      const pq = this.partitionQueue(s.partition);
      const result = pq?.window.nack(session.memberId, s.offset, s.leaseId, nowMs, Math.min(s.delayMs, MAX_SETTLE_MS), this.maxDeliveries, s.error || "nacked");
      if (result !== "ok") refuse(s, "nack");
      else {
        pq!.redelivered++;
        // Past maxDeliveries the nack dead-letters it: no other delivery comes.
        if (pq!.window.stateOf(s.offset) !== "dead") this.options.counters?.redelivered(this.options.group, 1);
      }
    }
    for (const s of extensions) {
      const pq = this.partitionQueue(s.partition);
      // 0 (the field's default) means "another invisibility period", never "expire now".
      const extendMs = Math.min(s.extendMs === 0 ? session.invisibleMs : s.extendMs, MAX_SETTLE_MS);
      if (pq === undefined || pq.window.extend(session.memberId, s.offset, s.leaseId, nowMs, extendMs) !== "ok") refuse(s, "extend");
    }
    if (correlationId !== 0) this.pendingSettles.push({ session, correlationId, errors });
    if (nacks.length > 0) this.schedulePump();
    this.scheduleCommit();
  }

  private partitionQueue(partition: number): PartitionQueue | undefined {
    for (const pq of this.partitions) if (pq.partition === partition) return pq;
    return undefined;
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => this.pump());
  }

  private pump(): void {
    this.pumpScheduled = false;
    if (this.closed) return;
    const nowMs = this.options.coordinator.now();
    for (const pq of this.partitions) {
      if (pq.log.logStartOffset > pq.window.startOffset) pq.window.truncateTo(pq.log.logStartOffset);
      const due = pq.window.nextDueMs();
      if (due !== undefined && due <= nowMs) {
        const expired = pq.window.expire(nowMs, this.maxDeliveries);
        pq.redelivered += expired.length;
        const again = expired.filter((offset) => pq.window.stateOf(offset) !== "dead").length;
        if (again > 0) this.options.counters?.redelivered(this.options.group, again);
      }
      if (pq.window.stats().dead > 0) void this.moveDeadLetters(pq);
    }
    const sessions = this.sessions;
    const count = sessions.length;
    // Sessions take turns leading, so a trickle of messages spreads over every consumer.
    const first = count === 0 ? 0 : this.nextSessionIndex++ % count;
    // Leases of every round are gathered per (session, partition) and sent once, so a batch
    // is read and sent to a session once per pump, not once per slice.
    const gathered = new Map<SessionState, Map<PartitionQueue, Lease[]>>();
    for (let leasedThisRound = true; leasedThisRound; ) {
      leasedThisRound = false;
      for (let i = 0; i < count; i++) {
        if (this.leaseRound(sessions[(first + i) % count]!, nowMs, gathered)) leasedThisRound = true;
      }
    }
    for (const [session, byPartition] of gathered) {
      for (const [pq, leases] of byPartition) {
        if (session.closed) break;
        let records: Buffer;
        try {
          const remembered = session.sink.keepsLastBatch ? session.lastBatch.get(pq.partition) : undefined;
          const read = readCovering(pq.log, leases, remembered);
          records = read.records;
          if (read.lastBatch !== undefined && session.sink.keepsLastBatch) session.lastBatch.set(pq.partition, read.lastBatch);
        } catch (err) {
          this.options.logger.warn({ group: this.options.group, partition: pq.partition, err }, "queue read failed; leases will expire and be redelivered");
          continue;
        }
        if (!session.sink.deliver(pq.partition, records, leases)) session.blocked = true;
      }
    }
    this.armDueTimer();
    this.scheduleCommit();
  }

  /** One slice of leases per partition for one session; true when it leased anything. */
  private leaseRound(session: SessionState, nowMs: number, gathered: Map<SessionState, Map<PartitionQueue, Lease[]>>): boolean {
    let leased = false;
    if (session.closed || session.blocked) return leased;
    {
      for (let j = 0; j < this.partitions.length && session.credit > 0 && !session.blocked; j++) {
        const pq = this.partitions[(session.cursor + j) % this.partitions.length]!;
        const leases = pq.window.lease(
          session.memberId,
          Math.min(session.credit, LEASES_PER_ROUND),
          // Only what the replication requirement has covered is leased out.
          pq.log.highWatermark,
          nowMs,
          session.invisibleMs,
          this.keyOrdering ? this.keyOf(pq) : undefined,
        );
        if (leases.length === 0) continue;
        leased = true;
        session.credit -= leases.length;
        let byPartition = gathered.get(session);
        if (byPartition === undefined) gathered.set(session, (byPartition = new Map()));
        const list = byPartition.get(pq);
        if (list === undefined) byPartition.set(pq, leases);
        else for (const lease of leases) list.push(lease);
      }
      session.cursor++;
    }
    return leased;
  }

  private armDueTimer(): void {
    let due = Infinity;
    for (const pq of this.partitions) due = Math.min(due, pq.window.nextDueMs() ?? Infinity);
    if (due === Infinity || due >= this.dueAtMs) return;
    clearTimeout(this.dueTimer);
    this.dueAtMs = due;
    const delay = Math.max(0, due - this.options.coordinator.now());
    this.dueTimer = setTimeout(() => {
      this.dueAtMs = Infinity;
      this.schedulePump();
    }, delay + 1);
  }

  private keyOf(pq: PartitionQueue): (offset: number) => number | undefined {
    if (pq.keys.size > KEY_CACHE_PRUNE_AT) {
      for (const offset of pq.keys.keys()) if (offset < pq.window.startOffset) pq.keys.delete(offset);
    }
    return (offset) => {
      let hash = pq.keys.get(offset);
      if (hash === undefined) {
        // Key ordering needs keys: decode the batch holding the offset (only on this path).
        const { records } = pq.log.read(offset, 1);
        forEachRecord(records, 0, (r) => pq.keys.set(r.offset, r.key === null ? Number.NaN : murmur2(r.key)));
        hash = pq.keys.get(offset) ?? Number.NaN;
      }
      return Number.isNaN(hash) ? undefined : hash;
    };
  }

  /** Copies dead messages to `%DLQ%<group>` with headers saying where they came from. */
  private async moveDeadLetters(pq: PartitionQueue): Promise<void> {
    if (pq.movingDead) return;
    pq.movingDead = true;
    const { group, topic, topics, logger } = this.options;
    try {
      const dlq = topics.logs.get(dlqTopicOf(group), 0);
      if (dlq === undefined) {
        logger.warn({ group, topic: dlqTopicOf(group) }, "dead-letter topic is not hosted here; dead messages wait");
        return;
      }
      for (const dead of pq.window.deadLetters()) {
        let original: { key: Buffer | null; value: Buffer | null; headers: Record<string, Buffer>; timestamp: number } | undefined;
        if (dead.offset >= pq.log.logStartOffset) {
          forEachRecord(pq.log.read(dead.offset, 1).records, dead.offset, (r) => {
            if (r.offset === dead.offset) original = r;
          });
        }
        if (original !== undefined) {
          const headers: Record<string, Buffer | string> = {
            ...original.headers,
            [DLQ_HEADERS.topic]: topic,
            [DLQ_HEADERS.partition]: String(pq.partition),
            [DLQ_HEADERS.offset]: String(dead.offset),
            [DLQ_HEADERS.deliveries]: String(dead.deliveryCount),
            [DLQ_HEADERS.error]: dead.lastError.slice(0, 1000),
            [DLQ_HEADERS.deadAtMs]: String(this.options.coordinator.now()),
          };
          await this.options.coordinator.appendToLog(dlq, encodeBatch([{ key: original.key, value: original.value, headers, timestamp: original.timestamp }]));
          pq.deadLettered++;
          this.options.counters?.deadLettered(group, 1);
        }
        pq.window.settleDead(dead.offset);
        logger.info({ group, topic, partition: pq.partition, offset: dead.offset, deliveries: dead.deliveryCount }, "message dead-lettered");
      }
    } catch (err) {
      logger.warn({ group, topic, partition: pq.partition, code: toSluiceError(err).code, err }, "dead-lettering failed; will retry");
    } finally {
      pq.movingDead = false;
      this.scheduleCommit();
      this.armDueTimer();
    }
  }

  private scheduleCommit(): void {
    if (this.committing || this.commitTimer !== undefined || this.closed) return;
    const dirty = this.pendingSettles.length > 0 || this.partitions.some((pq) => pq.window.version !== pq.committedVersion);
    if (!dirty) return;
    const wait = Math.max(0, this.lastCommitMs + QUEUE_COMMIT_INTERVAL_MS - Date.now());
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined;
      this.commit().catch((err: unknown) => this.options.logger.warn({ group: this.options.group, err }, "queue window commit failed"));
    }, wait);
  }

  /** One write for every changed window; then the settles it covers are answered. */
  private commit(): Promise<void> {
    if (this.committing) return this.running ?? Promise.resolve();
    this.running = this.commitOnce();
    return this.running;
  }

  private async commitOnce(): Promise<void> {
    this.committing = true;
    this.lastCommitMs = Date.now();
    const answering = this.pendingSettles;
    this.pendingSettles = [];
    const changed = this.partitions.filter((pq) => pq.window.version !== pq.committedVersion);
    const versions = changed.map((pq) => pq.window.version);
    try {
      if (changed.length > 0) {
        await this.options.coordinator.write(
          this.options.group,
          changed.map((pq) => ({ key: windowKey(this.options.group, this.options.topic, pq.partition), value: pq.window.snapshot() })),
        );
        changed.forEach((pq, i) => (pq.committedVersion = versions[i]!));
      }
      for (const { session, correlationId, errors } of answering) if (!session.closed) session.sink.settled(correlationId, errors);
    } catch (err) {
      // Not durable: the settles are not confirmed. Their leases stay settled in memory; a
      // later commit that succeeds carries them, and a crash before that redelivers them.
      const error = toWireError(err);
      for (const { session, correlationId } of answering) {
        if (!session.closed) session.sink.settled(correlationId, [{ partition: 0, offset: -1, error }]);
      }
      throw err;
    } finally {
      this.committing = false;
      this.scheduleCommit();
    }
  }
}

/**
 * The stored batches holding the leased offsets (they may hold other records too), except the
 * batch the consumer already holds (`remembered`), and the range of the last batch read.
 * A producer's batch holds thousands of records while a delivery leases a credit's worth, so
 * without `remembered` the same batch would cross the wire once per delivery.
 */
function readCovering(log: PartitionLog, leases: readonly Lease[], remembered: BatchRange | undefined): { records: Buffer; lastBatch: BatchRange | undefined } {
  const offsets = leases.map((l) => l.offset).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let coveredUntil = -1;
  let lastBatch: BatchRange | undefined;
  for (const offset of offsets) {
    if (offset < coveredUntil) continue;
    if (remembered !== undefined && offset >= remembered.first && offset <= remembered.last) continue;
    // One batch per read: the leases decide how far to go, not a byte budget.
    const result = log.read(offset, 1);
    if (result.records.length === 0) continue;
    chunks.push(result.records);
    const first = baseOffsetOf(result.records);
    lastBatch = { first, last: first + lastOffsetDeltaOf(result.records) };
    coveredUntil = result.nextOffset;
  }
  const records = chunks.length === 1 ? chunks[0]! : chunks.length === 0 ? EMPTY : Buffer.concat(chunks);
  return { records, lastBatch };
}

const EMPTY = Buffer.alloc(0);
