/**
 * The master's view of its slaves: how far each is on every partition, which of them are in
 * sync, the high watermark that follows from that, and when an `acks: "all"` produce may be
 * acknowledged. Pure logic over an injected clock: the replication sessions feed it sends,
 * acks and log ends; the produce path asks it to wait; the owner calls `tick()` about every
 * 100 ms so lagging slaves leave even when nothing else happens.
 *
 * The in-sync set is group-wide (mastership is): a promoted slave must hold every acknowledged
 * batch of every partition. A slave joins once it holds everything up to the high watermark
 * on every partition; it leaves when it lags more than `maxSlaveLagMs` on any partition, or
 * when its stream closed while it is behind.
 *
 * Membership changes go through `recordInSync` (etcd) before they relax anything: a slave that
 * leaves keeps counting for waits and the high watermark until the smaller set is recorded
 * (in-sync-sets.ts has the rules of who counts when).
 *
 * High watermark per partition: min(log end, the acks of every counted slave) in `async` and
 * `sync`; the k-th highest ack of the recorded set in `quorum:k` (the minimum when fewer than k
 * are recorded); the log end when no slave counts. It never moves back.
 */
import type { Clock } from "../../../common/src/clock.js";
import {
  ClosedError,
  NotLeaderError,
  UnknownPartitionError,
  type NotEnoughReplicasError,
  type SluiceError,
} from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { highWatermarkFor, notEnoughReplicas, requiredInSync, validateReplicationSettings, waitShortfall } from "./in-sync-rules.js";
import { InSyncSets } from "./in-sync-sets.js";
import { PendingAcks } from "./pending-acks.js";
import { PartitionProgress } from "./slave-progress.js";
import { partitionKey, type ReplicationMode } from "./types.js";

export interface ReplicaTrackerOptions {
  /** The broker group's name (`b1`), the first word of every refusal. */
  group: string;
  mode: ReplicationMode;
  /** `sync` mode refuses `acks: "all"` produce while fewer slaves are in sync. */
  minInSyncSlaves: number;
  /** A slave behind for longer than this on any partition leaves the in-sync set. */
  maxSlaveLagMs: number;
  /** Records a new in-sync set (etcd compare-and-swap); resolves once it is durable. */
  recordInSync: (ids: number[]) => Promise<void>;
  clock: Clock;
  logger: Logger;
  /** The set recorded when this broker became master; they have `maxSlaveLagMs` to show up. @defaultValue [] */
  initialInSync?: readonly number[];
}

export interface SlaveStatus {
  brokerId: number;
  connected: boolean;
  inSync: boolean;
  /** Offsets behind the master's log end, summed over partitions. */
  lagMessages: number;
  /** Estimated: offsets behind × the partition's average bytes per offset (acks carry offsets only). */
  lagBytes: number;
  /** Time since it was last caught up, on its worst partition. */
  lagMs: number;
}

/** One chunk pushed to a slave: offsets [fromOffset, endOffset), its size, and the log end then. */
export interface SentChunk {
  fromOffset: number;
  endOffset: number;
  bytes: number;
  logEndAtSend: number;
}

export interface TrackedPartitionState {
  logEndOffset: number;
  highWatermark: number;
  /** Average stored bytes per offset, to estimate lag in bytes until sends measure it. @defaultValue 0 */
  bytesPerOffset?: number;
}

export type HighWatermarkListener = (topic: string, partition: number, highWatermark: number) => void;

interface TrackedPartition {
  topic: string;
  partition: number;
  key: string;
  logEndOffset: number;
  highWatermark: number;
  bytesPerOffset: number;
  waits: PendingAcks;
}

interface Slave {
  brokerId: number;
  connected: boolean;
  /** False for a slave of the recorded set that has not connected since this master started. */
  hadSession: boolean;
  progress: Map<string, PartitionProgress>;
}

/** Weight of a new sample in the bytes-per-offset average. */
const BYTES_PER_OFFSET_SMOOTHING = 0.2;

