import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { TopicPartition } from "../../broker/src/groups/assignors.js";
import { GroupMembership, LEAVE_EPOCH, STATIC_LEAVE_EPOCH, type HeartbeatInput } from "../../broker/src/groups/membership.js";

const COUNTS = new Map([["orders", 6]]);

function input(overrides: Partial<HeartbeatInput>): HeartbeatInput {
  return {
    memberId: "",
    memberEpoch: 0,
    instanceId: "",
    clientId: "c",
    topics: ["orders"],
    assignor: "sticky",
    sessionTimeoutMs: 3000,
    owned: [],
    partitionCounts: COUNTS,
    ...overrides,
  };
}

/** Heartbeat rounds until releases have been reported and handed on. */
function settle(members: Member[], fromMs: number): number {
  let t = fromMs;
  for (let round = 0; round < 3; round++) for (const m of members) m.beat(t++);
  return t;
}

const names = (tps: readonly TopicPartition[]): number[] => tps.map((tp) => tp.partition).sort((a, b) => a - b);

/** A member as the SDK runs it: it owns exactly what the last answer gave it. */
class Member {
  memberId = "";
  epoch = 0;
  owned: TopicPartition[] = [];
  constructor(
    private readonly group: GroupMembership,
    private readonly instanceId = "",
  ) {}
  beat(nowMs: number): TopicPartition[] {
    const out = this.group.heartbeat(
      input({ memberId: this.memberId, memberEpoch: this.epoch, owned: this.owned, instanceId: this.instanceId }),
      nowMs,
    );
    this.memberId = out.memberId;
    this.epoch = out.memberEpoch;
    this.owned = out.assignment;
    return out.assignment;
  }
}

