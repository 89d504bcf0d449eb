import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AppendTimes } from "../../broker/src/storage/append-times.js";

describe("AppendTimes (append-to-delivery timing)", () => {
  it("finds the append time of a batch by its last offset", () => {
    const times = new AppendTimes(30_000, 2);
    times.record(0, 9, 1000);
    times.record(10, 19, 1005);
    times.record(20, 29, 1010);
    assert.equal(times.appendTimeOf(9, 1020), 1000);
    assert.equal(times.appendTimeOf(19, 1020), 1005);
    assert.equal(times.appendTimeOf(29, 1020), 1010);
    assert.equal(times.appendTimeOf(30, 1020), undefined, "not appended yet");
  });

  it("merges batches of one slot into one entry, so an age is read at most a slot high", () => {
    const times = new AppendTimes(30_000, 2);
    times.record(0, 4, 1000);
    times.record(5, 9, 1001);
    times.record(10, 14, 1002);
    assert.equal(times.appendTimeOf(4, 1010), 1000);
    assert.equal(times.appendTimeOf(9, 1010), 1000, "same slot as the batch before it");
    assert.equal(times.appendTimeOf(14, 1010), 1002, "a new slot");
  });

  it("keeps the same span of time on a busy and on a quiet partition", () => {
    const busy = new AppendTimes(1000, 2);
    const quiet = new AppendTimes(1000, 2);
    for (let t = 0; t <= 5000; t++) busy.record(t * 10, t * 10 + 9, t);
    for (let t = 0; t <= 5000; t += 1000) quiet.record(t, t, t);
    // At 5000 ms both know the last second, and neither anything older.
    assert.equal(busy.appendTimeOf(4500 * 10 + 9, 5000), 4500);
    assert.equal(busy.appendTimeOf(3000 * 10 + 9, 5000), undefined, "3.5 s old on a busy partition");
    assert.equal(quiet.appendTimeOf(5000, 5000), 5000);
    assert.equal(quiet.appendTimeOf(3000, 5000), undefined, "2 s old on a quiet partition");
    assert.equal(quiet.appendTimeOf(5000, 7000), undefined, "nothing is kept past the window, even without new writes");
  });

  it("knows nothing of batches from before its first record (recovered from disk)", () => {
    const times = new AppendTimes(30_000, 2);
    times.record(100, 109, 1000);
    assert.equal(times.appendTimeOf(99, 1001), undefined);
    assert.equal(times.appendTimeOf(109, 1001), 1000);
  });

  it("ignores a batch that does not move past the newest, and forgets everything on clear", () => {
    const times = new AppendTimes(30_000, 2);
    times.record(0, 9, 1000);
    times.record(5, 9, 2000);
    assert.equal(times.appendTimeOf(9, 2000), 1000);
    times.clear();
    assert.equal(times.appendTimeOf(9, 2000), undefined);
    times.record(0, 4, 3000);
    assert.equal(times.appendTimeOf(4, 3000), 3000);
  });

  it("stays bounded under a long run of writes", () => {
    const times = new AppendTimes(1000, 2);
    for (let t = 0; t < 200_000; t++) times.record(t, t, t * 2);
    // 1000 ms of 2 ms slots: about 500 entries live, whatever ran before.
    const live = (times as unknown as { lastOffsets: number[]; head: number }).lastOffsets.length - (times as unknown as { head: number }).head;
    assert.ok(live <= 501, `live entries ${live}`);
    assert.equal(times.appendTimeOf(199_999, 399_998), 399_998);
  });
});
