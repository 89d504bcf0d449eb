/**
 * The in-memory registry: two maps. It is the embedded default; a name server that restarts
 * with it starts empty and is rebuilt from broker registrations and heartbeats within one
 * heartbeat interval.
 *
 * Records are copied on the way in and out so a caller mutating what it got back cannot
 * change the registry behind the store's back (the etcd store behaves the same way).
 */
import { brokerKey, type BrokerRecord, type RegistryStore, type TopicRecord } from "./store.js";

export class MemoryRegistryStore implements RegistryStore {
  private readonly brokers = new Map<string, BrokerRecord>();
  private readonly topics = new Map<string, TopicRecord>();

  async putBroker(record: BrokerRecord): Promise<void> {
    this.brokers.set(brokerKey(record), { ...record });
  }

  async removeBroker(key: string): Promise<boolean> {
    return this.brokers.delete(key);
  }

  async getBroker(key: string): Promise<BrokerRecord | undefined> {
    const record = this.brokers.get(key);
    return record === undefined ? undefined : { ...record };
  }

  async listBrokers(): Promise<BrokerRecord[]> {
    return [...this.brokers.values()].map((record) => ({ ...record }));
  }

  async createTopic(record: TopicRecord): Promise<boolean> {
    if (this.topics.has(record.topic)) return false;
    this.topics.set(record.topic, copyTopic(record));
    return true;
  }

  async putTopic(record: TopicRecord): Promise<void> {
    this.topics.set(record.topic, copyTopic(record));
  }

  /** One event loop turn reads and writes, so nothing can come in between: no retry needed. */
  async updateTopic(topic: string, change: (current: TopicRecord) => TopicRecord): Promise<TopicRecord | undefined> {
    const current = this.topics.get(topic);
    if (current === undefined) return undefined;
    const next = copyTopic({ ...change(copyTopic(current)), topic });
    this.topics.set(topic, next);
    return copyTopic(next);
  }

  async getTopic(topic: string): Promise<TopicRecord | undefined> {
    const record = this.topics.get(topic);
    return record === undefined ? undefined : copyTopic(record);
  }

  async deleteTopic(topic: string): Promise<boolean> {
    return this.topics.delete(topic);
  }

  async listTopics(): Promise<TopicRecord[]> {
    return [...this.topics.values()].map(copyTopic);
  }

  async close(): Promise<void> {
    this.brokers.clear();
    this.topics.clear();
  }
}

function copyTopic(record: TopicRecord): TopicRecord {
  return { ...record, assignment: [...record.assignment], config: { ...record.config } };
}
