/**
 * One consumer group's membership and assignment, as a clock-driven state machine (no I/O:
 * the coordinator persists what `snapshot()` returns whenever `epoch` changes).
 *
 * Rebalancing follows Kafka's KIP-848 protocol:
 * - The group epoch rises on every change that can move partitions (a member joins, leaves,
 *   expires, changes its subscription, a topic grows). The coordinator then computes a new
 *   *target* assignment with the group's assignor (sticky by default, so few partitions move).
 * - A member's heartbeat reports what it owns; the answer is what it may own now: its target,
 *   minus the partitions another member still reports owning. A partition therefore leaves
 *   its old owner (which stops, commits and reports the release) before its new owner gets
 *   it — never two owners at once — and partitions that do not move are never paused.
 * - A short initial delay after the first member joins an empty group lets members started
 *   together share the first assignment instead of rebalancing once per arrival.
 * - Static members (`instanceId`) that leave with epoch -2 keep their assignment for their
 *   session timeout; a restart with the same instance id takes it back without a rebalance.
 */
import { randomUUID } from "node:crypto";
import { FencedMemberError, InvalidArgumentError } from "../../../common/src/errors.js";
import { ASSIGNOR_NAMES, assignPartitions, type AssignorName, type TopicPartition } from "./assignors.js";

export const DEFAULT_SESSION_TIMEOUT_MS = 10_000;
export const MIN_SESSION_TIMEOUT_MS = 1_000;
export const MAX_SESSION_TIMEOUT_MS = 300_000;
/** Heartbeat cadence for a settled member: a third of the session timeout, at most this. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
/** Heartbeat cadence while a member waits for partitions to be released to it. */
export const RECONCILING_HEARTBEAT_INTERVAL_MS = 100;
/** Kafka's group.initial.rebalance.delay.ms defaults to 3 s; members of one deploy usually start within a fraction of that. */
export const DEFAULT_INITIAL_REBALANCE_DELAY_MS = 300;
export const DEFAULT_ASSIGNOR: AssignorName = "sticky";

export const LEAVE_EPOCH = -1;
export const STATIC_LEAVE_EPOCH = -2;

export interface MemberState {
  memberId: string;
  instanceId: string;
  clientId: string;
  topics: string[];
  sessionTimeoutMs: number;
  /** Where the assignor wants this member's partitions. */
  target: TopicPartition[];
  /** Member epoch: the group epoch of the last assignment handed to it. */
  epoch: number;
  /** What the member last reported consuming (not persisted: a restored member is assumed to own its target). */
  owned: TopicPartition[];
  lastHeartbeatMs: number;
  /** A static member that left with epoch -2 and may come back within its session timeout. */
  away: boolean;
}

/** What is persisted in `%groups` on every epoch change. */
export interface GroupSnapshot {
  kind: "consumer";
  epoch: number;
  assignor: AssignorName;
  members: Array<Pick<MemberState, "memberId" | "instanceId" | "clientId" | "topics" | "sessionTimeoutMs" | "target" | "epoch">>;
}

export interface HeartbeatInput {
  memberId: string;
  memberEpoch: number;
  instanceId: string;
  clientId: string;
  topics: readonly string[];
  assignor: string;
  sessionTimeoutMs: number;
  owned: readonly TopicPartition[];
  /** Partition counts the member knows (from routes). */
  partitionCounts: ReadonlyMap<string, number>;
}

export interface HeartbeatOutput {
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  assignment: TopicPartition[];
}

export type GroupState = "empty" | "assigning" | "reconciling" | "stable";

const key = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;

export class GroupMembership {
  private readonly members = new Map<string, MemberState>();
  private groupEpoch = 0;
  private assignor: AssignorName = DEFAULT_ASSIGNOR;
  /** Epoch the target assignment was computed for; behind `groupEpoch` while it is pending. */
  private targetEpoch = 0;
  /** While the first members gather, the first assignment waits until this time. */
  private assignNotBeforeMs = 0;
  private readonly partitionCounts = new Map<string, number>();
  /** Bumped whenever what `snapshot()` returns changes, so the coordinator knows to persist. */
  private revisionCounter = 0;

