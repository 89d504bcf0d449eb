/** `sluice group list | describe | reset-offsets` against a real `sluice dev`. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Sluice, type QueueConsumer } from "../../clients/src/index.js";
import { runCli, startDev, type Cluster } from "../helpers/processes.js";

interface Described {
  group: string;
  state: string;
  kind: string;
  members: { memberId: string; clientId: string; instanceId: string; assignments: { topic: string; partition: number }[] }[];
  partitions: { topic: string; partition: number; committedOffset: number; endOffset: number; lag: number; lagMs: number }[];
  queue: { topic: string; partition: number; startOffset: number; endOffset: number; inFlight: number }[];
}

describe("sluice group", () => {
  let cluster: Cluster;
  let sluice: Sluice;
  let betweenBatchesMs = 0;
  const cli = (...args: string[]) => runCli(args, { nameserver: cluster.nameserver });
  const json = async <T>(...args: string[]): Promise<T> => {
    const result = await cli("--json", ...args);
    assert.equal(result.code, 0, `sluice ${args.join(" ")}: ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  };

  before(async () => {
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "cli-groups-sdk" });
    await sluice.admin().createTopic("orders", { partitions: 2 });
    const producer = sluice.producer();
    await producer.send("orders", [
      ...["a", "b", "c"].map((value) => ({ value, partition: 0 })),
      ...["w", "x", "y", "z"].map((value) => ({ value, partition: 1 })),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 30));
    betweenBatchesMs = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 30));
    await producer.send("orders", ["d", "e", "f"].map((value) => ({ value, partition: 0 })));
  });
  after(async () => {
    await sluice?.close();
    await cluster?.process.stop();
  });

  it("group list on a cluster without groups prints none", async () => {
    assert.deepEqual(await json("group", "list"), { groups: [] });
    const human = await cli("group", "list");
    assert.equal(human.code, 0, human.stderr);
    assert.equal(human.stdout, "no groups\n");
  });

  it("reset-offsets moves a consumer group's offsets; describe shows committed offsets and lag in the contract's shape", async () => {
    const reset = await json<{ group: string; topic: string; dryRun: boolean; offsets: { topic: string; partition: number; offset: number }[] }>(
      "group", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest",
    );
    assert.deepEqual(reset, {
      group: "billing",
      topic: "orders",
      dryRun: false,
      offsets: [
        { topic: "orders", partition: 0, offset: 0 },
        { topic: "orders", partition: 1, offset: 0 },
      ],
    });

    const described = await json<Described>("group", "describe", "billing");
    assert.deepEqual(Object.keys(described).sort(), ["group", "kind", "members", "partitions", "queue", "state"]);
    assert.equal(described.group, "billing");
    assert.equal(described.kind, "consumer");
    assert.equal(described.state, "empty");
    assert.deepEqual(described.members, []);
    assert.deepEqual(
      described.partitions.map(({ lagMs, ...rest }) => rest),
      [
        { topic: "orders", partition: 0, committedOffset: 0, endOffset: 6, lag: 6 },
        { topic: "orders", partition: 1, committedOffset: 0, endOffset: 4, lag: 4 },
      ],
    );
    for (const p of described.partitions) {
      assert.deepEqual(Object.keys(p).sort(), ["committedOffset", "endOffset", "lag", "lagMs", "partition", "topic"]);
      assert.ok(p.lagMs >= 0, "the oldest unconsumed message has an age");
    }

    const human = await cli("group", "describe", "billing");
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^group billing: consumer, empty, 0 members/);
    assert.match(human.stdout, /TOPIC\s+PARTITION\s+COMMITTED\s+END\s+LAG/);
    assert.match(human.stdout, /orders\s+0\s+0\s+6\s+6/);
  });

  it("reset-offsets --dry-run reports without committing; --to OFFSET, --partitions, latest and --to-datetime", async () => {
    const dry = await json<{ dryRun: boolean; offsets: { partition: number; offset: number }[] }>(
      "group", "reset-offsets", "billing", "--topic", "orders", "--to", "2", "--partitions", "0", "--dry-run",
    );
    assert.equal(dry.dryRun, true);
    assert.deepEqual(dry.offsets.map((o) => [o.partition, o.offset]), [[0, 2]]);
    const unchanged = await json<Described>("group", "describe", "billing");
    assert.equal(unchanged.partitions[0]!.committedOffset, 0, "a dry run commits nothing");

    await json("group", "reset-offsets", "billing", "--topic", "orders", "--to", "2", "--partitions", "0");
    let described = await json<Described>("group", "describe", "billing");
    assert.deepEqual(described.partitions.map((p) => [p.partition, p.committedOffset, p.lag]), [[0, 2, 4], [1, 0, 4]]);

    await json("group", "reset-offsets", "billing", "--topic", "orders", "--to", "latest");
    described = await json<Described>("group", "describe", "billing");
    assert.deepEqual(described.partitions.map((p) => [p.partition, p.committedOffset, p.lag, p.lagMs]), [[0, 6, 0, 0], [1, 4, 0, 0]]);

    const byTime = await json<{ offsets: { partition: number; offset: number }[] }>(
      "group", "reset-offsets", "billing", "--topic", "orders", "--to-datetime", new Date(betweenBatchesMs).toISOString(),
    );
    // Partition 0: the first message of the second batch; partition 1: nothing that recent, so its end.
    assert.deepEqual(byTime.offsets.map((o) => [o.partition, o.offset]), [[0, 3], [1, 4]]);

    const human = await cli("group", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--dry-run");
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^dry run: would commit for group billing/);
    assert.match(human.stdout, /orders\s+1\s+0/);
  });

  it("refuses bad reset targets and unknown groups with the usual exit codes", async () => {
    const neither = await cli("group", "reset-offsets", "billing", "--topic", "orders");
    assert.equal(neither.code, 2);
    assert.match(neither.stderr, /exactly one of --to/);
    const both = await cli("group", "reset-offsets", "billing", "--topic", "orders", "--to", "earliest", "--to-datetime", "2024-01-01T00:00:00Z");
    assert.equal(both.code, 2);
    const bad = await cli("group", "reset-offsets", "billing", "--topic", "orders", "--to", "middle");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--to must be earliest, latest or an offset/);
    const unknown = await cli("group", "describe", "nobody-here");
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /"nobody-here" does not exist.*\[UNKNOWN_GROUP\]/);
    // A number flag refused while commander parses is one line too, not a stack trace.
    const zero = await cli("dlq", "list", "billing", "--max", "0");
    assert.equal(zero.code, 2);
    assert.equal(zero.stderr.trim(), 'sluice: --max must be an integer from 1 to 9007199254740991, got "0" [INVALID_ARGUMENT]');
  });

  it("a queue group shows in list and describe with its members and windows, and refuses a reset while consumers are attached", async () => {
    const queue: QueueConsumer = sluice.queue({ group: "crunchers", topic: "orders", fromBeginning: true, prefetch: 2 });
    try {
      const first = await queue.next();
      assert.equal(first.done, false);

      const listed = await json<{ groups: { group: string; kind: string; state: string; members: number }[] }>("group", "list");
      assert.deepEqual(listed.groups, [
        { group: "billing", kind: "consumer", state: "empty", members: 0 },
        { group: "crunchers", kind: "queue", state: "stable", members: 1 },
      ]);
      const human = await cli("group", "list");
      assert.match(human.stdout, /GROUP\s+KIND\s+STATE\s+MEMBERS/);
      assert.match(human.stdout, /crunchers\s+queue\s+stable\s+1/);

      const described = await json<Described>("group", "describe", "crunchers");
      assert.equal(described.kind, "queue");
      assert.equal(described.state, "stable");
      assert.deepEqual(described.members, [{ memberId: queue.memberId, clientId: "cli-groups-sdk", instanceId: "", assignments: [] }]);
      assert.deepEqual(described.queue.map((q) => [q.topic, q.partition, q.startOffset, q.endOffset]), [["orders", 0, 0, 6], ["orders", 1, 0, 4]]);
      // The job taken plus `prefetch` (2) leased ahead of the iterator.
      assert.equal(described.queue.reduce((n, q) => n + q.inFlight, 0), 3, "the taken and the prefetched jobs are in flight");
      assert.deepEqual(described.partitions.map((p) => [p.partition, p.committedOffset, p.endOffset, p.lag]), [[0, 0, 6, 6], [1, 0, 4, 4]]);
      const text = await cli("group", "describe", "crunchers");
      assert.match(text.stdout, /^group crunchers: queue, stable, 1 member\n/);
      assert.match(text.stdout, /IN-FLIGHT/);

      const refused = await cli("group", "reset-offsets", "crunchers", "--topic", "orders", "--to", "latest");
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /consumers attached|active member/);
      await first.value!.ack();
    } finally {
      await queue.close();
    }

    // With no consumer attached, a queue group's reset moves its windows.
    await json("group", "reset-offsets", "crunchers", "--topic", "orders", "--to", "latest");
    const moved = await json<Described>("group", "describe", "crunchers");
    assert.equal(moved.state, "empty");
    assert.deepEqual(moved.partitions.map((p) => [p.partition, p.committedOffset, p.lag]), [[0, 6, 0], [1, 4, 0]]);
  });
});
