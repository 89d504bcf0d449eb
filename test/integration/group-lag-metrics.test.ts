/**
 * Consumer-group lag on the broker's /metrics, after real traffic: zero once a group consumed
 * everything, up by exactly what was produced while its consumer was stopped (and aging in
 * seconds), back to zero once it resumes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { startDev, type Cluster } from "../helpers/processes.js";

const TOPIC = "billing-events";
const GROUP = "billing";

async function lagSeries(http: string): Promise<{ messages: number | undefined; seconds: number | undefined }> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const value = (name: string): number | undefined => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}{group="${GROUP}",topic="${TOPIC}"}`));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  return { messages: value("sluice_consumer_group_lag_messages"), seconds: value("sluice_consumer_group_lag_seconds") };
}

/** Consumes `count` messages as a member of GROUP, then closes (committing what it consumed). */
async function consume(sluice: Sluice, count: number): Promise<void> {
  const consumer = sluice.consumer({ group: GROUP, fromBeginning: true });
  let seen = 0;
  for await (const _message of consumer.subscribe(TOPIC)) {
    if (++seen < count) continue;
    // The message the loop is on counts as finished only once committed explicitly.
    await consumer.commit();
    break;
  }
  await consumer.close();
}

describe("consumer group lag metrics (real broker)", () => {
  let cluster: Cluster;
  let sluice: Sluice;
  before(async () => {
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "lag-metrics" });
    await sluice.admin().createTopic(TOPIC, { partitions: 2 });
  });
  after(async () => {
    await sluice?.close();
    await cluster?.process.stop();
  });

  it("goes up by what was produced while the consumer stopped, ages, and returns to zero when it resumes", async () => {
    const producer = sluice.producer({ lingerMs: 1 });
    const send = (from: number, n: number) => producer.send(TOPIC, Array.from({ length: n }, (_, i) => ({ key: `k${from + i}`, value: `m${from + i}` })));
    await send(0, 100);
    await consume(sluice, 100);
    assert.deepEqual(await lagSeries(cluster.http), { messages: 0, seconds: 0 });

    await send(100, 50);
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const stopped = await lagSeries(cluster.http);
    assert.equal(stopped.messages, 50);
    assert.ok((stopped.seconds ?? 0) >= 1, `lag seconds ${stopped.seconds}`);

    await consume(sluice, 50);
    assert.deepEqual(await lagSeries(cluster.http), { messages: 0, seconds: 0 });
    const described = await sluice.admin().describeGroup(GROUP);
    assert.equal(described.partitions.reduce((sum, p) => sum + p.lag, 0), 0, "the CLI's view agrees");
  });
});
