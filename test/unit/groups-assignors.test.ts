import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError } from "../../common/src/errors.js";
import {
  ASSIGNOR_NAMES,
  assignPartitions,
  compareTopicPartitions,
  isAssignorName,
  type AssignmentInput,
  type AssignorMember,
  type AssignorName,
  type TopicPartition,
} from "../../broker/src/groups/assignors.js";
import { seededRandom } from "../helpers/seeded-random.js";

/** `parts("t", 0, 2)` → [{t,0},{t,2}]. */
function parts(topic: string, ...partitions: number[]): TopicPartition[] {
  return partitions.map((partition) => ({ topic, partition }));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function member(memberId: string, topics: string[], current: TopicPartition[] = []): AssignorMember {
  return { memberId, topics, current };
}

function input(members: AssignorMember[], counts: Record<string, number>): AssignmentInput {
  return { members, partitionCounts: new Map(Object.entries(counts)) };
}

function asObject(assignment: Map<string, TopicPartition[]>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [memberId, list] of assignment) out[memberId] = list.map((tp) => `${tp.topic}-${tp.partition}`);
  return out;
}

function ownerOf(assignment: Map<string, TopicPartition[]>): Map<string, string> {
  const owners = new Map<string, string>();
  for (const [memberId, list] of assignment) for (const tp of list) owners.set(`${tp.topic}-${tp.partition}`, memberId);
  return owners;
}

/** Partitions in `before` whose owner differs in `after`, as "topic-partition" → [from, to]. */
function movedPartitions(before: Map<string, TopicPartition[]>, after: Map<string, TopicPartition[]>): Map<string, [string, string | undefined]> {
  const afterOwners = ownerOf(after);
  const moved = new Map<string, [string, string | undefined]>();
  for (const [key, from] of ownerOf(before)) {
    const to = afterOwners.get(key);
    if (to !== from) moved.set(key, [from, to]);
  }
  return moved;
}

/** Members with `current` taken from a previous assignment. */
function continuing(previous: Map<string, TopicPartition[]>, topicsOf: (memberId: string) => string[]): AssignorMember[] {
  return [...previous].map(([memberId, current]) => member(memberId, topicsOf(memberId), current));
}

/**
 * Invariants every assignor must keep: every member listed, lists sorted, every partition of
 * a subscribed known topic owned by exactly one of its subscribers, nothing else owned.
 */
function checkCoverage(assignor: AssignorName, given: AssignmentInput, assignment: Map<string, TopicPartition[]>): void {
  const context = `${assignor} on ${JSON.stringify({ members: given.members, counts: [...given.partitionCounts] })}`;
  assert.deepEqual([...assignment.keys()].sort(), given.members.map((m) => m.memberId).sort(), context);
  const owners = new Map<string, string>();
  for (const [memberId, list] of assignment) {
    const subscribed = new Set(given.members.find((m) => m.memberId === memberId)!.topics);
    assert.deepEqual(list, [...list].sort(compareTopicPartitions), `${context}: ${memberId}'s list is not sorted`);
    for (const tp of list) {
      const key = `${tp.topic}-${tp.partition}`;
      assert.ok(subscribed.has(tp.topic), `${context}: ${memberId} got ${key} without subscribing`);
      assert.ok(tp.partition >= 0 && tp.partition < (given.partitionCounts.get(tp.topic) ?? 0), `${context}: ${key} does not exist`);
      assert.equal(owners.get(key), undefined, `${context}: ${key} owned twice`);
      owners.set(key, memberId);
    }
  }
  for (const [topic, count] of given.partitionCounts) {
    if (!given.members.some((m) => m.topics.includes(topic))) continue;
    for (let partition = 0; partition < count; partition++) assert.ok(owners.has(`${topic}-${partition}`), `${context}: ${topic}-${partition} unowned`);
  }
}

