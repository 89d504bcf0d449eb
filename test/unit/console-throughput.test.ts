/**
 * The console's throughput sampler on a fake clock and fake timers: rates from end offsets,
 * the window of readings it keeps, and when it starts and stops.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { ThroughputSampler, type EndOffsets, type IntervalTimers } from "../../ops/console/src/throughput.js";

/** Timers that fire only when the test says, so intervals are exact. */
class FakeTimers implements IntervalTimers {
  callback: (() => void) | undefined;
  intervalMs = 0;
  started = 0;
  cleared = 0;
  setInterval(callback: () => void, ms: number): unknown {
    this.callback = callback;
    this.intervalMs = ms;
    this.started++;
    return this.started;
  }
  clearInterval(): void {
    this.callback = undefined;
    this.cleared++;
  }
}

interface Rig {
  clock: FakeClock;
  timers: FakeTimers;
  sampler: ThroughputSampler;
  /** What the next reading returns. */
  offsets: Map<string, number>;
  reads: () => number;
  /** Advances the clock by `ms` and fires the interval, waiting for its reading. */
  tick: (ms?: number) => Promise<void>;
}

function rig(options: { maxSamples?: number; failNext?: () => boolean } = {}): Rig {
  const clock = new FakeClock(1_000_000);
  const timers = new FakeTimers();
  const offsets = new Map<string, number>();
  let reads = 0;
  const sampler = new ThroughputSampler({
    clock,
    timers,
    ...(options.maxSamples === undefined ? {} : { maxSamples: options.maxSamples }),
    readEndOffsets: async (): Promise<EndOffsets> => {
      reads++;
      if (options.failNext?.()) throw new Error("master unreachable");
      return new Map(offsets);
    },
  });
  return {
    clock,
    timers,
    sampler,
    offsets,
    reads: () => reads,
    tick: async (ms = 2_000) => {
      clock.advance(ms);
      assert.ok(timers.callback, "the sampler's interval is running");
      await sampler.tick();
    },
  };
}