  constructor(
    readonly group: string,
    private readonly initialRebalanceDelayMs = DEFAULT_INITIAL_REBALANCE_DELAY_MS,
  ) {}

  static restore(group: string, snapshot: GroupSnapshot, nowMs: number, initialRebalanceDelayMs?: number): GroupMembership {
    const membership = new GroupMembership(group, initialRebalanceDelayMs);
    membership.groupEpoch = snapshot.epoch;
    membership.targetEpoch = snapshot.epoch;
    membership.assignor = snapshot.assignor;
    for (const m of snapshot.members) {
      // A restored member gets a full session to find the new coordinator; until it reports,
      // it is assumed to own its whole target, so nobody else is handed those partitions.
      membership.members.set(m.memberId, { ...m, owned: [...m.target], lastHeartbeatMs: nowMs, away: false });
    }
    return membership;
  }

  get revision(): number {
    return this.revisionCounter;
  }

  get epoch(): number {
    return this.groupEpoch;
  }

  get size(): number {
    return this.members.size;
  }

  get assignorName(): AssignorName {
    return this.assignor;
  }

  state(): GroupState {
    if (this.members.size === 0) return "empty";
    if (this.targetEpoch < this.groupEpoch) return "assigning";
    for (const m of this.members.values()) {
      if (!sameSet(m.owned, m.target)) return "reconciling";
    }
    return "stable";
  }

  memberList(): readonly MemberState[] {
    return [...this.members.values()];
  }

  snapshot(): GroupSnapshot {
    return {
      kind: "consumer",
      epoch: this.groupEpoch,
      assignor: this.assignor,
      members: [...this.members.values()].map(({ memberId, instanceId, clientId, topics, sessionTimeoutMs, target, epoch }) => ({
        memberId,
        instanceId,
        clientId,
        topics,
        sessionTimeoutMs,
        target,
        epoch,
      })),
    };
  }

  heartbeat(input: HeartbeatInput, nowMs: number): HeartbeatOutput {
    for (const [topic, count] of input.partitionCounts) this.notePartitionCount(topic, count);
    let member: MemberState;
    if (input.memberEpoch === 0) {
      member = this.join(input, nowMs);
    } else {
      member = this.known(input.memberId);
      if (input.memberEpoch === LEAVE_EPOCH || (input.memberEpoch === STATIC_LEAVE_EPOCH && member.instanceId === "")) {
        this.remove(member.memberId);
        return { memberId: member.memberId, memberEpoch: LEAVE_EPOCH, heartbeatIntervalMs: 0, assignment: [] };
      }
      if (input.memberEpoch === STATIC_LEAVE_EPOCH) {
        // Keeps its partitions (nobody else consumes them) until it returns or its session ends.
        member.away = true;
        member.lastHeartbeatMs = nowMs;
        return { memberId: member.memberId, memberEpoch: STATIC_LEAVE_EPOCH, heartbeatIntervalMs: 0, assignment: [] };
      }
      if (input.memberEpoch > member.epoch) {
        throw new FencedMemberError(
          `member ${member.memberId} of group "${this.group}" sent epoch ${input.memberEpoch}, ahead of its epoch ${member.epoch}; rejoin`,
        );
      }
      member.lastHeartbeatMs = nowMs;
      member.owned = [...input.owned];
      member.away = false;
      if (input.topics.length > 0 && !sameStrings(input.topics, member.topics)) {
        member.topics = [...new Set(input.topics)].sort();
        this.bump();
      }
    }
    this.maybeAssign(nowMs);
    return this.answer(member, nowMs);
  }

