/**
 * The metrics of R24 on real processes after real traffic, by name and label:
 *
 * - one `sluice dev`: produce and fetch counters and latency histograms (produce, fetch,
 *   end-to-end), availability counts (ok and rejected), disk, role and write gate, queue
 *   in-flight / redelivered / dead-lettered, process CPU, memory, event-loop lag and GC; no
 *   per-partition series unless `--metrics-per-partition`;
 * - a master, a slave and a name server: replication lag per slave goes up while the slave is
 *   frozen (SIGSTOP) and back to 0 after SIGCONT, with under-replicated partitions, the write
 *   gate closing under `--replication sync`, and the name server's suspicion and state of the
 *   frozen broker.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { credentials } from "@grpc/grpc-js";
import { Sluice } from "../../clients/src/index.js";
import { PROTOCOL_VERSION } from "../../common/src/protocol.js";
import { BrokerClient } from "../../proto/gen/sluice/v1/broker.js";
import { parse as parseYaml } from "yaml";
import { sample, scrape, series, type Samples } from "../helpers/metrics.js";
import { promqlMetricNames } from "../helpers/prometheus.js";
import { REPO_ROOT, startDev, type Cluster } from "../helpers/processes.js";
import { take } from "../helpers/take.js";
import { eventually, startBrokerGroup, waitInSync, type BrokerGroup } from "../helpers/replication.js";


/** Waits until the scrape satisfies `check`, returning that scrape. */
function scrapeUntil(http: string, what: string, check: (samples: Samples) => boolean, timeoutMs = 15_000): Promise<Samples> {
  return eventually(what, async () => {
    const samples = await scrape(http);
    return check(samples) ? samples : undefined;
  }, timeoutMs);
}

