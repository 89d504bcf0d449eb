/**
 * The member side of consumer groups, without servers: the option checks, the pure
 * reconcile decisions, the positions a consumer commits, and the member's loop against a
 * fake coordinator (join, assignment, revoke → commit → immediate heartbeat, fencing,
 * leaving, auto-commit, retries).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeBatch, stampBatch } from "../../common/src/batch/index.js";
import { FakeClock } from "../../common/src/clock.js";
import { FencedMemberError, InvalidArgumentError, NotCoordinatorError, SluiceError, type SluiceError as SluiceErrorType } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { CommitOffsetsResponse, FetchOffsetsResponse, GroupHeartbeatResponse, TopicPartitions } from "../../proto/gen/sluice/v1/groups.js";
import { GroupMember, LEAVE_EPOCH, STATIC_LEAVE_EPOCH, type MemberPartitions } from "../../clients/src/consumer/group-member.js";
import type { CommitFields, GroupRpc, HeartbeatFields } from "../../clients/src/consumer/group-rpc.js";
import { MessageQueue, PartitionPosition } from "../../clients/src/consumer/message-queue.js";
import { parseConsumerOptions, type ParsedGroupOptions } from "../../clients/src/consumer/options.js";
import { needingReset, offsetsToCommit, ownedField, partitionsOf, planReconcile, startOffsets } from "../../clients/src/consumer/reconcile.js";

const invalid = (pattern: RegExp) => (e: unknown) => e instanceof InvalidArgumentError && pattern.test(e.message);

describe("consumer group options", () => {
  it("without a group: the ephemeral reader's options, unchanged", () => {
    assert.deepEqual(parseConsumerOptions(), { fromBeginning: false, maxBytesInFlight: 8 * 1024 * 1024 });
  });

  it("with a group: named defaults", () => {
    assert.deepEqual(parseConsumerOptions({ group: "billing" }).group, {
      group: "billing",
      groupInstanceId: undefined,
      assignor: "sticky",
      sessionTimeoutMs: 10_000,
      autoCommit: true,
      autoCommitIntervalMs: 1_000,
    });
  });

  it("refuses bad values and group settings without a group", () => {
    assert.throws(() => parseConsumerOptions({ group: "a b" }), invalid(/"a b" is not a valid group name/));
    assert.throws(() => parseConsumerOptions({ group: "" }), invalid(/an empty name is not a valid group name/));
    assert.throws(() => parseConsumerOptions({ group: "g", assignor: "fair" as never }), invalid(/assignor must be one of "sticky", "range", "roundrobin"/));
    assert.throws(() => parseConsumerOptions({ group: "g", sessionTimeoutMs: 10 }), invalid(/sessionTimeoutMs must be an integer between 1000 and 300000/));
    assert.throws(() => parseConsumerOptions({ group: "g", autoCommit: "yes" as never }), invalid(/autoCommit must be true or false/));
    assert.throws(() => parseConsumerOptions({ group: "g", groupInstanceId: "" }), invalid(/groupInstanceId must be a non-empty string/));
    assert.throws(() => parseConsumerOptions({ autoCommit: false }), invalid(/autoCommit only apply to a group member/));
    assert.throws(() => parseConsumerOptions({ group: "g", groupId: "x" } as never), invalid(/unknown consumer option "groupId"/));
  });
});

describe("reconcile decisions", () => {
  it("an assignment is the complete set: what is missing is revoked, what is new is assigned", () => {
    assert.deepEqual(planReconcile([0, 1, 2], [2, 3, 0]), { assign: [3], revoke: [1] });
    assert.deepEqual(planReconcile([], [1, 0]), { assign: [0, 1], revoke: [] });
    assert.deepEqual(planReconcile([4], []), { assign: [], revoke: [4] });
    assert.deepEqual(planReconcile([0, 1], [1, 0]), { assign: [], revoke: [] });
  });

  it("reads only its topic from an assignment, and reports what it owns", () => {
    const assignment: TopicPartitions[] = [
      { topic: "orders", partitions: [3, 1] },
      { topic: "other", partitions: [0] },
      { topic: "orders", partitions: [1, 5] },
    ];
    assert.deepEqual(partitionsOf("orders", assignment), [1, 3, 5]);
    assert.deepEqual(ownedField("orders", new Set([2, 0])), [{ topic: "orders", partitions: [0, 2] }]);
    assert.deepEqual(ownedField("orders", []), []);
  });

  it("starts at the committed offset, else at the reset offset", () => {
    const committed = new Map([[0, 42], [1, -1], [2, 0]]);
    assert.deepEqual(needingReset([0, 1, 2, 3], committed), [1, 3]);
    assert.deepEqual(startOffsets([0, 1, 2, 3], committed, new Map([[1, 7], [3, 9]])), new Map([[0, 42], [1, 7], [2, 0], [3, 9]]));
    assert.deepEqual(startOffsets([1], committed, new Map()), new Map(), "no reset offset yet: not started");
  });

  it("commits only positions that moved, including a seek back", () => {
    const committed = new Map([[0, 10], [1, 20]]);
    assert.deepEqual(offsetsToCommit(new Map([[0, 10], [1, 15], [2, 3], [3, -1]]), committed), new Map([[1, 15], [2, 3]]));
  });
});

describe("consumer positions", () => {
  it("a yielded message counts as handled only once the next one is asked for", async () => {
    const batch = encodeBatch([{ value: "a" }, { value: "b" }, { value: "c" }]);
    stampBatch(batch, 10, 0);
    const partition = new PartitionPosition(0);
    partition.moveTo(10);
    const queue = new MessageQueue("t", () => undefined);
    queue.push({ partition, records: batch, release: () => undefined });
    assert.equal((await queue.next()).value?.offset, 10);
    assert.deepEqual([partition.position, partition.processed], [11, 10], "offset 10 is in the application's hands");
    assert.equal((await queue.next()).value?.offset, 11);
    assert.deepEqual([partition.position, partition.processed], [12, 11]);
    partition.moveTo(5);
    assert.deepEqual([partition.position, partition.processed], [5, 5], "a seek moves both");
  });
});

// ---- the member loop against a fake coordinator ----

type Call =
  | { kind: "heartbeat"; request: HeartbeatFields; at: number }
  | { kind: "commit"; request: CommitFields }
  | { kind: "fetch"; partitions: number[] };

/** Answers heartbeats with `decide`; remembers every call in order. */
class FakeCoordinator implements GroupRpc {
  readonly calls: Call[] = [];
  committed = new Map<number, number>();
  commitError: SluiceErrorType | undefined;
  private epoch = 0;

