/**
 * Roles and failover against a real etcd, without broker processes: role managers of b1/0 and
 * b1/1 hold their own leases in this process, and the controller asks a fake ReplicaState.
 * Losing the master's lease makes the controller promote the in-sync slave at epoch 2; the old
 * master comes back as its slave, and can no longer record an in-sync set.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { BrokerUnavailableError, NotLeaderError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { decodeGroupRecord, groupKey, registryKeyPrefix, type GroupRecord } from "../../common/src/registry/group-record.js";
import type { ReplicaStateResponse } from "../../proto/gen/sluice/v1/replication.js";
import { BrokerLease } from "../../broker/src/registration/etcd-lease.js";
import { EtcdRoleManager } from "../../broker/src/roles/etcd-role-manager.js";
import type { ReplicationMode } from "../../broker/src/options.js";
import { Controller } from "../../nameserver/src/controller/controller.js";
import { GroupRecords } from "../../nameserver/src/controller/group-records.js";
import type { ReplicaCalls } from "../../nameserver/src/controller/replica-calls.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";

/** Answers ReplicaState for fake broker addresses "b<group>-<id>:1". */
class FakeBrokers implements ReplicaCalls {
  readonly asked: string[] = [];
  constructor(private readonly offsets: Record<string, number>) {}
  async replicaState(address: string): Promise<ReplicaStateResponse> {
    this.asked.push(address);
    const [group, id] = address.replace(/:\d+$/, "").split("-") as [string, string];
    const logEndOffset = this.offsets[address];
    if (logEndOffset === undefined) throw new Error(`${address} does not answer`);
    return { group, brokerId: Number(id), role: "slave", epoch: 1, partitions: [{ topic: "t", partition: 0, logEndOffset, epochs: [] }] };
  }
  promote(): Promise<number> {
    return Promise.reject(new Error("not used over etcd"));
  }
  close(): void {}
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

describe("roles and failover over etcd", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess;
  let raw: Etcd3;
  const cleanups: Array<() => Promise<void> | void> = [];
  before(async () => {
    etcd = await startEtcd();
    raw = new Etcd3({ hosts: [etcd.endpoint] });
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    raw?.close();
    await etcd?.stop();
  });

  async function broker(cluster: string, group: string, brokerId: number, replication: ReplicationMode = { kind: "sync" }) {
    const lease = new BrokerLease({ endpoints: [etcd.endpoint], ttlMs: 2000, logger: silentLogger });
    await lease.start();
    const roles = new EtcdRoleManager({
      group, brokerId, address: `${group}-${brokerId}:1`, httpAddress: "", lease, cluster, replication, logger: silentLogger,
    });
    cleanups.push(async () => {
      await roles.stop();
      await lease.close();
    });
    return { lease, roles };
  }

  function controller(cluster: string, brokers: ReplicaCalls, candidateId = "ns-1") {
    const records = new GroupRecords({ endpoints: [etcd.endpoint], keyPrefix: registryKeyPrefix(cluster) });
    const control = new Controller({ records, brokers, candidateId, logger: silentLogger, retryIntervalMs: 100 });
    cleanups.push(async () => {
      await control.stop();
      records.close();
    });
    return control;
  }

  async function readRecord(cluster: string, group: string): Promise<GroupRecord> {
    const value = await raw.get(registryKeyPrefix(cluster) + groupKey(group)).string();
    assert.ok(value !== null, "the group record exists");
    return decodeGroupRecord(value, group);
  }

  it("b1/0 creates the group at epoch 1; losing its lease makes the controller promote in-sync b1/1 at epoch 2", async () => {
    const b0 = await broker("c1", "b1", 0);
    const b1 = await broker("c1", "b1", 1);
    assert.deepEqual(await b0.roles.start(), { role: "master", epoch: 1 });
    assert.deepEqual(await b1.roles.start(), { role: "slave", epoch: 1, master: { brokerId: 0, address: "b1-0:1" } });
    b0.roles.fence.check();
    assert.throws(() => b1.roles.fence.check(), NotLeaderError);
    await b0.roles.recordInSync([1]);
    assert.deepEqual((await readRecord("c1", "b1")).inSync, [1]);

    // Keep-alives are answered: the fence's window keeps moving forward.
    const grantedAt = b0.lease.lastAckedSendMs;
    await waitFor("a keep-alive was answered", () => b0.lease.lastAckedSendMs > grantedAt, 3000);
    assert.equal(b0.lease.ttlMs, 2000);

    const brokers = new FakeBrokers({ "b1-1:1": 42 });
    const control = controller("c1", brokers);
    control.start();
    await waitFor("the controller is elected", () => control.isLeader);
    assert.equal((await readRecord("c1", "b1")).epoch, 1, "a live master is left alone");

    const lostAt = Date.now();
    await raw.leaseClient.leaseRevoke({ ID: b0.lease.leaseId as string });
    await waitFor("b1/1 is master", () => b1.roles.current().role === "master");
    console.log(`roles: b1/1 master ${Date.now() - lostAt} ms after b1/0's lease was revoked`);
    assert.deepEqual(b1.roles.current(), { role: "master", epoch: 2 });
    b1.roles.fence.check();
    const record = await readRecord("c1", "b1");
    assert.equal(record.master, 1);
    assert.equal(record.epoch, 2);
    assert.equal(record.masterLease, b1.lease.leaseId);
    assert.deepEqual(record.inSync, []);
    assert.deepEqual(brokers.asked.slice(0, 1), ["b1-1:1"]);

    // The old master gets a new lease and follows the new one; it can no longer act as master.
    await waitFor("b1/0 follows b1/1", () => {
      const role = b0.roles.current();
      return role.role === "slave" && role.master?.brokerId === 1;
    });
    assert.deepEqual(b0.roles.current(), { role: "slave", epoch: 2, master: { brokerId: 1, address: "b1-1:1" } });
    assert.throws(() => b0.roles.fence.check(), NotLeaderError);
    await assert.rejects(b0.roles.recordInSync([1]), NotLeaderError);

    // A hand-off to a broker that is not alive is refused, and the master stays master.
    await assert.rejects(b1.roles.handOff(5), BrokerUnavailableError);
    assert.deepEqual(b1.roles.current(), { role: "master", epoch: 2 });
    b1.roles.fence.check();

    // SIGTERM hand-off back to b1/0: epoch 3, under b1/0's new lease.
    await b1.roles.handOff(0);
    assert.deepEqual(b1.roles.current(), { role: "slave", epoch: 3, master: { brokerId: 0, address: "b1-0:1" } });
    await waitFor("b1/0 is master again", () => b0.roles.current().role === "master");
    assert.deepEqual(b0.roles.current(), { role: "master", epoch: 3 });
    assert.equal((await readRecord("c1", "b1")).masterLease, b0.lease.leaseId);
  });

  it("promotes the in-sync slave holding the most, and waits when no candidate can be promoted", async () => {
    const members = await Promise.all([0, 1, 2, 3].map((id) => broker("c2", "g", id)));
    const [m0, s1, s2, s3] = members as [typeof members[0], typeof members[0], typeof members[0], typeof members[0]];
    await m0.roles.start();
    await Promise.all([s1, s2, s3].map((member) => member.roles.start()));
    await m0.roles.recordInSync([1, 2]);
    // 3 holds the most but is out of sync: it must not be chosen; 2 holds more than 1.
    const brokers = new FakeBrokers({ "g-1:1": 10, "g-2:1": 15, "g-3:1": 99 });
    const control = controller("c2", brokers);
    control.start();
    await waitFor("the controller is elected", () => control.isLeader);
    await raw.leaseClient.leaseRevoke({ ID: m0.lease.leaseId as string });
    await waitFor("g/2 is master", () => s2.roles.current().role === "master");
    assert.deepEqual(s2.roles.current(), { role: "master", epoch: 2 });
    assert.deepEqual((await readRecord("c2", "g")).inSync, [1]);
    await waitFor("g/1 and g/3 follow g/2", () =>
      [s1, s3].every((member) => {
        const role = member.roles.current();
        return role.role === "slave" && role.master?.brokerId === 2;
      }),
    );

    // Now the only in-sync slave (1) never answers: no promotion, whatever 3 holds.
    brokers.asked.length = 0;
    delete (brokers as unknown as { offsets: Record<string, number> }).offsets["g-1:1"];
    await raw.leaseClient.leaseRevoke({ ID: s2.lease.leaseId as string });
    await waitFor("the controller asked g/1 again after a retry", () => brokers.asked.filter((a) => a === "g-1:1").length >= 2);
    const record = await readRecord("c2", "g");
    assert.equal(record.master, 2, "nobody promoted");
    assert.equal(record.epoch, 2);
    assert.ok(!brokers.asked.includes("g-3:1"), "an out-of-sync slave is not even asked");
  });

  it("a restarted master takes its place back at the next epoch, unless an in-sync slave is alive to be promoted", async () => {
    const first = await broker("c4", "g", 0);
    const slave = await broker("c4", "g", 1);
    await first.roles.start();
    await slave.roles.start();
    // Crash: the lease ends without the role manager hearing about it (no controller runs here).
    await first.roles.stop();
    await raw.leaseClient.leaseRevoke({ ID: first.lease.leaseId as string });
    const restarted = await broker("c4", "g", 0);
    assert.deepEqual(await restarted.roles.start(), { role: "master", epoch: 2 }, "no slave was in sync: it claims");
    assert.equal((await readRecord("c4", "g")).masterLease, restarted.lease.leaseId);
    await waitFor("the slave follows the restarted master at epoch 2", () => slave.roles.current().epoch === 2);

    await restarted.roles.recordInSync([1]);
    await restarted.roles.stop();
    await raw.leaseClient.leaseRevoke({ ID: restarted.lease.leaseId as string });
    const again = await broker("c4", "g", 0);
    assert.deepEqual(await again.roles.start(), { role: "slave", epoch: 2, master: undefined }, "in-sync g/1 is alive: the controller decides");
    assert.equal((await readRecord("c4", "g")).epoch, 2);
    assert.throws(() => again.roles.fence.check(), NotLeaderError);
  });

  it("one controller leads at a time; when it stops another takes over", async () => {
    const brokers = new FakeBrokers({});
    const first = controller("c3", brokers, "ns-a");
    const second = controller("c3", brokers, "ns-b");
    first.start();
    second.start();
    await waitFor("one controller is elected", () => first.isLeader || second.isLeader);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(Number(first.isLeader) + Number(second.isLeader), 1, "exactly one leads");
    const [leader, other] = first.isLeader ? [first, second] : [second, first];
    await leader.stop();
    const tookMs = await waitFor("the other controller is elected", () => other.isLeader, 5000);
    console.log(`roles: controller took over ${tookMs} ms after the leader resigned`);
  });
});
