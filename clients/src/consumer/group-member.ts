/**
 * One member of a consumer group (pub/sub): joins through the group's coordinator,
 * heartbeats at the interval the coordinator asks for, and reconciles what it reads with
 * the assignment each answer carries (KIP-848's member side).
 *
 *   join:      Heartbeat{memberId "", epoch 0, topics, assignor, session, instance id}
 *   heartbeat: Heartbeat{memberId, epoch, owned} → {epoch, interval, assignment (complete)}
 *   assigned:  FetchOffsets → committed offset, else the reset policy (ListOffsets) → read
 *   revoked:   stop reading → commit its position → heartbeat at once without it (the
 *              coordinator hands it to its next owner only after that)
 *   fenced:    drop every partition without committing, rejoin with epoch 0
 *   leave:     commit → Heartbeat{epoch -1} (-2 for a static member coming back)
 *
 * Heartbeats run on their own timer, one at a time, and never wait for a reconciliation
 * (looking up offsets or committing) to finish: a slow commit must not cost the session.
 * Reconciliations run one at a time too, always towards the latest assignment.
 */
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { toSluiceError, type SluiceError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { GroupHeartbeatResponse } from "../../../proto/gen/sluice/v1/groups.js";
import type { GroupRpc, HeartbeatFields } from "./group-rpc.js";
import { OffsetCommitter } from "./offset-committer.js";
import type { ParsedGroupOptions } from "./options.js";
import { needingReset, ownedField, partitionsOf, pick, planReconcile, startOffsets } from "./reconcile.js";

/** Epochs with a meaning of their own (groups.proto). */
export const JOIN_EPOCH = 0;
export const LEAVE_EPOCH = -1;
export const STATIC_LEAVE_EPOCH = -2;
/** Never heartbeat faster than this, whatever the coordinator says. */
export const MIN_HEARTBEAT_INTERVAL_MS = 20;
/** A heartbeat gets at most this share of the session timeout to be answered. */
const HEARTBEAT_TIMEOUT_SHARE = 0.5;

/** What the member starts, stops and reads the positions of: the subscription. */
export interface MemberPartitions {
  assign(starts: ReadonlyMap<number, number>): void;
  revoke(partitions: Iterable<number>): void;
  positions(kind: "yielded" | "processed"): Map<number, number>;
  /** Everything yielded counts as finished: an explicit commit() includes the message in hand. */
  finishYielded(): void;
}

export interface GroupMemberDeps {
  readonly rpc: GroupRpc;
  readonly partitions: MemberPartitions;
  /** Reset-policy offsets (earliest or latest) of partitions with nothing committed. */
  readonly resetOffsets: (partitions: number[]) => Promise<Map<number, number>>;
  /** The topic's partition count as the routes know it, told to the coordinator. */
  readonly partitionCount: () => Promise<number>;
  /** An error retrying cannot fix: the member stops and the iteration ends with it. */
  readonly onFatal: (err: SluiceError) => void;
  /** Delay before retry number n of a failed call (the client's retry policy). */
  readonly retryDelayMs: (retry: number) => number;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** What the application can see of its membership. */
export interface GroupMembership {
  readonly group: string;
  readonly memberId: string;
  readonly memberEpoch: number;
  /** Partitions this member owns: it reads them, or is committing them before releasing them. */
  readonly assignment: number[];
  /** True until the member has joined and reads exactly what the coordinator assigned it. */
  readonly reconciling: boolean;
}

export class GroupMember {
  memberId = "";
  memberEpoch = JOIN_EPOCH;
  readonly committer: OffsetCommitter;
  /** Partitions read now (started, not yet released). */
  private readonly owned = new Set<number>();
  /**
   * Offsets the application committed itself (`consumer.commit(offsets)`), per partition: the
   * application said it is done up to there, so a commit of processed positions (auto-commit,
   * release, leave) never takes the group back below them.
   */
  private readonly committedByApp = new Map<number, number>();
  /** The latest assignment from the coordinator; undefined until one arrives after a (re)join. */
  private assigned: number[] | undefined;
  private intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private beatAgain = false;
  private failures = 0;
  /** When the coordinator last accepted a heartbeat (or when joining started). */
  private sessionOkAtMs: number;
  private reconciling: Promise<void> | undefined;
  private reconcileAgain = false;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private reconcileFailures = 0;
  /** Bumped when every partition is dropped at once: reconciliations of an older one stop. */
  private generation = 0;
  private commitTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly clock: Clock;

  constructor(
    readonly topic: string,
    readonly options: ParsedGroupOptions,
    private readonly deps: GroupMemberDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.intervalMs = Math.max(MIN_HEARTBEAT_INTERVAL_MS, Math.floor(options.sessionTimeoutMs / 3));
    this.sessionOkAtMs = this.clock.now();
    this.committer = new OffsetCommitter(deps.rpc, topic, () => ({ memberId: this.memberId, memberEpoch: this.memberEpoch }));
  }

  /** The longest a heartbeat may wait for its answer (CoordinatorRpc's timeout). */
  static heartbeatTimeoutMs(options: ParsedGroupOptions): number {
    return Math.floor(options.sessionTimeoutMs * HEARTBEAT_TIMEOUT_SHARE);
  }

  start(): void {
    this.sessionOkAtMs = this.clock.now();
    this.schedule(0);
    if (this.options.autoCommit) {
      this.commitTimer = setInterval(() => this.autoCommit(), this.options.autoCommitIntervalMs);
    }
  }

  membership(): GroupMembership {
    const assignment = [...this.owned].sort((a, b) => a - b);
    const plan = this.assigned === undefined ? undefined : planReconcile(this.owned, this.assigned);
    const reconciling =
      this.memberId === "" || plan === undefined || plan.assign.length + plan.revoke.length > 0 || this.reconciling !== undefined;
    return { group: this.options.group, memberId: this.memberId, memberEpoch: this.memberEpoch, assignment, reconciling };
  }

  /** Commits the positions of yielded messages of the owned partitions (`consumer.commit()`). */
  commitYielded(): Promise<void> {
    // Committed by the application: later commits of processed positions (auto-commit, the
    // commit on leave) must not take it back by the message the loop is still on.
    this.deps.partitions.finishYielded();
    return this.committer.commit(pick(this.deps.partitions.positions("yielded"), this.owned));
  }

  /** Commits the positions after the messages the application finished with. */
  private commitProcessed(): Promise<void> {
    return this.committer.commit(this.processedPositions(this.owned));
  }

  /** Positions after the finished messages of `partitions`, never below what the app committed. */
  private processedPositions(partitions: Iterable<number>): Map<number, number> {
    const positions = pick(this.deps.partitions.positions("processed"), partitions);
    for (const [partition, offset] of positions) {
      const floor = this.committedByApp.get(partition);
      if (floor === undefined) continue;
      // Reached: the floor has done its job (a later seek back must be committed as it is).
      if (floor <= offset) this.committedByApp.delete(partition);
      else positions.set(partition, floor);
    }
    return positions;
  }

  /** The application moved `partition` (seek): its own earlier commit is no floor any more. */
  forgetAppCommit(partition: number): void {
    this.committedByApp.delete(partition);
  }

  /** Commits explicit offsets (`consumer.commit(offsets)`), sent even when unchanged. */
  commitOffsets(offsets: ReadonlyMap<number, number>): Promise<void> {
    for (const [partition, offset] of offsets) this.committedByApp.set(partition, offset);
    return this.committer.commit(offsets, true);
  }

  /** Stops heartbeats, auto-commits and reconciliations; leave() finishes the job. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.generation++;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.reconcileTimer !== undefined) clearTimeout(this.reconcileTimer);
    if (this.commitTimer !== undefined) clearInterval(this.commitTimer);
    this.timer = this.reconcileTimer = this.commitTimer = undefined;
  }

  /**
   * Leaves the group: waits for the heartbeat and reconciliation in progress, commits what
   * the application finished (with auto-commit: a message counts once the loop asked for the
   * next one, so a loop left by an exception never commits past the message that failed),
   * then tells the coordinator. Errors are logged:
   * the coordinator expires a member that could not say goodbye.
   */
  async leave(): Promise<void> {
    this.stop();
    await this.inFlight;
    await this.reconciling?.catch(() => undefined);
    if (this.memberId === "") return;
    if (this.options.autoCommit && this.owned.size > 0) {
      await this.commitProcessed().catch((err: unknown) =>
        this.deps.logger.warn({ group: this.options.group, err: toSluiceError(err).message }, "commit on leave failed"),
      );
    }
    await this.committer.idle();
    const epoch = this.options.groupInstanceId === undefined ? LEAVE_EPOCH : STATIC_LEAVE_EPOCH;
    try {
      await this.deps.rpc.heartbeat(this.request(epoch, 0));
      this.deps.logger.info({ group: this.options.group, memberId: this.memberId, epoch }, "left the consumer group");
    } catch (err) {
      this.deps.logger.warn({ group: this.options.group, err: toSluiceError(err).message }, "leave heartbeat failed");
    }
    this.owned.clear();
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.inFlight !== undefined) {
      if (delayMs === 0) this.beatAgain = true;
      return;
    }
    if (this.timer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => this.fire(), delayMs);
  }

  private fire(): void {
    this.timer = undefined;
    this.inFlight = this.beat().then((nextMs) => {
      this.inFlight = undefined;
      const again = this.beatAgain;
      this.beatAgain = false;
      this.schedule(again ? 0 : nextMs);
    });
  }

  /** One heartbeat; never rejects. Returns the delay before the next one. */
  private async beat(): Promise<number> {
    try {
      const partitionCount = await this.deps.partitionCount();
      const response = await this.deps.rpc.heartbeat(this.request(this.memberEpoch, partitionCount));
      this.failures = 0;
      this.sessionOkAtMs = this.clock.now();
      this.onResponse(response);
      return this.intervalMs;
    } catch (thrown) {
      return this.onError(toSluiceError(thrown));
    }
  }

  private request(memberEpoch: number, partitionCount: number): HeartbeatFields {
    return {
      memberId: memberEpoch === JOIN_EPOCH ? "" : this.memberId,
      memberEpoch,
      instanceId: this.options.groupInstanceId ?? "",
      topics: [this.topic],
      assignor: this.options.assignor,
      sessionTimeoutMs: this.options.sessionTimeoutMs,
      owned: ownedField(this.topic, this.owned),
      partitionCounts: partitionCount > 0 ? { [this.topic]: partitionCount } : {},
    };
  }

  private onResponse(response: GroupHeartbeatResponse): void {
    if (this.memberId !== response.memberId && response.memberId !== "") {
      this.deps.logger.info({ group: this.options.group, memberId: response.memberId, epoch: response.memberEpoch }, "joined the consumer group");
      this.memberId = response.memberId;
    }
    this.memberEpoch = response.memberEpoch;
    if (response.heartbeatIntervalMs > 0) {
      this.intervalMs = Math.min(Math.max(MIN_HEARTBEAT_INTERVAL_MS, response.heartbeatIntervalMs), this.options.sessionTimeoutMs);
    }
    if (this.stopped) return;
    this.assigned = partitionsOf(this.topic, response.assignment);
    this.reconcile();
  }

  private onError(err: SluiceError): number {
    if (this.stopped) return 0;
    if (err.code === "FENCED_MEMBER") {
      this.fence(err.message);
      return 0;
    }
    if (!err.retriable) {
      this.fatal(err);
      return 0;
    }
    const silentMs = this.clock.now() - this.sessionOkAtMs;
    if (this.memberId !== "" && silentMs > this.options.sessionTimeoutMs) {
      // The coordinator has given our partitions away by now: reading on would only
      // duplicate another member's work, and our commits would be refused.
      this.fence(`no heartbeat was answered for ${silentMs} ms, longer than the session timeout`);
    }
    this.deps.logger.info({ group: this.options.group, code: err.code, err: err.message }, "group heartbeat failed; retrying");
    return Math.min(this.deps.retryDelayMs(this.failures++), this.intervalMs);
  }

  /** Drops every partition without committing (another member may own them now) and rejoins. */
  private fence(reason: string): void {
    this.deps.logger.warn({ group: this.options.group, memberId: this.memberId, reason }, "fenced from the consumer group; rejoining");
    this.generation++;
    const dropped = [...this.owned];
    this.owned.clear();
    this.assigned = undefined;
    this.deps.partitions.revoke(dropped);
    this.committer.forget(dropped);
    this.memberId = "";
    this.memberEpoch = JOIN_EPOCH;
    this.sessionOkAtMs = this.clock.now();
  }

  private fatal(err: SluiceError): void {
    this.deps.logger.error({ group: this.options.group, code: err.code, err: err.message }, "consumer group member stopped");
    this.stop();
    this.deps.onFatal(err);
  }

  /** Runs reconciliations one at a time until what is owned matches the latest assignment. */
  private reconcile(): void {
    if (this.stopped) return;
    if (this.reconciling !== undefined) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = this.reconcileLoop().finally(() => (this.reconciling = undefined));
  }

  private async reconcileLoop(): Promise<void> {
    do {
      this.reconcileAgain = false;
      const generation = this.generation;
      const assigned = this.assigned;
      if (assigned === undefined) return;
      const plan = planReconcile(this.owned, assigned);
      try {
        if (plan.revoke.length > 0) await this.release(plan.revoke, generation);
        if (plan.assign.length > 0 && generation === this.generation) await this.take(plan.assign, generation);
        this.reconcileFailures = 0;
      } catch (thrown) {
        const err = toSluiceError(thrown);
        if (!err.retriable) {
          this.fatal(err);
          return;
        }
        this.deps.logger.info({ group: this.options.group, code: err.code, err: err.message }, "reconciling the assignment failed; retrying");
        this.reconcileTimer = setTimeout(() => {
          this.reconcileTimer = undefined;
          this.reconcile();
        }, this.deps.retryDelayMs(this.reconcileFailures++));
        return;
      }
    } while (this.reconcileAgain && !this.stopped);
  }

  /** Stops reading revoked partitions, commits where they got to, and reports them released. */
  private async release(partitions: number[], generation: number): Promise<void> {
    const positions = this.processedPositions(partitions);
    this.deps.partitions.revoke(partitions);
    if (this.options.autoCommit) {
      try {
        await this.committer.commit(positions);
      } catch (err) {
        // Not fatal: the next owner starts from the last commit and re-reads (at-least-once).
        this.deps.logger.warn({ group: this.options.group, partitions, err: toSluiceError(err).message }, "commit of revoked partitions failed");
      }
    }
    if (generation !== this.generation) return;
    for (const partition of partitions) {
      this.owned.delete(partition);
      this.committedByApp.delete(partition);
    }
    this.committer.forget(partitions);
    this.deps.logger.info({ group: this.options.group, topic: this.topic, partitions }, "released partitions");
    this.schedule(0);
  }

  /** Looks up where newly assigned partitions start, then starts reading them. */
  private async take(partitions: number[], generation: number): Promise<void> {
    const committed = await this.committer.fetch(partitions);
    if (generation !== this.generation) return;
    const unset = needingReset(partitions, committed);
    const resets = unset.length > 0 ? await this.deps.resetOffsets(unset) : new Map<number, number>();
    if (generation !== this.generation) return;
    // The assignment may have changed while offsets were looked up: take only what is still ours.
    const still = new Set(this.assigned ?? []);
    const starts = startOffsets(
      partitions.filter((p) => still.has(p)),
      committed,
      resets,
    );
    if (starts.size === 0) return;
    this.deps.partitions.assign(starts);
    for (const partition of starts.keys()) this.owned.add(partition);
    this.deps.logger.info({ group: this.options.group, topic: this.topic, starts: Object.fromEntries(starts) }, "assigned partitions");
    this.schedule(0);
  }

  /** Commits what the application has finished with, on the auto-commit timer. */
  private autoCommit(): void {
    if (this.stopped || this.memberId === "" || this.owned.size === 0) return;
    this.commitProcessed().catch((thrown: unknown) => {
      const err = toSluiceError(thrown);
      this.deps.logger.info({ group: this.options.group, code: err.code, err: err.message }, "auto-commit failed");
      // A refused commit usually means a rebalance moved partitions: learn it now.
      if (err.code === "FENCED_MEMBER") this.schedule(0);
    });
  }
}
