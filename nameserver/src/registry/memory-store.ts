/**
 * The in-memory registry: two maps. It is the embedded default; a name server that restarts
 * with it starts empty and is rebuilt from broker registrations and heartbeats within one
 * heartbeat interval.
 *
 * Users and ACLs cannot be relearned from heartbeats: given a `securityFile`, the store loads
 * them at start and writes every change to it (security-file.ts) before the change counts.
 *
 * Records are copied on the way in and out so a caller mutating what it got back cannot
 * change the registry behind the store's back (the etcd store behaves the same way).
 */
import { emptySnapshot, encodeSnapshot } from "../../../common/src/security/snapshot.js";
import type { SecuritySnapshot } from "../../../common/src/security/types.js";
import { normalizeSnapshot, readSecurityFile, sameSecurityContent, writeSecurityFile } from "./security-file.js";
import { brokerKey, notifySecurityListeners, type BrokerRecord, type RegistryStore, type TopicRecord } from "./store.js";

export interface MemoryRegistryStoreOptions {
  /**
   * Where users and ACLs are kept across restarts (`<nameserver data>/security.json`): read
   * now, rewritten atomically on every change. @defaultValue none: they live in memory only
   */
  securityFile?: string;
  /**
   * The version users and ACLs start at when there is no file to load them from. Brokers keep
   * the highest version they have seen, so a name server that starts without its state must
   * not count from 0 again, or its changes would look older than what brokers hold and be
   * ignored; the name server passes a time-based start (see options.ts). @defaultValue 0
   */
  initialSecurityVersion?: number;
}

export class MemoryRegistryStore implements RegistryStore {
  private readonly brokers = new Map<string, BrokerRecord>();
  private readonly topics = new Map<string, TopicRecord>();
  readonly securityFile: string | undefined;
  private security: SecuritySnapshot;
  private readonly securityListeners = new Set<(snapshot: SecuritySnapshot) => void>();
  /** Security changes run one at a time, so the file is never written out of order. */
  private securityQueue: Promise<unknown> = Promise.resolve();

  /** Throws InvalidConfigError naming the file when the security file cannot be read. */
  constructor(options: MemoryRegistryStoreOptions = {}) {
    this.securityFile = options.securityFile;
    const loaded = this.securityFile === undefined ? emptySnapshot() : readSecurityFile(this.securityFile);
    this.security = loaded.version > 0 ? loaded : { ...loaded, version: options.initialSecurityVersion ?? 0 };
  }

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

  async readSecurity(): Promise<SecuritySnapshot> {
    return structuredClone(this.security);
  }

  updateSecurity(change: (current: SecuritySnapshot) => SecuritySnapshot): Promise<SecuritySnapshot> {
    const run = this.securityQueue.then(async () => {
      const current = this.security;
      const changed = change(structuredClone(current));
      if (sameSecurityContent(current, changed)) return structuredClone(current);
      const next = normalizeSnapshot({ ...changed, version: current.version + 1 });
      // Written before it counts: a change the caller saw succeed survives a crash.
      if (this.securityFile !== undefined) await writeSecurityFile(this.securityFile, encodeSnapshot(next));
      this.security = next;
      notifySecurityListeners(this.securityListeners, next);
      return structuredClone(next);
    });
    this.securityQueue = run.catch(() => undefined);
    return run;
  }

  watchSecurity(listener: (snapshot: SecuritySnapshot) => void): () => void {
    this.securityListeners.add(listener);
    return () => this.securityListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.brokers.clear();
    this.topics.clear();
    this.securityListeners.clear();
    await this.securityQueue;
  }
}

function copyTopic(record: TopicRecord): TopicRecord {
  return { ...record, assignment: [...record.assignment], config: { ...record.config } };
}