/** Fails when a partition sits with a member holding two or more than another subscriber of its topic. */
function checkLocallyBalanced(given: AssignmentInput, assignment: Map<string, TopicPartition[]>): void {
  for (const [holder, list] of assignment) {
    for (const tp of list) {
      for (const other of given.members) {
        if (!other.topics.includes(tp.topic)) continue;
        const gap = list.length - assignment.get(other.memberId)!.length;
        assert.ok(gap < 2, `${holder} holds ${list.length} incl. ${tp.topic}-${tp.partition}; subscriber ${other.memberId} holds ${list.length - gap}`);
      }
    }
  }
}

function loadSpread(assignment: Map<string, TopicPartition[]>): number {
  const loads = [...assignment.values()].map((l) => l.length);
  return Math.max(...loads) - Math.min(...loads);
}


function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe("range assignor", () => {
  it("cuts each topic into contiguous ranges, first members taking the remainder (Kafka's example)", () => {
    const result = assignPartitions("range", input([member("c1", ["t0", "t1"]), member("c0", ["t0", "t1"])], { t0: 3, t1: 3 }));
    assert.deepEqual(asObject(result), { c0: ["t0-0", "t0-1", "t1-0", "t1-1"], c1: ["t0-2", "t1-2"] });
  });

  it("splits a topic only among its own subscribers", () => {
    const result = assignPartitions("range", input([member("a", ["x"]), member("b", ["x", "y"]), member("c", ["y"])], { x: 5, y: 4 }));
    assert.deepEqual(asObject(result), { a: ["x-0", "x-1", "x-2"], b: ["x-3", "x-4", "y-0", "y-1"], c: ["y-2", "y-3"] });
  });

  it("gives nothing for unknown topics and lists members without partitions", () => {
    const result = assignPartitions("range", input([member("a", ["x", "ghost"]), member("b", ["x"]), member("idle", [])], { x: 1 }));
    assert.deepEqual(asObject(result), { a: ["x-0"], b: [], idle: [] });
  });
});

describe("roundrobin assignor", () => {
  it("deals all partitions in topic/partition order around the members (Kafka's example)", () => {
    const result = assignPartitions("roundrobin", input([member("c1", ["t0", "t1"]), member("c0", ["t0", "t1"])], { t0: 3, t1: 3 }));
    assert.deepEqual(asObject(result), { c0: ["t0-0", "t0-2", "t1-1"], c1: ["t0-1", "t1-0", "t1-2"] });
  });

  it("passes over members not subscribed to the topic (Kafka's mixed-subscription example)", () => {
    const result = assignPartitions(
      "roundrobin",
      input([member("c2", ["t0", "t1", "t2"]), member("c0", ["t0"]), member("c1", ["t0", "t1"])], { t0: 1, t1: 2, t2: 3 }),
    );
    assert.deepEqual(asObject(result), { c0: ["t0-0"], c1: ["t1-0"], c2: ["t1-1", "t2-0", "t2-1", "t2-2"] });
  });
});

