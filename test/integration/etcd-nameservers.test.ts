/**
 * `sluice nameserver --etcd`: name servers over one real etcd keep no topic state of their own,
 * so a topic created through one is routable through the other, a second creation of it
 * through the other is refused, a name server started later knows it before any broker talked
 * to it, and an etcd that is not there stops the name server at start-up with the endpoint named.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { SluiceError } from "../../common/src/errors.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";
import { runCli, startBroker, startNameServer } from "../helpers/processes.js";

describe("name servers over one etcd", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it("answer the same routes for a topic created through one of them; one started later knows it at once", async () => {
    const ns1 = await startNameServer(["--etcd", etcd.endpoint]);
    const ns2 = await startNameServer(["--etcd", etcd.endpoint]);
    const both = [ns1.address, ns2.address];
    const b1 = await startBroker({ nameservers: both, name: "b1" });
    const b2 = await startBroker({ nameservers: both, name: "b2" });
    const viaFirst = new Sluice({ nameservers: [ns1.address], clientId: "etcd-ns-1" });
    const viaSecond = new Sluice({ nameservers: [ns2.address], clientId: "etcd-ns-2" });
    try {
      await viaFirst.admin().createTopic("spread", { partitions: 4 });
      const [first, second] = await Promise.all([viaFirst.admin().describeTopic("spread"), viaSecond.admin().describeTopic("spread")]);
      assert.deepEqual(second, first);
      assert.deepEqual(
        [...new Set(first.partitions.map((p) => p.group))].sort(),
        ["b1", "b2"],
        "partitions are spread over both broker groups",
      );

      const metas = await viaSecond.producer().send("spread", [0, 1, 2, 3].map((partition) => ({ value: `p${partition}`, partition })));
      assert.deepEqual(metas.map((m) => m.offset), [0, 0, 0, 0]);

      await assert.rejects(viaSecond.admin().createTopic("spread", { partitions: 2 }), (err: unknown) => {
        assert.ok(err instanceof SluiceError);
        assert.equal(err.code, "TOPIC_ALREADY_EXISTS");
        return true;
      });
      assert.equal((await viaFirst.admin().describeTopic("spread")).partitions.length, 4);

      // A name server started afterwards, that no broker has talked to, knows the topic at once:
      // it is in etcd, not in any name server.
      const late = await startNameServer(["--etcd", etcd.endpoint]);
      try {
        const listed = await runCli(["--json", "topic", "list"], { nameserver: late.address });
        assert.equal(listed.code, 0, listed.stderr);
        const { topics } = JSON.parse(listed.stdout) as { topics: Array<{ topic: string; partitions: number }> };
        assert.deepEqual(topics.map(({ topic, partitions }) => ({ topic, partitions })), [{ topic: "spread", partitions: 4 }]);
      } finally {
        await late.process.stop();
      }
    } finally {
      await viaFirst.close();
      await viaSecond.close();
      await Promise.all([b1.process.stop(), b2.process.stop()]);
      await Promise.all([ns1.process.stop(), ns2.process.stop()]);
    }
  });
});

describe("sluice nameserver --etcd without an etcd", () => {
  it("refuses to start and names the endpoint", async () => {
    const endpoint = "http://127.0.0.1:1";
    const result = await runCli(["nameserver", "--port", "0", "--http-port", "0", "--etcd", endpoint], { timeoutMs: 20_000 });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /etcd at http:\/\/127\.0\.0\.1:1 is unreachable/);
    assert.equal(result.stdout, "", "nothing may claim the name server started");
  });
});
