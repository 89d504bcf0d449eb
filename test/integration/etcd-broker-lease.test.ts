/**
 * `sluice broker --etcd`: the broker holds its own etcd lease, the name server writes its
 * record under it, and a lease lost (here: revoked behind the broker's back) is replaced by a
 * new one the broker registers again under, saying so in its log.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { EtcdRegistryStore } from "../../nameserver/src/registry/etcd-store.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";
import { startBroker, startNameServer } from "../helpers/processes.js";

describe("a broker holding its own etcd lease", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it("is registered under its lease, and registers again under a new one when the lease is lost", async () => {
    const ns = await startNameServer(["--etcd", etcd.endpoint]);
    const b1 = await startBroker({ nameservers: [ns.address], name: "b1", extra: ["--etcd", etcd.endpoint] });
    const store = new EtcdRegistryStore({ endpoints: [etcd.endpoint] });
    const raw = new Etcd3({ hosts: [etcd.endpoint] });
    try {
      const first = await store.getBroker("sluice/b1/0");
      assert.ok(first?.leaseId !== undefined, "the record carries the broker's lease");
      const leases = await raw.leaseClient.leaseTimeToLive({ ID: first.leaseId });
      // --lease-ttl-ms defaults to 2000: failover starts about 2 s after a master dies.
      assert.equal(Number(leases.grantedTTL), 2, `lease TTL ${leases.grantedTTL} s`);

      await raw.leaseClient.leaseRevoke({ ID: first.leaseId });
      assert.equal(await store.getBroker("sluice/b1/0"), undefined, "revoking the lease removes the record");
      const started = Date.now();
      let again = await store.getBroker("sluice/b1/0");
      while ((again === undefined || again.leaseId === first.leaseId) && Date.now() - started < 10_000) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        again = await store.getBroker("sluice/b1/0");
      }
      assert.ok(again !== undefined && again.leaseId !== first.leaseId, "registered again under a new lease");
      assert.match(b1.process.stderr(), /etcd lease lost; granting a new one and registering again/);
      console.log(`broker lease: re-registered under a new lease ${Date.now() - started} ms after its lease was revoked`);

      // A clean stop unregisters and revokes: nothing of the broker is left in etcd.
      await b1.process.stop();
      assert.equal(await store.getBroker("sluice/b1/0"), undefined);
    } finally {
      raw.close();
      await store.close();
      await b1.process.stop();
      await ns.process.stop();
    }
  });
});