  constructor(private decide: (request: HeartbeatFields, count: number) => { assignment: number[]; intervalMs?: number } | Error) {}

  heartbeats(): HeartbeatFields[] {
    return this.calls.flatMap((c) => (c.kind === "heartbeat" ? [c.request] : []));
  }

  commits(): CommitFields[] {
    return this.calls.flatMap((c) => (c.kind === "commit" ? [c.request] : []));
  }

  async heartbeat(request: HeartbeatFields): Promise<GroupHeartbeatResponse> {
    this.calls.push({ kind: "heartbeat", request: structuredClone(request), at: Date.now() });
    const decision = this.decide(request, this.heartbeats().length);
    if (decision instanceof Error) throw decision;
    if (request.memberEpoch < 0) return { memberId: request.memberId, memberEpoch: request.memberEpoch, heartbeatIntervalMs: 0, assignment: [] };
    this.epoch++;
    return {
      memberId: request.memberId === "" ? `member-${this.epoch}` : request.memberId,
      memberEpoch: this.epoch,
      heartbeatIntervalMs: decision.intervalMs ?? 20,
      assignment: decision.assignment.length === 0 ? [] : [{ topic: "t", partitions: decision.assignment }],
    };
  }

  async commitOffsets(request: CommitFields): Promise<CommitOffsetsResponse> {
    this.calls.push({ kind: "commit", request: structuredClone(request) });
    const error = this.commitError;
    if (error === undefined) for (const o of request.offsets) this.committed.set(o.partition, o.offset);
    return {
      results: request.offsets.map((o) => ({
        topic: o.topic,
        partition: o.partition,
        error: error === undefined ? undefined : { code: error.code, message: error.message, retriable: error.retriable, retryAfterMs: 0 },
      })),
    };
  }

