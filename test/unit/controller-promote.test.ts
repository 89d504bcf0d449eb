import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { BrokerUnavailableError, InvalidArgumentError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { BrokerInfo, ReplicaStatus } from "../../proto/gen/sluice/v1/nameserver.js";
import type { ReplicaStateResponse } from "../../proto/gen/sluice/v1/replication.js";
import { ClusterState } from "../../nameserver/src/cluster-state.js";
import { BrokerPromoter } from "../../nameserver/src/controller/promote-broker.js";
import type { ReplicaCalls } from "../../nameserver/src/controller/replica-calls.js";
import { ReplicaReports } from "../../nameserver/src/controller/replica-reports.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";

function broker(brokerId: number, role: "master" | "slave", epoch: number, cluster = "c"): BrokerInfo {
  return { cluster, group: "b1", brokerId, address: `127.0.0.1:${10911 + brokerId}`, httpAddress: "", version: "t", role, epoch, weight: 1 };
}

function status(brokerId: number, inSync: boolean): ReplicaStatus {
  return { brokerId, inSync, connected: true, lagMessages: inSync ? 0 : 40, lagBytes: inSync ? 0 : 4096, lagMs: inSync ? 0 : 1200 };
}

/** Records Promote calls; ReplicaState is not used by hand promotion. */
class FakeBrokers implements ReplicaCalls {
  readonly promotes: Array<{ address: string; epoch: number }> = [];
  replicaState(): Promise<ReplicaStateResponse> {
    return Promise.reject(new Error("not used"));
  }
  async promote(address: string, epoch: number): Promise<number> {
    this.promotes.push({ address, epoch });
    return epoch;
  }
  close(): void {}
}

async function setup(brokers: BrokerInfo[]): Promise<{ promoter: BrokerPromoter; calls: FakeBrokers; reports: ReplicaReports }> {
  const clock = new FakeClock(1_000_000);
  const state = new ClusterState({ store: new MemoryRegistryStore(), clock, heartbeatIntervalMs: 1000, expiryMs: 3000, logger: silentLogger, learnTopicsFromReports: true });
  for (const info of brokers) await state.register(info, []);
  const calls = new FakeBrokers();
  const reports = new ReplicaReports();
  const promoter = new BrokerPromoter({ records: undefined, state, reports, brokers: calls, clock, logger: silentLogger });
  return { promoter, calls, reports };
}

describe("BrokerPromoter without etcd", () => {
  it("calls the broker's Promote with the group's highest epoch + 1 and answers the new master", async () => {
    const { promoter, calls, reports } = await setup([broker(0, "master", 2), broker(1, "slave", 2), broker(2, "slave", 1)]);
    reports.record(broker(0, "master", 2), [status(1, true), status(2, false)], 0);
    // Nothing fences a live master without etcd: replacing it behind its back needs --force.
    await assert.rejects(promoter.promote({ cluster: "", group: "b1", brokerId: 1, force: false }), /b1\/0 is alive and master: stop it with SIGTERM/);
    assert.equal(calls.promotes.length, 0);
    const master = await promoter.promote({ cluster: "", group: "b1", brokerId: 1, force: true });
    assert.deepEqual(master, { brokerId: 1, epoch: 3, address: "127.0.0.1:10912" });
    assert.deepEqual(calls.promotes, [{ address: "127.0.0.1:10912", epoch: 3 }]);
  });

  it("refuses a slave its master reports out of sync unless forced", async () => {
    const { promoter, calls, reports } = await setup([broker(0, "master", 2), broker(2, "slave", 2)]);
    reports.record(broker(0, "master", 2), [status(2, false)], 0);
    await assert.rejects(promoter.promote({ cluster: "", group: "b1", brokerId: 2, force: false }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, /not in sync with master b1\/0 \(lag 1200 ms \/ 4096 B\).*--force/);
      return true;
    });
    assert.equal(calls.promotes.length, 0);
    assert.equal((await promoter.promote({ cluster: "", group: "b1", brokerId: 2, force: true })).epoch, 3);
  });

  it("answers the master as it is when it is already master; names live brokers when the target is unknown", async () => {
    const { promoter, calls } = await setup([broker(0, "master", 2), broker(1, "slave", 2)]);
    assert.deepEqual(await promoter.promote({ cluster: "", group: "b1", brokerId: 0, force: false }), { brokerId: 0, epoch: 2, address: "127.0.0.1:10911" });
    assert.equal(calls.promotes.length, 0);
    await assert.rejects(promoter.promote({ cluster: "", group: "b1", brokerId: 5, force: false }), (err: unknown) => {
      assert.ok(err instanceof BrokerUnavailableError);
      assert.match(err.message, /live brokers of b1: \[0,1\]/);
      return true;
    });
    await assert.rejects(promoter.promote({ cluster: "", group: "", brokerId: 1, force: false }), InvalidArgumentError);
  });

  it("asks for --cluster when the group exists in two clusters", async () => {
    const { promoter } = await setup([broker(0, "master", 1, "c"), { ...broker(1, "slave", 1, "d"), address: "127.0.0.1:20000" }]);
    await assert.rejects(promoter.promote({ cluster: "", group: "b1", brokerId: 1, force: true }), /exists in clusters c, d: pass --cluster/);
    assert.equal((await promoter.promote({ cluster: "d", group: "b1", brokerId: 1, force: true })).epoch, 2);
  });
});

describe("ReplicaReports", () => {
  it("keeps the newest master's view per group and never reports the master itself", () => {
    const reports = new ReplicaReports();
    reports.record(broker(0, "master", 3), [status(1, true)], 5);
    reports.record(broker(1, "slave", 3), [status(0, false)], 6);
    reports.record(broker(2, "master", 2), [status(1, false)], 7);
    assert.deepEqual(reports.statusOf("c", "b1", 1), status(1, true), "an older master's report is ignored");
    assert.equal(reports.statusOf("c", "b1", 0), undefined);
    assert.equal(reports.statusOf("c", "b9", 1), undefined);
  });
});