describe("sticky assignor", () => {
  it("starts like round robin when nobody owns anything", () => {
    const result = assignPartitions("sticky", input([member("c", ["t"]), member("a", ["t"]), member("b", ["t"])], { t: 7 }));
    assert.deepEqual(asObject(result), { a: ["t-0", "t-3", "t-6"], b: ["t-1", "t-4"], c: ["t-2", "t-5"] });
  });

  it("a 4th member joining 3 over 12 partitions moves exactly 3, each the highest of an old member, all to the newcomer", () => {
    const before = new Map([
      ["a", parts("t", ...range(0, 4))],
      ["b", parts("t", ...range(4, 8))],
      ["c", parts("t", ...range(8, 12))],
    ]);
    const after = assignPartitions("sticky", input([...continuing(before, () => ["t"]), member("d", ["t"])], { t: 12 }));
    assert.deepEqual(asObject(after), {
      a: ["t-0", "t-1", "t-2"],
      b: ["t-4", "t-5", "t-6"],
      c: ["t-8", "t-9", "t-10"],
      d: ["t-3", "t-7", "t-11"],
    });
    const moved = movedPartitions(before, after);
    assert.equal(moved.size, 3);
    for (const [, [, to]] of moved) assert.equal(to, "d");
  });

  it("an over-loaded member gives up its highest partition numbers across topics, so each topic stays spread", () => {
    const before = new Map([["a", [...parts("x", ...range(0, 4)), ...parts("y", ...range(0, 4))]]]);
    const after = assignPartitions("sticky", input([...continuing(before, () => ["x", "y"]), member("b", ["x", "y"])], { x: 4, y: 4 }));
    assert.deepEqual(asObject(after), { a: ["x-0", "x-1", "y-0", "y-1"], b: ["x-2", "x-3", "y-2", "y-3"] });
  });

  it("a member leaving moves only its partitions, spread over the others", () => {
    const before = assignPartitions("sticky", input(["a", "b", "c", "d"].map((id) => member(id, ["t"])), { t: 12 }));
    const remaining = continuing(before, () => ["t"]).filter((m) => m.memberId !== "b");
    const after = assignPartitions("sticky", input(remaining, { t: 12 }));
    const moved = movedPartitions(before, after);
    assert.deepEqual([...moved.keys()].sort(), before.get("b")!.map((tp) => `t-${tp.partition}`).sort());
    assert.deepEqual([...moved.values()].map(([, to]) => to).sort(), ["a", "c", "d"]);
    assert.equal(loadSpread(after), 0);
  });

  it("partition count growth assigns only the new partitions", () => {
    const before = new Map([
      ["a", parts("t", 0, 1)],
      ["b", parts("t", 2, 3)],
      ["c", parts("t", 4, 5)],
    ]);
    const after = assignPartitions("sticky", input(continuing(before, () => ["t"]), { t: 9 }));
    assert.deepEqual(asObject(after), { a: ["t-0", "t-1", "t-6"], b: ["t-2", "t-3", "t-7"], c: ["t-4", "t-5", "t-8"] });
  });

  it("drops a topic the member unsubscribed from and keeps the rest", () => {
    const before = new Map([
      ["a", [...parts("x", 0, 1), ...parts("y", 0, 1)]],
      ["b", [...parts("x", 2, 3), ...parts("y", 2, 3)]],
    ]);
    const after = assignPartitions("sticky", input(continuing(before, (id) => (id === "a" ? ["x"] : ["x", "y"])), { x: 4, y: 4 }));
    // a's y partitions must go to b; balance then sends two of b's x partitions the other way.
    assert.deepEqual(asObject(after), { a: ["x-0", "x-1", "x-2", "x-3"], b: ["y-0", "y-1", "y-2", "y-3"] });
    const moved = movedPartitions(before, after);
    assert.deepEqual([...moved.keys()].sort(), ["x-2", "x-3", "y-0", "y-1"]);
  });

  it("ignores claims that are no longer valid: unknown topic, shrunk topic, doubly claimed (lower memberId wins)", () => {
    const after = assignPartitions(
      "sticky",
      input(
        [
          member("b", ["t"], parts("t", 0, 1, 9)),
          member("a", ["t", "gone"], [...parts("t", 1, 2), ...parts("gone", 0)]),
          member("c", ["t"], parts("t", 2)),
        ],
        { t: 4 },
      ),
    );
    assert.deepEqual(asObject(after), { a: ["t-1", "t-2"], b: ["t-0"], c: ["t-3"] });
  });

  it("balances mixed subscriptions among the eligible members", () => {
    const after = assignPartitions("sticky", input([member("a", ["x"]), member("b", ["x", "y"]), member("idle", [])], { x: 4, y: 4 }));
    assert.deepEqual(asObject(after), { a: ["x-0", "x-1", "x-2", "x-3"], b: ["y-0", "y-1", "y-2", "y-3"], idle: [] });
  });

  it("evens out a member that kept too much under mixed subscriptions", () => {
    // a owns everything; b and c share x with a, and only a and c read y.
    const given = input(
      [member("a", ["x", "y"], [...parts("x", ...range(0, 6)), ...parts("y", ...range(0, 6))]), member("b", ["x"]), member("c", ["x", "y"])],
      { x: 6, y: 6 },
    );
    const after = assignPartitions("sticky", given);
    checkCoverage("sticky", given, after);
    checkLocallyBalanced(given, after);
    assert.deepEqual(after.get("a")!.length, 4);
  });

  it("is stable: its own output fed back as current moves nothing", () => {
    const first = assignPartitions("sticky", input(["a", "b", "c"].map((id) => member(id, ["x", "y"])), { x: 5, y: 3 }));
    const second = assignPartitions("sticky", input(continuing(first, () => ["x", "y"]), { x: 5, y: 3 }));
    assert.deepEqual(asObject(second), asObject(first));
  });
});