describe("group membership (KIP-848 style)", () => {
  it("waits the initial delay so members starting together share the first assignment", () => {
    const group = new GroupMembership("g", 300);
    const a = new Member(group);
    const b = new Member(group);
    assert.deepEqual(a.beat(0), []);
    assert.deepEqual(b.beat(100), []);
    assert.equal(group.state(), "assigning");
    settle([a, b], 301);
    assert.deepEqual([...names(a.owned), ...names(b.owned)].sort(), [0, 1, 2, 3, 4, 5]);
    assert.equal(a.owned.length, 3);
    assert.equal(group.state(), "stable");
  });

  it("hands a partition to its new owner only after the old owner released it", () => {
    const group = new GroupMembership("g", 0);
    const a = new Member(group);
    a.beat(0);
    a.beat(1);
    assert.deepEqual(names(a.owned), [0, 1, 2, 3, 4, 5]);
    const b = new Member(group);
    // b's target is half the partitions, but a still owns them all.
    assert.deepEqual(b.beat(2), []);
    assert.equal(group.state(), "reconciling");
    // a's answer revokes 3 partitions and keeps the others (incremental: no full stop).
    const kept = a.beat(3);
    assert.equal(kept.length, 3);
    // Until a reports the release, b still waits.
    assert.deepEqual(b.beat(4), []);
    a.beat(5);
    const moved = b.beat(6);
    assert.equal(moved.length, 3);
    b.beat(7);
    assert.deepEqual([...names(kept), ...names(moved)].sort(), [0, 1, 2, 3, 4, 5]);
    assert.equal(group.state(), "stable");
  });

  it("frees a crashed member's partitions after its session timeout", () => {
    const group = new GroupMembership("g", 0);
    const a = new Member(group);
    const b = new Member(group);
    settle([a, b], 0);
    assert.equal(a.owned.length, 3);
    assert.equal(b.owned.length, 3);
    // b goes silent; a keeps beating.
    for (let t = 1000; t <= 3000; t += 1000) {
      a.beat(t);
      assert.deepEqual(group.expire(t), []);
    }
    assert.deepEqual(group.expire(3010), [b.memberId]);
    assert.deepEqual(names(a.beat(3011)), [0, 1, 2, 3, 4, 5]);
    // The zombie is fenced.
    assert.throws(() => b.beat(3012), { code: "FENCED_MEMBER" });
    assert.throws(() => group.checkCommit(b.memberId, b.epoch, { topic: "orders", partition: 0 }), { code: "FENCED_MEMBER" });
  });

  it("leave frees partitions at once and bumps the epoch", () => {
    const group = new GroupMembership("g", 0);
    const a = new Member(group);
    const b = new Member(group);
    settle([a, b], 0);
    const epoch = group.epoch;
    group.heartbeat(input({ memberId: b.memberId, memberEpoch: LEAVE_EPOCH }), 2);
    assert.ok(group.epoch > epoch);
    assert.equal(a.beat(3).length, 6);
  });

  it("commits are fenced to the partitions a member owns", () => {
    const group = new GroupMembership("g", 0);
    const a = new Member(group);
    a.beat(0);
    a.beat(1);
    group.checkCommit(a.memberId, a.epoch, { topic: "orders", partition: 2 });
    assert.throws(() => group.checkCommit(a.memberId, a.epoch, { topic: "other", partition: 0 }), { code: "FENCED_MEMBER" });
    assert.throws(() => group.checkCommit(a.memberId, a.epoch + 5, { topic: "orders", partition: 2 }), { code: "FENCED_MEMBER" });
    // Commits from outside the group only for partitions nobody owns.
    assert.throws(() => group.checkCommit("", 0, { topic: "orders", partition: 2 }), { code: "FENCED_MEMBER" });
    group.checkCommit("", 0, { topic: "elsewhere", partition: 0 });
  });

  it("a static member restarting within its session keeps its partitions and nobody else moves", () => {
    const group = new GroupMembership("g", 0);
    const a = new Member(group, "host-a");
    const b = new Member(group, "host-b");
    settle([a, b], 0);
    const before = { a: names(a.owned), b: names(b.owned) };
    const epoch = group.epoch;
    group.heartbeat(input({ memberId: a.memberId, memberEpoch: STATIC_LEAVE_EPOCH, instanceId: "host-a" }), 3);
    const restarted = new Member(group, "host-a");
    assert.deepEqual(names(restarted.beat(1000)), before.a);
    assert.equal(group.epoch, epoch, "no rebalance");
    assert.deepEqual(names(b.beat(1001)), before.b);
    assert.notEqual(restarted.memberId, a.memberId);
    assert.throws(() => a.beat(1002), { code: "FENCED_MEMBER" });
  });

  it("refuses bad joins with clear errors", () => {
    const group = new GroupMembership("g", 0);
    assert.throws(() => group.heartbeat(input({ topics: [] }), 0), { code: "INVALID_ARGUMENT" });
    assert.throws(() => group.heartbeat(input({ assignor: "greedy" }), 0), { code: "INVALID_ARGUMENT", message: /range, roundrobin, sticky/ });
    assert.throws(() => group.heartbeat(input({ sessionTimeoutMs: 5 }), 0), { code: "INVALID_ARGUMENT" });
    assert.throws(() => group.heartbeat(input({ memberId: "nobody", memberEpoch: 3 }), 0), { code: "FENCED_MEMBER" });
    assert.equal(group.size, 0);
  });

  it("survives a snapshot round trip: restored members keep their targets and are assumed to own them", () => {
    const group = new GroupMembership("g", 0);
    const a = new Member(group);
    const b = new Member(group);
    settle([a, b], 0);
    const restored = GroupMembership.restore("g", JSON.parse(JSON.stringify(group.snapshot())), 5000, 0);
    assert.equal(restored.epoch, group.epoch);
    assert.equal(restored.size, 2);
    // A third member must wait for real releases: nothing is handed out twice.
    const c = new Member(restored);
    assert.deepEqual(c.beat(5001), []);
  });
});
