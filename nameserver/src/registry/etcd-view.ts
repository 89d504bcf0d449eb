/**
 * A name server's live view of the etcd registry: every broker, topic, user and ACL, loaded once and kept
 * current by an etcd watch, so a broker or topic written through any name server (or a broker
 * record vanishing with its lease) reaches this one within milliseconds, and every read is a
 * map lookup instead of an etcd round trip.
 *
 * Writes go to etcd; each waits until the watch has delivered it back (read-your-writes: a
 * topic created here is routable here the moment CreateTopic answers).
 *
 * etcd lost while running: reads keep answering from the last view (clients keep their
 * routes), writes fail with the store's retriable NOT_READY naming the endpoints, and
 * `notReadyReason` says so for /readyz. A probe every `probeIntervalMs` notices the loss (and
 * the watch reports it too); once etcd answers again the view is rebuilt from a fresh snapshot
 * and watched from there, and listeners are told, since anything may have changed meanwhile.
 */
import type { Watcher } from "etcd3";
import type { Logger } from "../../../common/src/logger.js";
import type { SecuritySnapshot } from "../../../common/src/security/types.js";
import { SecurityKeySpace } from "./etcd-security.js";
import type { EtcdRegistryStore, RegistryChange, RegistrySnapshot } from "./etcd-store.js";
import {
  brokerKey,
  notifySecurityListeners,
  type BrokerRecord,
  type PutBrokerOptions,
  type RegistryStore,
  type TopicRecord,
} from "./store.js";

/** How often etcd is probed while healthy, and retried while lost. */
export const DEFAULT_ETCD_PROBE_INTERVAL_MS = 1000;
/** A write waits at most this long for its own watch event before answering anyway. */
export const WRITE_VISIBLE_TIMEOUT_MS = 2000;
const WATCH_CANCEL_TIMEOUT_MS = 1000;

export interface EtcdRegistryViewOptions {
  store: EtcdRegistryStore;
  logger: Logger;
  /** @defaultValue 1000 */
  probeIntervalMs?: number;
}

export class EtcdRegistryView implements RegistryStore {
  readonly store: EtcdRegistryStore;
  private readonly logger: Logger;
  private readonly probeIntervalMs: number;
  private readonly brokers = new Map<string, BrokerRecord>();
  private readonly topics = new Map<string, TopicRecord>();
  private readonly changeListeners = new Set<() => void>();
  private security = new SecurityKeySpace();
  private readonly securityListeners = new Set<(snapshot: SecuritySnapshot) => void>();
  /** The security version listeners were last told about. */
  private securityAnnounced = 0;
  private securityAnnounceScheduled = false;
  /** Waiters for the view to reach a revision (writes made through this name server). */
  private readonly revisionWaiters = new Set<{ revision: bigint; resolve: () => void }>();
  private viewRevision = 0n;
  private watcher: Watcher | undefined;
  /** Why the view may be stale (etcd lost), or null while it follows etcd. */
  private lostReason: string | null = "the registry view has not been loaded from etcd yet";
  private probeTimer: NodeJS.Timeout | undefined;
  private rebuilding: Promise<void> | undefined;
  private closed = false;

  constructor(options: EtcdRegistryViewOptions) {
    this.store = options.store;
    this.logger = options.logger;
    this.probeIntervalMs = options.probeIntervalMs ?? DEFAULT_ETCD_PROBE_INTERVAL_MS;
  }

  /** Loads the view and starts watching; rejects (naming the endpoints) when etcd is down. */
  async start(): Promise<void> {
    await this.rebuild();
    this.probeTimer = setInterval(() => void this.probe(), this.probeIntervalMs);
    this.probeTimer.unref();
  }

  /** Why this name server should not be called ready (etcd lost), or null. */
  notReadyReason(): string | null {
    return this.lostReason;
  }

  /** Calls `listener` after every change the watch delivers, and after a rebuild. */
  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  async putBroker(record: BrokerRecord, options?: PutBrokerOptions): Promise<void> {
    await this.store.putBroker(record, options);
    await this.written();
  }

  async removeBroker(key: string): Promise<boolean> {
    const removed = await this.store.removeBroker(key);
    if (removed) await this.written();
    return removed;
  }

  async getBroker(key: string): Promise<BrokerRecord | undefined> {
    return this.brokers.get(key);
  }

  async listBrokers(): Promise<BrokerRecord[]> {
    return [...this.brokers.values()];
  }

  async createTopic(record: TopicRecord): Promise<boolean> {
    const created = await this.store.createTopic(record);
    if (created) await this.written();
    return created;
  }

  async putTopic(record: TopicRecord): Promise<void> {
    await this.store.putTopic(record);
    await this.written();
  }

  // Compare-and-swap reads etcd itself: the view may lag behind another name server's write.
  async updateTopic(topic: string, change: (current: TopicRecord) => TopicRecord): Promise<TopicRecord | undefined> {
    const updated = await this.store.updateTopic(topic, change);
    if (updated !== undefined) await this.written();
    return updated;
  }

  async getTopic(topic: string): Promise<TopicRecord | undefined> {
    return this.topics.get(topic);
  }

  async deleteTopic(topic: string): Promise<boolean> {
    const deleted = await this.store.deleteTopic(topic);
    if (deleted) await this.written();
    return deleted;
  }

  async listTopics(): Promise<TopicRecord[]> {
    return [...this.topics.values()];
  }

  async readSecurity(): Promise<SecuritySnapshot> {
    return this.security.snapshot();
  }

