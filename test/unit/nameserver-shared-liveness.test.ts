/**
 * Liveness over a shared registry (etcd mode), with a counting in-memory store standing in
 * for etcd: records carry the broker's lease and `lastHeartbeatMs`; a leased broker stays
 * routed while its record exists (only suspect when nobody refreshes it); a leaseless one is
 * removed by any name server once its record is older than the expiry window; heartbeats
 * refresh the record at most once per interval; a replaced lease makes the broker register again.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { BrokerInfo } from "../../proto/gen/sluice/v1/nameserver.js";
import { ClusterState } from "../../nameserver/src/cluster-state.js";
import { judgeRecord } from "../../nameserver/src/liveness/record-liveness.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";
import type { BrokerRecord, PutBrokerOptions } from "../../nameserver/src/registry/store.js";

const INTERVAL_MS = 1000;
const EXPIRY_MS = 3000;

class CountingStore extends MemoryRegistryStore {
  brokerPuts: Array<{ record: BrokerRecord; options: PutBrokerOptions | undefined }> = [];
  override async putBroker(record: BrokerRecord, options?: PutBrokerOptions): Promise<void> {
    this.brokerPuts.push({ record, options });
    await super.putBroker(record);
  }
}

/** Two name servers over one store, as two processes over one etcd. */
function setup(): { clock: FakeClock; store: CountingStore; a: ClusterState; b: ClusterState } {
  const clock = new FakeClock(1_000_000);
  const store = new CountingStore();
  const make = (): ClusterState =>
    new ClusterState({
      store,
      clock,
      heartbeatIntervalMs: INTERVAL_MS,
      expiryMs: EXPIRY_MS,
      logger: silentLogger,
      learnTopicsFromReports: false,
      sharedLiveness: true,
    });
  return { clock, store, a: make(), b: make() };
}

function broker(brokerId: number): BrokerInfo {
  return {
    cluster: "c", group: "b1", brokerId, address: `127.0.0.1:${10_000 + brokerId}`, httpAddress: "", version: "t",
    role: brokerId === 0 ? "master" : "slave", epoch: 1, weight: 1,
  };
}

describe("record liveness", () => {
  const settings = { heartbeatIntervalMs: INTERVAL_MS, expiryMs: EXPIRY_MS };
  const record = (extra: Partial<BrokerRecord>): BrokerRecord => ({
    cluster: "c", group: "b1", brokerId: 0, address: "a:1", httpAddress: "", version: "t", role: "master", epoch: 1, weight: 1,
    registeredAtMs: 0, lastHeartbeatMs: 0, ...extra,
  });

  it("judges a leaseless record alive, suspect after 2 intervals, dead after the expiry window", () => {
    assert.equal(judgeRecord(record({}), 2000, settings).state, "alive");
    assert.equal(judgeRecord(record({}), 2001, settings).state, "suspect");
    assert.equal(judgeRecord(record({}), 3000, settings).state, "suspect");
    assert.equal(judgeRecord(record({}), 3001, settings).state, "dead");
    assert.equal(judgeRecord(record({}), 1500, settings).suspicion, 1.5);
  });

  it("never judges a leased record dead: its lease decides", () => {
    const leased = record({ leaseId: "7" });
    assert.equal(judgeRecord(leased, 1000, settings).state, "alive");
    assert.equal(judgeRecord(leased, 60_000, settings).state, "suspect");
    assert.equal(judgeRecord(leased, 60_000, settings).heartbeatAgeMs, 60_000);
  });
});

describe("cluster state over a shared registry", () => {
  it("writes a registration under the broker's lease, visible as alive through the other name server", async () => {
    const { store, a, b } = setup();
    await a.register(broker(0), [], "1234");
    assert.deepEqual(store.brokerPuts[0]!.options, { leaseId: "1234" });
    assert.equal(store.brokerPuts[0]!.record.leaseId, "1234");
    const [status] = await b.brokerStatuses();
    assert.equal(status!.state, "alive");
    assert.equal(status!.heartbeatAgeMs, 0);
    assert.equal((await b.liveBrokers()).length, 1);
  });

  it("refreshes lastHeartbeatMs at most once per interval and keeps a leased broker routed when nobody refreshes it", async () => {
    const { clock, store, a, b } = setup();
    await a.register(broker(0), [], "1234");
    clock.advance(200);
    assert.equal(await a.heartbeat(broker(0), [], "1234"), true);
    assert.equal(store.brokerPuts.length, 1, "a heartbeat 200 ms after the last write writes nothing");
    clock.advance(800);
    assert.equal(await a.heartbeat(broker(0), [], "1234"), true);
    assert.equal(store.brokerPuts.length, 2);
    assert.equal(store.brokerPuts[1]!.record.lastHeartbeatMs, clock.now());
    assert.deepEqual(store.brokerPuts[1]!.options, { leaseId: "1234" });

    // Name server a dies: nobody refreshes the record, the lease still holds it.
    clock.advance(10_000);
    await b.sweep();
    const [status] = await b.brokerStatuses();
    assert.equal(status!.state, "suspect");
    assert.equal((await b.liveBrokers()).length, 1, "still routed");
  });

  it("removes a leaseless broker through any name server once its record is older than the expiry window", async () => {
    const { clock, a, b } = setup();
    await a.register(broker(0), []);
    clock.advance(EXPIRY_MS);
    assert.deepEqual((await b.sweep()).expired, []);
    clock.advance(1);
    const { expired } = await b.sweep();
    assert.deepEqual(expired.map((e) => e.record.brokerId), [0]);
    assert.deepEqual(await a.brokerStatuses(), []);
  });

  it("answers a heartbeat carrying another lease with known=false, so the broker registers again", async () => {
    const { a } = setup();
    await a.register(broker(0), [], "1");
    assert.equal(await a.heartbeat(broker(0), [], "2"), false);
    await a.register(broker(0), [], "2");
    assert.equal(await a.heartbeat(broker(0), [], "2"), true);
  });

  it("refuses a second process claiming a leased broker's name through another name server", async () => {
    const { a, b } = setup();
    await a.register(broker(0), [], "1");
    await assert.rejects(b.register({ ...broker(0), address: "127.0.0.1:9" }, [], "2"), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, "INVALID_ARGUMENT");
      assert.match(err.message, /holding etcd lease 1/);
      return true;
    });
  });
});
