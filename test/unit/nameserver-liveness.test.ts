import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { LivenessDetector } from "../../nameserver/src/liveness/detector.js";

function detector(clock: FakeClock, expiryMs = 3000): LivenessDetector {
  return new LivenessDetector({ clock, heartbeatIntervalMs: 1000, expiryMs });
}

describe("liveness detector", () => {
  it("is alive up to 1.5 intervals, suspect up to the expiry, dead after it", () => {
    const clock = new FakeClock(10_000);
    const liveness = detector(clock);
    liveness.heartbeat("b1");
    assert.equal(liveness.state("b1"), "alive");
    clock.advance(1500);
    assert.equal(liveness.state("b1"), "alive", "exactly 1.5 × interval is still alive");
    clock.advance(1);
    assert.equal(liveness.state("b1"), "suspect");
    clock.advance(1499);
    assert.equal(liveness.heartbeatAgeMs("b1"), 3000);
    assert.equal(liveness.state("b1"), "suspect", "exactly the expiry is still suspect");
    assert.deepEqual(liveness.sweep(), [], "nothing expires at the boundary");
    clock.advance(1);
    assert.equal(liveness.state("b1"), "dead");
  });

  it("sweep forgets dead brokers only, and reports how long they were silent", () => {
    const clock = new FakeClock(0);
    const liveness = detector(clock);
    liveness.heartbeat("old");
    clock.advance(2000);
    liveness.heartbeat("fresh");
    clock.advance(1001);
    assert.deepEqual(liveness.sweep(), [{ key: "old", heartbeatAgeMs: 3001 }]);
    assert.equal(liveness.isTracked("old"), false);
    assert.equal(liveness.state("old"), "dead", "an untracked broker is dead");
    assert.equal(liveness.state("fresh"), "alive");
    assert.deepEqual(liveness.sweep(), [], "a second sweep finds nothing new");
  });

  it("a new heartbeat revives a suspect broker", () => {
    const clock = new FakeClock(0);
    const liveness = detector(clock);
    liveness.heartbeat("b1");
    clock.advance(2500);
    assert.equal(liveness.state("b1"), "suspect");
    liveness.heartbeat("b1");
    assert.equal(liveness.state("b1"), "alive");
    assert.equal(liveness.heartbeatAgeMs("b1"), 0);
    clock.advance(3000);
    assert.deepEqual(liveness.sweep(), [], "the revived broker's window restarted");
  });

  it("an expiry shorter than 1.5 intervals goes from alive straight to dead", () => {
    const clock = new FakeClock(0);
    const liveness = detector(clock, 1200);
    liveness.heartbeat("b1");
    clock.advance(1200);
    assert.equal(liveness.state("b1"), "alive");
    clock.advance(1);
    assert.equal(liveness.state("b1"), "dead");
  });

  it("forget stops tracking at once (unregistration)", () => {
    const clock = new FakeClock(0);
    const liveness = detector(clock);
    liveness.heartbeat("b1");
    liveness.forget("b1");
    assert.equal(liveness.state("b1"), "dead");
    assert.equal(liveness.heartbeatAgeMs("b1"), undefined);
    assert.deepEqual(liveness.sweep(), []);
  });
});
