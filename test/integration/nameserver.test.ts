/**
 * Name servers and brokers as separate processes: brokers register with every name server,
 * a topic created through one name server is routable through the other, partitions spread
 * across broker groups, and a SIGKILLed broker is removed after the expiry window.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { runCli, startBroker, startNameServer } from "../helpers/processes.js";

interface ClusterJson {
  brokers: { group: string; id: number; role: string; state: string; address: string; heartbeatAgeMs: number }[];
}

async function cluster(nameserver: string): Promise<ClusterJson> {
  const result = await runCli(["--json", "cluster"], { nameserver });
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ClusterJson;
}

describe("two name servers, two broker groups", () => {
  it("share brokers and topics, spread partitions, and expire a killed broker", async () => {
    const ns1 = await startNameServer();
    const ns2 = await startNameServer();
    const both = [ns1.address, ns2.address];
    const b1 = await startBroker({ nameservers: both, name: "b1" });
    const b2 = await startBroker({ nameservers: both, name: "b2" });

    for (const ns of both) {
      const { brokers } = await cluster(ns);
      assert.deepEqual(brokers.map((b) => b.group).sort(), ["b1", "b2"]);
      assert.ok(brokers.every((b) => b.state === "alive" && b.role === "master"));
    }

    const viaFirst = new Sluice({ nameservers: [ns1.address], clientId: "ns-test-1" });
    const viaSecond = new Sluice({ nameservers: [ns2.address], clientId: "ns-test-2" });
    try {
      await viaFirst.admin().createTopic("spread", { partitions: 4 });
      const description = await viaFirst.admin().describeTopic("spread");
      const perGroup = new Map<string, number>();
      for (const p of description.partitions) perGroup.set(p.group, (perGroup.get(p.group) ?? 0) + 1);
      assert.deepEqual([...perGroup.entries()].sort(), [["b1", 2], ["b2", 2]], "placement keeps partition counts even");

      // The second name server learns the topic from the brokers' heartbeats.
      const deadline = Date.now() + 5000;
      let metas;
      for (;;) {
        try {
          metas = await viaSecond.producer().send("spread", [0, 1, 2, 3].map((partition) => ({ value: `p${partition}`, partition })));
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      assert.deepEqual(metas.map((m) => m.offset), [0, 0, 0, 0]);

      // Kill b2 without warning: after 3 missed heartbeats it is gone from both name servers.
      b2.process.child.kill("SIGKILL");
      const killedAt = Date.now();
      for (const ns of both) {
        for (;;) {
          const { brokers } = await cluster(ns);
          if (!brokers.some((b) => b.group === "b2" && b.state !== "dead")) break;
          assert.ok(Date.now() - killedAt < 8000, "the killed broker is removed within the expiry window");
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      const { brokers } = await cluster(ns1.address);
      assert.deepEqual(brokers.filter((b) => b.state === "alive").map((b) => b.group), ["b1"]);
    } finally {
      await viaFirst.close();
      await viaSecond.close();
      await b1.process.stop();
      await ns1.process.stop();
      await ns2.process.stop();
    }
  });
});
