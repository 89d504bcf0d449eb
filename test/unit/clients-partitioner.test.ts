// Partitioners: per-key stability, even spread without keys, and the error a bad choice gives.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SluiceError } from "../../common/src/errors.js";
import { keyHashPartition } from "../../common/src/murmur2.js";
import { SmoothWeightedRoundRobin, checkPartitionerOption, createPartitioner } from "../../clients/src/producer/partitioner.js";

function counts(values: number[], buckets: number): number[] {
  const out = new Array<number>(buckets).fill(0);
  for (const v of values) out[v]!++;
  return out;
}

describe("partitioners", () => {
  it("default: a keyed message always goes to its key's murmur2 partition", () => {
    const partitioner = createPartitioner("default", "orders");
    for (let i = 0; i < 500; i++) {
      const key = `customer-${i}`;
      const first = partitioner.partition({ key, value: "a" }, 12);
      assert.equal(first, keyHashPartition(key, 12));
      assert.equal(partitioner.partition({ key, value: "b" }, 12), first, "same key, same partition");
      assert.equal(partitioner.partition({ key: Buffer.from(key), value: "c" }, 12), first, "bytes key hashes like its string");
    }
  });

  it("default: keyless messages go round robin, evenly", () => {
    const partitioner = createPartitioner("default", "orders");
    const chosen = Array.from({ length: 3000 }, () => partitioner.partition({ value: "x" }, 3));
    assert.deepEqual(counts(chosen, 3), [1000, 1000, 1000]);
    for (let i = 1; i < chosen.length; i++) assert.equal(chosen[i], (chosen[i - 1]! + 1) % 3, "consecutive partitions");
  });

  it("key hashes spread many keys over partitions", () => {
    const spread = counts(Array.from({ length: 12_000 }, (_, i) => keyHashPartition(`user-${i}`, 6)), 6);
    for (const n of spread) assert.ok(n > 1700 && n < 2300, `bucket of ${n} out of 12000 over 6`);
  });

  it("round-robin ignores keys", () => {
    const partitioner = createPartitioner("round-robin", "t");
    const chosen = Array.from({ length: 8 }, () => partitioner.partition({ key: "same", value: "x" }, 4));
    assert.deepEqual(counts(chosen, 4), [2, 2, 2, 2]);
  });

  it("key-hash refuses a message without a key", () => {
    const partitioner = createPartitioner("key-hash", "t");
    assert.equal(partitioner.partition({ key: "k", value: "x" }, 5), keyHashPartition("k", 5));
    assert.throws(() => partitioner.partition({ value: "x" }, 5), (e: unknown) => e instanceof SluiceError && e.code === "INVALID_ARGUMENT" && /needs a key/.test(e.message));
  });

  it("random stays in range", () => {
    const partitioner = createPartitioner("random", "t");
    for (let i = 0; i < 1000; i++) {
      const p = partitioner.partition({ value: "x" }, 7);
      assert.ok(Number.isInteger(p) && p >= 0 && p < 7);
    }
  });

  it("a custom function is called with the message, count and topic, and checked", () => {
    const seen: [unknown, number, string][] = [];
    const partitioner = createPartitioner((message, count, topic) => {
      seen.push([message.value, count, topic]);
      return count - 1;
    }, "orders");
    assert.equal(partitioner.partition({ value: "v" }, 3), 2);
    assert.deepEqual(seen, [["v", 3, "orders"]]);
    const bad = createPartitioner(() => 3, "orders");
    assert.throws(() => bad.partition({ value: "v" }, 3), /returned 3 for topic "orders", which has 3 partitions/);
  });

  it("rejects unknown partitioner names", () => {
    assert.throws(() => checkPartitionerOption("sticky"), (e: unknown) => e instanceof SluiceError && /partitioner must be one of/.test(e.message));
  });

  it("smooth weighted round robin: weights {4,1,1} pick a, a, b, a, c, a (R23)", () => {
    const swrr = new SmoothWeightedRoundRobin([4, 1, 1]);
    assert.deepEqual(Array.from({ length: 12 }, () => swrr.pick(3)), [0, 0, 1, 0, 2, 0, 0, 0, 1, 0, 2, 0]);
  });

  it("smooth weighted round robin: a lowered weight gets fewer picks until restored", () => {
    const swrr = new SmoothWeightedRoundRobin([4, 4]);
    swrr.lower(1); // 4 -> 2
    swrr.lower(1); // 2 -> 1
    assert.deepEqual(counts(Array.from({ length: 50 }, () => swrr.pick(2)), 2), [40, 10]);
    for (let i = 0; i < 3; i++) swrr.restore(1);
    assert.deepEqual(counts(Array.from({ length: 80 }, () => swrr.pick(2)), 2), [40, 40]);
    const asFunction = new SmoothWeightedRoundRobin([1, 2]).asPartitioner();
    assert.deepEqual([0, 1, 2].map(() => asFunction({ value: "x" }, 2, "t")), [1, 0, 1]);
  });
});