describe("all assignors", () => {
  it("names are listed and recognised", () => {
    assert.deepEqual([...ASSIGNOR_NAMES], ["range", "roundrobin", "sticky"]);
    assert.equal(isAssignorName("sticky"), true);
    assert.equal(isAssignorName("cooperative-sticky"), false);
  });

  it("rejects an unknown assignor, a duplicate member and a bad partition count", () => {
    assert.throws(() => assignPartitions("bogus" as AssignorName, input([], {})), InvalidArgumentError);
    assert.throws(() => assignPartitions("range", input([member("a", ["t"]), member("a", ["t"])], { t: 1 })), /"a" appears twice/);
    assert.throws(() => assignPartitions("sticky", input([member("a", ["t"])], { t: -1 })), InvalidArgumentError);
  });

  it("handles an empty group and topics nobody reads", () => {
    for (const assignor of ASSIGNOR_NAMES) {
      assert.deepEqual(asObject(assignPartitions(assignor, input([], { t: 3 }))), {});
      assert.deepEqual(asObject(assignPartitions(assignor, input([member("a", ["u"])], { t: 3, u: 0 }))), { a: [] });
    }
  });

  it("property: coverage, balance, determinism, and minimal sticky movement over 400 random groups", () => {
    const random = seededRandom(20240604);
    const pick = (n: number): number => Math.floor(random() * n);
    for (let round = 0; round < 400; round++) {
      const topicNames = range(0, 1 + pick(4)).map((i) => `t${i}`);
      const counts: Record<string, number> = {};
      for (const topic of topicNames) if (random() < 0.9) counts[topic] = pick(13);
      const identical = random() < 0.5;
      const memberIds = range(0, 1 + pick(8)).map((i) => `m${String(i).padStart(2, "0")}`);
      const topicsOf = new Map(
        memberIds.map((id) => [id, identical ? topicNames : topicNames.filter(() => random() < 0.6)]),
      );
      // Current ownership, half the time random claims (overlaps, shrunk partitions, unsubscribed
      // topics), half the time a real earlier assignment: some members since joined or left, topics grew.
      let previous: Map<string, TopicPartition[]> | undefined;
      if (random() < 0.5) {
        const earlierCounts = Object.fromEntries(Object.entries(counts).map(([t, n]) => [t, Math.max(0, n - pick(4))]));
        const earlierMembers = memberIds.filter(() => random() < 0.7).concat(random() < 0.5 ? ["m99"] : []);
        previous = assignPartitions("sticky", input(earlierMembers.map((id) => member(id, topicsOf.get(id) ?? topicNames)), earlierCounts));
      }
      const members = memberIds.map((id) => {
        if (previous) return member(id, topicsOf.get(id)!, previous.get(id) ?? []);
        const current: TopicPartition[] = [];
        for (const topic of topicNames) {
          for (let partition = 0; partition < 14; partition++) if (random() < 0.15) current.push({ topic, partition });
        }
        return member(id, topicsOf.get(id)!, current);
      });
      const given = input(members, counts);
      const reordered = input(shuffled(members, random), counts);

      for (const assignor of ASSIGNOR_NAMES) {
        const result = assignPartitions(assignor, given);
        checkCoverage(assignor, given, result);
        assert.deepEqual(asObject(assignPartitions(assignor, reordered)), asObject(result), `${assignor} depends on member order`);
        if (identical && assignor !== "range") assert.ok(loadSpread(result) <= 1, `${assignor} unbalanced: ${JSON.stringify(asObject(result))}`);
      }

      const sticky = assignPartitions("sticky", given);
      checkLocallyBalanced(given, sticky);
      const fedBack = assignPartitions("sticky", input(continuing(sticky, (id) => topicsOf.get(id)!), counts));
      assert.deepEqual(asObject(fedBack), asObject(sticky), "sticky output is not a fixed point");
      if (identical) assertMinimalMovement(given, sticky);
    }
  });

  it("1,000 members × 10,000 partitions: each assignor is fast, and sticky moves only the newcomer's share", () => {
    const memberIds = range(0, 1000).map((i) => `member-${String(i).padStart(4, "0")}`);
    const topics = range(0, 10).map((i) => `topic-${i}`);
    const counts = Object.fromEntries(topics.map((t) => [t, 1000]));
    const timings: string[] = [];
    let stickyResult = new Map<string, TopicPartition[]>();
    for (const assignor of ASSIGNOR_NAMES) {
      const started = performance.now();
      const result = assignPartitions(assignor, input(memberIds.map((id) => member(id, topics)), counts));
      const elapsedMs = performance.now() - started;
      timings.push(`${assignor} ${elapsedMs.toFixed(0)} ms`);
      assert.ok(elapsedMs < 3000, `${assignor} took ${elapsedMs} ms`);
      if (assignor === "sticky") stickyResult = result;
    }
    const started = performance.now();
    const grown = assignPartitions("sticky", input([...continuing(stickyResult, () => topics), member("member-zzzz", topics)], counts));
    const elapsedMs = performance.now() - started;
    timings.push(`sticky join ${elapsedMs.toFixed(0)} ms`);
    assert.ok(elapsedMs < 3000, `sticky join took ${elapsedMs} ms`);
    const moved = movedPartitions(stickyResult, grown);
    // 10,000 over 1,001 members: 991 hold 10 and 10 hold 9, so 9 old members give one each to the newcomer.
    assert.equal(moved.size, 9);
    for (const [, [, to]] of moved) assert.equal(to, "member-zzzz");
    assert.ok(loadSpread(grown) <= 1);
    console.log(`# assignors at 1,000 members × 10,000 partitions: ${timings.join(", ")}`);
  });
});

