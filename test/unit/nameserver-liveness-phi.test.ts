import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { ArrivalWindow } from "../../nameserver/src/liveness/arrival-window.js";
import { createFailureDetector } from "../../nameserver/src/liveness/detector.js";
import { FixedWindowDetector } from "../../nameserver/src/liveness/fixed-detector.js";
import { PhiAccrualDetector, phi } from "../../nameserver/src/liveness/phi-detector.js";

const INTERVAL_MS = 1000;
const EXPIRY_MS = 3000;

function phiDetector(clock: FakeClock): PhiAccrualDetector {
  return new PhiAccrualDetector({ clock, heartbeatIntervalMs: INTERVAL_MS, expiryMs: EXPIRY_MS });
}

/** Heartbeats `count` times, `intervalMs()` apart. */
function beat(clock: FakeClock, detector: { heartbeat(key: string): void }, count: number, intervalMs: () => number): void {
  for (let i = 0; i < count; i++) {
    clock.advance(intervalMs());
    detector.heartbeat("b1");
  }
}

/** Deterministic jitter in [-spread, +spread] (a linear congruential generator). */
function jitter(spreadMs: number): () => number {
  let seed = 42;
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return Math.round((seed / 2 ** 31) * 2 * spreadMs - spreadMs);
  };
}

describe("phi function", () => {
  it("is log10(2) at the mean, tracks the normal tail and errs towards suspicion far out", () => {
    assert.ok(Math.abs(phi(1000, 1000, 250) - Math.log10(2)) < 1e-12);
    // −log10 of the exact normal tail at 1σ and 2σ.
    assert.ok(Math.abs(phi(1, 0, 1) - 0.79955) < 0.001);
    assert.ok(Math.abs(phi(2, 0, 1) - 1.64302) < 0.001);
    // At 3σ to 5σ the logistic approximation is above the exact values 2.87, 4.50, 6.54.
    assert.ok(phi(3, 0, 1) >= 2.87 && phi(3, 0, 1) < 3);
    assert.ok(phi(5, 0, 1) >= 6.54 && phi(5, 0, 1) < 7.5);
  });

  it("rises monotonically and stays finite however long the silence", () => {
    let previous = -1;
    for (let elapsedMs = 0; elapsedMs <= 60_000; elapsedMs += 7) {
      const value = phi(elapsedMs, 1000, 250);
      assert.ok(value >= previous, `φ fell at ${elapsedMs} ms`);
      previous = value;
    }
    assert.ok(Number.isFinite(phi(1e9, 1000, 250)));
    assert.ok(phi(0, 1000, 250) < 1e-4, "a heartbeat that just arrived is not suspicious");
  });
});

describe("arrival window", () => {
  it("keeps the mean and variance of the last N samples only", () => {
    const window = new ArrivalWindow(3);
    window.add(10);
    assert.equal(window.varianceMs2, 0, "one sample has no spread");
    window.add(20);
    window.add(30);
    assert.equal(window.meanMs, 20);
    assert.ok(Math.abs(window.varianceMs2 - 200 / 3) < 1e-9);
    window.add(40); // evicts 10
    assert.equal(window.size, 3);
    assert.equal(window.meanMs, 30);
    for (let i = 0; i < 10; i++) window.add(50);
    assert.equal(window.meanMs, 50);
    assert.equal(window.standardDeviationMs, 0);
  });
});