export class ReplicaTracker {
  private readonly group: string;
  private readonly mode: ReplicationMode;
  private readonly minInSyncSlaves: number;
  private readonly maxSlaveLagMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly partitions = new Map<string, TrackedPartition>();
  private readonly slaves = new Map<number, Slave>();
  private readonly listeners = new Set<HighWatermarkListener>();
  private readonly inSync: InSyncSets;
  private closed: SluiceError | null = null;

  constructor(options: ReplicaTrackerOptions) {
    const { mode, minInSyncSlaves, maxSlaveLagMs } = options;
    validateReplicationSettings(mode, minInSyncSlaves, maxSlaveLagMs);
    this.group = options.group;
    this.mode = mode;
    this.minInSyncSlaves = minInSyncSlaves;
    this.maxSlaveLagMs = maxSlaveLagMs;
    this.clock = options.clock;
    this.logger = options.logger;
    const initial = [...new Set(options.initialInSync ?? [])];
    this.inSync = new InSyncSets({
      group: options.group,
      mode,
      initial,
      recordInSync: options.recordInSync,
      onRecorded: () => this.settleAll(),
      logger: options.logger,
    });
    for (const brokerId of initial) this.slaveFor(brokerId);
  }

  // ---- partitions -------------------------------------------------------------------------

  /** Starts tracking a partition the master hosts (at start, or when a topic is created). */
  addPartition(topic: string, partition: number, state: TrackedPartitionState): void {
    const key = partitionKey(topic, partition);
    const existing = this.partitions.get(key);
    if (existing) {
      this.logEndAdvanced(topic, partition, state.logEndOffset);
      return;
    }
    const tracked: TrackedPartition = {
      topic,
      partition,
      key,
      logEndOffset: state.logEndOffset,
      highWatermark: Math.min(state.highWatermark, state.logEndOffset),
      bytesPerOffset: state.bytesPerOffset ?? 0,
      waits: new PendingAcks(),
    };
    this.partitions.set(key, tracked);
    const nowMs = this.clock.now();
    for (const slave of this.slaves.values()) slave.progress.set(key, new PartitionProgress(0, nowMs));
    this.refresh(tracked);
  }

  /** Stops tracking a deleted partition; its pending waits fail. */
  removePartition(topic: string, partition: number): void {
    const key = partitionKey(topic, partition);
    const tracked = this.partitions.get(key);
    if (!tracked) return;
    this.partitions.delete(key);
    for (const slave of this.slaves.values()) slave.progress.delete(key);
    const error = new ClosedError(`partition ${key} (deleted)`);
    tracked.waits.rejectAll(() => error);
    // Without the partition a lagging slave may now qualify.
    this.evaluateMembership();
  }

  /** The master appended: its log end moved to `logEndOffset`. */
  logEndAdvanced(topic: string, partition: number, logEndOffset: number): void {
    const tracked = this.partitions.get(partitionKey(topic, partition));
    if (!tracked || logEndOffset <= tracked.logEndOffset) return;
    tracked.logEndOffset = logEndOffset;
    this.refresh(tracked);
    // A member whose stream is gone falls behind now: it cannot catch up, so it leaves at once.
    for (const id of this.inSync.desired) {
      const slave = this.slaves.get(id)!;
      if (!slave.connected && slave.hadSession) {
        this.evaluateMembership();
        return;
      }
    }
  }

  // ---- slaves -----------------------------------------------------------------------------

  /** A slave's stream started; `positions` are its log ends after the truncations it was sent. */
  slaveConnected(brokerId: number, positions: readonly { topic: string; partition: number; logEndOffset: number }[]): void {
    if (this.closed) return;
    const slave = this.slaveFor(brokerId);
    slave.connected = true;
    slave.hadSession = true;
    const known = new Map(positions.map((p) => [partitionKey(p.topic, p.partition), p.logEndOffset]));
    for (const [key, progress] of slave.progress) progress.restart(known.get(key) ?? 0);
    this.logger.info({ group: this.group, slave: brokerId }, "slave connected");
    this.evaluateMembership();
    this.settleAll();
  }

  slaveDisconnected(brokerId: number): void {
    const slave = this.slaves.get(brokerId);
    if (!slave || !slave.connected) return;
    slave.connected = false;
    for (const progress of slave.progress.values()) progress.forgetSends();
    this.logger.info({ group: this.group, slave: brokerId }, "slave disconnected");
    this.evaluateMembership();
  }

