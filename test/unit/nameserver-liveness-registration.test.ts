import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { FakeClock } from "../../common/src/clock.js";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { BrokerInfo, HostedPartition } from "../../proto/gen/sluice/v1/nameserver.js";
import { Registrar } from "../../broker/src/registration/registrar.js";
import { ClusterState } from "../../nameserver/src/cluster-state.js";
import type { DetectorSettings } from "../../nameserver/src/liveness/detector.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";
import { NameServer } from "../../nameserver/src/server.js";

const INTERVAL_MS = 1000;
const EXPIRY_MS = 3000;

function setup(detector: DetectorSettings = { kind: "fixed" }): { clock: FakeClock; state: ClusterState } {
  const clock = new FakeClock(1_000_000);
  const state = new ClusterState({
    store: new MemoryRegistryStore(),
    clock,
    heartbeatIntervalMs: INTERVAL_MS,
    expiryMs: EXPIRY_MS,
    detector,
    logger: silentLogger,
    learnTopicsFromReports: true,
  });
  return { clock, state };
}

function broker(address: string, extra: Partial<BrokerInfo> = {}): BrokerInfo {
  return { cluster: "c", group: "b1", brokerId: 0, address, httpAddress: "", version: "test", role: "master", epoch: 1, weight: 1, ...extra };
}

function hosted(topic: string, count: number): HostedPartition[] {
  return Array.from({ length: count }, (_, partition) => ({
    topic,
    partition,
    partitionCount: count,
    logEndOffset: 0,
    sizeBytes: 0,
    config: undefined,
  }));
}

function refusedNaming(...addresses: string[]): (err: unknown) => boolean {
  return (err) =>
    err instanceof SluiceError &&
    err.code === "INVALID_ARGUMENT" &&
    addresses.every((address) => err.message.includes(address)) &&
    /already registered by a live broker/.test(err.message);
}

describe("broker names are not taken over silently", () => {
  it("refuses a second live broker with the same name at another address, naming both", async () => {
    const { clock, state } = setup();
    await state.register(broker("127.0.0.1:10911"), []);
    clock.advance(2000); // suspect: still live
    await assert.rejects(state.register(broker("127.0.0.1:10912"), []), refusedNaming("127.0.0.1:10911", "127.0.0.1:10912"));
    const [status] = await state.brokerStatuses();
    assert.equal(status?.record.address, "127.0.0.1:10911", "the holder keeps its name");
    assert.equal(status?.state, "suspect");
  });

  it("lets the same address register again (a restart)", async () => {
    const { clock, state } = setup();
    await state.register(broker("127.0.0.1:10911"), []);
    clock.advance(500);
    const again = await state.register(broker("127.0.0.1:10911", { epoch: 2 }), []);
    assert.equal(again.epoch, 2);
    assert.equal((await state.brokerStatuses()).length, 1);
  });

  it("lets a new address take the name of a dead holder, swept or not", async () => {
    const { clock, state } = setup();
    await state.register(broker("127.0.0.1:10911"), []);
    clock.advance(EXPIRY_MS + 1); // dead, not yet swept
    await state.register(broker("127.0.0.1:10912"), []);
    let [status] = await state.brokerStatuses();
    assert.equal(status?.record.address, "127.0.0.1:10912");
    assert.equal(status?.state, "alive");

    // The old holder wakes up: its heartbeat must not take the name back.
    assert.equal(await state.heartbeat(broker("127.0.0.1:10911"), []), false, "told to register again");
    await assert.rejects(state.register(broker("127.0.0.1:10911"), []), refusedNaming("127.0.0.1:10912", "127.0.0.1:10911"));
    assert.equal((await state.brokerStatuses())[0]?.record.address, "127.0.0.1:10912");

    clock.advance(EXPIRY_MS + 1);
    await state.sweep();
    await state.register(broker("127.0.0.1:10913"), []);
    [status] = await state.brokerStatuses();
    assert.equal(status?.record.address, "127.0.0.1:10913");
  });

  it("judges liveness with the φ detector when it runs", async () => {
    const { clock, state } = setup({ kind: "phi", phiThreshold: 8 });
    await state.register(broker("127.0.0.1:10911"), []);
    clock.advance(2500); // φ ≈ 11: suspect, still live
    await assert.rejects(state.register(broker("127.0.0.1:10912"), []), refusedNaming("127.0.0.1:10911"));
    clock.advance(300); // φ ≥ 16: dead
    await state.register(broker("127.0.0.1:10912"), []);
  });
});