  // Like updateTopic: the compare-and-swap reads etcd, then the write is awaited in the view.
  async updateSecurity(change: (current: SecuritySnapshot) => SecuritySnapshot): Promise<SecuritySnapshot> {
    const written = await this.store.updateSecurity(change);
    await this.written();
    return written;
  }

  watchSecurity(listener: (snapshot: SecuritySnapshot) => void): () => void {
    this.securityListeners.add(listener);
    return () => this.securityListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.securityListeners.clear();
    clearInterval(this.probeTimer);
    this.releaseWaiters();
    await this.cancelWatch();
    await this.store.close();
  }

  /** Checks etcd; marks the view lost on failure, rebuilds it once etcd answers again. */
  private async probe(): Promise<void> {
    if (this.closed || this.rebuilding !== undefined) return;
    if (this.lostReason !== null) {
      await this.rebuild().catch(() => undefined);
      return;
    }
    try {
      await this.store.ping();
    } catch (err) {
      this.lose(err as Error);
    }
  }

  private lose(err: Error): void {
    if (this.closed || this.lostReason !== null) return;
    this.lostReason = `etcd at ${this.store.endpoints.join(",")} is unreachable (${err.message}); serving the last known routes`;
    this.logger.error({ endpoints: this.store.endpoints, err: err.message }, "lost etcd: serving the last known routes, not ready, writes refused until it returns");
    void this.cancelWatch();
    // A write waiting for its echo will not get it from this watch.
    this.releaseWaiters();
  }

  /** Reloads everything from a snapshot and watches from its revision (start and recovery). */
  private rebuild(): Promise<void> {
    this.rebuilding ??= (async () => {
      const wasLost = this.lostReason;
      try {
        await this.cancelWatch();
        const snapshot = await this.store.snapshot();
        if (this.closed) return;
        this.load(snapshot);
        this.watcher = await this.store.watch(
          snapshot.revision,
          (change) => this.apply(change),
          (err) => this.lose(err),
        );
        this.lostReason = null;
        if (wasLost !== null && this.probeTimer !== undefined) {
          this.logger.info({ endpoints: this.store.endpoints, revision: String(snapshot.revision) }, "etcd is back: registry view rebuilt, watching again");
        }
        this.announce();
      } finally {
        this.rebuilding = undefined;
      }
    })();
    return this.rebuilding;
  }

  private load(snapshot: RegistrySnapshot): void {
    this.brokers.clear();
    this.topics.clear();
    for (const record of snapshot.brokers) this.brokers.set(brokerKey(record), record);
    for (const record of snapshot.topics) this.topics.set(record.topic, record);
    this.security = snapshot.security;
    this.advanceTo(snapshot.revision);
    this.announceSecurity();
  }

  private apply(change: RegistryChange): void {
    // Already in the snapshot. Equal revisions are applied: a transaction's keys share one.
    if (change.revision < this.viewRevision) return;
    if (change.kind === "security") {
      try {
        this.security.apply(change.path, change.value, Number(change.revision));
      } catch (err) {
        this.logger.error({ err, key: change.path }, "ignoring a security key that does not hold a valid record");
      }
      this.announceSecurity();
      // Routes do not depend on users and ACLs: the route listeners are not bothered.
      this.advanceTo(change.revision);
      return;
    }
    if (change.kind === "broker") {
      if (change.record === undefined) this.brokers.delete(change.key);
      else this.brokers.set(change.key, change.record);
    } else if (change.record === undefined) {
      this.topics.delete(change.key);
    } else {
      this.topics.set(change.key, change.record);
    }
    this.advanceTo(change.revision);
    this.announce();
  }

  private advanceTo(revision: bigint): void {
    if (revision > this.viewRevision) this.viewRevision = revision;
    for (const waiter of this.revisionWaiters) {
      if (waiter.revision <= this.viewRevision) {
        this.revisionWaiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  /** Waits until the view holds every write made through the store so far (bounded). */
  private written(): Promise<void> {
    const revision = this.store.lastWriteRevision;
    if (revision <= this.viewRevision || this.lostReason !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = { revision, resolve: () => {
        clearTimeout(timer);
        resolve();
      } };
      const timer = setTimeout(() => {
        this.revisionWaiters.delete(waiter);
        resolve();
      }, WRITE_VISIBLE_TIMEOUT_MS);
      this.revisionWaiters.add(waiter);
    });
  }

  private releaseWaiters(): void {
    for (const waiter of this.revisionWaiters) waiter.resolve();
    this.revisionWaiters.clear();
  }

  private async cancelWatch(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher === undefined) return;
    // Cancelling talks to etcd, which may be the thing that is gone: bounded.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, WATCH_CANCEL_TIMEOUT_MS);
    });
    await Promise.race([watcher.cancel().catch(() => undefined), bound]);
    clearTimeout(timer);
  }

  /** Once per burst (a transaction's events arrive together): the new state, if its version moved. */
  private announceSecurity(): void {
    if (this.securityAnnounceScheduled) return;
    this.securityAnnounceScheduled = true;
    queueMicrotask(() => {
      this.securityAnnounceScheduled = false;
      const snapshot = this.security.snapshot();
      if (snapshot.version === this.securityAnnounced) return;
      this.securityAnnounced = snapshot.version;
      notifySecurityListeners(this.securityListeners, snapshot);
    });
  }

  private announce(): void {
    for (const listener of this.changeListeners) {
      try {
        listener();
      } catch (err) {
        this.logger.error({ err }, "a registry change listener failed");
      }
    }
  }
}
