import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidConfigError } from "../../common/src/errors.js";
import { DEFAULT_MAX_QUEUE_WINDOW, QueueWindow, type Lease, type WindowSnapshot } from "../../broker/src/groups/queue-window.js";
import { seededRandom as random } from "../helpers/seeded-random.js";

const INVISIBLE_MS = 30_000;
const MAX_DELIVERIES = 3;

function offsets(leases: Lease[]): number[] {
  return leases.map((lease) => lease.offset);
}

function leaseIdOf(leases: Lease[], offset: number): number {
  const lease = leases.find((l) => l.offset === offset);
  assert.ok(lease, `offset ${offset} was not leased`);
  return lease.leaseId;
}

/** Leases everything below `end` to one member and returns the leases by offset. */
function leaseAll(window: QueueWindow, end: number, member = "m1", nowMs = 0): Map<number, Lease> {
  const leases = window.lease(member, end, end, nowMs, INVISIBLE_MS);
  return new Map(leases.map((lease) => [lease.offset, lease]));
}

describe("queue window: leasing", () => {
  it("leases lowest offsets first, stops at the log end and bumps delivery counts", () => {
    const window = new QueueWindow(10);
    const first = window.lease("m1", 3, 100, 1_000, INVISIBLE_MS);
    assert.deepEqual(first, [
      { offset: 10, deliveryCount: 1, leaseId: 1, deadlineMs: 31_000 },
      { offset: 11, deliveryCount: 1, leaseId: 2, deadlineMs: 31_000 },
      { offset: 12, deliveryCount: 1, leaseId: 3, deadlineMs: 31_000 },
    ]);
    assert.deepEqual(offsets(window.lease("m2", 10, 15, 1_000, INVISIBLE_MS)), [13, 14]);
    assert.deepEqual(window.lease("m2", 10, 15, 1_000, INVISIBLE_MS), [], "nothing below the log end is left");
    assert.equal(window.inFlight, 5);
    assert.equal(window.nextOffset, 15);
    // A redelivery (offset 11, nacked without delay) comes before new offsets.
    assert.equal(window.nack("m1", 11, first[1]!.leaseId, 2_000, 0, MAX_DELIVERIES), "ok");
    const again = window.lease("m3", 2, 100, 2_000, INVISIBLE_MS);
    assert.deepEqual(offsets(again), [11, 15]);
    assert.equal(again[0]!.deliveryCount, 2);
    assert.equal(again[1]!.deliveryCount, 1);
    assert.ok(again[0]!.leaseId > first[2]!.leaseId, "lease ids only grow");
    assert.equal(window.stats().redeliveries, 1);
  });

  it("ack moves startOffset only past a contiguous prefix of done offsets", () => {
    const window = new QueueWindow(0);
    const leases = leaseAll(window, 5);
    assert.equal(window.ack("m1", 1, leases.get(1)!.leaseId), "ok");
    assert.equal(window.ack("m1", 2, leases.get(2)!.leaseId), "ok");
    assert.equal(window.startOffset, 0);
    assert.deepEqual(window.snapshot().done, [[1, 3]]);
    assert.equal(window.ack("m1", 4, leases.get(4)!.leaseId), "ok");
    assert.deepEqual(window.snapshot().done, [[1, 3], [4, 5]]);
    assert.equal(window.ack("m1", 0, leases.get(0)!.leaseId), "ok");
    assert.equal(window.startOffset, 3);
    assert.deepEqual(window.snapshot(), { startOffset: 3, done: [[4, 5]], deliveries: [[3, 1]], dead: [] });
    assert.equal(window.ack("m1", 3, leases.get(3)!.leaseId), "ok");
    assert.equal(window.startOffset, 5);
    assert.equal(window.stateOf(2), "acked");
    assert.equal(window.stateOf(7), "available");
  });

  it("refuses unknown, expired, reassigned and wrong-member settlements and changes nothing", () => {
    const window = new QueueWindow(0);
    const leases = leaseAll(window, 3);
    const lease0 = leases.get(0)!;
    assert.equal(window.ack("m1", 1, leases.get(1)!.leaseId), "ok");
    const before = { version: window.version, snapshot: window.snapshot(), stats: window.stats() };
    const refused = [
      window.ack("m2", 0, lease0.leaseId), // wrong member
      window.ack("m1", 0, lease0.leaseId + 100), // wrong lease id
      window.ack("m1", 1, leases.get(1)!.leaseId), // already acked
      window.ack("m1", 7, 1), // never delivered
      window.nack("m2", 0, lease0.leaseId, 0, 0, MAX_DELIVERIES),
      window.extend("m2", 0, lease0.leaseId, 0, 1_000),
    ];
    assert.deepEqual(refused, Array(refused.length).fill("unknown-lease"));
    assert.deepEqual({ version: window.version, snapshot: window.snapshot(), stats: window.stats() }, before);

    // Expired, then leased to someone else: the first lease id is dead for good.
    assert.deepEqual(window.expire(INVISIBLE_MS, MAX_DELIVERIES), [0, 2]);
    assert.equal(window.ack("m1", 0, lease0.leaseId), "unknown-lease");
    const relet = window.lease("m2", 1, 3, INVISIBLE_MS, INVISIBLE_MS);
    assert.deepEqual(offsets(relet), [0]);
    assert.equal(window.ack("m1", 0, lease0.leaseId), "unknown-lease");
    assert.equal(window.ack("m1", 0, relet[0]!.leaseId), "unknown-lease", "right lease id, wrong member");
    assert.equal(window.ack("m2", 0, relet[0]!.leaseId), "ok");
  });

  it("a nacked offset comes back only after its delay", () => {
    const window = new QueueWindow(0);
    const [lease] = window.lease("m1", 1, 10, 0, INVISIBLE_MS);
    assert.equal(window.nack("m1", 0, lease!.leaseId, 100, 1_000, MAX_DELIVERIES, "boom"), "ok");
    assert.equal(window.stateOf(0), "delayed");
    assert.deepEqual(window.stats(), { available: 0, leased: 0, delayed: 1, dead: 0, redeliveries: 0 });
    assert.equal(window.nextDueMs(), 1_100);
    assert.deepEqual(offsets(window.lease("m1", 1, 10, 1_099, INVISIBLE_MS)), [1], "still delayed: a new offset instead");
    const back = window.lease("m2", 1, 10, 1_100, INVISIBLE_MS);
    assert.deepEqual(back.map((l) => [l.offset, l.deliveryCount]), [[0, 2]]);
  });

  it("extend moves the deadline to now + extraMs and keeps the lease id", () => {
    const window = new QueueWindow(0);
    const [lease] = window.lease("m1", 1, 10, 0, 1_000);
    assert.equal(window.nextDueMs(), 1_000);
    assert.equal(window.extend("m1", 0, lease!.leaseId, 500, 2_000), "ok");
    assert.equal(window.nextDueMs(), 2_500);
    assert.deepEqual(window.expire(1_000, MAX_DELIVERIES), [], "the old deadline no longer counts");
    assert.equal(window.stateOf(0), "leased");
    assert.deepEqual(window.expire(2_500, MAX_DELIVERIES), [0]);
    assert.equal(window.nextDueMs(), undefined);
  });

  it("expired leases are redelivered with the delivery count + 1", () => {
    const window = new QueueWindow(0);
    leaseAll(window, 2, "m1", 0);
    assert.deepEqual(window.expire(INVISIBLE_MS - 1, MAX_DELIVERIES), []);
    assert.deepEqual(window.expire(INVISIBLE_MS, MAX_DELIVERIES), [0, 1]);
    assert.equal(window.inFlight, 0);
    const again = window.lease("m2", 5, 2, INVISIBLE_MS, INVISIBLE_MS);
    assert.deepEqual(again.map((l) => [l.offset, l.deliveryCount]), [[0, 2], [1, 2]]);
    assert.deepEqual(window.snapshot().deliveries, [[0, 2], [1, 2]]);
  });

  it("after maxDeliveries an offset is dead until settled, then the start moves past it", () => {
    const window = new QueueWindow(0);
    let now = 0;
    for (let delivery = 1; delivery <= MAX_DELIVERIES; delivery++) {
      const [lease] = window.lease("m1", 1, 2, now, INVISIBLE_MS);
      assert.deepEqual([lease!.offset, lease!.deliveryCount], [0, delivery]);
      assert.equal(window.nack("m1", 0, lease!.leaseId, now, 0, MAX_DELIVERIES, `failure ${delivery}`), "ok");
      now += 1;
    }
    assert.equal(window.stateOf(0), "dead");
    assert.deepEqual(window.deadLetters(), [{ offset: 0, deliveryCount: 3, lastError: "failure 3" }]);
    // Offset 1 dies by lease expiry instead.
    const leases = window.lease("m1", 5, 2, now, INVISIBLE_MS);
    assert.deepEqual(offsets(leases), [1], "a dead offset is never leased");
    window.expire(now + INVISIBLE_MS, 1);
    assert.deepEqual(window.deadLetters().map((d) => [d.offset, d.lastError]), [[0, "failure 3"], [1, "lease expired"]]);
    assert.deepEqual(window.snapshot().dead, [[0, 3, "failure 3"], [1, 1, "lease expired"]]);
    assert.equal(window.startOffset, 0);
    window.settleDead(1);
    assert.equal(window.startOffset, 0, "offset 0 still waits for its DLQ append");
    window.settleDead(0);
    assert.equal(window.startOffset, 2);
    assert.deepEqual(window.deadLetters(), []);
    assert.deepEqual(window.stats(), { available: 0, leased: 0, delayed: 0, dead: 0, redeliveries: 2 });
  });

  it("releaseMember makes that member's leases available at once, counts kept", () => {
    const window = new QueueWindow(0);
    window.lease("m1", 2, 10, 0, INVISIBLE_MS);
    window.lease("m2", 2, 10, 0, INVISIBLE_MS);
    window.lease("m1", 1, 10, 0, INVISIBLE_MS);
    const version = window.version;
    assert.deepEqual(window.releaseMember("m1"), [0, 1, 4]);
    assert.ok(window.version > version);
    assert.deepEqual(window.releaseMember("ghost"), []);
    assert.equal(window.inFlight, 2);
    const again = window.lease("m3", 10, 6, 1, INVISIBLE_MS);
    assert.deepEqual(again.map((l) => [l.offset, l.deliveryCount]), [[0, 2], [1, 2], [4, 2], [5, 1]]);
  });

  it("stops leasing new offsets while the window is full, resumes when the start moves", () => {
    const window = new QueueWindow(0, { maxWindow: 5 });
    const leases = leaseAll(window, 100);
    assert.deepEqual([...leases.keys()], [0, 1, 2, 3, 4]);
    for (const offset of [1, 2, 3, 4]) window.ack("m1", offset, leases.get(offset)!.leaseId);
    assert.deepEqual(window.lease("m1", 10, 100, 0, INVISIBLE_MS), [], "offset 0 is stuck and the window is full");
    window.ack("m1", 0, leases.get(0)!.leaseId);
    assert.equal(window.startOffset, 5);
    assert.deepEqual(offsets(window.lease("m1", 10, 100, 0, INVISIBLE_MS)), [5, 6, 7, 8, 9]);
  });

  it("validates its options", () => {
    assert.throws(() => new QueueWindow(0, { maxWindow: 0 }), InvalidConfigError);
    assert.throws(() => new QueueWindow(0, { maxWindow: 1.5 }), InvalidConfigError);
    assert.equal(DEFAULT_MAX_QUEUE_WINDOW, 10_000);
    const window = new QueueWindow(0);
    assert.equal(window.lease("m1", 20_000, 20_000, 0, INVISIBLE_MS).length, DEFAULT_MAX_QUEUE_WINDOW);
  });

  it("grows its ring without losing state when offsets settle out of order", () => {
    const window = new QueueWindow(1_000);
    const leases = leaseAll(window, 1_000 + 700);
    for (let offset = 1_001; offset < 1_700; offset += 2) window.ack("m1", offset, leases.get(offset)!.leaseId);
    const more = leaseAll(window, 1_000 + 3_000);
    for (const [offset, lease] of more) if (offset % 3 === 0) window.ack("m1", offset, lease.leaseId);
    const snapshot = window.snapshot();
    assert.equal(snapshot.startOffset, 1_000);
    for (const [from, to] of snapshot.done) {
      for (let offset = from; offset < to; offset++) {
        assert.ok((offset < 1_700 && offset % 2 === 1) || (offset >= 1_700 && offset % 3 === 0), `offset ${offset} wrongly done`);
      }
    }
    assert.equal(window.inFlight, 350 + (2_300 - Math.ceil(2_300 / 3)));
  });
});