describe("phi accrual detector", () => {
  it("keeps a broker with steady, slightly jittery heartbeats alive", () => {
    const clock = new FakeClock(1_000_000);
    const detector = phiDetector(clock);
    detector.heartbeat("b1");
    const noise = jitter(50);
    for (let i = 0; i < 300; i++) {
      clock.advance(INTERVAL_MS + noise());
      // Just before each heartbeat arrives: the broker's most suspicious moment.
      assert.equal(detector.state("b1"), "alive", `beat ${i}: φ = ${detector.suspicion("b1")}`);
      assert.deepEqual(detector.sweep(), []);
      detector.heartbeat("b1");
      assert.ok((detector.suspicion("b1") ?? 99) < 0.01);
    }
  });

  it("adapts to a broker whose heartbeats slow down gradually: φ rises smoothly, never flaps", () => {
    const clock = new FakeClock(0);
    const detector = phiDetector(clock);
    // The fixed detector with the same T and k, for contrast.
    const fixed = new FixedWindowDetector({ clock, heartbeatIntervalMs: INTERVAL_MS, expiryMs: EXPIRY_MS });
    const both = { heartbeat: (key: string) => (detector.heartbeat(key), fixed.heartbeat(key)) };
    both.heartbeat("b1");
    beat(clock, both, 100, () => INTERVAL_MS);

    let intervalMs = INTERVAL_MS;
    let fixedSuspectSamples = 0;
    let highestPhi = 0;
    for (let i = 0; i < 200; i++) {
      // 2 % slower per heartbeat, from 1 s to 2.5 s, then steady at 2.5 s.
      intervalMs = Math.min(2500, Math.round(intervalMs * 1.02));
      let previous = detector.suspicion("b1") ?? 0;
      for (let waitedMs = 0; waitedMs < intervalMs; ) {
        const stepMs = Math.min(10, intervalMs - waitedMs);
        clock.advance(stepMs);
        waitedMs += stepMs;
        const value = detector.suspicion("b1") ?? Infinity;
        assert.ok(value >= previous, "φ only rises during a silence");
        assert.ok(value - previous < 0.1, `φ jumped from ${previous} to ${value} in ${stepMs} ms`);
        previous = value;
        highestPhi = Math.max(highestPhi, value);
        assert.equal(detector.state("b1"), "alive", `heartbeat ${i} (every ${intervalMs} ms), ${waitedMs} ms of silence: φ = ${value}`);
        if (fixed.state("b1") !== "alive") fixedSuspectSamples++;
      }
      assert.deepEqual(detector.sweep(), []);
      both.heartbeat("b1");
    }
    assert.ok(highestPhi > 1, `the slow-down was noticed (highest φ ${highestPhi})`);
    assert.ok(highestPhi < detector.phiThreshold / 2, `…but stayed far from suspicion (highest φ ${highestPhi})`);
    assert.ok(fixedSuspectSamples > 1000, "the fixed detector calls the same broker suspect at every late heartbeat");

    // Adapted: 2.6 s of silence is ordinary now, while for a 1 s rhythm it means death.
    clock.advance(2600);
    assert.ok((detector.suspicion("b1") ?? 99) < 1);
    assert.equal(detector.state("b1"), "alive");
    const fresh = phiDetector(clock);
    fresh.heartbeat("b2");
    beat(clock, { heartbeat: () => fresh.heartbeat("b2") }, 100, () => INTERVAL_MS);
    clock.advance(2600);
    assert.notEqual(fresh.state("b2"), "alive");
  });

  it("a broker that stops dead is suspect from φ ≥ 8 (2307 ms) and dead from φ ≥ 16 (2780 ms)", () => {
    const clock = new FakeClock(5_000);
    const detector = phiDetector(clock);
    detector.heartbeat("b1");
    // 120 heartbeats exactly 1 s apart: the seeds are gone, σ = 0 is raised to its 250 ms floor.
    beat(clock, detector, 120, () => INTERVAL_MS);

    clock.advance(2306);
    assert.equal(detector.state("b1"), "alive");
    clock.advance(1);
    assert.equal(detector.state("b1"), "suspect");
    assert.ok((detector.suspicion("b1") ?? 0) >= 8);
    clock.advance(472);
    assert.equal(detector.state("b1"), "suspect", "2779 ms: still routed");
    assert.deepEqual(detector.sweep(), []);
    clock.advance(1);
    assert.equal(detector.state("b1"), "dead", "2780 ms: φ ≥ 16, before the 3 s expiry window");
    const [expired, ...others] = detector.sweep();
    assert.deepEqual(others, []);
    assert.equal(expired?.key, "b1");
    assert.equal(expired?.heartbeatAgeMs, 2780);
    assert.ok((expired?.suspicion ?? 0) >= 16);
    assert.equal(detector.isTracked("b1"), false);
    assert.equal(detector.state("b1"), "dead");
    assert.equal(detector.suspicion("b1"), undefined);
  });

  it("the expiry window is a safety net for a broker too irregular for φ to convict in time", () => {
    const clock = new FakeClock(0);
    const detector = phiDetector(clock);
    detector.heartbeat("b1");
    let short = true;
    // 200 ms and 1800 ms alternately: mean 1 s, σ = 800 ms.
    beat(clock, detector, 150, () => ((short = !short) ? 200 : 1800));
    clock.advance(EXPIRY_MS);
    assert.ok((detector.suspicion("b1") ?? 99) < 8, "φ alone would keep it");
    assert.equal(detector.state("b1"), "alive");
    clock.advance(1);
    assert.equal(detector.state("b1"), "dead", "silent past the expiry window");
    assert.deepEqual(
      detector.sweep().map((e) => [e.key, e.heartbeatAgeMs]),
      [["b1", EXPIRY_MS + 1]],
    );
  });

  it("a heartbeat revives a suspect; forget starts a new rhythm from the seeds", () => {
    const clock = new FakeClock(0);
    const detector = createFailureDetector({ clock, heartbeatIntervalMs: INTERVAL_MS, expiryMs: EXPIRY_MS, settings: { kind: "phi", phiThreshold: 8 } });
    assert.equal(detector.kind, "phi");
    assert.equal(detector.suspicion("b1"), undefined);
    assert.equal(detector.state("b1"), "dead", "never heard from");
    detector.heartbeat("b1");
    // The seeds alone (750 ms and 1250 ms) make a 1 s rhythm with σ = 250 ms.
    clock.advance(1000);
    assert.ok(Math.abs((detector.suspicion("b1") ?? 0) - Math.log10(2)) < 1e-9);
    clock.advance(1400);
    assert.equal(detector.state("b1"), "suspect");
    detector.heartbeat("b1");
    assert.equal(detector.state("b1"), "alive");
    assert.equal(detector.heartbeatAgeMs("b1"), 0);
    detector.forget("b1");
    assert.equal(detector.isTracked("b1"), false);
    assert.equal(detector.heartbeatAgeMs("b1"), undefined);
  });

  it("a lower threshold suspects and convicts sooner", () => {
    const clock = new FakeClock(0);
    const strict = new PhiAccrualDetector({ clock, heartbeatIntervalMs: INTERVAL_MS, expiryMs: EXPIRY_MS, phiThreshold: 3 });
    strict.heartbeat("b1");
    beat(clock, strict, 120, () => INTERVAL_MS);
    clock.advance(1764);
    assert.equal(strict.state("b1"), "alive");
    clock.advance(1);
    assert.equal(strict.state("b1"), "suspect", "φ ≥ 3 from 1765 ms");
    clock.advance(368);
    assert.equal(strict.state("b1"), "suspect");
    clock.advance(1);
    assert.equal(strict.state("b1"), "dead", "φ ≥ 6 from 2134 ms");
  });
});
