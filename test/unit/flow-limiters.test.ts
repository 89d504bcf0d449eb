import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../common/src/errors.js";
import type { RateLimiter } from "../../broker/src/flow/rate-limiter.js";
import { TokenBucket } from "../../broker/src/flow/token-bucket.js";
import { LeakyBucket } from "../../broker/src/flow/leaky-bucket.js";
import { WarmUp } from "../../broker/src/flow/warm-up.js";
import { ConcurrencyLimit } from "../../broker/src/flow/concurrency.js";
import { seededRandom } from "../helpers/seeded-random.js";

// Time is a plain number of milliseconds: the limiters never read a clock.

/** The flow controller's rule: probe, refuse when the wait exceeds maxQueueMs, else take. */
function admit(limiter: RateLimiter, cost: number, nowMs: number, maxQueueMs: number): { admitted: boolean; waitMs: number } {
  const waitMs = limiter.probe(cost, nowMs);
  if (waitMs > maxQueueMs) return { admitted: false, waitMs };
  return { admitted: true, waitMs: limiter.take(cost, nowMs) };
}


function assertNear(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual}, expected ${expected} ± ${tolerance}`);
}

describe("leaky bucket (R21, Sentinel's uniform queueing)", () => {
  const T = 100; // 10 per second
  const t1 = 5_000;

  it("three queued after a pass at t1 put the next expected pass at exactly t1 + 4T", () => {
    const bucket = new LeakyBucket({ ratePerSecond: 10 });
    assert.equal(bucket.take(1, t1), 0, "the first request passes at once");
    const arrivedMs = t1 + 1; // right after the pass
    const passTimes = [1, 2, 3].map(() => arrivedMs + bucket.take(1, arrivedMs));
    assert.deepEqual(passTimes, [t1 + T, t1 + 2 * T, t1 + 3 * T]);
    assert.equal(arrivedMs + bucket.probe(1, arrivedMs), t1 + 4 * T);
  });

  it("admits while the wait is <= maxQueueMs = 6T; the first beyond is refused and changes nothing", () => {
    const bucket = new LeakyBucket({ ratePerSecond: 10 });
    const maxQueueMs = 6 * T;
    assert.deepEqual(admit(bucket, 1, t1, maxQueueMs), { admitted: true, waitMs: 0 });
    for (let queued = 1; queued <= 6; queued++) {
      assert.deepEqual(admit(bucket, 1, t1, maxQueueMs), { admitted: true, waitMs: queued * T }, `request ${queued}`);
    }
    const refused = admit(bucket, 1, t1, maxQueueMs);
    assert.deepEqual(refused, { admitted: false, waitMs: 7 * T });
    assert.equal(bucket.probe(1, t1), 7 * T, "the refused request booked nothing");
    assert.equal(bucket.probe(1, t1), 7 * T);
    // One outlet slot later the line has moved and the wait is back within 6T.
    assert.deepEqual(admit(bucket, 1, t1 + T, maxQueueMs), { admitted: true, waitMs: 6 * T });
  });

  it("passes at once when T has elapsed since the last pass, else waits the rest of T", () => {
    const bucket = new LeakyBucket({ ratePerSecond: 10 });
    bucket.take(1, t1);
    assert.equal(bucket.probe(1, t1 + T), 0);
    assert.equal(bucket.probe(1, t1 + 30), T - 30);
    assert.equal(bucket.take(1, t1 + 250), 0, "idle time is not banked ...");
    assert.equal(bucket.take(1, t1 + 250), T, "... so the next one is paced again, no burst");
  });

  it("after the queue drains a request passes at once, and the pacing restarts from it", () => {
    const bucket = new LeakyBucket({ ratePerSecond: 10 });
    for (let i = 0; i < 5; i++) bucket.take(1, t1);
    const lastPassMs = t1 + 4 * T;
    assert.equal(bucket.probe(1, lastPassMs + T - 1), 1, "still one ms of the last slot to go");
    const drainedMs = lastPassMs + 3 * T;
    assert.equal(bucket.take(1, drainedMs), 0);
    assert.equal(bucket.probe(1, drainedMs), T);
  });

  it("maxQueueMs = 0 is direct reject; a cost occupies cost·T; available is undefined", () => {
    const bucket = new LeakyBucket({ ratePerSecond: 10 });
    assert.equal(admit(bucket, 1, 0, 0).admitted, true);
    assert.equal(admit(bucket, 1, 0, 0).admitted, false);
    assert.equal(admit(bucket, 1, T, 0).admitted, true);
    assert.equal(bucket.take(5, T), 5 * T, "a cost of 5 passes 5T after the previous pass");
    assert.equal(bucket.probe(1, T), 6 * T, "and the next one T after that");
    assert.equal(bucket.available(), undefined);
  });
});

describe("token bucket (R20)", () => {
  it("a burst of 100 passes at once, then one token every 1/rate; a long idle refills to burst, never above", () => {
    const bucket = new TokenBucket({ ratePerSecond: 10, burst: 100 });
    for (let i = 0; i < 100; i++) assert.equal(bucket.take(1, 0), 0, `request ${i + 1} of the burst`);
    assert.equal(bucket.take(1, 0), 100, "the 101st waits 100 ms");
    assert.equal(bucket.take(1, 0), 200, "the 102nd waits 200 ms");
    assert.equal(bucket.available(0), -2, "two tokens booked ahead of the refill");
    assert.equal(bucket.available(1_000), 8);
    const idleMs = 1_000_000_000;
    assert.equal(bucket.available(idleMs), 100, "full again, capped at burst");
    for (let i = 0; i < 100; i++) assert.equal(bucket.take(1, idleMs), 0);
    assert.equal(bucket.take(1, idleMs), 100, "the idle time banked exactly one burst");
  });

  it("an oversized batch (250 > burst 100) passes when full and leaves a debt of 150; the next waits 151/rate s", () => {
    const bucket = new TokenBucket({ ratePerSecond: 10, burst: 100 });
    assert.equal(bucket.take(250, 0), 0);
    assert.equal(bucket.available(0), -150);
    assert.equal(bucket.probe(1, 0), 15_100);
    assert.equal(bucket.take(1, 0), 15_100);
    // Not full: the next oversized batch waits until the bucket holds a whole burst again.
    assert.equal(bucket.probe(250, 15_100), 10_000);
  });

  it("FIFO: a small request after a big queued one waits behind it", () => {
    const bucket = new TokenBucket({ ratePerSecond: 10, burst: 100 });
    bucket.take(100, 0);
    assert.equal(bucket.take(50, 0), 5_000, "the big one waits for 50 tokens");
    assert.equal(bucket.take(1, 0), 5_100, "the small one does not overtake it");
    // Queued behind those (last pass at 5100, bucket empty): refilling a whole burst takes 10 s.
    assert.equal(bucket.take(250, 100), 15_100 - 100, "an oversized one in line waits for a full bucket");
    assert.equal(bucket.probe(1, 100), 15_100 + 15_100 - 100, "and its debt of 150 is paid off before the next");
  });

  it("over a long random run the admitted amount tracks rate·T within burst + max cost", () => {
    const ratePerSecond = 1_000;
    const burst = 100;
    const maxCost = 300; // some batches larger than the burst
    /** A client that sends the next request as soon as the previous passes, sometimes after a pause. */
    function run(seed: number, pauseChance: number): { atMs: number; cost: number }[] {
      const bucket = new TokenBucket({ ratePerSecond, burst });
      const random = seededRandom(seed);
      const passes: { atMs: number; cost: number }[] = [];
      let nowMs = 0;
      for (let i = 0; i < 4_000; i++) {
        const cost = 1 + Math.floor(random() * maxCost);
        const waitMs = bucket.take(cost, nowMs);
        assert.ok(waitMs >= 0, `wait ${waitMs}`);
        passes.push({ atMs: nowMs + waitMs, cost });
        nowMs += waitMs + (random() < pauseChance ? random() * 2_000 : 0);
      }
      return passes;
    }

    // Saturated from t = 0: after T ms, between rate·T and rate·T + burst + maxCost have passed.
    let admitted = 0;
    const saturated = run(6, 0);
    for (const pass of saturated) {
      admitted += pass.cost;
      const expected = (ratePerSecond * pass.atMs) / 1000;
      assert.ok(Math.abs(admitted - expected) <= burst + maxCost, `admitted ${admitted} by ${pass.atMs} ms, rate·T = ${expected}`);
    }
    const spanMs = saturated.at(-1)!.atMs;
    assert.ok(spanMs > 500_000, `span ${spanMs} ms`);
    assertNear(admitted / spanMs, ratePerSecond / 1000, 0.001, "long-run tokens per ms");

    const passes = run(7, 0.02);
    for (let i = 1; i < passes.length; i++) assert.ok(passes[i]!.atMs >= passes[i - 1]!.atMs, "passes in arrival order");
    // Any window of W ms lets through at most burst + maxCost + rate·W.
    for (const windowMs of [1, 50, 1_000, 30_000]) {
      let start = 0;
      let sum = 0;
      let most = 0;
      for (const pass of passes) {
        sum += pass.cost;
        while (passes[start]!.atMs < pass.atMs - windowMs) sum -= passes[start++]!.cost;
        most = Math.max(most, sum);
      }
      const bound = burst + maxCost + (ratePerSecond * windowMs) / 1000;
      assert.ok(most <= bound, `window ${windowMs} ms let ${most} through, bound ${bound}`);
    }
  });
});

describe("warm-up (R22, Guava's SmoothWarmingUp)", () => {
  const ratePerSecond = 100;
  const warmUpMs = 10_000;
  const stableMs = 10;
  const coldMs = 30;

  /** Takes cost 1 at each pass time the limiter gives (a saturating client); returns the pass times. */
  function saturate(limiter: WarmUp, fromMs: number, untilMs: number): number[] {
    const passTimes: number[] = [];
    let nowMs = fromMs;
    while (nowMs <= untilMs) {
      nowMs += limiter.take(1, nowMs);
      passTimes.push(nowMs);
    }
    return passTimes;
  }

  const intervalsOf = (passTimes: number[]): number[] => passTimes.slice(1).map((atMs, i) => atMs - passTimes[i]!);

  it("starts cold (≈ 30 ms), reaches the stable 10 ms after ≈ warmUpMs of saturation, monotonically, and stays there", () => {
    const limiter = new WarmUp({ ratePerSecond, warmUpMs, coldFactor: 3 });
    assert.equal(limiter.stableIntervalMs, stableMs);
    assert.equal(limiter.coldIntervalMs, coldMs);
    const passTimes = saturate(limiter, 0, 20_000);
    const intervals = intervalsOf(passTimes);
    for (const interval of intervals.slice(0, 3)) assertNear(interval, coldMs, coldMs * 0.01, "a first interval");
    for (let i = 1; i < intervals.length; i++) {
      assert.ok(intervals[i]! <= intervals[i - 1]! + 1e-9, `interval ${i} grew: ${intervals[i - 1]} → ${intervals[i]}`);
    }
    const firstStable = intervals.findIndex((interval) => interval <= stableMs * 1.01);
    const reachedAtMs = passTimes[firstStable + 1]!;
    assertNear(reachedAtMs, warmUpMs, warmUpMs * 0.05, "time to reach the stable interval");
    for (const interval of intervals.slice(firstStable)) assertNear(interval, stableMs, stableMs * 0.01, "a warm interval");
    const lastSecond = passTimes.filter((atMs) => atMs > 19_000).length;
    assertNear(lastSecond, ratePerSecond, 1, "passes in the last second");
  });

  it("an idle period of warmUpMs cools it back to ≈ 30 ms; a shorter one only part way", () => {
    const limiter = new WarmUp({ ratePerSecond, warmUpMs, coldFactor: 3 });
    const passTimes = saturate(limiter, 0, 20_000);
    const nextFreeMs = passTimes.at(-1)! + stableMs;
    assertNear(limiter.available(nextFreeMs), 0, 1e-6, "saturation spent every stored permit");

    // Idle for 0.75·warmUpMs stores 750 of the 1000 permits: the interval there is
    // stable + (750 − 500) · slope = 10 + 250 · 0.04 = 20 ms, half way between warm and cold.
    const partlyIdleMs = nextFreeMs + 0.75 * warmUpMs;
    assertNear(limiter.available(partlyIdleMs), 750, 1e-6, "stored permits after 0.75·warmUpMs idle");
    assert.equal(limiter.take(1, partlyIdleMs), 0, "the first request after idle passes at once");
    assertNear(limiter.probe(1, partlyIdleMs), 20, 0.1, "interval after 0.75·warmUpMs idle");

    const fresh = new WarmUp({ ratePerSecond, warmUpMs, coldFactor: 3 });
    const warmTimes = saturate(fresh, 0, 20_000);
    const idleUntilMs = warmTimes.at(-1)! + stableMs + warmUpMs;
    assert.equal(fresh.available(idleUntilMs), 1_000, "fully cold: max permits stored");
    assert.equal(fresh.available(idleUntilMs + warmUpMs), 1_000, "and never more");
    const cooled = intervalsOf(saturate(fresh, idleUntilMs, idleUntilMs + 100));
    assertNear(cooled[0]!, coldMs, coldMs * 0.01, "first interval after a warmUpMs idle");
  });

  it("a batch from cold pays the area under the cold part of the curve", () => {
    const limiter = new WarmUp({ ratePerSecond, warmUpMs, coldFactor: 3 });
    assert.equal(limiter.take(500, 0), 0, "passes at once (the next request pays)");
    // 500 permits from 1000 down to the threshold 500: the whole trapezoid, exactly warmUpMs.
    assertNear(limiter.probe(1, 0), warmUpMs, 1e-6, "wait of the next request");
    assertNear(limiter.available(0), 500, 1e-9, "stored permits left");
  });
});

describe("concurrency limit (R22)", () => {
  it("respects the cap, refuses newcomers while someone waits, and hands slots over in FIFO order", () => {
    const limit = new ConcurrencyLimit<string>({ maxInFlight: 2 });
    assert.equal(limit.tryAcquire(), true);
    assert.equal(limit.tryAcquire(), true);
    assert.equal(limit.tryAcquire(), false, "full");
    limit.enqueue("a");
    limit.enqueue("b");
    limit.enqueue("c");
    assert.deepEqual([limit.inFlight, limit.queued], [2, 3]);
    assert.equal(limit.release(), "a", "the freed slot goes to the first waiter");
    assert.deepEqual([limit.inFlight, limit.queued], [2, 2]);
    assert.equal(limit.tryAcquire(), false, "no barging: the slot went to a, b and c still wait");
    assert.equal(limit.remove("b"), true, "b timed out");
    assert.equal(limit.remove("b"), false, "b is no longer waiting");
    assert.equal(limit.release(), "c");
    assert.deepEqual([limit.inFlight, limit.queued], [2, 0]);
    assert.equal(limit.release(), undefined);
    assert.equal(limit.release(), undefined);
    assert.deepEqual([limit.inFlight, limit.queued], [0, 0]);
    assert.equal(limit.tryAcquire(), true);
  });

  it("refuses misuse: release without a slot, enqueue with a free slot, a waiter queued twice", () => {
    const limit = new ConcurrencyLimit<object>({ maxInFlight: 1 });
    assert.throws(() => limit.release(), InvalidArgumentError);
    assert.throws(() => limit.enqueue({}), InvalidArgumentError);
    limit.tryAcquire();
    const waiter = {};
    limit.enqueue(waiter);
    assert.throws(() => limit.enqueue(waiter), InvalidArgumentError);
    assert.equal(limit.queued, 1);
  });

  it("a random run keeps inFlight <= max and hands out slots in arrival order, skipping removed waiters", () => {
    const maxInFlight = 3;
    const limit = new ConcurrencyLimit<number>({ maxInFlight });
    const random = seededRandom(42);
    const line: number[] = []; // the model: waiters in arrival order
    let holders = 0;
    let nextId = 0;
    for (let step = 0; step < 5_000; step++) {
      const roll = random();
      if (roll < 0.45) {
        const id = nextId++;
        if (limit.tryAcquire()) {
          assert.ok(line.length === 0 && holders < maxInFlight, "acquired only when free and nobody waits");
          holders++;
        } else {
          assert.ok(line.length > 0 || holders === maxInFlight, "refused only when full or someone waits");
          limit.enqueue(id);
          line.push(id);
        }
      } else if (roll < 0.85 && holders > 0) {
        const handedTo = limit.release();
        if (line.length > 0) assert.equal(handedTo, line.shift());
        else {
          assert.equal(handedTo, undefined);
          holders--;
        }
      } else if (line.length > 0) {
        const index = Math.floor(random() * line.length);
        assert.equal(limit.remove(line[index]!), true);
        line.splice(index, 1);
      }
      assert.deepEqual([limit.inFlight, limit.queued], [holders, line.length]);
      assert.ok(limit.inFlight <= maxInFlight);
    }
  });
});

describe("every limiter: probe changes nothing and equals take", () => {
  const makers: [string, () => RateLimiter][] = [
    ["token-bucket", () => new TokenBucket({ ratePerSecond: 50, burst: 20 })],
    ["leaky-bucket", () => new LeakyBucket({ ratePerSecond: 50 })],
    ["warm-up", () => new WarmUp({ ratePerSecond: 50, warmUpMs: 2_000, coldFactor: 4 })],
  ];
  for (const [name, make] of makers) {
    it(`${name}: random runs, with and without probes, give the same waits`, () => {
      for (let seed = 1; seed <= 5; seed++) {
        const random = seededRandom(seed);
        const probed = make();
        const untouched = make();
        let nowMs = 1_000 * random();
        for (let step = 0; step < 1_000; step++) {
          nowMs += random() < 0.3 ? 0 : random() * 200;
          const cost = random() < 0.05 ? 0 : Math.ceil(random() * 40); // 0 and > burst included
          const first = probed.probe(cost, nowMs);
          const available = probed.available(nowMs);
          const second = probed.probe(cost, nowMs);
          probed.probe(Math.ceil(random() * 100), nowMs + random() * 500);
          assert.equal(second, first, `probe twice at step ${step}`);
          assert.equal(probed.available(nowMs), available, `available at step ${step}`);
          assert.ok(first >= 0, `wait ${first} at step ${step}`);
          if (random() < 0.7) {
            assert.equal(probed.take(cost, nowMs), first, `take equals probe at step ${step}`);
            untouched.take(cost, nowMs);
          }
          assert.equal(probed.probe(1, nowMs), untouched.probe(1, nowMs), `probes left no trace at step ${step}`);
        }
      }
    });
  }
});

describe("a zero cost keeps its place in line and books nothing", () => {
  it("token bucket: waits for the requests booked before it, not for the debt of one already passed", () => {
    const bucket = new TokenBucket({ ratePerSecond: 10, burst: 100 });
    bucket.take(250, 0);
    assert.equal(bucket.take(0, 0), 0, "the oversized batch already passed");
    assert.equal(bucket.take(1, 0), 15_100);
    assert.equal(bucket.take(0, 0), 15_100, "behind the booked request");
    assert.equal(bucket.probe(1, 0), 15_200, "and nothing was booked by it");
  });

  it("leaky bucket and warm-up: same", () => {
    const leaky = new LeakyBucket({ ratePerSecond: 10 });
    leaky.take(1, 0);
    leaky.take(1, 0);
    assert.equal(leaky.take(0, 0), 100);
    assert.equal(leaky.take(0, 500), 0);
    assert.equal(leaky.take(1, 500), 0, "the zero cost at 500 did not occupy the outlet");
    const warmUp = new WarmUp({ ratePerSecond: 100, warmUpMs: 1_000 });
    warmUp.take(1, 0);
    const nextMs = warmUp.probe(1, 0);
    assert.equal(warmUp.take(0, 0), nextMs);
    assert.equal(warmUp.probe(1, 0), nextMs);
  });
});

describe("options and requests are checked once, at the door", () => {
  const bad: [string, () => unknown][] = [
    ["token-bucket rate 0", () => new TokenBucket({ ratePerSecond: 0, burst: 1 })],
    ["token-bucket rate Infinity", () => new TokenBucket({ ratePerSecond: Infinity, burst: 1 })],
    ["token-bucket burst 0.5", () => new TokenBucket({ ratePerSecond: 1, burst: 0.5 })],
    ["leaky-bucket rate NaN", () => new LeakyBucket({ ratePerSecond: Number.NaN })],
    ["leaky-bucket rate -1", () => new LeakyBucket({ ratePerSecond: -1 })],
    ["warm-up coldFactor 1", () => new WarmUp({ ratePerSecond: 1, warmUpMs: 1, coldFactor: 1 })],
    ["warm-up warmUpMs 0", () => new WarmUp({ ratePerSecond: 1, warmUpMs: 0 })],
    ["warm-up rate 0", () => new WarmUp({ ratePerSecond: 0, warmUpMs: 10 })],
    ["concurrency maxInFlight 0", () => new ConcurrencyLimit({ maxInFlight: 0 })],
    ["concurrency maxInFlight 1.5", () => new ConcurrencyLimit({ maxInFlight: 1.5 })],
    ["negative cost", () => new LeakyBucket({ ratePerSecond: 1 }).probe(-1, 0)],
    ["NaN cost", () => new TokenBucket({ ratePerSecond: 1, burst: 1 }).take(Number.NaN, 0)],
    ["NaN time", () => new WarmUp({ ratePerSecond: 1, warmUpMs: 1 }).take(1, Number.NaN)],
  ];
  for (const [what, build] of bad) {
    it(`refuses ${what}`, () => assert.throws(build, InvalidArgumentError));
  }

  it("warm-up defaults coldFactor to 3", () => {
    assert.equal(new WarmUp({ ratePerSecond: 100, warmUpMs: 1_000 }).coldFactor, 3);
  });
});

describe("refund: a booking that will never run is given back", () => {
  /** Waits for a spread of costs and times from `nowMs` on: what every later request would see. */
  const probes = (limiter: RateLimiter, nowMs: number): number[] =>
    [0, 1, 3, 5, 10, 25].flatMap((cost) => [0, 50, 1_000].map((afterMs) => limiter.probe(cost, nowMs + afterMs)));

  /** Takes `cost` at `nowMs`, refunds it, and checks every probe is as before the take. */
  function assertRefundRestores(limiter: RateLimiter, cost: number, nowMs: number): void {
    const before = probes(limiter, nowMs);
    const availableBefore = limiter.available(nowMs);
    limiter.take(cost, nowMs);
    limiter.refund(limiter.lastBooking);
    assert.deepEqual(probes(limiter, nowMs), before);
    assert.equal(limiter.available(nowMs), availableBefore);
  }

  const tokenBucket = (): TokenBucket => new TokenBucket({ ratePerSecond: 10, burst: 10 });
  const leakyBucket = (): LeakyBucket => new LeakyBucket({ ratePerSecond: 10 });

  it("token bucket, last booking passed at once (full, part-full, oversized into debt): restored exactly", () => {
    assertRefundRestores(tokenBucket(), 4, 0);
    const partFull = tokenBucket();
    partFull.take(8, 0);
    assertRefundRestores(partFull, 3, 100);
    assertRefundRestores(tokenBucket(), 25, 0);
  });

  it("token bucket, last booking held for tokens: restored exactly (a smaller request is not held to its pass time)", () => {
    const bucket = tokenBucket();
    bucket.take(10, 0);
    assertRefundRestores(bucket, 5, 0);
  });

  it("leaky bucket, last booking queued behind a pass: restored exactly", () => {
    const bucket = leakyBucket();
    bucket.take(1, 0);
    assertRefundRestores(bucket, 2, 50);
  });

  it("leaky bucket, last booking passed at once after idle: restored exactly", () => {
    const bucket = leakyBucket();
    bucket.take(1, 0);
    assertRefundRestores(bucket, 2, 1_000);
    assertRefundRestores(leakyBucket(), 2, 0);
  });

  it("warm-up, last booking (cold, part-warm, warm): restored exactly", () => {
    const make = (): WarmUp => new WarmUp({ ratePerSecond: 100, warmUpMs: 1_000, coldFactor: 3 });
    for (const [setupCost, atMs, cost] of [[0, 0, 5], [1, 0, 5], [50, 300, 20], [100, 3_000, 1]] as const) {
      const limiter = make();
      if (setupCost > 0) limiter.take(setupCost, 0);
      assertRefundRestores(limiter, cost, atMs);
    }
  });

  it("only the latest booking is undone: an earlier one, or one refunded twice, gives nothing back", () => {
    for (const limiter of [tokenBucket(), leakyBucket(), new WarmUp({ ratePerSecond: 10, warmUpMs: 1_000 })] as RateLimiter[]) {
      limiter.take(3, 0);
      const first = limiter.lastBooking;
      limiter.take(3, 0);
      const second = limiter.lastBooking;
      const afterBoth = probes(limiter, 0);
      limiter.refund(first);
      assert.deepEqual(probes(limiter, 0), afterBoth, "an earlier booking is not undone");
      limiter.refund(second);
      const afterSecond = probes(limiter, 0);
      limiter.refund(second);
      assert.deepEqual(probes(limiter, 0), afterSecond, "a booking is undone once");
      limiter.refund(first);
      assert.deepEqual(probes(limiter, 0), probes(limiter.constructor === TokenBucket ? tokenBucket() : limiter.constructor === LeakyBucket ? leakyBucket() : new WarmUp({ ratePerSecond: 10, warmUpMs: 1_000 }), 0), "newest first, both come back");
    }
  });

  it("a refund before anything was taken changes nothing", () => {
    for (const limiter of [tokenBucket(), leakyBucket(), new WarmUp({ ratePerSecond: 10, warmUpMs: 1_000 })]) {
      const before = probes(limiter, 0);
      limiter.refund(1);
      assert.deepEqual(probes(limiter, 0), before);
    }
  });

  // Stream close gives up every held batch of the stream in arrival order, so earlier bookings
  // are refunded while later ones (of other streams) stay booked. Whatever a refund does then,
  // the limiter must not let more through than either the booking never made or the booking kept
  // (the warm-up alone may let more through after an extra booking: it is warmer).
  const makers: [string, () => RateLimiter][] = [
    ["token-bucket", () => new TokenBucket({ ratePerSecond: 50, burst: 20 })],
    ["leaky-bucket", () => new LeakyBucket({ ratePerSecond: 50 })],
    ["warm-up", () => new WarmUp({ ratePerSecond: 50, warmUpMs: 2_000, coldFactor: 3 })],
  ];
  for (const [name, make] of makers) {
    it(`${name}: refunding an earlier booking lets no more through than never booking it or keeping it`, () => {
      for (let seed = 1; seed <= 100; seed++) {
        const random = seededRandom(seed);
        const bookings: { cost: number; atMs: number }[] = [];
        let nowMs = 0;
        for (let i = 0; i < 5; i++) {
          nowMs += random() < 0.5 ? 0 : random() * 300;
          bookings.push({ cost: Math.ceil(random() * 30), atMs: nowMs });
        }
        const refundedIndex = Math.floor(random() * 4); // never the last
        const limiters = { refunded: make(), never: make(), kept: make() };
        const passes: Record<keyof typeof limiters, [number, number][]> = { refunded: [], never: [], kept: [] };
        let refundedBooking = 0;
        const book = (which: keyof typeof limiters, cost: number, atMs: number, counted: boolean): void => {
          const passMs = atMs + limiters[which].take(cost, atMs);
          if (counted) passes[which].push([passMs, cost]);
          else if (which === "refunded") refundedBooking = limiters.refunded.lastBooking;
        };
        bookings.forEach(({ cost, atMs }, i) => {
          book("refunded", cost, atMs, i !== refundedIndex);
          book("kept", cost, atMs, i !== refundedIndex);
          if (i !== refundedIndex) book("never", cost, atMs, true);
        });
        limiters.refunded.refund(refundedBooking);
        for (let i = 0; i < 60; i++) {
          const cost = 1 + Math.floor(random() * 5);
          const atMs = nowMs + random() * 50 * i;
          for (const which of ["refunded", "never", "kept"] as const) book(which, cost, atMs, true);
        }
        const passedBy = (which: keyof typeof limiters, atMs: number): number =>
          passes[which].reduce((sum, [passMs, cost]) => sum + (passMs <= atMs + 1e-9 ? cost : 0), 0);
        for (const [atMs] of passes.refunded) {
          const extra = passedBy("refunded", atMs) - Math.max(passedBy("never", atMs), passedBy("kept", atMs));
          assert.ok(extra <= 0, `seed ${seed}: by ${atMs.toFixed(1)} ms ${extra} more units passed after refunding booking ${refundedIndex} of ${JSON.stringify(bookings)}`);
        }
      }
    });
  }
});

describe("noteRefused: refused demand", () => {
  it("token bucket and leaky bucket bank no idle time: a refusal changes nothing", () => {
    for (const limiter of [new TokenBucket({ ratePerSecond: 10, burst: 10 }), new LeakyBucket({ ratePerSecond: 10 })] as RateLimiter[]) {
      limiter.take(10, 0);
      const before = [1, 5, 10].map((cost) => limiter.probe(cost, 400));
      limiter.noteRefused(400);
      assert.deepEqual([1, 5, 10].map((cost) => limiter.probe(cost, 400)), before);
    }
  });

  it("warm-up with maxQueueMs 0 offered exactly its rate reaches >= 90 % of it after 2 x warmUpMs", () => {
    const limiter = new WarmUp({ ratePerSecond: 1_000, warmUpMs: 1_000, coldFactor: 3 });
    const admittedPerSecond = [0, 0, 0];
    for (let nowMs = 0; nowMs < 3_000; nowMs++) {
      const { admitted } = admit(limiter, 1, nowMs, 0);
      if (admitted) admittedPerSecond[Math.floor(nowMs / 1_000)]! += 1;
      else limiter.noteRefused(nowMs);
    }
    assert.ok(admittedPerSecond[0]! < 900, `did not start cold: ${admittedPerSecond.join(", ")}`);
    assert.ok(admittedPerSecond[2]! >= 900, `admitted per second ${admittedPerSecond.join(", ")}: stuck below the rate`);
  });
});