describe("queue window: snapshot, restore, truncation", () => {
  it("round-trips through a snapshot; restored leases become available with their counts", () => {
    const window = new QueueWindow(100);
    const leases = leaseAll(window, 110);
    window.ack("m1", 101, leases.get(101)!.leaseId);
    window.ack("m1", 102, leases.get(102)!.leaseId);
    window.ack("m1", 105, leases.get(105)!.leaseId);
    window.nack("m1", 103, leases.get(103)!.leaseId, 0, 60_000, MAX_DELIVERIES);
    window.nack("m1", 104, leases.get(104)!.leaseId, 0, 0, 1, "poison");
    window.expire(INVISIBLE_MS, MAX_DELIVERIES); // 100, 106..109 back to available
    window.lease("m2", 2, 110, INVISIBLE_MS, INVISIBLE_MS); // 100 and 106 at count 2
    const snapshot = window.snapshot();
    assert.deepEqual(snapshot, {
      startOffset: 100,
      done: [[101, 103], [105, 106]],
      deliveries: [[100, 2], [103, 1], [106, 2], [107, 1], [108, 1], [109, 1]],
      dead: [[104, 1, "poison"]],
    } satisfies WindowSnapshot);

    const restored = QueueWindow.restore(JSON.parse(JSON.stringify(snapshot)) as WindowSnapshot);
    assert.deepEqual(restored.snapshot(), snapshot);
    assert.equal(restored.inFlight, 0);
    assert.deepEqual(restored.stats(), { available: 6, leased: 0, delayed: 0, dead: 1, redeliveries: 0 });
    assert.deepEqual(restored.deadLetters(), [{ offset: 104, deliveryCount: 1, lastError: "poison" }]);
    const relet = restored.lease("m3", 10, 112, 0, INVISIBLE_MS);
    assert.deepEqual(relet.map((l) => [l.offset, l.deliveryCount]), [[100, 3], [103, 2], [106, 3], [107, 2], [108, 2], [109, 2], [110, 1], [111, 1]]);
    for (const lease of relet) assert.equal(restored.ack("m3", lease.offset, lease.leaseId), "ok");
    restored.settleDead(104);
    assert.equal(restored.startOffset, 112);
  });

  it("restores an empty window and one whose done prefix reaches the start", () => {
    const empty = QueueWindow.restore({ startOffset: 7, done: [], deliveries: [], dead: [] });
    assert.equal(empty.startOffset, 7);
    assert.deepEqual(offsets(empty.lease("m1", 2, 10, 0, INVISIBLE_MS)), [7, 8]);
    const prefix = QueueWindow.restore({ startOffset: 7, done: [[7, 9]], deliveries: [[9, 1]], dead: [] });
    assert.equal(prefix.startOffset, 9);
  });

  it("truncateTo drops offsets below the log start, their leases and their dead letters", () => {
    const window = new QueueWindow(0);
    const leases = leaseAll(window, 6);
    window.ack("m1", 3, leases.get(3)!.leaseId);
    window.nack("m1", 1, leases.get(1)!.leaseId, 0, 0, 1, "poison");
    window.truncateTo(3);
    assert.equal(window.startOffset, 4, "3 was acked, so the start moves past it too");
    assert.equal(window.ack("m1", 0, leases.get(0)!.leaseId), "unknown-lease");
    assert.deepEqual(window.deadLetters(), []);
    assert.deepEqual(window.stats(), { available: 0, leased: 2, delayed: 0, dead: 0, redeliveries: 0 });
    assert.equal(window.ack("m1", 4, leases.get(4)!.leaseId), "ok");
    window.truncateTo(1); // behind the start: nothing to do
    assert.equal(window.startOffset, 5);
    window.truncateTo(50);
    assert.deepEqual(window.snapshot(), { startOffset: 50, done: [], deliveries: [], dead: [] });
    assert.equal(window.inFlight, 0);
    assert.deepEqual(window.expire(Number.MAX_SAFE_INTEGER, MAX_DELIVERIES), [], "dropped leases never expire");
    assert.deepEqual(offsets(window.lease("m1", 2, 60, 0, INVISIBLE_MS)), [50, 51]);
  });

  it("expires and redelivers the right offsets after many acks and a truncation (stale heap entries)", () => {
    const window = new QueueWindow(0);
    const unacked: number[] = [];
    for (const [member, from, nowMs] of [["m1", 0, 0], ["m2", 5_000, 1_000]] as const) {
      for (let batch = 0; batch < 50; batch++) {
        for (const lease of window.lease(member, 100, from + 5_000, nowMs, INVISIBLE_MS)) {
          if (lease.offset % 4 === 0) unacked.push(lease.offset);
          else window.ack(member, lease.offset, lease.leaseId);
        }
      }
    }
    assert.deepEqual(window.expire(INVISIBLE_MS, MAX_DELIVERIES), unacked.filter((offset) => offset < 5_000));
    window.truncateTo(5_000); // every redelivery queued for m1's offsets is now stale
    assert.deepEqual(window.releaseMember("m2"), unacked.filter((offset) => offset >= 5_000));
    const redelivered = window.lease("m3", 10_000, 10_000, 2_000, INVISIBLE_MS);
    assert.deepEqual(offsets(redelivered), unacked.filter((offset) => offset >= 5_000));
    assert.ok(redelivered.every((lease) => lease.deliveryCount === 2));
  });

  it("reset clears everything", () => {
    const window = new QueueWindow(0);
    const leases = leaseAll(window, 4);
    window.nack("m1", 2, leases.get(2)!.leaseId, 0, 5_000, MAX_DELIVERIES);
    window.reset(2);
    assert.deepEqual(window.snapshot(), { startOffset: 2, done: [], deliveries: [], dead: [] });
    assert.equal(window.nextDueMs(), undefined);
    assert.deepEqual(window.lease("m1", 3, 5, 10_000, INVISIBLE_MS).map((l) => [l.offset, l.deliveryCount]), [[2, 1], [3, 1], [4, 1]]);
  });

  it("version moves on every change and only then", () => {
    const window = new QueueWindow(0);
    let version = window.version;
    const changed = (): boolean => {
      const moved = window.version !== version;
      version = window.version;
      return moved;
    };
    assert.deepEqual(window.lease("m1", 5, 0, 0, INVISIBLE_MS), []);
    assert.equal(changed(), false);
    const [lease] = window.lease("m1", 1, 5, 0, INVISIBLE_MS);
    assert.equal(changed(), true);
    assert.deepEqual(window.expire(1, MAX_DELIVERIES), []);
    assert.equal(changed(), false);
    window.extend("m1", 0, lease!.leaseId, 0, 10);
    assert.equal(changed(), true);
    window.ack("m1", 0, lease!.leaseId);
    assert.equal(changed(), true);
    window.settleDead(3);
    assert.equal(changed(), false);
  });
});

