/** Limits on topic and partition counts: options, the checks, and the topic admin applying them. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "../../common/src/clock.js";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { CreatePartitionsRequest, CreatePartitionsResponse } from "../../proto/gen/sluice/v1/broker.js";
import type { BrokerInfo } from "../../proto/gen/sluice/v1/nameserver.js";
import type { BrokerAdminClients } from "../../nameserver/src/broker-admin.js";
import { ClusterState } from "../../nameserver/src/cluster-state.js";
import {
  DEFAULT_MAX_PARTITIONS,
  DEFAULT_MAX_PARTITIONS_PER_TOPIC,
  DEFAULT_MAX_TOPICS,
  parseNameServerOptions,
  parseTopicLimits,
  type TopicLimits,
} from "../../nameserver/src/options.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";
import { checkCreationLimits, TopicAdmin, type TopicSize } from "../../nameserver/src/topic-admin.js";
import { checkGrowthLimits } from "../../nameserver/src/topic-alter.js";

function thrown(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected an error");
}

function limitError(fn: () => unknown, ...patterns: RegExp[]): void {
  const err = thrown(fn);
  assert.equal(err.code, "LIMIT_EXCEEDED", err.message);
  assert.equal(err.retriable, false);
  for (const pattern of patterns) assert.match(err.message, pattern);
}

const limits: TopicLimits = { maxTopics: 3, maxPartitionsPerTopic: 4, maxPartitions: 20 };
const sizes = (...entries: Array<[string, number]>): TopicSize[] => entries.map(([topic, partitionCount]) => ({ topic, partitionCount }));

describe("topic limit options", () => {
  it("default to 10,000 topics, 1,000 partitions per topic and 100,000 partitions", () => {
    assert.deepEqual(parseTopicLimits(), { maxTopics: 10_000, maxPartitionsPerTopic: 1_000, maxPartitions: 100_000 });
    assert.deepEqual([DEFAULT_MAX_TOPICS, DEFAULT_MAX_PARTITIONS_PER_TOPIC, DEFAULT_MAX_PARTITIONS], [10_000, 1_000, 100_000]);
    assert.deepEqual(parseNameServerOptions({ maxTopics: 3, maxPartitionsPerTopic: 4, logger: silentLogger }).topicLimits, {
      maxTopics: 3,
      maxPartitionsPerTopic: 4,
      maxPartitions: 100_000,
    });
  });

  it("refuse what is not a positive integer, and a per-topic limit above the hard cap of 10,000, naming the option", () => {
    for (const [input, name] of [
      [{ maxTopics: 0 }, "maxTopics"],
      [{ maxTopics: 2.5 }, "maxTopics"],
      [{ maxPartitions: -1 }, "maxPartitions"],
      [{ maxPartitionsPerTopic: 10_001 }, "maxPartitionsPerTopic"],
      [{ maxPartitionsPerTopic: Number.NaN }, "maxPartitionsPerTopic"],
    ] as const) {
      const err = thrown(() => parseNameServerOptions({ ...input, logger: silentLogger }));
      assert.equal(err.code, "INVALID_CONFIG");
      assert.match(err.message, new RegExp(`^${name} must be`));
    }
  });
});

describe("topic creation limits", () => {
  it("refuse a topic past maxTopics, naming the count, the limit and the flag", () => {
    limitError(
      () => checkCreationLimits(limits, "d", 1, sizes(["a", 1], ["b", 1], ["c", 1])),
      /the cluster has 3 topics and the limit is 3 \(maxTopics/,
      /--max-topics/,
    );
    assert.doesNotThrow(() => checkCreationLimits(limits, "c", 1, sizes(["a", 1], ["b", 1])));
  });

  it("count only user topics toward maxTopics; a DLQ topic is made even when users reached it", () => {
    const existing = sizes(["%groups", 8], ["%DLQ%workers", 1], ["a", 1], ["b", 1]);
    assert.doesNotThrow(() => checkCreationLimits(limits, "c", 1, existing));
    assert.doesNotThrow(() => checkCreationLimits(limits, "%DLQ%billing", 1, sizes(["%groups", 8], ["a", 1], ["b", 1], ["c", 1])));
  });

  it("refuse more partitions than maxPartitionsPerTopic", () => {
    limitError(() => checkCreationLimits(limits, "wide", 5, []), /"wide" cannot have 5 partitions/, /limit is 4 per topic \(maxPartitionsPerTopic\)/, /--max-partitions-per-topic/);
    assert.doesNotThrow(() => checkCreationLimits(limits, "wide", 4, []));
  });

  it("refuse passing maxPartitions, internal topics counted; a DLQ too, but never %groups", () => {
    const existing = sizes(["%groups", 8], ["a", 4], ["b", 4], ["%DLQ%w", 1]);
    assert.doesNotThrow(() => checkCreationLimits(limits, "c", 3, existing), "17 + 3 = 20 is at the limit");
    limitError(
      () => checkCreationLimits(limits, "c", 4, existing),
      /creating topic "c" with 4 partitions would pass the cluster's limit of 20 partitions \(maxPartitions\)/,
      /it has 17 \(internal topics included\)/,
      /--max-partitions on/,
    );
    const full = sizes(["%groups", 8], ["a", 4], ["b", 4], ["c", 4]);
    limitError(() => checkCreationLimits(limits, "%DLQ%late", 1, full), /maxPartitions/);
    assert.doesNotThrow(() => checkCreationLimits(limits, "%groups", 8, sizes(["a", 4], ["b", 4], ["c", 4], ["d", 4], ["e", 4])));
  });
});

describe("topic growth limits", () => {
  it("refuse growing past maxPartitionsPerTopic, naming the current count", () => {
    limitError(() => checkGrowthLimits(limits, "orders", 2, 5, 2), /"orders" has 2 partitions and cannot grow to 5/, /maxPartitionsPerTopic/, /--max-partitions-per-topic/);
    assert.doesNotThrow(() => checkGrowthLimits(limits, "orders", 2, 4, 2));
  });

  it("refuse growing past maxPartitions by the partitions added", () => {
    assert.doesNotThrow(() => checkGrowthLimits(limits, "orders", 2, 4, 18));
    limitError(() => checkGrowthLimits(limits, "orders", 2, 4, 19), /adding 2 partitions to topic "orders"/, /it has 19/, /--max-partitions/);
  });
});

/** Broker admin calls recorded instead of sent. */
class FakeBrokers {
  readonly calls: Array<{ address: string } & Omit<CreatePartitionsRequest, "header">> = [];