  async fetchOffsets(partitions: TopicPartitions[]): Promise<FetchOffsetsResponse> {
    const list = partitions.flatMap((t) => t.partitions);
    this.calls.push({ kind: "fetch", partitions: list });
    return {
      offsets: list.map((partition) => ({ topic: "t", partition, offset: this.committed.get(partition) ?? -1, metadata: "", commitTimeMs: 0 })),
    };
  }
}

/** Stands in for the subscription: what is read, and positions set by the test. */
class FakePartitions implements MemberPartitions {
  readonly reading = new Map<number, number>();
  readonly yielded = new Map<number, number>();
  readonly processed = new Map<number, number>();
  readonly log: string[] = [];

  assign(starts: ReadonlyMap<number, number>): void {
    for (const [p, offset] of starts) {
      this.reading.set(p, offset);
      this.yielded.set(p, offset);
      this.processed.set(p, offset);
    }
    this.log.push(`assign ${[...starts].map(([p, o]) => `${p}@${o}`).join(",")}`);
  }

  revoke(partitions: Iterable<number>): void {
    const list = [...partitions];
    for (const p of list) {
      this.reading.delete(p);
      this.yielded.delete(p);
      this.processed.delete(p);
    }
    this.log.push(`revoke ${list.join(",")}`);
  }

  positions(kind: "yielded" | "processed"): Map<number, number> {
    return new Map(kind === "yielded" ? this.yielded : this.processed);
  }

  finishYielded(): void {
    for (const [p, offset] of this.yielded) this.processed.set(p, offset);
  }

  /** The application took messages up to `yielded` and finished those below `processed`. */
  advance(partition: number, yielded: number, processed: number): void {
    this.yielded.set(partition, yielded);
    this.processed.set(partition, processed);
  }
}

function groupOptions(overrides: Partial<ParsedGroupOptions> = {}): ParsedGroupOptions {
  return { group: "g", groupInstanceId: undefined, assignor: "sticky", sessionTimeoutMs: 3_000, autoCommit: true, autoCommitIntervalMs: 60_000, ...overrides };
}

function startMember(
  coordinator: FakeCoordinator,
  options: Partial<ParsedGroupOptions> = {},
  extra: { resets?: Map<number, number>; clock?: FakeClock; fatal?: SluiceErrorType[]; resetCalls?: number[][] } = {},
): { member: GroupMember; partitions: FakePartitions } {
  const partitions = new FakePartitions();
  const member = new GroupMember("t", groupOptions(options), {
    rpc: coordinator,
    partitions,
    resetOffsets: async (list) => {
      extra.resetCalls?.push(list);
      return new Map(list.map((p) => [p, extra.resets?.get(p) ?? 1000 + p]));
    },
    partitionCount: async () => 6,
    onFatal: (err) => extra.fatal?.push(err),
    retryDelayMs: () => 10,
    logger: silentLogger,
    ...(extra.clock ? { clock: extra.clock } : {}),
  });
  member.start();
  return { member, partitions };
}