  /** Removes members whose session ended; returns their ids. */
  expire(nowMs: number): string[] {
    const expired: string[] = [];
    for (const m of this.members.values()) {
      if (nowMs - m.lastHeartbeatMs > m.sessionTimeoutMs) expired.push(m.memberId);
    }
    for (const id of expired) this.remove(id);
    if (expired.length > 0 || this.targetEpoch < this.groupEpoch) this.maybeAssign(nowMs);
    return expired;
  }

  /** Earliest time `expire()` or a pending assignment has something to do. */
  nextDueMs(): number | undefined {
    let due: number | undefined;
    for (const m of this.members.values()) due = Math.min(due ?? Infinity, m.lastHeartbeatMs + m.sessionTimeoutMs + 1);
    if (this.targetEpoch < this.groupEpoch) due = Math.min(due ?? Infinity, this.assignNotBeforeMs);
    return due;
  }

  /**
   * May `memberId` commit an offset for this partition? It must be a live member that is
   * assigned the partition or still reports owning it (it commits while releasing it).
   * A commit from outside the group (memberId "") is allowed for partitions nobody owns.
   */
  checkCommit(memberId: string, memberEpoch: number, tp: TopicPartition): void {
    const k = key(tp);
    if (memberId === "") {
      for (const m of this.members.values()) {
        if (m.owned.some((o) => key(o) === k) || m.target.some((o) => key(o) === k)) {
          throw new FencedMemberError(
            `${tp.topic}/${tp.partition} is owned by member ${m.memberId} of group "${this.group}"; stop the group's consumers before committing from outside it`,
          );
        }
      }
      return;
    }
    const member = this.known(memberId);
    if (memberEpoch > member.epoch) {
      throw new FencedMemberError(`member ${memberId} of group "${this.group}" committed with epoch ${memberEpoch}, ahead of its epoch ${member.epoch}`);
    }
    const owns = member.owned.some((o) => key(o) === k) || this.assignmentOf(member).some((o) => key(o) === k);
    if (!owns) {
      throw new FencedMemberError(
        `member ${memberId} of group "${this.group}" does not own ${tp.topic}/${tp.partition} (it moved in a rebalance); its offset was not committed`,
      );
    }
  }

  notePartitionCount(topic: string, count: number): void {
    if (!Number.isInteger(count) || count <= 0) return;
    const before = this.partitionCounts.get(topic) ?? 0;
    if (count <= before) return;
    this.partitionCounts.set(topic, count);
    // A topic that grew changes the target; the first report of a count does not by itself.
    const subscribed = [...this.members.values()].some((m) => m.topics.includes(topic));
    if (before > 0 && subscribed) this.bump();
  }

  private join(input: HeartbeatInput, nowMs: number): MemberState {
    if (input.topics.length === 0) throw new InvalidArgumentError(`joining group "${this.group}" needs at least one topic`);
    const assignor = input.assignor === "" ? DEFAULT_ASSIGNOR : input.assignor;
    if (!(ASSIGNOR_NAMES as readonly string[]).includes(assignor)) {
      throw new InvalidArgumentError(`unknown assignor "${input.assignor}": use one of ${ASSIGNOR_NAMES.join(", ")}`);
    }
    const sessionTimeoutMs = input.sessionTimeoutMs === 0 ? DEFAULT_SESSION_TIMEOUT_MS : input.sessionTimeoutMs;
    if (sessionTimeoutMs < MIN_SESSION_TIMEOUT_MS || sessionTimeoutMs > MAX_SESSION_TIMEOUT_MS) {
      throw new InvalidArgumentError(`sessionTimeoutMs must be from ${MIN_SESSION_TIMEOUT_MS} to ${MAX_SESSION_TIMEOUT_MS}, got ${sessionTimeoutMs}`);
    }
    const topics = [...new Set(input.topics)].sort();
    if (input.instanceId !== "") {
      const previous = [...this.members.values()].find((m) => m.instanceId === input.instanceId);
      if (previous !== undefined && sameStrings(previous.topics, topics)) {
        // Static membership: the new incarnation takes the old one's place and partitions
        // without a rebalance; the old member id is fenced from now on.
        this.members.delete(previous.memberId);
        const member: MemberState = {
          ...previous,
          memberId: randomUUID(),
          clientId: input.clientId,
          sessionTimeoutMs,
          owned: [],
          lastHeartbeatMs: nowMs,
          away: false,
        };
        this.members.set(member.memberId, member);
        this.revisionCounter++;
        return member;
      }
      if (previous !== undefined) this.remove(previous.memberId);
    }
    if (this.members.size === 0) {
      this.assignor = assignor as AssignorName;
      this.assignNotBeforeMs = nowMs + this.initialRebalanceDelayMs;
    }
    const member: MemberState = {
      memberId: randomUUID(),
      instanceId: input.instanceId,
      clientId: input.clientId,
      topics,
      sessionTimeoutMs,
      target: [],
      epoch: 0,
      owned: [],
      lastHeartbeatMs: nowMs,
      away: false,
    };
    this.members.set(member.memberId, member);
    this.bump();
    // From here on the member heartbeats with a non-zero epoch, even while the first
    // assignment is still delayed.
    member.epoch = this.groupEpoch;
    return member;
  }