  async createPartitions(address: string, request: Omit<CreatePartitionsRequest, "header">): Promise<CreatePartitionsResponse> {
    this.calls.push({ address, ...request });
    return { created: request.partitions };
  }

  async deleteTopic(): Promise<void> {}
}

const broker: BrokerInfo = {
  cluster: "c",
  group: "b1",
  brokerId: 0,
  address: "127.0.0.1:1001",
  httpAddress: "",
  version: "test",
  role: "master",
  epoch: 1,
  weight: 1,
};

async function setup() {
  const state = new ClusterState({
    store: new MemoryRegistryStore(),
    clock: new FakeClock(1_000_000),
    heartbeatIntervalMs: 1000,
    expiryMs: 3000,
    logger: silentLogger,
    learnTopicsFromReports: true,
  });
  await state.register(broker, []);
  const brokers = new FakeBrokers();
  const admin = new TopicAdmin(state, brokers as unknown as BrokerAdminClients, silentLogger, limits);
  return { state, admin, calls: brokers.calls };
}

async function rejectsWithLimit(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof SluiceError);
    assert.equal(err.code, "LIMIT_EXCEEDED", err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("the topic admin applies the limits before asking any broker", () => {
  it("a topic past maxTopics or maxPartitionsPerTopic is refused and nothing is created", async () => {
    const { state, admin, calls } = await setup();
    for (const topic of ["a", "b", "c"]) await admin.createTopic({ topic, partitions: 1, brokerGroups: [], config: undefined });
    // An internal topic made meanwhile does not use up a user topic.
    await admin.createTopic({ topic: "%DLQ%workers", partitions: 1, brokerGroups: [], config: undefined }, true);
    calls.length = 0;

    await rejectsWithLimit(admin.createTopic({ topic: "d", partitions: 1, brokerGroups: [], config: undefined }), /maxTopics/);
    await admin.deleteTopic("c");
    await rejectsWithLimit(admin.createTopic({ topic: "wide", partitions: 5, brokerGroups: [], config: undefined }), /maxPartitionsPerTopic/);
    assert.equal(calls.length, 0, "no broker was asked");
    assert.equal(await state.getTopic("d"), undefined);
    assert.equal(await state.getTopic("wide"), undefined);
  });

  it("an existing name is still TOPIC_ALREADY_EXISTS at the limit", async () => {
    const { admin } = await setup();
    for (const topic of ["a", "b", "c"]) await admin.createTopic({ topic, partitions: 1, brokerGroups: [], config: undefined });
    await assert.rejects(admin.createTopic({ topic: "a", partitions: 1, brokerGroups: [], config: undefined }), { code: "TOPIC_ALREADY_EXISTS" });
  });

  it("an alter past a limit is refused and the topic keeps its partitions", async () => {
    const { state, admin, calls } = await setup();
    await admin.createTopic({ topic: "orders", partitions: 2, brokerGroups: [], config: undefined });
    calls.length = 0;
    await rejectsWithLimit(admin.createPartitions({ topic: "orders", partitions: 5 }), /has 2 partitions and cannot grow to 5/);
    assert.equal(calls.length, 0);
    assert.equal((await state.getTopic("orders"))?.partitionCount, 2);
    await admin.createPartitions({ topic: "orders", partitions: 4 });
    assert.equal((await state.getTopic("orders"))?.partitionCount, 4);
  });
});
