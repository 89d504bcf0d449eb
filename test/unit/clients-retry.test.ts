// The SDK's retry policy: exponential backoff with ±20 % jitter, only for retriable errors,
// never past the deadline, honouring a server's retry-after hint.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BrokerUnavailableError, InvalidArgumentError, SluiceError } from "../../common/src/errors.js";
import { RETRY_JITTER, RetryPolicy, parseRetryOptions } from "../../clients/src/retry.js";

const throttled = (retryAfterMs: number) => new SluiceError("THROTTLED", "slow down", { retryAfterMs });

const OPTIONS = parseRetryOptions({ retries: 5, initialRetryMs: 100, maxRetryMs: 1000 });

/** A policy whose sleeps are recorded, not waited, on a clock that the sleeps move. */
function recordingPolicy(random: () => number = () => 0.5, options = OPTIONS) {
  let now = 1_000_000;
  const sleeps: number[] = [];
  const policy = new RetryPolicy(
    options,
    random,
    async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
    () => now,
  );
  return { policy, sleeps, now: () => now };
}

describe("retry policy", () => {
  it("doubles the delay from initialRetryMs up to maxRetryMs", () => {
    const { policy } = recordingPolicy();
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((n) => policy.delayMs(n)), [100, 200, 400, 800, 1000, 1000]);
  });

  it("jitters each delay within ±20 %", () => {
    const low = recordingPolicy(() => 0).policy;
    const high = recordingPolicy(() => 0.999999).policy;
    assert.equal(low.delayMs(2), 400 * (1 - RETRY_JITTER));
    assert.equal(high.delayMs(2), 400 * (1 + RETRY_JITTER));
    const random = new RetryPolicy(OPTIONS);
    for (let i = 0; i < 200; i++) {
      const delay = random.delayMs(1);
      assert.ok(delay >= 160 && delay <= 240, `delay ${delay} within 200 ± 20 %`);
    }
  });

  it("waits at least what the server asked for (retryAfterMs)", () => {
    const { policy } = recordingPolicy();
    assert.equal(policy.delayMs(0, throttled(750)), 750);
    assert.equal(policy.delayMs(3, throttled(10)), 800);
  });

  it("retries retriable errors with growing delays, then succeeds", async () => {
    const { policy, sleeps } = recordingPolicy();
    let calls = 0;
    const result = await policy.run(
      async (attempt) => {
        assert.equal(attempt, calls++);
        if (attempt < 3) throw new BrokerUnavailableError("broker down");
        return "ok";
      },
      { deadlineMs: Infinity },
    );
    assert.equal(result, "ok");
    assert.deepEqual(sleeps, [100, 200, 400]);
  });

  it("never retries a non-retriable error", async () => {
    const { policy, sleeps } = recordingPolicy();
    let calls = 0;
    await assert.rejects(
      policy.run(async () => {
        calls++;
        throw new InvalidArgumentError("bad request");
      }, { deadlineMs: Infinity }),
      (e: unknown) => e instanceof InvalidArgumentError,
    );
    assert.equal(calls, 1);
    assert.deepEqual(sleeps, []);
  });

  it("gives up after `retries` retries with the last error", async () => {
    const { policy, sleeps } = recordingPolicy();
    let calls = 0;
    await assert.rejects(
      policy.run(async () => {
        throw new BrokerUnavailableError(`attempt ${++calls}`);
      }, { deadlineMs: Infinity }),
      (e: unknown) => e instanceof BrokerUnavailableError && e.message === "attempt 6",
    );
    assert.equal(calls, 6, "one attempt and five retries");
    assert.equal(sleeps.length, 5);
  });

  it("stops before a delay would end past the deadline", async () => {
    const { policy, sleeps, now } = recordingPolicy();
    const deadlineMs = now() + 650; // 100 + 200 fit (300), then 400 would end at 700 > 650
    let calls = 0;
    await assert.rejects(
      policy.run(async () => {
        calls++;
        throw new BrokerUnavailableError("down");
      }, { deadlineMs }),
      BrokerUnavailableError,
    );
    assert.deepEqual(sleeps, [100, 200]);
    assert.equal(calls, 3);
  });

  it("lets the caller narrow what is retried, and runs onRetry before each sleep", async () => {
    const { policy } = recordingPolicy();
    const retried: string[] = [];
    let calls = 0;
    await assert.rejects(
      policy.run(
        async () => {
          calls++;
          throw calls === 1 ? new BrokerUnavailableError("first") : new SluiceError("UNKNOWN_TOPIC", "gone");
        },
        {
          deadlineMs: Infinity,
          shouldRetry: (err) => err.code !== "UNKNOWN_TOPIC",
          onRetry: async (err) => {
            retried.push(err.message);
            throw new Error("a failing hook does not stop the retry");
          },
        },
      ),
      (e: unknown) => e instanceof SluiceError && e.code === "UNKNOWN_TOPIC",
    );
    assert.deepEqual(retried, ["first"]);
    assert.equal(calls, 2);
  });

  it("turns anything thrown into a SluiceError", async () => {
    const { policy } = recordingPolicy();
    await assert.rejects(policy.run(async () => {
      throw new TypeError("boom");
    }, { deadlineMs: Infinity }), (e: unknown) => e instanceof SluiceError && e.code === "INTERNAL" && e.message === "boom");
  });

  it("validates its options", () => {
    assert.throws(() => parseRetryOptions({ retries: -1 }), /retry.retries must be an integer >= 0/);
    assert.throws(() => parseRetryOptions({ initialRetryMs: 0 }), /retry.initialRetryMs must be an integer >= 1/);
    assert.throws(() => parseRetryOptions({ initialRetryMs: 500, maxRetryMs: 100 }), /retry.maxRetryMs must be an integer >= retry.initialRetryMs \(500\)/);
    assert.deepEqual(parseRetryOptions(), { retries: 5, initialRetryMs: 100, maxRetryMs: 2000 });
  });

  it("really sleeps with the default timer", async () => {
    const policy = new RetryPolicy(parseRetryOptions({ retries: 1, initialRetryMs: 20, maxRetryMs: 20 }));
    const started = Date.now();
    let calls = 0;
    await policy.run(async () => {
      if (calls++ === 0) throw new BrokerUnavailableError("once");
    }, { deadlineMs: Date.now() + 5000 });
    assert.ok(Date.now() - started >= 15, "waited about initialRetryMs");
  });
});
