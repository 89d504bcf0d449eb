import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AppendTimes } from "../../broker/src/storage/append-times.js";

describe("AppendTimes (append-to-delivery timing)", () => {
  it("finds the append time of a batch by its last offset", () => {
    const times = new AppendTimes(8);
    times.record(0, 9, 1000);
    times.record(10, 19, 1005);
    times.record(20, 29, 1010);
    assert.equal(times.appendTimeOf(9), 1000);
    assert.equal(times.appendTimeOf(19), 1005);
    assert.equal(times.appendTimeOf(29), 1010);
    assert.equal(times.appendTimeOf(30), undefined, "not appended yet");
  });

  it("merges batches of the same millisecond into one entry", () => {
    const times = new AppendTimes(2);
    times.record(0, 4, 1000);
    times.record(5, 9, 1000);
    times.record(10, 14, 1000);
    times.record(15, 19, 1001);
    assert.equal(times.appendTimeOf(4), 1000);
    assert.equal(times.appendTimeOf(14), 1000);
    assert.equal(times.appendTimeOf(19), 1001);
  });

  it("knows nothing of batches older than what it keeps, or than its first record", () => {
    const times = new AppendTimes(3);
    times.record(100, 109, 1000);
    assert.equal(times.appendTimeOf(99), undefined, "recovered from disk before the first append here");
    times.record(110, 119, 1001);
    times.record(120, 129, 1002);
    times.record(130, 139, 1003);
    times.record(140, 149, 1004);
    assert.equal(times.appendTimeOf(109), undefined, "overwritten");
    assert.equal(times.appendTimeOf(119), undefined, "overwritten too");
    assert.equal(times.appendTimeOf(129), 1002);
    assert.equal(times.appendTimeOf(149), 1004);
  });

  it("ignores a batch that does not move past the newest, and forgets everything on clear", () => {
    const times = new AppendTimes(4);
    times.record(0, 9, 1000);
    times.record(5, 9, 2000);
    assert.equal(times.appendTimeOf(9), 1000);
    times.clear();
    assert.equal(times.appendTimeOf(9), undefined);
    times.record(0, 4, 3000);
    assert.equal(times.appendTimeOf(4), 3000);
  });
});
