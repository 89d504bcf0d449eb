/**
 * The group coordinator of this broker: it serves the groups whose state lives in the
 * `%groups` partitions this broker masters (partition murmur2(group) mod P).
 *
 * A partition's state is loaded on first use (LMDB view caught up with the log), so a broker
 * that becomes master of a `%groups` partition — at start, on creation, after a failover —
 * picks up membership, offsets and queue windows from the log it already holds. Every change
 * is appended to that partition before it is answered, so whatever a client was told
 * survives a crash of this process and, once #5 replicates the log, of this machine.
 */
import type { Clock } from "../../../common/src/clock.js";
import { NotCoordinatorError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { GROUP_STATE_TOPIC, groupStatePartition } from "../../../common/src/protocol.js";
import type { TopicManager } from "../topics.js";
import type { AppendResult, PartitionLog } from "../storage/partition-log.js";
import { GroupMembership, type GroupSnapshot, type HeartbeatInput, type HeartbeatOutput } from "./membership.js";
import { groupKey } from "./state-keys.js";
import type { GroupStateStore, StateWrite } from "./state-store.js";

/** How often sessions are checked for expiry and delayed assignments are made. */
export const GROUP_TICK_MS = 100;
/** How often a `%groups` partition is considered for compaction. */
export const COMPACTION_CHECK_MS = 60_000;

export interface CoordinatorOptions {
  topics: TopicManager;
  store: GroupStateStore;
  clock: Clock;
  logger: Logger;
  /** Only a master coordinates. */
  role: () => "master" | "slave";
  initialRebalanceDelayMs: number;
  /** The master's write path (fence, epoch, replication wait) for logs other than `%groups`. @defaultValue `log.append(batch)` */
  append?: (log: PartitionLog, batch: Buffer) => Promise<AppendResult>;
}

export class GroupCoordinator {
  private readonly loading = new Map<number, Promise<void>>();
  private readonly loaded = new Set<number>();
  private readonly groups = new Map<string, GroupMembership>();
  /** Revision of each group last written to the log. */
  private readonly persisted = new Map<string, number>();
  /** Per-group chain so a group's snapshots reach the log in order. */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly timer: NodeJS.Timeout;
  private readonly compactionTimer: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: CoordinatorOptions) {
    this.timer = setInterval(() => this.tick(), GROUP_TICK_MS);
    this.timer.unref();
    this.compactionTimer = setInterval(() => void this.compactAll(), COMPACTION_CHECK_MS);
    this.compactionTimer.unref();
  }

  /** Appends to a log this master owns (dead letters) the way every master write goes. */
  appendToLog(log: PartitionLog, batch: Buffer): Promise<AppendResult> {
    return this.options.append ? this.options.append(log, batch) : log.append(batch);
  }

  /**
   * This broker stopped being master: forget every loaded group so nothing is served from
   * state a new master may have moved past. Reloaded from the log if mastership returns.
   */
  unloadAll(): void {
    for (const partition of this.loaded) this.options.store.unload(partition);
    this.loaded.clear();
    this.groups.clear();
    this.persisted.clear();
  }

  get store(): GroupStateStore {
    return this.options.store;
  }

  now(): number {
    return this.options.clock.now();
  }

  /**
   * The `%groups` partition holding `group`, once its state is loaded; NOT_COORDINATOR when
   * this broker does not master it (the client asks the name server again).
   */
  async partitionOf(group: string): Promise<number> {
    const record = this.options.topics.topic(GROUP_STATE_TOPIC);
    if (record === undefined) throw this.notCoordinator(group, "it hosts no group state");
    const partition = groupStatePartition(group, record.partitionCount);
    const log = this.options.topics.logs.get(GROUP_STATE_TOPIC, partition);
    if (log === undefined) throw this.notCoordinator(group, `it does not host ${GROUP_STATE_TOPIC}/${partition}`);
    if (this.options.role() !== "master") throw this.notCoordinator(group, "it is a slave");
    await this.ensureLoaded(partition);
    return partition;
  }

  /** Loads every local `%groups` partition (for listing groups). Returns their numbers. */
  async loadAll(): Promise<number[]> {
    if (this.options.role() !== "master") return [];
    const partitions = this.options.topics.logs.all().filter((l) => l.topic === GROUP_STATE_TOPIC).map((l) => l.partition);
    await Promise.all(partitions.map((p) => this.ensureLoaded(p)));
    return partitions;
  }

  /** The group's membership if it has one (loaded partitions only). */
  membership(group: string): GroupMembership | undefined {
    return this.groups.get(group);
  }

  /** Group names with a membership record on loaded partitions. */
  groupNames(): string[] {
    return [...this.groups.keys()];
  }

  async heartbeat(group: string, input: HeartbeatInput): Promise<HeartbeatOutput> {
    const partition = await this.partitionOf(group);
    let membership = this.groups.get(group);
    if (membership === undefined) {
      membership = new GroupMembership(group, this.options.initialRebalanceDelayMs);
      this.groups.set(group, membership);
    }
    const output = membership.heartbeat(input, this.now());
    await this.persist(partition, group, membership);
    return output;
  }

  /** Appends state writes for a group to its partition (durable before this resolves). */
  async write(group: string, writes: readonly StateWrite[]): Promise<void> {
    const partition = await this.partitionOf(group);
    await this.options.store.write(partition, writes);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.compactionTimer);
    await Promise.allSettled([...this.writes.values()]);
  }

  private async ensureLoaded(partition: number): Promise<void> {
    if (this.loaded.has(partition)) return;
    let loading = this.loading.get(partition);
    if (loading === undefined) {
      loading = this.load(partition).finally(() => this.loading.delete(partition));
      this.loading.set(partition, loading);
    }
    await loading;
  }

  private async load(partition: number): Promise<void> {
    const log = this.options.topics.logs.get(GROUP_STATE_TOPIC, partition);
    if (log === undefined) throw new NotCoordinatorError(`${GROUP_STATE_TOPIC}/${partition} is not hosted here`);
    const started = performance.now();
    const { replayedRecords, fromOffset } = await this.options.store.load(partition, log);
    const record = this.options.topics.topic(GROUP_STATE_TOPIC)!;
    let restored = 0;
    const nowMs = this.now();
    for (const [key, snapshot] of this.options.store.scan<GroupSnapshot>("g\u0000")) {
      const group = key.slice(2);
      if (groupStatePartition(group, record.partitionCount) !== partition || snapshot.kind !== "consumer") continue;
      const membership = GroupMembership.restore(group, snapshot, nowMs, this.options.initialRebalanceDelayMs);
      this.groups.set(group, membership);
      this.persisted.set(group, membership.revision);
      restored++;
    }
    this.loaded.add(partition);
    this.options.logger.info(
      { partition, replayedRecords, fromOffset, groups: restored, ms: Math.round(performance.now() - started) },
      "group state loaded",
    );
  }

  /** Writes the group's membership to the log if it changed since the last write. */
  private persist(partition: number, group: string, membership: GroupMembership): Promise<void> {
    const previous = this.writes.get(group) ?? Promise.resolve();
    const next = previous.then(async () => {
      const revision = membership.revision;
      if (this.persisted.get(group) === revision) return;
      await this.options.store.write(partition, [{ key: groupKey(group), value: membership.snapshot() }]);
      this.persisted.set(group, Math.max(this.persisted.get(group) ?? 0, revision));
    });
    const chained = next.catch(() => undefined);
    this.writes.set(group, chained);
    void chained.then(() => {
      if (this.writes.get(group) === chained) this.writes.delete(group);
    });
    return next;
  }

  private tick(): void {
    if (this.closed) return;
    const nowMs = this.now();
    const record = this.options.topics.topic(GROUP_STATE_TOPIC);
    if (record === undefined) return;
    for (const [group, membership] of this.groups) {
      const due = membership.nextDueMs();
      if (due === undefined || due > nowMs) continue;
      const expired = membership.expire(nowMs);
      if (expired.length > 0) this.options.logger.info({ group, expired }, "group members expired (session timeout)");
      const partition = groupStatePartition(group, record.partitionCount);
      this.persist(partition, group, membership).catch((err: unknown) => {
        this.options.logger.warn({ group, err }, "could not persist group membership");
      });
    }
  }

  private async compactAll(): Promise<void> {
    for (const partition of this.loaded) {
      try {
        const result = await this.options.store.compact(partition);
        if (result.compacted) this.options.logger.info({ partition, bytesFreed: result.bytesFreed }, "group state log compacted");
      } catch (err) {
        this.options.logger.warn({ partition, err }, "group state compaction failed");
      }
    }
  }

  private notCoordinator(group: string, why: string): NotCoordinatorError {
    return new NotCoordinatorError(`this broker does not coordinate group "${group}" (${why}); ask the name server for its coordinator again`);
  }
}
