/**
 * Reads that span every topic of the cluster (the topics page, the throughput sampler),
 * a few topics at a time so a cluster with hundreds of topics does not open hundreds of
 * requests at once.
 */
import { SluiceError } from "../../../common/src/errors.js";
import { isInternalTopic } from "../../../common/src/protocol.js";
import type { Admin, TopicDescription } from "../../../clients/src/index.js";
import type { EndOffsets } from "./throughput.js";

/** Topics read at the same time. */
export const TOPIC_READ_CONCURRENCY = 8;

export type TopicView = TopicDescription & { internal: boolean };

export function withInternalFlag(description: TopicDescription): TopicView {
  return { ...description, internal: isInternalTopic(description.topic) };
}

/**
 * Every topic `visible` admits, with its partitions' offsets and sizes; a topic deleted
 * meanwhile is left out. Filtered before describing, so hidden topics cost no request.
 */
export async function describeAllTopics(admin: Admin, visible: (topic: string) => boolean = () => true): Promise<TopicView[]> {
  const topics = (await admin.listTopics()).filter(({ topic }) => visible(topic));
  const described = await mapLimited(topics, TOPIC_READ_CONCURRENCY, async ({ topic }) => {
    try {
      return withInternalFlag(await admin.describeTopic(topic));
    } catch (err) {
      if (err instanceof SluiceError && err.code === "UNKNOWN_TOPIC") return undefined;
      throw err;
    }
  });
  return described.filter((d): d is TopicView => d !== undefined).sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
}

/** topic → its partitions' end offsets summed; a topic that cannot be read now is left out. */
export async function readEndOffsets(admin: Admin): Promise<EndOffsets> {
  const topics = await admin.listTopics();
  const sums = await mapLimited(topics, TOPIC_READ_CONCURRENCY, async ({ topic }) => {
    try {
      const offsets = await admin.listOffsets(topic, "latest");
      let sum = 0;
      for (const offset of offsets.values()) sum += Math.max(0, offset);
      return [topic, sum] as const;
    } catch {
      // One unreadable topic (its master failing over) must not blank the whole chart.
      return undefined;
    }
  });
  return new Map(sums.filter((entry): entry is readonly [string, number] => entry !== undefined));
}

/** `work` over `items` with at most `limit` running at once; results in input order. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