describe("queue window: per-key ordering", () => {
  // Offsets 0..11: keys a b a c a b c a b a c d (key ids: a=1 b=2 c=3 d=4), 12+ unkeyed.
  const KEYS = [1, 2, 1, 3, 1, 2, 3, 1, 2, 1, 3, 4];
  const keyOf = (offset: number): number | undefined => KEYS[offset];

  it("leases one offset per key at a time, in order, to one member", () => {
    const window = new QueueWindow(0);
    const first = window.lease("m1", 20, 14, 0, INVISIBLE_MS, keyOf);
    assert.deepEqual(offsets(first), [0, 1, 3, 11, 12, 13], "the first offset of each key, plus unkeyed ones");
    assert.deepEqual(window.lease("m2", 20, 14, 0, INVISIBLE_MS, keyOf), [], "every key is held by m1");
    window.ack("m1", 0, leaseIdOf(first, 0));
    const second = window.lease("m2", 20, 14, 0, INVISIBLE_MS, keyOf);
    assert.deepEqual(offsets(second), [2], "key a moves on to its next offset");
    window.ack("m1", 1, leaseIdOf(first, 1));
    window.ack("m2", 2, leaseIdOf(second, 2));
    assert.deepEqual(offsets(window.lease("m2", 20, 14, 0, INVISIBLE_MS, keyOf)), [4, 5]);
  });

  it("a failing key waits for its redelivery and dead-lettering without blocking other keys", () => {
    const window = new QueueWindow(0);
    let now = 0;
    const seen: number[] = [];
    let leases = window.lease("m1", 20, 12, now, INVISIBLE_MS, keyOf);
    // Key a (offset 0) always fails; everything else succeeds.
    for (let round = 0; round < 20 && window.startOffset < 12; round++) {
      for (const lease of leases) {
        seen.push(lease.offset);
        if (lease.offset === 0) {
          window.nack("m1", lease.offset, lease.leaseId, now, 100, MAX_DELIVERIES, "bad");
        } else {
          window.ack("m1", lease.offset, lease.leaseId);
        }
      }
      for (const dead of window.deadLetters()) window.settleDead(dead.offset);
      now += 100;
      leases = window.lease("m1", 20, 12, now, INVISIBLE_MS, keyOf);
    }
    assert.equal(window.startOffset, 12);
    const orderOf = (key: number): number[] => seen.filter((offset) => KEYS[offset] === key);
    assert.deepEqual(orderOf(1), [0, 0, 0, 2, 4, 7, 9], "key a: offset 0 three times, then the rest in order");
    assert.deepEqual(orderOf(2), [1, 5, 8]);
    assert.deepEqual(orderOf(3), [3, 6, 10]);
    assert.ok(seen.indexOf(8) < seen.indexOf(2), "key b finished before key a got past its failing offset");
  });

  it("keeps key order across a restore (keys are recomputed from keyOf)", () => {
    const window = new QueueWindow(0);
    const leases = window.lease("m1", 20, 12, 0, INVISIBLE_MS, keyOf);
    window.ack("m1", 1, leaseIdOf(leases, 1));
    const restored = QueueWindow.restore(window.snapshot());
    const relet = restored.lease("m2", 20, 12, 0, INVISIBLE_MS, keyOf);
    assert.deepEqual(offsets(relet), [0, 3, 5, 11], "heads only: a@0 c@3 b@5 d@11");
    assert.deepEqual(relet.map((l) => l.deliveryCount), [2, 2, 1, 2]);
  });

  it("a window leased without keys honours them from the first call that passes keyOf", () => {
    const window = new QueueWindow(0);
    // 64 offsets fill the ring exactly, so the next ones reuse the slots of the acked ones.
    for (const [offset, lease] of leaseAll(window, 64)) window.ack("m1", offset, lease.leaseId);
    const unkeyed = leaseAll(window, 69);
    const sameKey = (): number => 7;
    assert.deepEqual(window.lease("m2", 10, 75, 0, INVISIBLE_MS, sameKey), [], "offset 64 of key 7 is still leased");
    window.ack("m1", 66, unkeyed.get(66)!.leaseId);
    window.ack("m1", 64, unkeyed.get(64)!.leaseId);
    assert.deepEqual(window.lease("m2", 10, 75, 0, INVISIBLE_MS, sameKey), [], "offset 65 of key 7 is still leased");
    for (const offset of [65, 67, 68]) window.ack("m1", offset, unkeyed.get(offset)!.leaseId);
    assert.deepEqual(offsets(window.lease("m2", 10, 75, 0, INVISIBLE_MS, sameKey)), [69]);
  });

  it("agrees with a naive model on random operations", () => {
    for (let seed = 1; seed <= 12; seed++) runAgainstModel(seed, seed % 2 === 0);
  });
});