  dataSent(brokerId: number, topic: string, partition: number, chunk: SentChunk): void {
    const key = partitionKey(topic, partition);
    const tracked = this.partitions.get(key);
    const progress = this.slaves.get(brokerId)?.progress.get(key);
    if (!tracked || !progress) return;
    progress.sent(chunk.logEndAtSend, this.clock.now());
    const offsets = chunk.endOffset - chunk.fromOffset;
    if (offsets > 0 && chunk.bytes > 0) {
      const sample = chunk.bytes / offsets;
      tracked.bytesPerOffset = tracked.bytesPerOffset === 0 ? sample : tracked.bytesPerOffset + BYTES_PER_OFFSET_SMOOTHING * (sample - tracked.bytesPerOffset);
    }
  }

  /** The slave's log end on a partition after it appended (or where a new session starts it). */
  acked(brokerId: number, topic: string, partition: number, logEndOffset: number): void {
    if (this.closed) return;
    const key = partitionKey(topic, partition);
    const tracked = this.partitions.get(key);
    const slave = this.slaves.get(brokerId);
    const progress = slave?.progress.get(key);
    if (!tracked || !slave || !progress) return;
    progress.acked(logEndOffset, tracked.logEndOffset, this.clock.now());
    if (this.inSync.counts(brokerId)) this.refresh(tracked);
    if (!this.inSync.desired.has(brokerId) && this.canJoin(slave)) this.evaluateMembership();
  }

  /** Applies lag-based removal and retries a failed record; call about every 100 ms. */
  tick(): void {
    if (this.closed) return;
    this.evaluateMembership();
    this.inSync.record();
  }

  // ---- produce path -----------------------------------------------------------------------

  /** Resolves when the batch ending at `lastOffset` is replicated as the mode requires. */
  waitReplicated(topic: string, partition: number, lastOffset: number): Promise<void> {
    if (this.closed) return Promise.reject(this.closed);
    if (this.mode.kind === "async") return Promise.resolve();
    const tracked = this.partitions.get(partitionKey(topic, partition));
    if (!tracked) return Promise.reject(new UnknownPartitionError(topic, partition));
    const shortfall = this.waitShortfall();
    if (shortfall) return Promise.reject(this.notEnoughReplicas(`cannot acknowledge ${tracked.key} offset ${lastOffset}`, shortfall));
    if (lastOffset < tracked.highWatermark) return Promise.resolve();
    return tracked.waits.add(lastOffset);
  }

  /** Whether `acks: "all"` produce is accepted now (enough slaves in sync), for metrics. */
  writeGateOpen(): boolean {
    return this.closed === null && (this.mode.kind === "async" || this.inSync.desired.size >= requiredInSync(this.mode, this.minInSyncSlaves));
  }

  /** Throws NotEnoughReplicasError when too few slaves are in sync to accept `acks: "all"`. */
  checkWriteGate(topic: string, partition: number): void {
    if (this.closed) throw this.closed;
    if (this.mode.kind === "async") return;
    const required = requiredInSync(this.mode, this.minInSyncSlaves);
    if (this.inSync.desired.size >= required) return;
    throw this.notEnoughReplicas(`cannot accept acks "all" on ${partitionKey(topic, partition)}`, { have: this.inSync.desired.size, required });
  }

  /**
   * The high watermark the rules give when the partition's log ends at `logEndOffset`, never
   * below the one already published.
   */
  highWatermark(topic: string, partition: number, logEndOffset: number): number {
    const tracked = this.partitions.get(partitionKey(topic, partition));
    if (!tracked) throw new UnknownPartitionError(topic, partition);
    return Math.min(logEndOffset, Math.max(tracked.highWatermark, this.computeHighWatermark(tracked, logEndOffset)));
  }