describe("broker metrics after real traffic (sluice dev)", () => {
  let cluster: Cluster;
  let sluice: Sluice;
  before(async () => {
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "metrics-test" });
  });
  after(async () => {
    await sluice?.close();
    await cluster?.process.stop();
  });

  it("counts produce and fetch, times them end to end, and counts ok and rejected requests", async () => {
    await sluice.admin().createTopic("traffic", { partitions: 2 });
    const consumer = sluice.consumer({ group: "readers", fromBeginning: true });
    const producer = sluice.producer({ lingerMs: 1 });
    await producer.send("traffic", Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })));
    let seen = 0;
    for await (const _m of consumer.subscribe("traffic")) {
      if (++seen < 200) continue;
      // The message the loop is on counts as consumed once committed.
      await consumer.commit();
      break;
    }
    await consumer.close();

    // A fetch of a topic that does not exist: the client's fault, counted as rejected.
    const client = new BrokerClient(cluster.broker, credentials.createInsecure());
    const header = { clientId: "metrics-test", protocolVersion: PROTOCOL_VERSION };
    await new Promise<void>((resolve) => {
      client.fetch({ header, topic: "no-such-topic", partitions: [{ partition: 0, offset: 0, maxBytes: 0 }], maxBytes: 0, minBytes: 0, maxWaitMs: 0 }, () => resolve());
    });
    client.close();

    const samples = await scrape(cluster.http);
    assert.ok(sample(samples, "sluice_produced_messages_total")! >= 200);
    assert.ok(sample(samples, "sluice_fetched_messages_total")! >= 200, "record counts from batch headers");
    assert.ok(sample(samples, "sluice_fetched_bytes_total")! > 0);
    assert.ok(sample(samples, "sluice_produce_latency_seconds_count")! > 0);
    assert.ok(sample(samples, "sluice_fetch_latency_seconds_count")! > 0);
    const e2eCount = sample(samples, "sluice_end_to_end_latency_seconds_count")!;
    assert.ok(e2eCount > 0, "delivered batches timed against their append");
    assert.ok(sample(samples, "sluice_end_to_end_latency_seconds_bucket", { le: "+Inf" }) === e2eCount);
    // The consumer read while the producer wrote: every delivery came within seconds of its append.
    assert.ok(sample(samples, "sluice_end_to_end_latency_seconds_sum")! / e2eCount < 10);
    assert.ok(sample(samples, "sluice_requests_total", { api: "produce", result: "ok" })! > 0);
    assert.ok(sample(samples, "sluice_requests_total", { api: "heartbeat", result: "ok" })! > 0, "group calls are counted too");
    assert.equal(sample(samples, "sluice_requests_total", { api: "fetch", result: "rejected" }), 1, "UNKNOWN_TOPIC is the client's fault");
    assert.equal(sample(samples, "sluice_requests_total", { api: "fetch", result: "failed" }), 0, "the series exists from the start, at 0");

    assert.ok(sample(samples, "sluice_data_disk_total_bytes")! > 0);
    assert.ok(sample(samples, "sluice_data_disk_free_bytes")! > 0);
    assert.ok(sample(samples, "sluice_log_size_bytes")! > 0);
    assert.equal(sample(samples, "sluice_broker_info", { group: "local", broker_id: "0", role: "master" }), 1);
    assert.equal(sample(samples, "sluice_broker_is_master"), 1);
    assert.equal(sample(samples, "sluice_write_gate_open", { group: "local" }), 1);
    assert.equal(sample(samples, "sluice_under_replicated_partitions"), 0);
    assert.deepEqual(series(samples, "sluice_replication_lag_messages"), [], "no slaves, no per-slave series");
    assert.deepEqual(series(samples, "sluice_partition_end_offset"), [], "per-partition series only behind the flag");
    assert.equal(sample(samples, "sluice_consumer_group_lag_messages", { group: "readers", topic: "traffic" }), 0);
    // Process metrics: CPU, memory, event-loop lag and GC.
    for (const name of ["sluice_process_cpu_seconds_total", "sluice_process_resident_memory_bytes", "sluice_nodejs_heap_size_used_bytes"]) {
      assert.ok(sample(samples, name)! > 0, name);
    }
    assert.ok(sample(samples, "sluice_nodejs_eventloop_lag_seconds")! >= 0);
    // sluice dev's one /metrics carries its name server's series too.
    assert.ok(sample(samples, "sluice_nameserver_heartbeat_age_seconds", { group: "local", broker_id: "0" })! < 5);
    assert.equal(sample(samples, "sluice_nameserver_broker_state", { group: "local", broker_id: "0", state: "alive" }), 1);
    assert.ok(series(samples, "sluice_nodejs_gc_duration_seconds_count").length > 0, "GC histogram");
  });

  it("counts queue groups: in flight while leased, redelivered after a nack, dead-lettered past maxDeliveries", async () => {
    await sluice.admin().createTopic("jobs", { partitions: 1 });
    await sluice.producer().send("jobs", [{ key: "a", value: "poison" }]);
    const queue = sluice.queue({ group: "workers", topic: "jobs", fromBeginning: true, maxDeliveries: 2 });
    try {
      const [first] = await take(queue, 1, 10_000);
      await scrapeUntil(cluster.http, "one message in flight", (s) => sample(s, "sluice_queue_in_flight_messages", { group: "workers" }) === 1);
      await first!.nack({ error: "cannot parse" });
      const [second] = await take(queue, 1, 10_000);
      assert.equal(second!.deliveryCount, 2);
      await second!.nack({ error: "cannot parse" });
      const samples = await scrapeUntil(cluster.http, "the dead letter", (s) => sample(s, "sluice_queue_dead_letters", { group: "workers" }) === 1);
      assert.equal(sample(samples, "sluice_queue_dead_lettered_total", { group: "workers" }), 1);
      assert.equal(sample(samples, "sluice_queue_redelivered_total", { group: "workers" }), 1, "the second nack dead-lettered it: no redelivery");
      assert.equal(sample(samples, "sluice_queue_in_flight_messages", { group: "workers" }), 0);
    } finally {
      await queue.close();
    }
    // Redriven letters are no longer waiting.
    await sluice.admin().redrive("workers");
    await scrapeUntil(cluster.http, "no dead letters waiting after redrive", (s) => sample(s, "sluice_queue_dead_letters", { group: "workers" }) === 0);

    // After a restart, the very first scrape already knows the letter was redriven.
    await sluice.close();
    await cluster.process.stop();
    cluster = await startDev({ dataDir: cluster.dataDir });
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "metrics-test" });
    const first = await scrape(cluster.http);
    assert.equal(sample(first, "sluice_queue_dead_letters", { group: "workers" }) ?? 0, 0, "redriven letters are not counted again after a restart");
  });
});

