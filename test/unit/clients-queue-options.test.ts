// Queue consumer and nack options: named defaults, validated once, messages that say what is wrong.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError, InvalidTopicNameError } from "../../common/src/errors.js";
import { Sluice } from "../../clients/src/index.js";
import {
  DEFAULT_INVISIBLE_MS,
  DEFAULT_MAX_DELIVERIES,
  DEFAULT_PREFETCH,
  MAX_NACK_ERROR_CHARS,
  parseNackOptions,
  parseQueueOptions,
  type QueueOptions,
} from "../../clients/src/queue/options.js";

function invalid(pattern: RegExp) {
  return (e: unknown) => e instanceof InvalidArgumentError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message);
}

describe("queue options", () => {
  it("fills the documented defaults", () => {
    assert.deepEqual(parseQueueOptions({ group: "workers", topic: "jobs" }), {
      group: "workers",
      topic: "jobs",
      invisibleMs: 30_000,
      maxDeliveries: 5,
      keyOrdering: false,
      fromBeginning: false,
      prefetch: 256,
    });
    assert.equal(DEFAULT_INVISIBLE_MS, 30_000);
    assert.equal(DEFAULT_MAX_DELIVERIES, 5);
    assert.equal(DEFAULT_PREFETCH, 256);
  });

  it("keeps explicit values", () => {
    const parsed = parseQueueOptions({
      group: "g.1_x-y",
      topic: "t",
      invisibleMs: 1500,
      maxDeliveries: 1,
      keyOrdering: true,
      fromBeginning: true,
      prefetch: 1,
    });
    assert.equal(parsed.invisibleMs, 1500);
    assert.equal(parsed.maxDeliveries, 1);
    assert.equal(parsed.keyOrdering, true);
    assert.equal(parsed.fromBeginning, true);
    assert.equal(parsed.prefetch, 1);
  });

  it("needs a group and a topic", () => {
    assert.throws(() => parseQueueOptions({ topic: "jobs" } as QueueOptions), invalid(/need a group/));
    assert.throws(() => parseQueueOptions({ group: "workers" } as QueueOptions), invalid(/need a topic/));
    assert.throws(() => parseQueueOptions(null as unknown as QueueOptions), invalid(/must be an object/));
  });

  it("refuses group names that cannot name a dead-letter topic", () => {
    assert.throws(() => parseQueueOptions({ group: "", topic: "jobs" }), invalid(/an empty name is not a valid group name/));
    assert.throws(() => parseQueueOptions({ group: "a b", topic: "jobs" }), invalid(/"a b" is not a valid group name/));
    assert.throws(() => parseQueueOptions({ group: "x".repeat(201), topic: "jobs" }), invalid(/not a valid group name: use 1 to 200/));
    assert.throws(() => parseQueueOptions({ group: "%DLQ%g", topic: "jobs" }), invalid(/not a valid group name/));
  });

  it("refuses bad topic names", () => {
    assert.throws(() => parseQueueOptions({ group: "g", topic: "no/slash" }), (e: unknown) => e instanceof InvalidTopicNameError);
  });

  it("refuses internal topics: dead letters are read with admin().deadLetters()", () => {
    assert.throws(() => parseQueueOptions({ group: "g", topic: "%DLQ%g" }), invalid(/internal topic and cannot be consumed as a queue/));
  });

  it("checks ranges and types, naming the option", () => {
    assert.throws(() => parseQueueOptions({ group: "g", topic: "t", invisibleMs: 10 }), invalid(/invisibleMs must be an integer between 100 and 43200000, got 10/));
    assert.throws(() => parseQueueOptions({ group: "g", topic: "t", invisibleMs: 1.5e3 + 0.5 }), invalid(/invisibleMs/));
    assert.throws(() => parseQueueOptions({ group: "g", topic: "t", maxDeliveries: 0 }), invalid(/maxDeliveries must be an integer between 1 and 1000/));
    assert.throws(() => parseQueueOptions({ group: "g", topic: "t", prefetch: 0 }), invalid(/prefetch must be an integer between 1 and 10000/));
    assert.throws(() => parseQueueOptions({ group: "g", topic: "t", prefetch: 20_000 }), invalid(/prefetch/));
    assert.throws(() => parseQueueOptions({ group: "g", topic: "t", keyOrdering: "yes" as unknown as boolean }), invalid(/keyOrdering must be true or false/));
    assert.throws(() => parseQueueOptions({ group: "g", topic: "t", fromBeginning: 1 as unknown as boolean }), invalid(/fromBeginning must be true or false/));
  });

  it("refuses unknown option names, so a typo does not pass silently", () => {
    assert.throws(
      () => parseQueueOptions({ group: "g", topic: "t", invisibilityMs: 5 } as unknown as QueueOptions),
      invalid(/unknown queue option "invisibilityMs"; known options: group, topic, invisibleMs/),
    );
  });

  it("sluice.queue() validates at once, before connecting", async () => {
    const sluice = new Sluice({ nameservers: ["127.0.0.1:1"] });
    try {
      assert.throws(() => sluice.queue({ group: "g", topic: "t", maxDeliveries: -1 }), invalid(/maxDeliveries/));
      const queue = sluice.queue({ group: "g", topic: "t" });
      assert.equal(queue.options.prefetch, 256);
      await queue.close();
    } finally {
      await sluice.close();
    }
  });
});

describe("nack options", () => {
  it("defaults to an immediate redelivery without an error text", () => {
    assert.deepEqual(parseNackOptions(), { delayMs: 0, error: "" });
    assert.deepEqual(parseNackOptions({ delayMs: 1000, error: "timeout" }), { delayMs: 1000, error: "timeout" });
  });

  it("checks the delay and the error's type; cuts long error text", () => {
    assert.throws(() => parseNackOptions({ delayMs: -1 }), invalid(/nack delayMs must be an integer between 0 and/));
    assert.throws(() => parseNackOptions({ error: new Error("x") as unknown as string }), invalid(/nack error must be a string/));
    assert.throws(() => parseNackOptions({ delay: 5 } as unknown as { delayMs: number }), invalid(/unknown nack option "delay"/));
    assert.equal(parseNackOptions({ error: "e".repeat(5000) }).error.length, MAX_NACK_ERROR_CHARS);
  });
});
