import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AliveRecord, GroupRecord } from "../../common/src/registry/group-record.js";
import {
  answersNeeded,
  chooseNewMaster,
  failoverCandidates,
  masterIsGone,
  type ReplicaAnswer,
} from "../../nameserver/src/controller/failover-choice.js";

function record(overrides: Partial<GroupRecord> = {}): GroupRecord {
  return { master: 0, epoch: 4, masterLease: "m", inSync: [1, 2], mode: "sync", quorum: 0, updatedAtMs: 0, ...overrides };
}

function alive(...ids: number[]): Map<number, AliveRecord> {
  return new Map(ids.map((id) => [id, { leaseId: `l${id}`, address: `h:${id}`, httpAddress: "" }]));
}

function answers(entries: Array<[number, number]>): Map<number, ReplicaAnswer> {
  return new Map(entries.map(([brokerId, totalOffset]) => [brokerId, { brokerId, totalOffset }]));
}

describe("masterIsGone", () => {
  it("is true when the master's alive key is missing or carries another lease", () => {
    const r = record({ masterLease: "l0" });
    assert.equal(masterIsGone(r, alive(0, 1)), false);
    assert.equal(masterIsGone(r, alive(1)), true);
    assert.equal(masterIsGone(record({ masterLease: "old" }), alive(0, 1)), true, "restarted under a new lease");
  });
});

describe("failoverCandidates", () => {
  it("sync and quorum: live in-sync slaves only; async: any live slave; never the master", () => {
    assert.deepEqual(failoverCandidates(record({ inSync: [3, 1, 2] }), alive(0, 1, 3, 4)), [1, 3]);
    assert.deepEqual(failoverCandidates(record({ mode: "quorum", quorum: 1 }), alive(2)), [2]);
    assert.deepEqual(failoverCandidates(record({ mode: "async", inSync: [] }), alive(0, 4, 2)), [2, 4]);
  });
});

describe("chooseNewMaster", () => {
  it("picks the highest total log end offset, ties to the lowest id", () => {
    const r = record({ inSync: [1, 2, 3] });
    assert.deepEqual(chooseNewMaster(r, [1, 2, 3], answers([[1, 90], [2, 100], [3, 100]])), { kind: "promote", brokerId: 2, totalOffset: 100 });
    assert.deepEqual(chooseNewMaster(r, [1, 2, 3], answers([[3, 5], [1, 5]])), { kind: "promote", brokerId: 1, totalOffset: 5 });
  });

  it("ignores answers from brokers that are not candidates", () => {
    assert.deepEqual(chooseNewMaster(record(), [1], answers([[1, 10], [7, 999]])), { kind: "promote", brokerId: 1, totalOffset: 10 });
  });

  it("waits, saying why, when no candidate is alive or none answered", () => {
    const none = chooseNewMaster(record(), [], new Map());
    assert.equal(none.kind, "wait");
    assert.match((none as { reason: string }).reason, /none of the in-sync slaves \[1,2\] is alive/);
    const lonely = chooseNewMaster(record({ inSync: [] }), [], new Map());
    assert.match((lonely as { reason: string }).reason, /acknowledged alone.*--force/);
    const silent = chooseNewMaster(record(), [1, 2], new Map());
    assert.match((silent as { reason: string }).reason, /0 of the live candidates \[1,2\] answered/);
    assert.match((chooseNewMaster(record({ mode: "async" }), [], new Map()) as { reason: string }).reason, /no slave of the group is alive/);
  });

  it("quorum:k waits for |inSync| − k + 1 answers: only then is one of them sure to hold every acked batch", () => {
    const r = record({ mode: "quorum", quorum: 2, inSync: [1, 2, 3, 4] });
    assert.equal(answersNeeded(r), 3);
    const two = chooseNewMaster(r, [1, 2, 3, 4], answers([[1, 50], [2, 60]]));
    assert.equal(two.kind, "wait");
    assert.match((two as { reason: string }).reason, /quorum:2 over in-sync set \[1,2,3,4\] needs 3 answers/);
    assert.deepEqual(chooseNewMaster(r, [1, 2, 3, 4], answers([[1, 50], [2, 60], [4, 55]])), { kind: "promote", brokerId: 2, totalOffset: 60 });
    assert.equal(answersNeeded(record({ mode: "quorum", quorum: 3, inSync: [1] })), 1, "never fewer than one");
    assert.equal(answersNeeded(record({ mode: "sync", inSync: [1, 2, 3] })), 1, "sync: every in-sync slave holds every acked batch");
  });
});
