import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { systemClock } from "../../common/src/clock.js";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { parseBrokerOptions } from "../../broker/src/options.js";
import { TopicManager, type TopicChange } from "../../broker/src/topics.js";
import { makeBatch, tempDir } from "./storage-fixtures.js";

async function withTopics(run: (topics: TopicManager, dataDir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = tempDir();
  const topics = await TopicManager.open(parseBrokerOptions({ group: "b1", dataDir: dir, flush: "os" }), systemClock, silentLogger);
  try {
    await run(topics, dir);
  } finally {
    await topics.close();
    cleanup();
  }
}

describe("broker: growing a topic (topic alter)", () => {
  it("adds partitions beside the hosted ones, raises the count and leaves their data alone", async () => {
    await withTopics(async (topics) => {
      await topics.createPartitions("orders", [0, 1], 2, { retentionMs: 60_000 });
      await topics.log("orders", 0).append(makeBatch({ records: 3 }));
      const changes: TopicChange[] = [];
      topics.onChange((change) => changes.push(change));

      const result = await topics.growTopic("orders", [3], 4, { retentionMs: 1 });

      assert.deepEqual(result, { created: [3], changed: true });
      const record = topics.topic("orders")!;
      assert.equal(record.partitionCount, 4);
      assert.deepEqual(record.partitions, [0, 1, 3]);
      assert.equal(record.settings.retentionMs, 60_000, "the topic's settings stay");
      assert.equal(topics.log("orders", 0).logEndOffset, 3, "existing data untouched");
      assert.equal(topics.log("orders", 3).logEndOffset, 0);
      // Partition 2 lives on another group: known to exist, not hosted here.
      assert.throws(() => topics.log("orders", 2), (err: unknown) => err instanceof SluiceError && err.code === "NOT_LEADER");
      assert.throws(() => topics.log("orders", 4), (err: unknown) => err instanceof SluiceError && err.code === "UNKNOWN_PARTITION");
      // Slaves mirror the grown record from this notification.
      assert.equal(changes.length, 1);
      assert.equal(changes[0]!.kind, "created");
      assert.deepEqual(changes[0]!.kind === "created" ? changes[0]!.record.partitions : [], [0, 1, 3]);
    });
  });

  it("only raises the count on a group that receives no new partition; asking again changes nothing", async () => {
    await withTopics(async (topics) => {
      await topics.createPartitions("orders", [0], 2, {});
      assert.deepEqual(await topics.growTopic("orders", [], 5, {}), { created: [], changed: true });
      assert.equal(topics.topic("orders")!.partitionCount, 5);
      assert.deepEqual(await topics.growTopic("orders", [], 5, {}), { created: [], changed: false });
    });
  });

  it("creates the topic on a broker that hosted none of it", async () => {
    await withTopics(async (topics) => {
      const result = await topics.growTopic("orders", [2, 3], 4, {});
      assert.deepEqual(result.created, [2, 3]);
      assert.deepEqual(topics.topic("orders")!.partitions, [2, 3]);
      assert.equal(topics.topic("orders")!.partitionCount, 4);
    });
  });

  it("refuses to shrink the count it knows, and partitions outside the count", async () => {
    await withTopics(async (topics) => {
      await topics.createPartitions("orders", [0, 1, 2], 3, {});
      await assert.rejects(topics.growTopic("orders", [], 2, {}), (err: unknown) => err instanceof SluiceError && err.code === "INVALID_PARTITIONS");
      await assert.rejects(topics.growTopic("orders", [5], 4, {}), (err: unknown) => err instanceof SluiceError && err.code === "INVALID_ARGUMENT");
      assert.equal(topics.topic("orders")!.partitionCount, 3);
    });
  });

  it("the grown topic survives a restart", async () => {
    const { dir, cleanup } = tempDir();
    const options = parseBrokerOptions({ group: "b1", dataDir: dir, flush: "os" });
    try {
      const first = await TopicManager.open(options, systemClock, silentLogger);
      await first.createPartitions("orders", [0], 1, {});
      await first.growTopic("orders", [1], 2, {});
      await first.close();
      const second = await TopicManager.open(options, systemClock, silentLogger);
      try {
        assert.deepEqual(second.topic("orders")?.partitions, [0, 1]);
        assert.equal(second.log("orders", 1).partition, 1);
      } finally {
        await second.close();
      }
    } finally {
      cleanup();
    }
  });
});