describe("per-partition series behind --metrics-per-partition", () => {
  let cluster: Cluster;
  after(async () => {
    await cluster?.process.stop();
  });

  it("adds end offset, size and group lag per partition", async () => {
    cluster = await startDev({ extra: ["--metrics-per-partition"] });
    const sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "metrics-test" });
    try {
      await sluice.admin().createTopic("wide", { partitions: 2 });
      await sluice.producer().send("wide", Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })));
      // A group positioned at the start of both partitions, that has read nothing.
      await sluice.admin().resetOffsets("slow", "wide", "earliest");
      const samples = await scrape(cluster.http);
      const ends = [0, 1].map((p) => sample(samples, "sluice_partition_end_offset", { topic: "wide", partition: String(p) })!);
      assert.equal(ends[0]! + ends[1]!, 20);
      assert.ok(ends[0]! > 0 && ends[1]! > 0, `keys spread over both partitions: ${ends}`);
      assert.ok(sample(samples, "sluice_partition_size_bytes", { topic: "wide", partition: "0" })! > 0);
      for (const p of [0, 1]) {
        assert.equal(sample(samples, "sluice_consumer_group_partition_lag_messages", { group: "slow", topic: "wide", partition: String(p) }), ends[p]);
      }
      assert.equal(sample(samples, "sluice_consumer_group_lag_messages", { group: "slow", topic: "wide" }), 20);

      // The README's metrics table names only metrics that exist.
      const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
      const table = readme.slice(readme.indexOf("### Metrics"), readme.indexOf("## SDK"));
      const named = [...table.matchAll(/`([a-z_]+)(\{[^`]*\})?`/g)].map((m) => m[1]!).filter((n) => n.includes("_"));
      assert.ok(named.length > 30, `found ${named.length} names in the README's table`);
      const text = await (await fetch(`http://${cluster.http}/metrics`)).text();
      const missing = named.filter((n) => !text.includes(`# TYPE sluice_${n} `));
      assert.deepEqual(missing, [], "every metric the README names is on /metrics");

      // Every metric the shipped alerts and dashboard query is one this process exports (sluice
      // dev carries the name server's series too); histogram series by their base name.
      const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
      const rules = (parseYaml(readFileSync(join(REPO_ROOT, "ops/prometheus/alerts.yml"), "utf8")) as { groups: { rules: { expr: string }[] }[] }).groups
        .flatMap((g) => g.rules.map((r) => r.expr));
      const dashboard = readFileSync(join(REPO_ROOT, "ops/grafana/sluice-dashboard.json"), "utf8");
      const dashboardExprs = [...dashboard.matchAll(/"expr":\s*"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string);
      const queried = new Set([...rules, ...dashboardExprs].flatMap((expr) => [...promqlMetricNames(expr)]));
      const unknown = [...queried].filter(
        (n) => n.startsWith("sluice_") && !exported.has(n) && !exported.has(n.replace(/_(bucket|sum|count)$/, "")),
      );
      assert.ok(queried.size > 40, `${queried.size} names queried`);
      assert.deepEqual(unknown, [], "alerts and dashboard query only exported metrics");
    } finally {
      await sluice.close();
    }
  });
});

