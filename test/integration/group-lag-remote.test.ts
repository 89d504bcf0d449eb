/**
 * Consumer-group lag on /metrics for a topic spread over two broker groups: the broker that
 * coordinates the group reports the lag of every partition, those its own group hosts and
 * those the other group hosts (asked of their master), and its total equals the CLI's.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { sample, scrape, series } from "../helpers/metrics.js";
import { runCli, startBroker, startNameServer, type ServerProcess } from "../helpers/processes.js";

const TOPIC = "ledger-entries";
const GROUP = "reconciler";
const PARTITIONS = 4;
const LABELS = { group: GROUP, topic: TOPIC };

/** Unequal on purpose: a total that misses any partition cannot come out right. */
const backlogOf = (partition: number): number => partition + 2;

describe("consumer group lag across broker groups (name server + brokers b1, b2)", () => {
  let nameserver: string;
  const brokers: Array<{ name: string; http: string; process: ServerProcess }> = [];
  let sluice: Sluice;
  let placement: Map<number, string>;

  before(async () => {
    const ns = await startNameServer();
    nameserver = ns.address;
    const started = await Promise.all(
      ["b1", "b2"].map((name) => startBroker({ nameservers: [nameserver], name, extra: ["--metrics-per-partition"] })),
    );
    started.forEach((b, i) => brokers.push({ name: i === 0 ? "b1" : "b2", http: b.http, process: b.process }));
    sluice = new Sluice({ nameservers: [nameserver], clientId: "lag-remote" });
    const info = await sluice.admin().createTopic(TOPIC, { partitions: PARTITIONS, brokers: ["b1", "b2"] });
    placement = new Map(info.placement.map((p) => [p.partition, p.group]));
  });
  after(async () => {
    await sluice?.close();
    await Promise.all(brokers.map((b) => b.process.stop()));
  });

  it("the coordinator's lag_messages covers both groups' partitions and equals `sluice group describe` total", async () => {
    assert.deepEqual(new Set(placement.values()), new Set(["b1", "b2"]), `partitions on both groups: ${JSON.stringify([...placement])}`);

    // A committed position on every partition: two messages each, consumed and committed.
    const producer = sluice.producer({ lingerMs: 1 });
    const sendTo = (partition: number, count: number, tag: string) =>
      producer.send(TOPIC, Array.from({ length: count }, (_, i) => ({ partition, key: `${tag}-${partition}-${i}`, value: `${tag}${i}` })));
    for (let p = 0; p < PARTITIONS; p++) await sendTo(p, 2, "first");
    const consumer = sluice.consumer({ group: GROUP, fromBeginning: true });
    let seen = 0;
    for await (const _message of consumer.subscribe(TOPIC)) {
      if (++seen < 2 * PARTITIONS) continue;
      await consumer.commit();
      break;
    }
    await consumer.close();

    for (let p = 0; p < PARTITIONS; p++) await sendTo(p, backlogOf(p), "backlog");
    const expectedTotal = Array.from({ length: PARTITIONS }, (_, p) => backlogOf(p)).reduce((a, b) => a + b, 0);

    const cli = await runCli(["group", "describe", GROUP, "--json"], { nameserver });
    assert.equal(cli.code, 0, cli.stderr);
    const described = JSON.parse(cli.stdout) as { partitions: Array<{ topic: string; partition: number; lag: number }> };
    const cliTotal = described.partitions.filter((p) => p.topic === TOPIC).reduce((sum, p) => sum + p.lag, 0);
    assert.equal(cliTotal, expectedTotal, cli.stdout);

    // Only the coordinator reports the group; the other broker has no series for it.
    const scrapes = await Promise.all(brokers.map(async (b) => ({ broker: b, samples: await scrape(b.http) })));
    const reporting = scrapes.filter((s) => sample(s.samples, "sluice_consumer_group_lag_messages", LABELS) !== undefined);
    assert.equal(reporting.length, 1, `exactly one coordinator reports ${GROUP}`);
    const coordinator = reporting[0]!;
    assert.equal(sample(coordinator.samples, "sluice_consumer_group_lag_messages", LABELS), cliTotal);

    const perPartition = new Map(
      series(coordinator.samples, "sluice_consumer_group_partition_lag_messages")
        .filter((s) => s.labels.group === GROUP && s.labels.topic === TOPIC)
        .map((s) => [Number(s.labels.partition), s.value]),
    );
    assert.deepEqual(
      [...perPartition].sort((a, b) => a[0] - b[0]),
      Array.from({ length: PARTITIONS }, (_, p) => [p, backlogOf(p)]),
      `coordinator ${coordinator.broker.name}; placement ${JSON.stringify([...placement])}`,
    );
    const remoteGroups = [...perPartition.keys()].map((p) => placement.get(p)).filter((g) => g !== coordinator.broker.name);
    assert.ok(remoteGroups.length > 0, "some of those partitions live on the other broker group");

    // Seconds come from the coordinator's own partitions, which lag too.
    const seconds = sample(coordinator.samples, "sluice_consumer_group_lag_seconds", LABELS);
    assert.ok(seconds !== undefined && seconds >= 0, `lag seconds ${seconds}`);

    // Consumed to the end: lag returns to zero everywhere once the cached ends are refreshed.
    const resumed = sluice.consumer({ group: GROUP });
    let caughtUp = 0;
    for await (const _message of resumed.subscribe(TOPIC)) {
      if (++caughtUp < expectedTotal) continue;
      await resumed.commit();
      break;
    }
    await resumed.close();
    const caughtUpSamples = await scrape(coordinator.broker.http);
    assert.equal(sample(caughtUpSamples, "sluice_consumer_group_lag_messages", LABELS), 0);
  });

  it("sluice group reset-offsets moves every partition, on both broker groups (earliest, latest, timestamp)", async () => {
    const reset = async (...to: string[]): Promise<Map<number, number>> => {
      const result = await runCli(["group", "reset-offsets", GROUP, "--topic", TOPIC, ...to, "--json"], { nameserver });
      assert.equal(result.code, 0, result.stderr);
      const described = await runCli(["group", "describe", GROUP, "--json"], { nameserver });
      const parsed = JSON.parse(described.stdout) as { partitions: Array<{ topic: string; partition: number; committedOffset: number }> };
      return new Map(parsed.partitions.filter((p) => p.topic === TOPIC).map((p) => [p.partition, p.committedOffset]));
    };
    const ends = await sluice.admin().listOffsets(TOPIC, "latest");
    assert.deepEqual([...(await reset("--to", "earliest"))].sort((a, b) => a[0] - b[0]), Array.from({ length: PARTITIONS }, (_, p) => [p, 0]));
    assert.deepEqual([...(await reset("--to", "latest"))].sort((a, b) => a[0] - b[0]), [...ends].sort((a, b) => a[0] - b[0]));
    // Past every record: the end, as Kafka's reset does.
    const future = new Date(Date.now() + 3_600_000).toISOString();
    assert.deepEqual([...(await reset("--to-datetime", future))].sort((a, b) => a[0] - b[0]), [...ends].sort((a, b) => a[0] - b[0]));
    assert.deepEqual([...(await reset("--to", "1"))].sort((a, b) => a[0] - b[0]), Array.from({ length: PARTITIONS }, (_, p) => [p, 1]));
  });
});