/**
 * With identical subscriptions the best possible result keeps, for the r = total % n members
 * with the most valid current partitions, up to q + 1 of them, and up to q for the rest
 * (q = floor(total / n)). Every valid claim beyond that must move, and no more should.
 */
function assertMinimalMovement(given: AssignmentInput, result: Map<string, TopicPartition[]>): void {
  const sortedMembers = [...given.members].sort((a, b) => (a.memberId < b.memberId ? -1 : 1));
  const subscribed = sortedMembers[0]?.topics.filter((t) => given.partitionCounts.has(t)) ?? [];
  const total = subscribed.reduce((sum, t) => sum + given.partitionCounts.get(t)!, 0);
  if (sortedMembers.length === 0 || total === 0) return;
  const claimed = new Set<string>();
  const validCurrent = new Map<string, string[]>();
  for (const m of sortedMembers) {
    const kept: string[] = [];
    for (const tp of m.current) {
      const key = `${tp.topic}-${tp.partition}`;
      if (!subscribed.includes(tp.topic) || tp.partition >= given.partitionCounts.get(tp.topic)! || claimed.has(key)) continue;
      claimed.add(key);
      kept.push(key);
    }
    validCurrent.set(m.memberId, kept);
  }
  const quota = Math.floor(total / sortedMembers.length);
  const withExtra = total % sortedMembers.length;
  const bestKept = [...validCurrent.values()]
    .map((keys) => keys.length)
    .sort((a, b) => b - a)
    .reduce((sum, count, rank) => sum + Math.min(count, rank < withExtra ? quota + 1 : quota), 0);
  const owners = ownerOf(result);
  let actuallyKept = 0;
  for (const [memberId, keys] of validCurrent) for (const key of keys) if (owners.get(key) === memberId) actuallyKept++;
  assert.equal(actuallyKept, bestKept, `sticky kept ${actuallyKept} of the valid claims; ${bestKept} was possible`);
}