describe("replication and heartbeat metrics (master, slave, name server)", () => {
  let group: BrokerGroup;
  before(async () => {
    // A long expiry keeps the frozen slave registered (suspect) rather than removed.
    group = await startBrokerGroup({ size: 2, brokerArgs: ["--replication", "sync", "--max-slave-lag-ms", "1000"], nameserverArgs: ["--expiry-ms", "60000"] });
    await waitInSync(group.nameserver, 1);
  });
  after(async () => {
    const slave = group?.brokers.get(1);
    slave?.process.child.kill("SIGCONT");
    for (const broker of group?.brokers.values() ?? []) await broker.process.stop();
    await group?.nameserverProcess.stop();
  });

  it("shows a frozen slave's lag, the under-replicated partitions and the closed write gate, and their recovery", async () => {
    const master = group.brokers.get(0)!;
    const slave = group.brokers.get(1)!;
    const sluice = new Sluice({ nameservers: [group.nameserver], clientId: "metrics-test" });
    try {
      await sluice.admin().createTopic("replicated", { partitions: 1 });
      const inSync = await scrapeUntil(master.http, "slave in sync", (s) => sample(s, "sluice_replication_slave_in_sync", { slave: "b1/1" }) === 1);
      assert.equal(sample(inSync, "sluice_replication_lag_messages", { slave: "b1/1" }), 0);
      assert.equal(sample(inSync, "sluice_write_gate_open", { group: "b1" }), 1);
      assert.equal(sample(inSync, "sluice_under_replicated_partitions"), 0);
      assert.equal(sample(await scrape(slave.http), "sluice_broker_is_master"), 0);
      assert.equal(series(await scrape(slave.http), "sluice_write_gate_open").length, 0, "a slave has no write gate");

      slave.process.child.kill("SIGSTOP");
      await sluice.producer({ acks: "leader", lingerMs: 1 }).send("replicated", Array.from({ length: 300 }, (_, i) => ({ value: `m${i}` })));
      const behind = await scrapeUntil(master.http, "the gate closed", (s) => sample(s, "sluice_write_gate_open", { group: "b1" }) === 0);
      assert.equal(sample(behind, "sluice_replication_lag_messages", { slave: "b1/1" }), 300);
      assert.ok(sample(behind, "sluice_replication_lag_bytes", { slave: "b1/1" })! > 300 * 4);
      assert.ok(sample(behind, "sluice_replication_lag_seconds", { slave: "b1/1" })! >= 1);
      assert.equal(sample(behind, "sluice_replication_slave_in_sync", { slave: "b1/1" }), 0);
      assert.ok(sample(behind, "sluice_under_replicated_partitions")! >= 1);
      const judged = await scrapeUntil(group.nameserverHttp, "the name server suspects b1/1", (s) => sample(s, "sluice_nameserver_broker_state", { group: "b1", broker_id: "1", state: "suspect" }) === 1);
      assert.equal(sample(judged, "sluice_nameserver_broker_state", { group: "b1", broker_id: "1", state: "alive" }), 0);
      assert.ok(sample(judged, "sluice_nameserver_broker_suspicion", { group: "b1", broker_id: "1" })! > sample(judged, "sluice_nameserver_broker_suspicion", { group: "b1", broker_id: "0" })!);
      assert.ok(sample(judged, "sluice_nameserver_heartbeat_age_seconds", { group: "b1", broker_id: "1" })! >= 0.5);
      assert.equal(sample(judged, "sluice_nameserver_broker_state", { group: "b1", broker_id: "0", state: "alive" }), 1);

      slave.process.child.kill("SIGCONT");
      const recovered = await scrapeUntil(master.http, "the slave back in sync", (s) => sample(s, "sluice_write_gate_open", { group: "b1" }) === 1 && sample(s, "sluice_replication_lag_messages", { slave: "b1/1" }) === 0, 20_000);
      assert.equal(sample(recovered, "sluice_under_replicated_partitions"), 0);
      await scrapeUntil(group.nameserverHttp, "b1/1 alive again", (s) => sample(s, "sluice_nameserver_broker_state", { group: "b1", broker_id: "1", state: "alive" }) === 1, 20_000);
    } finally {
      await sluice.close();
    }
  });
});