  /** Called (synchronously) whenever a partition's high watermark advances. */
  onHighWatermark(listener: HighWatermarkListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- reporting --------------------------------------------------------------------------

  /** The in-sync set as last recorded: what failover promotes from. */
  inSyncSlaves(): number[] {
    return [...this.inSync.recorded].sort((a, b) => a - b);
  }

  /** In sync now or still recorded as such (its traffic is never throttled). */
  isInSync(brokerId: number): boolean {
    return this.inSync.desired.has(brokerId) || this.inSync.recorded.has(brokerId);
  }

  status(): SlaveStatus[] {
    const nowMs = this.clock.now();
    return [...this.slaves.values()]
      .sort((a, b) => a.brokerId - b.brokerId)
      .map((slave) => ({ brokerId: slave.brokerId, connected: slave.connected, inSync: this.inSync.desired.has(slave.brokerId), ...this.lagOf(slave, nowMs) }));
  }

  /** Fails every pending wait (NotLeaderError unless told otherwise) and stops tracking. */
  close(error?: SluiceError): void {
    if (this.closed) return;
    this.inSync.close();
    this.closed = error ?? new NotLeaderError(`broker group ${this.group}: this broker stopped being its master; send to the new master (refresh routes)`);
    const closed = this.closed;
    for (const tracked of this.partitions.values()) tracked.waits.rejectAll(() => closed);
    this.listeners.clear();
  }

  // ---- membership -------------------------------------------------------------------------

  private slaveFor(brokerId: number): Slave {
    let slave = this.slaves.get(brokerId);
    if (!slave) {
      const nowMs = this.clock.now();
      slave = { brokerId, connected: false, hadSession: false, progress: new Map() };
      for (const key of this.partitions.keys()) slave.progress.set(key, new PartitionProgress(0, nowMs));
      this.slaves.set(brokerId, slave);
    }
    return slave;
  }

  private canJoin(slave: Slave): boolean {
    if (!slave.connected) return false;
    for (const tracked of this.partitions.values()) {
      if (slave.progress.get(tracked.key)!.ackedOffset < tracked.highWatermark) return false;
    }
    return true;
  }

  private leaveReason(slave: Slave, nowMs: number): string | null {
    for (const tracked of this.partitions.values()) {
      const progress = slave.progress.get(tracked.key)!;
      if (!slave.connected && slave.hadSession && progress.ackedOffset < tracked.logEndOffset) {
        return `its stream closed while ${progress.lagMessages(tracked.logEndOffset)} offsets behind on ${tracked.key}`;
      }
      const lagMs = progress.lagMs(tracked.logEndOffset, nowMs);
      if (lagMs > this.maxSlaveLagMs) return `${lagMs} ms behind on ${tracked.key} (maxSlaveLagMs ${this.maxSlaveLagMs})`;
    }
    return null;
  }

  private evaluateMembership(): void {
    if (this.closed) return;
    const nowMs = this.clock.now();
    const next = new Set(this.inSync.desired);
    const left: { brokerId: number; reason: string }[] = [];
    for (const id of this.inSync.desired) {
      const reason = this.leaveReason(this.slaves.get(id)!, nowMs);
      if (reason) {
        next.delete(id);
        left.push({ brokerId: id, reason });
      }
    }
    const joined: number[] = [];
    for (const slave of this.slaves.values()) {
      if (!next.has(slave.brokerId) && !left.some((l) => l.brokerId === slave.brokerId) && this.canJoin(slave)) {
        next.add(slave.brokerId);
        joined.push(slave.brokerId);
      }
    }
    if (left.length > 0 && !this.keepsAcknowledgedData(next)) {
      // quorum:k: the controller promotes after hearing |set| − k + 1 members, which finds an
      // acknowledged batch only if k members of the new set hold it. Keep the leaving slaves
      // until the others catch up.
      this.logger.debug({ group: this.group, leaving: left }, "in-sync slaves kept: the others do not yet hold the high watermark on enough copies");
      for (const { brokerId } of left) next.add(brokerId);
      left.length = 0;
    }
    if (left.length === 0 && joined.length === 0) return;
    for (const { brokerId, reason } of left) this.logger.warn({ group: this.group, slave: brokerId, reason }, "slave left the in-sync set");
    for (const brokerId of joined) this.logger.info({ group: this.group, slave: brokerId }, "slave joined the in-sync set");
    this.inSync.setDesired(next);
    this.settleAll();
  }

  /** In quorum mode: would `members`, once recorded, still give every partition its high watermark? */
  private keepsAcknowledgedData(members: Set<number>): boolean {
    if (this.mode.kind !== "quorum") return true;
    const ids = [...members];
    for (const tracked of this.partitions.values()) {
      if (this.highWatermarkOf(tracked, ids, tracked.logEndOffset) < tracked.highWatermark) return false;
    }
    return true;
  }

  // ---- high watermark and waits -----------------------------------------------------------

  private computeHighWatermark(tracked: TrackedPartition, logEndOffset: number): number {
    const counted = this.highWatermarkOf(tracked, this.inSync.counted(), logEndOffset);
    if (this.mode.kind !== "quorum" || this.inSync.settled) return counted;
    // quorum:k while another set is being recorded: the controller may promote from any set
    // the registry may hold, hearing |set| − k + 1 of its members, so what is acknowledged
    // now must be on k members of each.
    let highWatermark = Math.min(counted, this.highWatermarkOf(tracked, [...this.inSync.desired], logEndOffset));
    for (const set of this.inSync.unconfirmed) highWatermark = Math.min(highWatermark, this.highWatermarkOf(tracked, [...set], logEndOffset));
    return highWatermark;
  }

  private highWatermarkOf(tracked: TrackedPartition, members: readonly number[], logEndOffset: number): number {
    const acks = members.map((id) => this.slaves.get(id)?.progress.get(tracked.key)?.ackedOffset ?? 0);
    return highWatermarkFor(this.mode, acks, logEndOffset);
  }

  private refresh(tracked: TrackedPartition): void {
    const computed = this.computeHighWatermark(tracked, tracked.logEndOffset);
    if (computed > tracked.highWatermark) {
      tracked.highWatermark = computed;
      for (const listener of this.listeners) {
        try {
          listener(tracked.topic, tracked.partition, computed);
        } catch (err) {
          this.logger.error({ err, partition: tracked.key }, "a high-watermark listener threw");
        }
      }
    }
    this.settleWaits(tracked);
  }

  private settleAll(): void {
    for (const tracked of this.partitions.values()) this.refresh(tracked);
  }

  private settleWaits(tracked: TrackedPartition): void {
    if (tracked.waits.size === 0) return;
    const shortfall = this.waitShortfall();
    if (shortfall) tracked.waits.rejectAll((lastOffset) => this.notEnoughReplicas(`cannot acknowledge ${tracked.key} offset ${lastOffset}`, shortfall));
    else tracked.waits.resolveBelow(tracked.highWatermark);
  }

  private waitShortfall(): { have: number; required: number } | null {
    const sets = this.inSync;
    return waitShortfall(this.mode, this.minInSyncSlaves, { counted: sets.counted().length, recorded: sets.recorded.size, desired: sets.desired.size });
  }

  private lagOf(slave: Slave, nowMs: number): { lagMessages: number; lagBytes: number; lagMs: number } {
    let lagMessages = 0;
    let lagBytes = 0;
    let lagMs = 0;
    for (const tracked of this.partitions.values()) {
      const progress = slave.progress.get(tracked.key)!;
      const behind = progress.lagMessages(tracked.logEndOffset);
      lagMessages += behind;
      lagBytes += Math.round(behind * tracked.bytesPerOffset);
      lagMs = Math.max(lagMs, progress.lagMs(tracked.logEndOffset, nowMs));
    }
    return { lagMessages, lagBytes, lagMs };
  }

  private notEnoughReplicas(what: string, shortfall: { have: number; required: number }): NotEnoughReplicasError {
    const nowMs = this.clock.now();
    const outOfSync = [...this.slaves.values()]
      .filter((slave) => !this.inSync.desired.has(slave.brokerId))
      .sort((a, b) => a.brokerId - b.brokerId)
      .map((slave) => ({ brokerId: slave.brokerId, connected: slave.connected, ...this.lagOf(slave, nowMs) }));
    return notEnoughReplicas(this.group, this.mode, shortfall, outOfSync, what);
  }
}