describe("queue window: throughput", () => {
  it("leases and acks 1,000,000 offsets in batches of 100", (t) => {
    const window = new QueueWindow(0);
    const total = 1_000_000;
    const started = process.hrtime.bigint();
    for (let acked = 0; acked < total; ) {
      const leases = window.lease("m1", 100, total, acked, INVISIBLE_MS);
      for (const lease of leases) window.ack("m1", lease.offset, lease.leaseId);
      acked += leases.length;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    assert.equal(window.startOffset, total);
    assert.equal(window.inFlight, 0);
    t.diagnostic(`lease+ack of ${total} offsets in ${seconds.toFixed(3)} s: ${Math.round((2 * total) / seconds)} ops/s (${Math.round(total / seconds)} offsets/s)`);
  });
});

/**
 * A deliberately naive window (a Map of offsets, linear scans) to compare with. Its lease rule is
 * the specification: an offset is leasable when available and no other not-done offset of its
 * key is earlier or leased/delayed/dead.
 */
class ModelWindow {
  start = 0;
  next = 0;
  lastLeaseId = 0;
  readonly slots = new Map<number, { state: string; count: number; member?: string; leaseId?: number; until?: number; error?: string }>();

  constructor(readonly maxWindow: number) {}

  lease(member: string, max: number, end: number, now: number, invisible: number, keyOf?: (o: number) => number | undefined): Lease[] {
    for (const slot of this.slots.values()) if (slot.state === "delayed" && slot.until! <= now) slot.state = "available";
    const out: Lease[] = [];
    for (let offset = this.start; out.length < max && offset < end; offset++) {
      if (offset >= this.next) {
        if (offset >= this.start + this.maxWindow) break;
        this.slots.set(offset, { state: "available", count: 0 });
        this.next = offset + 1;
      }
      const slot = this.slots.get(offset)!;
      if (slot.state !== "available" || this.blocked(offset, keyOf)) continue;
      Object.assign(slot, { state: "leased", member, leaseId: ++this.lastLeaseId, until: now + invisible });
      slot.count++;
      out.push({ offset, deliveryCount: slot.count, leaseId: slot.leaseId!, deadlineMs: now + invisible });
    }
    return out;
  }

  blocked(offset: number, keyOf?: (o: number) => number | undefined): boolean {
    const key = keyOf?.(offset);
    if (key === undefined) return false;
    for (const [other, slot] of this.slots) {
      if (other === offset || slot.state === "done" || keyOf!(other) !== key) continue;
      if (other < offset || slot.state !== "available") return true;
    }
    return false;
  }

  settle(member: string, offset: number, leaseId: number): "ok" | "unknown-lease" {
    const slot = this.slots.get(offset);
    return slot && slot.state === "leased" && slot.member === member && slot.leaseId === leaseId ? "ok" : "unknown-lease";
  }

  done(offset: number): void {
    this.slots.get(offset)!.state = "done";
    while (this.start < this.next && this.slots.get(this.start)!.state === "done") this.slots.delete(this.start++);
  }

  snapshot(): WindowSnapshot {
    const snapshot: WindowSnapshot = { startOffset: this.start, done: [], deliveries: [], dead: [] };
    for (let offset = this.start; offset < this.next; offset++) {
      const slot = this.slots.get(offset)!;
      const last = snapshot.done[snapshot.done.length - 1];
      if (slot.state === "done") {
        if (last && last[1] === offset) last[1]++;
        else snapshot.done.push([offset, offset + 1]);
      } else if (slot.state === "dead") snapshot.dead.push([offset, slot.count, slot.error!]);
      else if (slot.count > 0) snapshot.deliveries.push([offset, slot.count]);
    }
    return snapshot;
  }
}


function runAgainstModel(seed: number, keyed: boolean): void {
  const rand = random(seed);
  const pick = <T>(items: T[]): T | undefined => items[Math.floor(rand() * items.length)];
  const keyOf = keyed ? (offset: number): number | undefined => (offset % 7 === 6 ? undefined : (offset * 2654435761) % 5) : undefined;
  let window = new QueueWindow(0, { maxWindow: 40 });
  const model = new ModelWindow(40);
  const members = ["m1", "m2", "m3"];
  let now = 0;
  let end = 0;
  const held: Array<{ member: string; lease: Lease }> = [];
  for (let step = 0; step < 3_000; step++) {
    const where = `seed ${seed} step ${step}`;
    const roll = rand();
    now += Math.floor(rand() * 50);
    if (roll < 0.3) {
      end += Math.floor(rand() * 10);
      const member = pick(members)!;
      const max = 1 + Math.floor(rand() * 8);
      const got = window.lease(member, max, end, now, 500, keyOf);
      assert.deepEqual(got, model.lease(member, max, end, now, 500, keyOf), where);
      for (const lease of got) held.push({ member, lease });
    } else if (roll < 0.75 && held.length > 0) {
      const index = Math.floor(rand() * held.length);
      const { member, lease } = held[index]!;
      held.splice(index, 1);
      const who = rand() < 0.1 ? "m9" : member;
      const kind = rand();
      const expected = model.settle(who, lease.offset, lease.leaseId);
      if (kind < 0.6) {
        assert.equal(window.ack(who, lease.offset, lease.leaseId), expected, where);
        if (expected === "ok") model.done(lease.offset);
      } else if (kind < 0.9) {
        const delay = rand() < 0.5 ? 0 : 100;
        assert.equal(window.nack(who, lease.offset, lease.leaseId, now, delay, 3, "nack"), expected, where);
        const slot = model.slots.get(lease.offset);
        if (expected === "ok" && slot) {
          if (slot.count >= 3) Object.assign(slot, { state: "dead", error: "nack" });
          else Object.assign(slot, { state: delay > 0 ? "delayed" : "available", until: now + delay });
        }
      } else {
        assert.equal(window.extend(who, lease.offset, lease.leaseId, now, 800), expected, where);
        if (expected === "ok") {
          model.slots.get(lease.offset)!.until = now + 800;
          held.push({ member, lease });
        }
      }
    } else if (roll < 0.85) {
      const expected: number[] = [];
      for (const [offset, slot] of model.slots) {
        if (slot.state !== "leased" || slot.until! > now) continue;
        expected.push(offset);
        Object.assign(slot, slot.count >= 3 ? { state: "dead", error: "lease expired" } : { state: "available" });
      }
      assert.deepEqual(window.expire(now, 3), expected.sort((a, b) => a - b), where);
    } else if (roll < 0.92) {
      const dead = pick(window.deadLetters());
      if (dead) {
        window.settleDead(dead.offset);
        model.done(dead.offset);
      }
    } else if (roll < 0.96) {
      const member = pick(members)!;
      const expected: number[] = [];
      for (const [offset, slot] of model.slots) {
        if (slot.state === "leased" && slot.member === member) {
          slot.state = "available";
          expected.push(offset);
        }
      }
      assert.deepEqual(window.releaseMember(member), expected.sort((a, b) => a - b), where);
    } else {
      // Restore both from the snapshot: leases and delays are forgotten.
      const snapshot = window.snapshot();
      const restored = QueueWindow.restore(snapshot, { maxWindow: 40 });
      assert.deepEqual(restored.snapshot(), snapshot, where);
      for (const slot of model.slots.values()) if (slot.state === "leased" || slot.state === "delayed") slot.state = "available";
      model.lastLeaseId = 0;
      let last = model.start;
      for (const [offset, slot] of model.slots) if (slot.state !== "available" || slot.count > 0) last = Math.max(last, offset + 1);
      for (let offset = last; offset < model.next; offset++) model.slots.delete(offset);
      model.next = Math.max(last, model.start);
      held.length = 0;
      window = restored;
    }
    assert.deepEqual(window.snapshot(), model.snapshot(), where);
  }
}
