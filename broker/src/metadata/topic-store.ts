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
  private constructor(private readonly db: RootDatabase<TopicRecord, string>) {}

  static open(dataDir: string): TopicStore {
    const db = open<TopicRecord, string>({ path: join(dataDir, "meta"), compression: false });
    return new TopicStore(db);
  }

  get(topic: string): TopicRecord | undefined {
    return this.db.get(TOPIC_PREFIX + topic);
  }

  list(): TopicRecord[] {
    const out: TopicRecord[] = [];
    for (const { value } of this.db.getRange({ start: TOPIC_PREFIX, end: TOPIC_PREFIX + "\uffff" })) out.push(value);
    return out;
  }

  async put(record: TopicRecord): Promise<void> {
    await this.db.put(TOPIC_PREFIX + record.topic, record);
  }

  async delete(topic: string): Promise<void> {
    await this.db.remove(TOPIC_PREFIX + topic);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
