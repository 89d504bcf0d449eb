import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { lagByTopic } from "../../broker/src/groups/offsets.js";

const lag = (topic: string, partition: number, messages: number, seconds: number) => ({ group: "g", topic, partition, messages, seconds });

describe("lag per topic from lag per partition", () => {
  it("sums messages and keeps the oldest age, per (group, topic)", () => {
    assert.deepEqual(lagByTopic([lag("a", 0, 3, 1.5), lag("a", 1, 4, 2.5), lag("b", 0, 0, 0)]), [
      { group: "g", topic: "a", messages: 7, seconds: 2.5 },
      { group: "g", topic: "b", messages: 0, seconds: 0 },
    ]);
  });

  it("leaves the age unknown when the only backlog is of unknown age (another broker group's)", () => {
    assert.deepEqual(lagByTopic([lag("a", 0, 0, 0), lag("a", 1, 5, -1)]), [{ group: "g", topic: "a", messages: 5, seconds: -1 }]);
    // A known backlog here still gives a (lower-bound) age.
    assert.deepEqual(lagByTopic([lag("a", 0, 2, 3), lag("a", 1, 5, -1)]), [{ group: "g", topic: "a", messages: 7, seconds: 3 }]);
    // Caught up everywhere, remote included: 0.
    assert.deepEqual(lagByTopic([lag("a", 0, 0, 0), lag("a", 1, 0, 0)]), [{ group: "g", topic: "a", messages: 0, seconds: 0 }]);
  });
});