describe("throughput sampler", () => {
  it("starts on the first call with a reading at once, every 2 s after", async () => {
    const r = rig();
    assert.equal(r.sampler.sampling, false);
    assert.equal(r.reads(), 0, "nothing is read before anyone asks");
    r.sampler.touch();
    await r.sampler.settled();
    assert.equal(r.sampler.sampling, true);
    assert.equal(r.timers.intervalMs, 2_000);
    assert.equal(r.reads(), 1);
    assert.equal(r.sampler.report().samples, 1);
    r.sampler.touch();
    assert.equal(r.timers.started, 1, "a second call does not start a second interval");
  });

  it("rates are the end-offset difference over the time between two readings", async () => {
    const r = rig();
    r.offsets.set("orders", 1_000);
    r.sampler.touch();
    await r.sampler.settled();
    const t0 = r.clock.now();
    r.offsets.set("orders", 1_100);
    await r.tick(2_000);
    r.offsets.set("orders", 1_400);
    await r.tick(2_000);
    // A late interval: the rate spans the real gap, not the nominal 2 s.
    r.offsets.set("orders", 1_900);
    await r.tick(5_000);
    const report = r.sampler.report();
    const orders = report.topics.find((t) => t.topic === "orders");
    assert.deepEqual(orders?.points, [
      { atMs: t0 + 2_000, spanMs: 2_000, messagesPerSecond: 50 },
      { atMs: t0 + 4_000, spanMs: 2_000, messagesPerSecond: 150 },
      { atMs: t0 + 9_000, spanMs: 5_000, messagesPerSecond: 100 },
    ]);
    assert.equal(orders?.messagesPerSecond, 100, "the latest rate");
    assert.deepEqual(report.total.map((p) => p.messagesPerSecond), [50, 150, 100]);
    // The rates integrate back to the messages written.
    const written = report.total.reduce((sum, p) => sum + (p.messagesPerSecond * p.spanMs) / 1000, 0);
    assert.equal(written, 900);
  });

  it("sums user topics into the total and lists internal topics without counting them", async () => {
    const r = rig();
    r.offsets.set("orders", 0).set("payments", 10).set("%groups", 0);
    r.sampler.touch();
    await r.sampler.settled();
    r.offsets.set("orders", 40).set("payments", 30).set("%groups", 1_000);
    await r.tick();
    const report = r.sampler.report();
    assert.deepEqual(
      report.topics.map((t) => [t.topic, t.internal, t.messagesPerSecond]),
      [["%groups", true, 500], ["orders", false, 20], ["payments", false, 10]],
    );
    assert.deepEqual(report.total.map((p) => p.messagesPerSecond), [30]);
  });

  it("a topic new in a reading has no rate until the next; a topic recreated with fewer messages reads 0, not negative", async () => {
    const r = rig();
    r.offsets.set("orders", 500);
    r.sampler.touch();
    await r.sampler.settled();
    r.offsets.set("orders", 10).set("fresh", 7);
    await r.tick();
    let report = r.sampler.report();
    assert.deepEqual(report.topics.find((t) => t.topic === "orders")?.points.map((p) => p.messagesPerSecond), [0]);
    assert.deepEqual(report.topics.find((t) => t.topic === "fresh")?.points, []);
    r.offsets.set("fresh", 27);
    await r.tick();
    report = r.sampler.report();
    assert.deepEqual(report.topics.find((t) => t.topic === "fresh")?.points.map((p) => p.messagesPerSecond), [10]);
    r.offsets.delete("orders");
    await r.tick();
    assert.equal(r.sampler.report().topics.some((t) => t.topic === "orders"), false, "a deleted topic leaves the report");
  });

  it("keeps the last 60 readings", async () => {
    const r = rig();
    r.sampler.touch();
    await r.sampler.settled();
    for (let i = 1; i <= 75; i++) {
      r.offsets.set("orders", i * 10);
      r.sampler.touch();
      await r.tick();
    }
    const report = r.sampler.report();
    assert.equal(report.samples, 60);
    assert.equal(report.total.length, 59);
    assert.equal(report.total.at(-1)?.atMs, r.clock.now());
    assert.equal(report.total[0]?.atMs, r.clock.now() - 58 * 2_000);
    assert.ok(report.total.every((p) => p.messagesPerSecond === 5));
  });

  it("stops after 60 s without a call, forgets its readings, and starts afresh on the next call", async () => {
    const r = rig();
    r.sampler.touch();
    await r.sampler.settled();
    for (let i = 0; i < 29; i++) await r.tick(); // 58 s after the call
    assert.equal(r.sampler.sampling, true);
    assert.equal(r.reads(), 30);
    await r.tick(); // 60 s
    assert.equal(r.sampler.sampling, false);
    assert.equal(r.timers.cleared, 1);
    assert.equal(r.reads(), 30, "no reading once idle");
    assert.equal(r.sampler.report().samples, 0);

    r.clock.advance(300_000);
    r.offsets.set("orders", 100);
    r.sampler.touch();
    await r.sampler.settled();
    assert.equal(r.sampler.sampling, true);
    assert.equal(r.timers.started, 2);
    const report = r.sampler.report();
    assert.equal(report.samples, 1, "the old readings are gone: no rate spans the idle gap");
    assert.deepEqual(report.total, []);
  });

  it("calls keep it running past 60 s", async () => {
    const r = rig();
    r.sampler.touch();
    await r.sampler.settled();
    for (let i = 0; i < 60; i++) {
      await r.tick();
      if (i % 10 === 0) r.sampler.touch();
    }
    assert.equal(r.sampler.sampling, true);
  });

  it("a failed reading is skipped, and the next rate spans the two readings that worked", async () => {
    let fail = false;
    const r = rig({ failNext: () => fail });
    r.offsets.set("orders", 0);
    r.sampler.touch();
    await r.sampler.settled();
    fail = true;
    r.offsets.set("orders", 100);
    await r.tick();
    fail = false;
    r.offsets.set("orders", 400);
    await r.tick();
    const report = r.sampler.report();
    assert.equal(report.samples, 2);
    assert.deepEqual(report.total.map((p) => p.messagesPerSecond), [100]);
  });

  it("does not start a second reading while one is slow, and drops a reading that ends after a stop", async () => {
    const clock = new FakeClock(0);
    const timers = new FakeTimers();
    let release: (() => void) | undefined;
    let reads = 0;
    const sampler = new ThroughputSampler({
      clock,
      timers,
      readEndOffsets: () => {
        reads++;
        return new Promise((resolve) => {
          release = () => resolve(new Map([["orders", 1]]));
        });
      },
    });
    sampler.touch();
    clock.advance(2_000);
    void sampler.tick();
    assert.equal(reads, 1, "the tick waits for the reading in progress");
    sampler.stop();
    release?.();
    await sampler.settled();
    assert.equal(sampler.report().samples, 0);
  });

  it("refuses options it cannot work with", () => {
    const readEndOffsets = async (): Promise<EndOffsets> => new Map();
    assert.throws(() => new ThroughputSampler({ readEndOffsets, intervalMs: 0 }), /intervalMs/);
    assert.throws(() => new ThroughputSampler({ readEndOffsets, maxSamples: 1 }), /maxSamples/);
    assert.throws(() => new ThroughputSampler({ readEndOffsets, idleStopMs: 1.5 }), /idleStopMs/);
  });
});
