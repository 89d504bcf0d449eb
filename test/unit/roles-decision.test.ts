import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InternalError, InvalidConfigError } from "../../common/src/errors.js";
import {
  aliveKey,
  decodeAliveRecord,
  decodeGroupRecord,
  encodeAliveRecord,
  encodeGroupRecord,
  newGroupRecord,
  parseAliveKey,
  parseGroupKey,
  promotedRecord,
  registryKeyPrefix,
  type AliveRecord,
  type GroupRecord,
} from "../../common/src/registry/group-record.js";
import { decideRole, liveMasterOf } from "../../broker/src/roles/role-decision.js";

function record(overrides: Partial<GroupRecord> = {}): GroupRecord {
  return { master: 0, epoch: 3, masterLease: "100", inSync: [1], mode: "sync", quorum: 0, updatedAtMs: 1, ...overrides };
}

function alive(entries: Array<[number, string]>): Map<number, AliveRecord> {
  return new Map(entries.map(([id, leaseId]) => [id, { leaseId, address: `127.0.0.1:${10911 + id}`, httpAddress: "" }]));
}

describe("group record codec", () => {
  it("round-trips, keeping in-sync ids sorted, unique and without the master", () => {
    const text = encodeGroupRecord(record({ inSync: [2, 0, 1, 2] }));
    assert.deepEqual(JSON.parse(text), { master: 0, epoch: 3, masterLease: "100", inSync: [1, 2], mode: "sync", quorum: 0, updatedAtMs: 1 });
    assert.deepEqual(decodeGroupRecord(text, "groups/b1"), record({ inSync: [1, 2] }));
    const alive = { leaseId: "9", address: "h:1", httpAddress: "h:2" };
    assert.deepEqual(decodeAliveRecord(encodeAliveRecord(alive), "alive/b1/0"), alive);
  });

  it("refuses a record nobody could have written, naming the key", () => {
    assert.throws(() => decodeGroupRecord("{", "groups/b1"), (err: unknown) => err instanceof InternalError && /groups\/b1.*not JSON/.test(err.message));
    assert.throws(() => decodeGroupRecord(JSON.stringify({ ...record(), epoch: 0 }), "groups/b1"), /epoch ≥ 1/);
    assert.throws(() => decodeGroupRecord(JSON.stringify({ ...record(), mode: "fast" }), "groups/b1"), /mode "fast"/);
    assert.throws(() => decodeAliveRecord("[]", "alive/b1/0"), /not a JSON object/);
  });

  it("lays keys out under <root>/<cluster>/", () => {
    assert.equal(registryKeyPrefix("prod"), "/sluice/prod/");
    assert.equal(registryKeyPrefix("prod", "/x/"), "/x/prod/");
    assert.throws(() => registryKeyPrefix("a/b"), InvalidConfigError);
    assert.equal(aliveKey("b1", 2), "alive/b1/2");
    assert.deepEqual(parseAliveKey("alive/b1/2"), { group: "b1", brokerId: 2 });
    assert.equal(parseAliveKey("alive/b1/x"), undefined);
    assert.equal(parseGroupKey("groups/b1"), "b1");
    assert.equal(parseGroupKey("groups/"), undefined);
  });

  it("a new group starts with broker 0 at epoch 1; a promotion bumps the epoch and drops the new and old master from the in-sync set", () => {
    assert.deepEqual(newGroupRecord("5", "quorum", 2, 7), { master: 0, epoch: 1, masterLease: "5", inSync: [], mode: "quorum", quorum: 2, updatedAtMs: 7 });
    assert.equal(newGroupRecord("5", "sync", 2, 7).quorum, 0);
    assert.deepEqual(promotedRecord(record({ inSync: [1, 2, 3] }), 2, "200", 9), {
      master: 2, epoch: 4, masterLease: "200", inSync: [1, 3], mode: "sync", quorum: 0, updatedAtMs: 9,
    });
  });
});

describe("decideRole", () => {
  it("no record: broker 0 creates it, any other broker waits as a slave without master", () => {
    assert.deepEqual(decideRole({ record: undefined, alive: new Map(), brokerId: 0, leaseId: "1" }), { kind: "create" });
    assert.deepEqual(decideRole({ record: undefined, alive: new Map(), brokerId: 1, leaseId: "1" }), { kind: "slave", epoch: 0, master: undefined });
  });

  it("the record names me under my lease: master at its epoch", () => {
    assert.deepEqual(decideRole({ record: record({ master: 1, masterLease: "7" }), alive: new Map(), brokerId: 1, leaseId: "7" }), { kind: "master", epoch: 3 });
  });

  it("the record names me under another lease: claim it back unless an in-sync slave is alive to be promoted", () => {
    const r = record({ master: 0, masterLease: "old", inSync: [1, 2] });
    assert.deepEqual(decideRole({ record: r, alive: alive([[0, "new"]]), brokerId: 0, leaseId: "new" }), { kind: "claim" });
    assert.deepEqual(decideRole({ record: r, alive: alive([[0, "new"], [3, "x"]]), brokerId: 0, leaseId: "new" }), { kind: "claim" }, "3 is not in sync");
    assert.deepEqual(decideRole({ record: r, alive: alive([[0, "new"], [2, "x"]]), brokerId: 0, leaseId: "new" }), {
      kind: "slave",
      epoch: 3,
      master: undefined,
    });
  });

  it("the record names another broker: follow it while its alive key carries the lease it is master under", () => {
    const r = record({ master: 0, masterLease: "100" });
    assert.deepEqual(decideRole({ record: r, alive: alive([[0, "100"]]), brokerId: 1, leaseId: "7" }), {
      kind: "slave",
      epoch: 3,
      master: { brokerId: 0, address: "127.0.0.1:10911" },
    });
    assert.deepEqual(decideRole({ record: r, alive: alive([[0, "101"]]), brokerId: 1, leaseId: "7" }), { kind: "slave", epoch: 3, master: undefined });
    assert.equal(liveMasterOf(r, new Map()), undefined);
  });
});
