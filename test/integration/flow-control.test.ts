/**
 * Ingress flow control against a real `sluice dev` process:
 * - a producer offering 3× a topic's token-bucket limit gets the limit (±5 % over 10 s), sees
 *   no error and keeps its order, while another topic's producer runs as fast as alone;
 * - `sluice flow set` / `delete` change a live limit within 1 s, and survive a restart;
 * - past the maximum wait the SDK gives up with THROTTLED naming the rule, and nothing of it
 *   was appended; bad rules are refused naming the field and change nothing.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { readSequences, startPacedLoad } from "../helpers/paced-load.js";
import { runCli, startDev, tempDir, type Cluster } from "../helpers/processes.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function writeConfig(rules: unknown[]): string {
  const file = join(tempDir("sluice-flow-config-"), "sluice.yaml");
  writeFileSync(file, JSON.stringify({ flow: rules }, null, 2));
  return file;
}

async function createTopics(nameserver: string, ...topics: string[]): Promise<void> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "flow-setup" });
  try {
    for (const topic of topics) await sluice.admin().createTopic(topic, { partitions: 1 });
  } finally {
    await sluice.close();
  }
}

async function metricValue(http: string, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (wanted.every((w) => line.includes(w))) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

describe("flow control (real broker)", () => {
  let cluster: Cluster;
  const LIMIT = 2_000;

  before(async () => {
    const config = writeConfig([{ scope: "topic:limited", limiter: "token-bucket", messagesPerSecond: LIMIT, burst: 200 }]);
    cluster = await startDev({ extra: ["--config", config] });
    await createTopics(cluster.nameserver, "limited", "free", "changing", "strict", "light");
  });

  after(async () => {
    await cluster?.process.stop();
  });

  it("holds a producer 3x over a topic's limit to the limit, in order and without errors, and leaves another topic alone", async () => {
    const nameserver = cluster.nameserver;
    // The other topic's producer alone: the baseline its throughput is compared with.
    const FREE_RATE = 20_000;
    const alone = startPacedLoad({ nameserver, topic: "free", messagesPerSecond: FREE_RATE, clientId: "free-alone" });
    await sleep(3_000);
    const aloneStopped = Date.now();
    const aloneRate = alone.rate(aloneStopped - 2_000, aloneStopped);
    const aloneResult = await alone.stop();
    assert.deepEqual(aloneResult.errors, []);

    const limited = startPacedLoad({ nameserver, topic: "limited", messagesPerSecond: 3 * LIMIT, maxOutstanding: 3 * LIMIT });
    const startedMs = Date.now();
    await sleep(4_000);
    const together = startPacedLoad({ nameserver, topic: "free", messagesPerSecond: FREE_RATE, clientId: "free-together" });
    await sleep(3_000);
    const togetherRate = together.rate(Date.now() - 2_000, Date.now());
    const togetherResult = await together.stop();
    await sleep(startedMs + 12_500 - Date.now());
    const achieved = limited.rate(startedMs + 2_000, startedMs + 12_000);
    // Unacknowledged at the end: the producer kept offering more than the limit admits.
    const backlog = limited.result.sent - limited.result.acked;
    const limitedResult = await limited.stop();

    assert.deepEqual(limitedResult.errors, [], "no error reaches the application");
    assert.deepEqual(togetherResult.errors, []);
    assert.ok(Math.abs(achieved - LIMIT) <= LIMIT * 0.05, `achieved ${achieved.toFixed(0)} msgs/s, limit ${LIMIT} (±5 %)`);
    assert.ok(backlog >= LIMIT, `the producer kept offering more than the limit: ${backlog} messages waiting at the end`);
    assert.ok(
      togetherRate >= aloneRate * 0.9,
      `the other topic ran at ${togetherRate.toFixed(0)} msgs/s beside the throttled one, ${aloneRate.toFixed(0)} alone`,
    );

    // Everything acknowledged is there once, in the order it was sent.
    const sequences = await readSequences(nameserver, "limited");
    assert.ok(sequences.length >= limitedResult.acked, `${sequences.length} stored, ${limitedResult.acked} acked`);
    sequences.forEach((n, i) => assert.equal(n, i, `message ${i} of "limited" is ${n}`));

    assert.ok((await metricValue(cluster.http, "sluice_flow_requests_total", { scope: "topic:limited", result: "delayed" })) > 0);
    assert.equal(await metricValue(cluster.http, "sluice_flow_requests_total", { scope: "topic:free" }), 0);
    console.log(
      `flow: limited topic ${achieved.toFixed(0)} msgs/s (limit ${LIMIT}); other topic ${togetherRate.toFixed(0)} msgs/s beside it, ${aloneRate.toFixed(0)} alone`,
    );
  });

  it("one producer writing a throttled and a free topic: the free topic's sends are not slowed by the held batches", async () => {
    const nameserver = cluster.nameserver;
    const set = await runCli(
      ["flow", "set", "--scope", "topic:heavy", "--limiter", "token-bucket", "--bytes-per-second", "4194304", "--burst", "65536", "--max-queue-ms", "10000"],
      { nameserver },
    );
    assert.equal(set.code, 0, set.stderr);
    const sluice = new Sluice({ nameservers: [nameserver], clientId: "shared-producer", requestTimeoutMs: 60_000 });
    try {
      await sluice.admin().createTopic("heavy", { partitions: 1 });
      const producer = sluice.producer({ lingerMs: 1 });
      await producer.send("light", [{ value: "warm" }]);
      // 40 MiB for a topic allowed 4 MiB/s with waits up to 10 s: the broker holds more than a
      // stream's append backlog (32 MiB) of it, which must not pause the stream "light" shares.
      const chunk = "x".repeat(10_240);
      const heavy = Array.from({ length: 40 }, () => producer.send("heavy", Array.from({ length: 100 }, () => ({ value: chunk }))));
      await sleep(500);
      const latencies: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = Date.now();
        await producer.send("light", [{ value: `light-${i}` }]);
        latencies.push(Date.now() - started);
      }
      assert.ok(Math.max(...latencies) < 500, `light sends beside a throttled topic on the same producer took ${latencies.join(", ")} ms`);
      const deleted = await runCli(["flow", "delete", "--scope", "topic:heavy", "--limiter", "token-bucket"], { nameserver });
      assert.equal(deleted.code, 0, deleted.stderr);
      await Promise.all(heavy);
    } finally {
      await sluice.close();
    }
  });

  it("applies `sluice flow set` and `flow delete` to a live producer within 1 s, and keeps them across a restart", async () => {
    const nameserver = cluster.nameserver;
    const load = startPacedLoad({ nameserver, topic: "changing", messagesPerSecond: 3_000 });
    await sleep(1_500);
    const set = await runCli(
      ["flow", "set", "--scope", "topic:changing", "--limiter", "token-bucket", "--messages-per-second", "500", "--burst", "50"],
      { nameserver },
    );
    assert.equal(set.code, 0, set.stderr);
    const setAt = Date.now();
    assert.match(set.stdout, /set topic:changing token-bucket .* on 1 broker/);
    await sleep(3_000);
    const limitedRate = load.rate(setAt + 1_000, setAt + 3_000);
    assert.ok(Math.abs(limitedRate - 500) <= 50, `1 s after flow set: ${limitedRate.toFixed(0)} msgs/s, limit 500`);

    const listed = await runCli(["--json", "flow", "list"], { nameserver });
    assert.equal(listed.code, 0, listed.stderr);
    const rules = (JSON.parse(listed.stdout) as { brokers: { rules: { scope: string; limiter: string; source: string; messagesPerSecond: number }[] }[] }).brokers[0]!.rules;
    const rule = rules.find((r) => r.scope === "topic:changing");
    assert.equal(rule?.source, "runtime");
    assert.equal(rule?.messagesPerSecond, 500);

    const deleted = await runCli(["flow", "delete", "--scope", "topic:changing", "--limiter", "token-bucket"], { nameserver });
    assert.equal(deleted.code, 0, deleted.stderr);
    const deletedAt = Date.now();
    await sleep(2_500);
    const freeRate = load.rate(deletedAt + 1_000, deletedAt + 2_500);
    const result = await load.stop();
    assert.deepEqual(result.errors, []);
    assert.ok(freeRate > 2_000, `1 s after flow delete: ${freeRate.toFixed(0)} msgs/s`);

    // A run-time rule survives a restart (flow-rules.json), over the config file's.
    const again = await runCli(["flow", "set", "--scope", "client:batch-*", "--limiter", "leaky-bucket", "--bytes-per-second", "1048576", "--max-queue-ms", "250"], { nameserver });
    assert.equal(again.code, 0, again.stderr);
    await cluster.process.stop();
    cluster = await startDev({ dataDir: cluster.dataDir, extra: ["--config", writeConfig([{ scope: "topic:limited", limiter: "token-bucket", messagesPerSecond: LIMIT, burst: 200 }])] });
    const after = await runCli(["--json", "flow", "list"], { nameserver: cluster.nameserver });
    assert.equal(after.code, 0, after.stderr);
    const kept = (JSON.parse(after.stdout) as { brokers: { rules: { scope: string; limiter: string; source: string }[] }[] }).brokers[0]!.rules;
    assert.deepEqual(
      kept.map((r) => `${r.scope} ${r.limiter} ${r.source}`).sort(),
      ["client:batch-* leaky-bucket runtime", "topic:limited token-bucket config"],
    );
  });

  it("gives up with THROTTLED naming the rule past the maximum wait, having appended nothing of it", async () => {
    const nameserver = cluster.nameserver;
    const set = await runCli(
      ["flow", "set", "--scope", "topic:strict", "--limiter", "leaky-bucket", "--messages-per-second", "1", "--max-queue-ms", "0"],
      { nameserver },
    );
    assert.equal(set.code, 0, set.stderr);
    const sluice = new Sluice({ nameservers: [nameserver], clientId: "strict", requestTimeoutMs: 1_500 });
    try {
      const producer = sluice.producer({ lingerMs: 0 });
      await producer.send("strict", [{ value: "first" }]);
      await assert.rejects(producer.send("strict", [{ value: "second" }, { value: "third" }]), (err: { code?: string; retriable?: boolean; message?: string }) => {
        assert.equal(err.code, "THROTTLED");
        assert.equal(err.retriable, true);
        assert.match(err.message ?? "", /topic:strict leaky-bucket|flow control/);
        return true;
      });
      const end = (await sluice.admin().listOffsets("strict", "latest")).get(0);
      assert.equal(end, 1, "only the admitted message was appended");
    } finally {
      await sluice.close();
    }
    assert.ok((await metricValue(cluster.http, "sluice_flow_requests_total", { scope: "topic:strict", result: "refused" })) > 0);
  });

  it("refuses malformed rules naming the field, changing nothing", async () => {
    const nameserver = cluster.nameserver;
    const before = await runCli(["--json", "flow", "list"], { nameserver });
    for (const [args, field] of [
      [["--scope", "tpc:orders", "--limiter", "token-bucket", "--messages-per-second", "10"], /scope/],
      [["--scope", "topic:orders", "--limiter", "token-bucket", "--messages-per-second", "-5"], /messagesPerSecond|messages-per-second/],
      [["--scope", "topic:orders", "--limiter", "token-bucket", "--messages-per-second", "10", "--burst", "0"], /burst/],
      [["--scope", "topic:orders", "--limiter", "bucket", "--messages-per-second", "10"], /limiter/],
    ] as const) {
      const result = await runCli(["flow", "set", ...args], { nameserver });
      assert.notEqual(result.code, 0, `${args.join(" ")} was accepted`);
      assert.match(result.stderr, field);
    }
    // Straight to the REST API, past the CLI's own checks.
    const response = await fetch(`http://${cluster.http}/admin/flow`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 10, burst: 0.5 }),
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { code: string; message: string };
    assert.equal(body.code, "INVALID_CONFIG");
    assert.match(body.message, /burst/);
    const gone = await fetch(`http://${cluster.http}/admin/flow?scope=topic:nothing&limiter=token-bucket`, { method: "DELETE" });
    assert.equal(gone.status, 404);
    assert.equal(((await gone.json()) as { code: string }).code, "UNKNOWN_FLOW_RULE");
    const afterList = await runCli(["--json", "flow", "list"], { nameserver });
    assert.deepEqual(stripState(JSON.parse(afterList.stdout)), stripState(JSON.parse(before.stdout)));
  });

  it("refuses to start on a config file with a malformed rule, naming it", async () => {
    const config = writeConfig([{ scope: "topic:x", limiter: "token-bucket", messagesPerSecond: 10 }, { scope: "topic:y", limiter: "warm-up", messagesPerSecond: 10 }]);
    await assert.rejects(startDev({ extra: ["--config", config] }), /flow\[1\]\.warmUpMs/);
  });
});

/** `flow list --json` without the live counters (tokens move with time). */
function stripState(listing: { brokers: { rules: { state?: unknown }[] }[] }): unknown {
  return listing.brokers.map((b) => ({ ...b, rules: b.rules.map(({ state: _state, ...rule }) => rule) }));
}
