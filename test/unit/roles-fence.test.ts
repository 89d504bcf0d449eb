import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { NotLeaderError } from "../../common/src/errors.js";
import { KeepaliveTracker } from "../../broker/src/registration/keepalive-tracker.js";
import { LeaseFence, NO_FENCE, type LeaseTiming } from "../../broker/src/roles/fence.js";

/** A lease whose timing the test sets by hand. */
function fakeLease(start: Partial<LeaseTiming> = {}): { -readonly [K in keyof LeaseTiming]: LeaseTiming[K] } {
  return { leaseId: "7", lastAckedSendMs: 0, ttlMs: 2000, ...start };
}

describe("LeaseFence", () => {
  it("allows work only before last acked send + TTL − margin", () => {
    const clock = new FakeClock(10_000);
    const lease = fakeLease({ lastAckedSendMs: 10_000 });
    const fence = new LeaseFence({ lease, clock, marginMs: 500, brokerName: "b1/0" });
    fence.arm("7");
    fence.check();
    clock.set(11_499);
    fence.check();
    clock.set(11_500);
    assert.throws(() => fence.check(), (err: unknown) => {
      assert.ok(err instanceof NotLeaderError);
      assert.equal(err.retriable, true);
      assert.match(err.message, /could not renew its etcd lease for 1500 ms/);
      return true;
    });
    // A keep-alive answered again: allowed again, counted from its send time.
    lease.lastAckedSendMs = 11_400;
    fence.check();
    assert.equal(fence.allowedUntilMs(), 12_900);
  });

  it("refuses when not armed, and when the lease was replaced", () => {
    const clock = new FakeClock(0);
    const lease = fakeLease();
    const fence = new LeaseFence({ lease, clock, brokerName: "b1/0" });
    assert.throws(() => fence.check(), /is not the master/);
    fence.arm("7");
    fence.check();
    lease.leaseId = undefined;
    assert.throws(() => fence.check(), /lost the etcd lease it holds mastership under \(7\)/);
    lease.leaseId = "8";
    assert.throws(() => fence.check(), NotLeaderError);
    fence.arm("8");
    fence.check();
    fence.disarm();
    assert.throws(() => fence.check(), NotLeaderError);
    assert.equal(fence.allowedUntilMs(), -Infinity);
  });

  it("uses a 500 ms margin by default and the no-etcd fence never throws", () => {
    const clock = new FakeClock(1499);
    const fence = new LeaseFence({ lease: fakeLease(), clock, brokerName: "b1/0" });
    fence.arm("7");
    fence.check();
    clock.set(1500);
    assert.throws(() => fence.check(), NotLeaderError);
    NO_FENCE.check();
  });
});

describe("KeepaliveTracker", () => {
  it("counts from the grant, then from the send time of each answered keep-alive, first in first out", () => {
    const tracker = new KeepaliveTracker(2000);
    assert.equal(tracker.lastAckedSendMs, 0);
    tracker.granted(1000);
    assert.equal(tracker.lastAckedSendMs, 1000);
    tracker.fired(1600);
    tracker.fired(2200);
    tracker.answered(2);
    assert.equal(tracker.lastAckedSendMs, 1600, "the answer belongs to the older send");
    tracker.answered(2);
    assert.equal(tracker.lastAckedSendMs, 2200);
    assert.equal(tracker.ttlMs, 2000);
  });

  it("drops unanswered sends when the stream resets: a late answer is not credited to them", () => {
    const tracker = new KeepaliveTracker(2000);
    tracker.granted(0);
    tracker.fired(700);
    tracker.streamReset();
    tracker.answered(2);
    assert.equal(tracker.lastAckedSendMs, 0);
    tracker.fired(1400);
    tracker.answered(2);
    assert.equal(tracker.lastAckedSendMs, 1400);
  });

  it("takes the TTL etcd reports (it raises TTLs below its minimum) and forgets it on a new grant", () => {
    const tracker = new KeepaliveTracker(1000);
    tracker.granted(0);
    assert.equal(tracker.ttlMs, 1000);
    tracker.fired(300);
    tracker.answered(2);
    assert.equal(tracker.ttlMs, 2000);
    tracker.granted(5000);
    assert.equal(tracker.ttlMs, 1000);
    assert.equal(tracker.lastAckedSendMs, 5000);
  });

  it("never moves backwards, and stops queueing when etcd stops answering", () => {
    const tracker = new KeepaliveTracker(2000);
    tracker.granted(10_000);
    for (let i = 1; i <= 100; i++) tracker.fired(10_000 + i);
    for (let i = 0; i < 100; i++) tracker.answered(2);
    // Only the first 64 sends were queued: the answers map to them, the later ones are not credited.
    assert.equal(tracker.lastAckedSendMs, 10_064);
  });
});