async function until(what: string, condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("group member loop", () => {
  it("joins with epoch 0 and its subscription, then starts assigned partitions at the committed offset or the reset policy", async () => {
    const coordinator = new FakeCoordinator(() => ({ assignment: [0, 1] }));
    coordinator.committed.set(0, 42);
    const resetCalls: number[][] = [];
    const { member, partitions } = startMember(coordinator, { groupInstanceId: "host-1" }, { resets: new Map([[1, 7]]), resetCalls });
    try {
      await until("both partitions read", () => partitions.reading.size === 2);
      assert.deepEqual(partitions.log, ["assign 0@42,1@7"]);
      assert.deepEqual(resetCalls, [[1]], "only the partition with nothing committed needs the reset policy");
      const [join] = coordinator.heartbeats();
      assert.deepEqual(join, {
        memberId: "",
        memberEpoch: 0,
        instanceId: "host-1",
        topics: ["t"],
        assignor: "sticky",
        sessionTimeoutMs: 3_000,
        owned: [],
        partitionCounts: { t: 6 },
      });
      await until("owned reported", () => coordinator.heartbeats().some((h) => h.owned.length > 0));
      const reported = coordinator.heartbeats().find((h) => h.owned.length > 0)!;
      assert.equal(reported.memberId, "member-1");
      assert.ok(reported.memberEpoch > 0);
      assert.deepEqual(reported.owned, [{ topic: "t", partitions: [0, 1] }]);
      assert.deepEqual(member.membership(), { group: "g", memberId: "member-1", memberEpoch: member.memberEpoch, assignment: [0, 1], reconciling: false });
    } finally {
      await member.leave();
    }
  });

  it("revoked partitions stop, their processed positions are committed, then a heartbeat at once reports them released", async () => {
    let assignment = [0, 1, 2];
    // Slow cadence: the release heartbeat must not wait for it.
    const coordinator = new FakeCoordinator(() => ({ assignment, intervalMs: 5_000 }));
    const { member, partitions } = startMember(coordinator);
    try {
      await until("three partitions read", () => partitions.reading.size === 3);
      partitions.advance(1, 30, 25); // message 25 is still being handled
      partitions.advance(2, 40, 40);
      assignment = [0];
      // The revoke comes with the next heartbeat answer: at once, or after the 5 s cadence when
      // the member's last heartbeat was answered just before the change (a busy machine).
      // The timing check below measures from the heartbeat that carried the revoke.
      await until("released heartbeat", () => coordinator.heartbeats().some((h) => h.owned.length === 1 && h.owned[0]!.partitions.length === 1), 8_000);
      assert.deepEqual(partitions.log.slice(-1), ["revoke 1,2"]);
      const commits = coordinator.commits();
      assert.equal(commits.length, 1);
      assert.deepEqual(
        commits[0]!.offsets.map((o) => [o.partition, o.offset]),
        [[1, 25], [2, 40]],
        "never past what the application finished",
      );
      assert.equal(commits[0]!.memberId, "member-1");
      // Order: the commit comes before the heartbeat that no longer owns 1 and 2.
      const commitIndex = coordinator.calls.findIndex((c) => c.kind === "commit");
      const releaseIndex = coordinator.calls.findIndex((c) => c.kind === "heartbeat" && c.request.owned[0]?.partitions.length === 1);
      assert.ok(commitIndex < releaseIndex);
      const release = coordinator.calls[releaseIndex] as { at: number };
      const previous = coordinator.calls.slice(0, releaseIndex).filter((c) => c.kind === "heartbeat").at(-1) as { at: number };
      assert.ok(release.at - previous.at < 1_000, `released ${release.at - previous.at} ms after the assignment, not at the 5 s cadence`);
    } finally {
      await member.leave();
    }
  });

  it("FENCED_MEMBER: drops every partition without committing and rejoins with epoch 0", async () => {
    let fence = false;
    const coordinator = new FakeCoordinator((request) => {
      if (fence && request.memberEpoch > 0) {
        fence = false;
        return new FencedMemberError("member is not in group");
      }
      return { assignment: [3] };
    });
    const { member, partitions } = startMember(coordinator);
    try {
      await until("partition read", () => partitions.reading.has(3));
      partitions.advance(3, 2000, 1500);
      fence = true;
      await until("rejoined", () => coordinator.heartbeats().filter((h) => h.memberEpoch === 0).length === 2);
      assert.ok(partitions.log.includes("revoke 3"));
      assert.equal(coordinator.commits().length, 0, "a fenced member commits nothing: the partition may have a new owner");
      const rejoin = coordinator.heartbeats().filter((h) => h.memberEpoch === 0)[1]!;
      assert.equal(rejoin.memberId, "");
      assert.deepEqual(rejoin.owned, []);
      await until("partition read again", () => partitions.reading.has(3));
    } finally {
      await member.leave();
    }
  });

  it("leave commits what the application finished (not the message it is still on), then sends epoch -1 (a static member -2)", async () => {
    for (const [instanceId, epoch] of [[undefined, LEAVE_EPOCH], ["host-1", STATIC_LEAVE_EPOCH]] as const) {
      const coordinator = new FakeCoordinator(() => ({ assignment: [0] }));
      const { member, partitions } = startMember(coordinator, { groupInstanceId: instanceId });
      await until("partition read", () => partitions.reading.has(0));
      partitions.advance(0, 1010, 1005);
      await member.leave();
      const last = coordinator.calls.at(-1)!;
      assert.equal(last.kind, "heartbeat");
      assert.equal((last as { request: HeartbeatFields }).request.memberEpoch, epoch);
      assert.deepEqual(coordinator.commits().map((c) => c.offsets.map((o) => [o.partition, o.offset])), [[[0, 1005]]]);
    }
  });

  it("after an explicit commit() of what was yielded, leave never commits below it", async () => {
    const coordinator = new FakeCoordinator(() => ({ assignment: [0] }));
    const { member, partitions } = startMember(coordinator);
    await until("partition read", () => partitions.reading.has(0));
    partitions.advance(0, 1010, 1009);
    await member.commitYielded();
    await member.leave();
    assert.deepEqual(coordinator.commits().map((c) => c.offsets.map((o) => [o.partition, o.offset])), [[[0, 1010]]], "no commit of 1009 after 1010");
  });

  it("after an explicit commit(offsets), leave never commits below them (the CLI's last printed line)", async () => {
    const coordinator = new FakeCoordinator(() => ({ assignment: [0] }));
    const { member, partitions } = startMember(coordinator);
    await until("partition read", () => partitions.reading.has(0));
    // 60 yielded, the 60th (offset 59) still in hand when the loop stopped: processed is 59.
    partitions.advance(0, 60, 59);
    await member.commitOffsets(new Map([[0, 60]]));
    await member.leave();
    assert.deepEqual(coordinator.commits().map((c) => c.offsets.map((o) => [o.partition, o.offset])), [[[0, 60]]], "no commit of 59 after 60");
  });

  it("a seek back after an explicit commit(offsets) is committed as it is", async () => {
    const coordinator = new FakeCoordinator(() => ({ assignment: [0] }));
    const { member, partitions } = startMember(coordinator);
    await until("partition read", () => partitions.reading.has(0));
    partitions.advance(0, 100, 100);
    await member.commitOffsets(new Map([[0, 100]]));
    // The application rewinds to reprocess from 10 and gets to 20.
    member.forgetAppCommit(0);
    partitions.advance(0, 20, 20);
    await member.leave();
    assert.deepEqual(coordinator.commits().map((c) => c.offsets.map((o) => [o.partition, o.offset])), [[[0, 100]], [[0, 20]]]);
  });

  it("autoCommit false: nothing is committed on revoke or leave", async () => {
    let assignment = [0, 1];
    const coordinator = new FakeCoordinator(() => ({ assignment }));
    const { member, partitions } = startMember(coordinator, { autoCommit: false });
    await until("partitions read", () => partitions.reading.size === 2);
    partitions.advance(1, 1050, 1050);
    assignment = [0];
    await until("released", () => !partitions.reading.has(1));
    await member.commitOffsets(new Map([[0, 1003]]));
    await member.leave();
    assert.deepEqual(coordinator.commits().map((c) => c.offsets.map((o) => [o.partition, o.offset])), [[[0, 1003]]], "only the explicit commit");
  });

  it("auto-commit commits processed positions on its timer, and only those that moved", async () => {
    const coordinator = new FakeCoordinator(() => ({ assignment: [0, 1] }));
    const { member, partitions } = startMember(coordinator, { autoCommitIntervalMs: 30 });
    try {
      await until("partitions read", () => partitions.reading.size === 2);
      await until("start positions committed", () => coordinator.committed.size === 2);
      const before = coordinator.commits().length;
      await new Promise((resolve) => setTimeout(resolve, 120));
      assert.equal(coordinator.commits().length, before, "nothing moved: no commit");
      partitions.advance(0, 1009, 1008);
      await until("moved position committed", () => coordinator.committed.get(0) === 1008);
      assert.deepEqual(coordinator.commits().at(-1)!.offsets.map((o) => o.partition), [0]);
    } finally {
      await member.leave();
    }
  });

  it("retries a heartbeat that failed with a retriable error", async () => {
    const coordinator = new FakeCoordinator((_request, count) => (count <= 2 ? new NotCoordinatorError("moved") : { assignment: [0] }));
    const { member, partitions } = startMember(coordinator);
    try {
      await until("partition read", () => partitions.reading.has(0));
      assert.ok(coordinator.heartbeats().length >= 3);
    } finally {
      await member.leave();
    }
  });

  it("no heartbeat answered for longer than the session timeout: stops reading and rejoins", async () => {
    const clock = new FakeClock(1_000_000);
    let down = false;
    const coordinator = new FakeCoordinator(() => (down ? new NotCoordinatorError("unreachable") : { assignment: [2] }));
    const { member, partitions } = startMember(coordinator, { sessionTimeoutMs: 3_000 }, { clock });
    try {
      await until("partition read", () => partitions.reading.has(2));
      down = true;
      await until("a failed heartbeat", () => coordinator.heartbeats().length >= 4);
      assert.ok(partitions.reading.has(2), "within the session: keeps reading");
      clock.advance(3_001);
      await until("dropped", () => !partitions.reading.has(2));
      assert.equal(coordinator.commits().filter((c) => c.offsets.some((o) => o.offset !== 1002)).length, 0);
      down = false;
      await until("read again after rejoining", () => partitions.reading.has(2));
      assert.equal(coordinator.heartbeats().filter((h) => h.memberEpoch === 0).length, 2);
    } finally {
      await member.leave();
    }
  });

  it("an error retrying cannot fix stops the member and ends the iteration", async () => {
    const coordinator = new FakeCoordinator(() => new InvalidArgumentError(`group "g" is a queue group`));
    const fatal: SluiceErrorType[] = [];
    const { member } = startMember(coordinator, {}, { fatal });
    await until("fatal reported", () => fatal.length === 1);
    assert.ok(fatal[0] instanceof SluiceError && fatal[0].code === "INVALID_ARGUMENT");
    const calls = coordinator.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(coordinator.calls.length, calls, "no more heartbeats");
    await member.leave();
  });

  it("a commit refused for a partition that moved rejects with FENCED_MEMBER", async () => {
    const coordinator = new FakeCoordinator(() => ({ assignment: [0] }));
    const { member, partitions } = startMember(coordinator);
    try {
      await until("partition read", () => partitions.reading.has(0));
      coordinator.commitError = new FencedMemberError("does not own t/0");
      await assert.rejects(member.commitOffsets(new Map([[0, 5]])), (e: unknown) => e instanceof SluiceError && e.code === "FENCED_MEMBER");
      coordinator.commitError = undefined;
    } finally {
      await member.leave();
    }
  });
});
