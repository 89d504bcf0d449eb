import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { createFailureDetector } from "../../nameserver/src/liveness/detector.js";
import { parseDetectorOptions } from "../../nameserver/src/liveness/detector-options.js";
import { FixedWindowDetector } from "../../nameserver/src/liveness/fixed-detector.js";

function detector(clock: FakeClock, expiryMs = 3000): FixedWindowDetector {
  return new FixedWindowDetector({ clock, heartbeatIntervalMs: 1000, expiryMs });
}

describe("fixed liveness detector", () => {
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
    assert.deepEqual(liveness.sweep(), [{ key: "old", heartbeatAgeMs: 3001, suspicion: 3.001 }]);
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

  it("suspicion counts heartbeat intervals of silence; unknown for a broker never seen", () => {
    const clock = new FakeClock(0);
    const liveness = detector(clock);
    assert.equal(liveness.suspicion("b1"), undefined);
    liveness.heartbeat("b1");
    assert.equal(liveness.suspicion("b1"), 0);
    clock.advance(2500);
    assert.equal(liveness.suspicion("b1"), 2.5);
  });

  it("honours a non-default k and T: 5 missed heartbeats of 200 ms", () => {
    const clock = new FakeClock(0);
    const { expiryMs, detector: settings } = parseDetectorOptions({ heartbeatIntervalMs: 200, expiryHeartbeats: 5, detector: "fixed" });
    assert.equal(expiryMs, 1000);
    const liveness = createFailureDetector({ clock, heartbeatIntervalMs: 200, expiryMs, settings });
    assert.equal(liveness.kind, "fixed");
    liveness.heartbeat("b1");
    clock.advance(300);
    assert.equal(liveness.state("b1"), "alive", "1.5 × 200 ms is still alive");
    clock.advance(1);
    assert.equal(liveness.state("b1"), "suspect");
    assert.equal(liveness.suspicion("b1"), 1.505);
    clock.advance(699);
    assert.equal(liveness.state("b1"), "suspect", "five intervals of silence is the boundary");
    assert.deepEqual(liveness.sweep(), []);
    clock.advance(1);
    assert.equal(liveness.state("b1"), "dead");
    assert.deepEqual(liveness.sweep(), [{ key: "b1", heartbeatAgeMs: 1001, suspicion: 5.005 }]);
  });
});
