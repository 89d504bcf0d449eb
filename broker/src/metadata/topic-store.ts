/**
 * Topic configuration of the partitions this broker hosts, in LMDB.
 *
 * Key `topic:<name>` → TopicRecord. LMDB commits are durable and atomic, so a topic either
 * exists with its whole configuration or not at all, even across a crash mid-create.
 */
import { open, type RootDatabase } from "lmdb";
import { join } from "node:path";

export interface TopicSettings {
  retentionMs: number;
  retentionBytes: number;
  segmentBytes: number;
  maxMessageBytes: number;
}

export interface TopicRecord {
  topic: string;
  /** The topic's partition count across the cluster. */
  partitionCount: number;
  /** Partitions of the topic that live on this broker. */
  partitions: number[];
  settings: TopicSettings;
  createdAtMs: number;
}

const TOPIC_PREFIX = "topic:";

export class TopicStore {
  /**
   * Every record, kept in memory: the produce path looks a topic up per batch, and an LMDB
   * read decodes the record each time. This process is the only writer, so the cache is
   * the database's content.
   */
  private readonly cache = new Map<string, TopicRecord>();

  private constructor(private readonly db: RootDatabase<TopicRecord, string>) {
    for (const { value } of db.getRange({ start: TOPIC_PREFIX, end: TOPIC_PREFIX + "\uffff" })) {
      this.cache.set(value.topic, value);
    }
  }

  static open(dataDir: string): TopicStore {
    const db = open<TopicRecord, string>({ path: join(dataDir, "meta"), compression: false });
    return new TopicStore(db);
  }

  get(topic: string): TopicRecord | undefined {
    return this.cache.get(topic);
  }

  list(): TopicRecord[] {
    return [...this.cache.values()];
  }

  async put(record: TopicRecord): Promise<void> {
    await this.db.put(TOPIC_PREFIX + record.topic, record);
    this.cache.set(record.topic, record);
  }

  async delete(topic: string): Promise<void> {
    await this.db.remove(TOPIC_PREFIX + topic);
    this.cache.delete(topic);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