describe("broker statuses for `sluice cluster`", () => {
  it("report the partitions each broker listed and the fixed detector's missed heartbeats", async () => {
    const { clock, state } = setup();
    await state.register(broker("127.0.0.1:10911"), hosted("orders", 3));
    await state.register(broker("127.0.0.1:10912", { group: "b2" }), []);
    clock.advance(1500);
    assert.equal(await state.heartbeat(broker("127.0.0.1:10912", { group: "b2" }), hosted("audit", 2)), true);
    clock.advance(500);
    const statuses = await state.brokerStatuses();
    assert.deepEqual(
      statuses.map((s) => [s.record.group, s.partitionCount, s.suspicion, s.heartbeatAgeMs, s.state]),
      [
        ["b1", 3, 2, 2000, "suspect"],
        ["b2", 2, 0.5, 500, "alive"],
      ],
    );
    await state.unregister("c", "b1", 0);
    assert.deepEqual((await state.brokerStatuses()).map((s) => s.record.group), ["b2"]);
    await state.register(broker("127.0.0.1:10911"), []);
    assert.equal((await state.brokerStatuses())[0]?.partitionCount, 0, "a new registration reports afresh");
  });

  it("report φ with the phi detector; registering again starts a new rhythm", async () => {
    const { clock, state } = setup({ kind: "phi", phiThreshold: 8 });
    const info = broker("127.0.0.1:10911");
    await state.register(info, []);
    // The broker has heartbeated every 2.5 s for a long time: 2.4 s of silence is ordinary.
    for (let i = 0; i < 100; i++) {
      clock.advance(2500);
      await state.heartbeat(info, []);
    }
    clock.advance(2400);
    let [status] = await state.brokerStatuses();
    assert.ok(status !== undefined && status.suspicion >= 0 && status.suspicion < 1, `φ ${status?.suspicion}`);
    assert.equal(status.state, "alive");
    // After a restart the old rhythm says nothing: back to the 1 s interval it was told to keep.
    await state.register(info, []);
    clock.advance(2400);
    [status] = await state.brokerStatuses();
    assert.ok(status !== undefined && status.suspicion >= 8, `φ ${status?.suspicion}`);
    assert.equal(status.state, "suspect");
  });
});

describe("a broker whose name is taken", () => {
  it("logs the refusal as an error, keeps retrying, and registers once the holder leaves", async () => {
    const ns = await NameServer.start({ port: 0, httpPort: null, heartbeatIntervalMs: 100, logger: silentLogger });
    const lines: Array<{ level: number; msg: string; err?: string }> = [];
    const capture = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const registrar = (address: string, logger = silentLogger): Registrar =>
      new Registrar({ nameservers: [ns.grpcAddress], broker: broker(address), hostedPartitions: () => [], heartbeatIntervalMs: 100, logger });
    const holder = registrar("127.0.0.1:20911");
    const claimant = registrar("127.0.0.1:20912", capture);
    try {
      holder.start();
      await holder.whenRegistered();
      claimant.start();
      const deadline = Date.now() + 5000;
      while (lines.filter((l) => /refused/.test(l.msg) || /retry failed/.test(l.msg)).length < 3 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const errors = lines.filter((l) => l.level === 50);
      assert.equal(errors.length, 1, "one error line per refusal, not one per retry");
      assert.match(errors[0]?.msg ?? "", /refused this broker's registration; retrying with backoff/);
      assert.match(errors[0]?.err ?? "", /127\.0\.0\.1:20911.*127\.0\.0\.1:20912/);
      assert.ok(lines.filter((l) => /retry failed/.test(l.msg)).length >= 2, "it kept retrying");
      assert.equal(claimant.registeredCount, 0);
      assert.equal((await ns.state.brokerStatuses())[0]?.record.address, "127.0.0.1:20911");

      await holder.stop(); // unregisters: the name is free
      await claimant.whenRegistered();
      assert.equal((await ns.state.brokerStatuses())[0]?.record.address, "127.0.0.1:20912");
    } finally {
      await holder.stop();
      await claimant.stop();
      await ns.stop();
    }
  });
});