  private known(memberId: string): MemberState {
    const member = this.members.get(memberId);
    if (member === undefined) {
      throw new FencedMemberError(
        `member ${memberId || "(none)"} is not in group "${this.group}" (its session expired or it was replaced); rejoin the group`,
      );
    }
    return member;
  }

  private remove(memberId: string): void {
    if (!this.members.delete(memberId)) return;
    this.bump();
  }

  private bump(): void {
    this.revisionCounter++;
    this.groupEpoch++;
    if (this.members.size === 0) this.targetEpoch = this.groupEpoch;
  }

  private maybeAssign(nowMs: number): void {
    if (this.targetEpoch >= this.groupEpoch || nowMs < this.assignNotBeforeMs) return;
    const targets = assignPartitions(this.assignor, {
      members: [...this.members.values()].map((m) => ({ memberId: m.memberId, topics: m.topics, current: m.target })),
      partitionCounts: this.partitionCounts,
    });
    for (const m of this.members.values()) {
      const target = targets.get(m.memberId) ?? [];
      if (!sameSet(target, m.target)) m.target = target;
    }
    this.targetEpoch = this.groupEpoch;
    this.revisionCounter++;
  }

  /** The member's target minus what other members still report owning. */
  private assignmentOf(member: MemberState): TopicPartition[] {
    const ownedElsewhere = new Set<string>();
    for (const m of this.members.values()) {
      if (m !== member) for (const tp of m.owned) ownedElsewhere.add(key(tp));
    }
    return member.target.filter((tp) => !ownedElsewhere.has(key(tp)));
  }

  private answer(member: MemberState, nowMs: number): HeartbeatOutput {
    const assignment = this.assignmentOf(member);
    const settled = this.targetEpoch >= this.groupEpoch && assignment.length === member.target.length && sameSet(member.owned, assignment);
    if (this.targetEpoch >= this.groupEpoch) member.epoch = this.groupEpoch;
    const pendingAssignMs = this.targetEpoch < this.groupEpoch ? Math.max(1, this.assignNotBeforeMs - nowMs) : Infinity;
    const steady = Math.min(DEFAULT_HEARTBEAT_INTERVAL_MS, Math.floor(member.sessionTimeoutMs / 3));
    const heartbeatIntervalMs = settled ? steady : Math.min(RECONCILING_HEARTBEAT_INTERVAL_MS, pendingAssignMs);
    return { memberId: member.memberId, memberEpoch: member.epoch, heartbeatIntervalMs, assignment };
  }
}

function sameSet(a: readonly TopicPartition[], b: readonly TopicPartition[]): boolean {
  if (a.length !== b.length) return false;
  const keys = new Set(a.map(key));
  return b.every((tp) => keys.has(key(tp)));
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  const x = [...new Set(a)].sort();
  const y = [...new Set(b)].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}
