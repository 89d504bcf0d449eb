import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SluiceError } from "../../common/src/errors.js";
import { placePartitions, type PlacementGroup } from "../../nameserver/src/placement.js";

function group(name: string, extra: Partial<PlacementGroup> = {}): PlacementGroup {
  return { group: name, weight: 1, hostedPartitions: 0, hasLiveMaster: true, ...extra };
}

function counts(assignment: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const g of assignment) out[g] = (out[g] ?? 0) + 1;
  return out;
}

function placementError(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    return err;
  }
  assert.fail("placement should have failed");
}

describe("placement", () => {
  it("spreads partitions evenly, alternating groups in name order", () => {
    const assignment = placePartitions({ topic: "t", partitionCount: 4, groups: [group("b2"), group("b1")] });
    assert.deepEqual(assignment, ["b1", "b2", "b1", "b2"]);
    const three = counts(placePartitions({ topic: "t", partitionCount: 7, groups: [group("a"), group("b"), group("c")] }));
    assert.deepEqual(three, { a: 3, b: 2, c: 2 });
  });

  it("gives a group with weight 2 twice the share", () => {
    const assignment = placePartitions({
      topic: "t",
      partitionCount: 9,
      groups: [group("light"), group("heavy", { weight: 2 })],
    });
    assert.deepEqual(counts(assignment), { heavy: 6, light: 3 });
  });

  it("treats a weight of 0 (unset on the wire) as 1", () => {
    const assignment = placePartitions({ topic: "t", partitionCount: 4, groups: [group("a", { weight: 0 }), group("b")] });
    assert.deepEqual(counts(assignment), { a: 2, b: 2 });
  });

  it("counts partitions groups already host, filling the least-loaded first", () => {
    const assignment = placePartitions({
      topic: "t",
      partitionCount: 4,
      groups: [group("busy", { hostedPartitions: 3 }), group("idle")],
    });
    assert.deepEqual(assignment, ["idle", "idle", "idle", "busy"]);
  });

  it("places only on groups with a live master", () => {
    const assignment = placePartitions({
      topic: "t",
      partitionCount: 3,
      groups: [group("down", { hasLiveMaster: false }), group("up")],
    });
    assert.deepEqual(assignment, ["up", "up", "up"]);
  });

  it("fails with NO_BROKERS_AVAILABLE when no group has a live master", () => {
    const none = placementError(() => placePartitions({ topic: "orders", partitionCount: 1, groups: [] }));
    assert.equal(none.code, "NO_BROKERS_AVAILABLE");
    assert.match(none.message, /orders/);
    const headless = placementError(() =>
      placePartitions({ topic: "orders", partitionCount: 1, groups: [group("b1", { hasLiveMaster: false })] }),
    );
    assert.equal(headless.code, "NO_BROKERS_AVAILABLE");
  });

  it("pins round robin over the listed groups, in the order given, ignoring load", () => {
    const assignment = placePartitions({
      topic: "t",
      partitionCount: 5,
      groups: [group("b1", { hostedPartitions: 100 }), group("b2"), group("b3")],
      pinnedGroups: ["b3", "b1", "b3"],
    });
    assert.deepEqual(assignment, ["b3", "b1", "b3", "b1", "b3"]);
  });

  it("refuses to pin to an unknown group, naming it and the known ones", () => {
    const err = placementError(() =>
      placePartitions({ topic: "t", partitionCount: 2, groups: [group("b1"), group("b2")], pinnedGroups: ["b1", "nope"] }),
    );
    assert.equal(err.code, "INVALID_ARGUMENT");
    assert.match(err.message, /"nope"/);
    assert.match(err.message, /b1, b2/);
  });

  it("refuses to pin to a group without a live master, naming it", () => {
    const err = placementError(() =>
      placePartitions({
        topic: "t",
        partitionCount: 2,
        groups: [group("b1"), group("b2", { hasLiveMaster: false })],
        pinnedGroups: ["b2"],
      }),
    );
    assert.equal(err.code, "NO_BROKERS_AVAILABLE");
    assert.match(err.message, /"b2"/);
  });

  it("rejects a partition count that is not a positive integer", () => {
    assert.equal(placementError(() => placePartitions({ topic: "t", partitionCount: 0, groups: [group("a")] })).code, "INVALID_ARGUMENT");
    assert.equal(placementError(() => placePartitions({ topic: "t", partitionCount: 1.5, groups: [group("a")] })).code, "INVALID_ARGUMENT");
  });
});
