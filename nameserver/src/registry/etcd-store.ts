/**
 * The etcd registry: every name server of a deployment reads and writes the same etcd, so a
 * broker or topic recorded through one name server is visible through all of them and a name
 * server keeps no state of its own.
 *
 * Key layout (values are the records as JSON):
 *   <root>/<cluster>/brokers/<brokerKey>   e.g. /sluice/prod/brokers/sluice/b1/0
 *   <root>/<cluster>/topics/<topic>        e.g. /sluice/prod/topics/orders
 *   <root>/<cluster>/security/…            users and ACLs (layout in etcd-security.ts)
 *
 * Writes that must not race are etcd transactions: `createTopic` puts only if the key's create
 * revision is 0 (it does not exist), `updateTopic` puts only if the key's mod revision is the
 * one it read (compare-and-swap, retried). A broker record may be put under the broker's own
 * lease, so it vanishes when the broker stops keeping the lease alive.
 *
 * etcd being unreachable surfaces as `RegistryUnavailableError` (NOT_READY, retriable), naming
 * the endpoints, so callers answer "try again" rather than "no such topic".
 */
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  isRecoverableError,
  type IKeyValue,
  type IResponseHeader,
  type Namespace,
  type Watcher,
} from "etcd3";
import { InvalidArgumentError, InvalidConfigError, SluiceError } from "../../../common/src/errors.js";
import type { SecuritySnapshot } from "../../../common/src/security/types.js";
import { EtcdSecurityWatch, isSecurityPath, readSecurity, SecurityKeySpace, updateSecurity } from "./etcd-security.js";
import type { BrokerRecord, PutBrokerOptions, RegistryStore, TopicRecord } from "./store.js";

export const DEFAULT_ETCD_KEY_ROOT = "/sluice";
export const DEFAULT_ETCD_CLUSTER = "sluice";
/** Deadline of one etcd call: long enough for a busy etcd, short enough to report it down. */
export const DEFAULT_ETCD_REQUEST_TIMEOUT_MS = 3000;
/** How long connecting to etcd may take before a call fails. */
export const DEFAULT_ETCD_DIAL_TIMEOUT_MS = 3000;
/** Compare-and-swap attempts of one `updateTopic` before it gives up (retriable). */
const MAX_CAS_ATTEMPTS = 16;

export interface EtcdRegistryStoreOptions {
  /** etcd client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Names this deployment's part of the key space. @defaultValue "sluice" */
  cluster?: string;
  /** Prefix of every key. @defaultValue "/sluice" */
  keyRoot?: string;
  /** @defaultValue 3000 */
  requestTimeoutMs?: number;
  /** @defaultValue 3000 */
  dialTimeoutMs?: number;
}

/** etcd could not be reached (or did not answer in time); retriable. */
export class RegistryUnavailableError extends SluiceError {
  readonly endpoints: readonly string[];

  constructor(endpoints: readonly string[], cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super("NOT_READY", `etcd at ${endpoints.join(",")} is unreachable (${reason}); is etcd running and is --etcd right?`, { cause });
    this.name = "RegistryUnavailableError";
    this.endpoints = endpoints;
  }
}

/** Everything under the store's prefix at one etcd revision (what a watch continues from). */
export interface RegistrySnapshot {
  revision: bigint;
  brokers: BrokerRecord[];
  topics: TopicRecord[];
  security: SecurityKeySpace;
}

/** One change under the store's prefix, as a watch delivers it. */
export type RegistryChange =
  | { kind: "broker"; key: string; record: BrokerRecord | undefined; revision: bigint }
  | { kind: "topic"; key: string; record: TopicRecord | undefined; revision: bigint }
  /** A key under `security/` (path relative to the prefix); `value` undefined: deleted. */
  | { kind: "security"; path: string; value: string | undefined; revision: bigint };

export class EtcdRegistryStore implements RegistryStore {
  readonly endpoints: readonly string[];
  /** The key prefix this store owns, e.g. "/sluice/prod/". */
  readonly keyPrefix: string;
  private readonly client: Etcd3;
  private readonly keys: Namespace;
  private readonly requestTimeoutMs: number;
  private writtenRevision = 0n;
  private readonly securityWatch: EtcdSecurityWatch;

  constructor(options: EtcdRegistryStoreOptions) {
    this.endpoints = parseEndpoints(options.endpoints);
    const cluster = options.cluster ?? DEFAULT_ETCD_CLUSTER;
    if (cluster === "" || cluster.includes("/")) {
      throw new InvalidConfigError(`etcd cluster name "${cluster}" must be non-empty and contain no "/"`);
    }
    const keyRoot = (options.keyRoot ?? DEFAULT_ETCD_KEY_ROOT).replace(/\/+$/, "");
    this.keyPrefix = `${keyRoot}/${cluster}/`;
    this.requestTimeoutMs = positive("requestTimeoutMs", options.requestTimeoutMs ?? DEFAULT_ETCD_REQUEST_TIMEOUT_MS);
    const dialTimeoutMs = positive("dialTimeoutMs", options.dialTimeoutMs ?? DEFAULT_ETCD_DIAL_TIMEOUT_MS);
    this.client = new Etcd3({
      hosts: [...this.endpoints],
      dialTimeout: dialTimeoutMs,
      // Streams (watches, lease keep-alives) live as long as they are needed; calls do not.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + this.requestTimeoutMs }),
    });
    this.keys = this.client.namespace(this.keyPrefix);
    this.securityWatch = new EtcdSecurityWatch(this.keys, () => this.readSecurity());
  }

  /**
   * Creates a store and checks that etcd answers, so a wrong `--etcd` fails at start-up with
   * the endpoint named instead of at the first request.
   */
  static async connect(options: EtcdRegistryStoreOptions): Promise<EtcdRegistryStore> {
    const store = new EtcdRegistryStore(options);
    try {
      await store.call(() => store.keys.get("topics/").exec());
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /**
   * The etcd revision of the latest write this store made: a watcher that has applied it has
   * seen every write made through this store (read-your-writes for a watched view).
   */
  get lastWriteRevision(): bigint {
    return this.writtenRevision;
  }

  async putBroker(record: BrokerRecord, options: PutBrokerOptions = {}): Promise<void> {
    const put = this.keys.put(brokerPath(record)).value(JSON.stringify(record));
    if (options.leaseId !== undefined) put.lease(options.leaseId);
    try {
      this.wrote((await this.call(() => put.exec())).header);
    } catch (err) {
      if (err instanceof SluiceError || !(err instanceof EtcdLeaseInvalidError)) throw err;
      throw new InvalidArgumentError(`etcd lease ${options.leaseId} does not exist (expired or revoked); grant a new lease and register again`);
    }
  }

  async removeBroker(key: string): Promise<boolean> {
    const response = await this.call(() => this.keys.delete().key(`brokers/${key}`).exec());
    if (Number(response.deleted) > 0) this.wrote(response.header);
    return Number(response.deleted) > 0;
  }

  async getBroker(key: string): Promise<BrokerRecord | undefined> {
    const value = await this.call(() => this.keys.get(`brokers/${key}`).string());
    return value === null ? undefined : (parseRecord(`brokers/${key}`, value) as BrokerRecord);
  }

  async listBrokers(): Promise<BrokerRecord[]> {
    return (await this.listPrefix("brokers/")) as BrokerRecord[];
  }

  async createTopic(record: TopicRecord): Promise<boolean> {
    const path = topicPath(record.topic);
    const response = await this.call(() =>
      this.keys.if(path, "Create", "==", 0).then(this.keys.put(path).value(JSON.stringify(record))).commit(),
    );
    if (response.succeeded) this.wrote(response.header);
    return response.succeeded;
  }

  async putTopic(record: TopicRecord): Promise<void> {
    this.wrote((await this.call(() => this.keys.put(topicPath(record.topic)).value(JSON.stringify(record)).exec())).header);
  }

  async updateTopic(topic: string, change: (current: TopicRecord) => TopicRecord): Promise<TopicRecord | undefined> {
    const path = topicPath(topic);
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const response = await this.call(() => this.keys.get(path).exec());
      const kv = response.kvs[0];
      if (kv === undefined) return undefined;
      const next: TopicRecord = { ...change(parseRecord(path, kv.value.toString()) as TopicRecord), topic };
      const swapped = await this.call(() =>
        this.keys.if(path, "Mod", "==", kv.mod_revision).then(this.keys.put(path).value(JSON.stringify(next))).commit(),
      );
      if (swapped.succeeded) {
        this.wrote(swapped.header);
        return next;
      }
    }
    throw new SluiceError(
      "NOT_READY",
      `topic "${topic}" was changed by someone else ${MAX_CAS_ATTEMPTS} times while this name server updated it; retry`,
    );
  }

  async getTopic(topic: string): Promise<TopicRecord | undefined> {
    const path = topicPath(topic);
    const value = await this.call(() => this.keys.get(path).string());
    return value === null ? undefined : (parseRecord(path, value) as TopicRecord);
  }

  async deleteTopic(topic: string): Promise<boolean> {
    const response = await this.call(() => this.keys.delete().key(topicPath(topic)).exec());
    if (Number(response.deleted) > 0) this.wrote(response.header);
    return Number(response.deleted) > 0;
  }

  async listTopics(): Promise<TopicRecord[]> {
    return (await this.listPrefix("topics/")) as TopicRecord[];
  }

  readSecurity(): Promise<SecuritySnapshot> {
    return readSecurity(this.keys, (operation) => this.call(operation));
  }

  updateSecurity(change: (current: SecuritySnapshot) => SecuritySnapshot): Promise<SecuritySnapshot> {
    return updateSecurity(this.keys, (operation) => this.call(operation), change, (header) => this.wrote(header));
  }

  watchSecurity(listener: (snapshot: SecuritySnapshot) => void): () => void {
    return this.securityWatch.subscribe(listener);
  }

  async close(): Promise<void> {
    this.securityWatch.close();
    this.client.close();
  }

  /** Every broker and topic, and the revision they were read at (to watch from the next one). */
  async snapshot(): Promise<RegistrySnapshot> {
    const response = await this.call(() => this.keys.getAll().prefix("").exec());
    const snapshot: RegistrySnapshot = { revision: BigInt(response.header.revision), brokers: [], topics: [], security: new SecurityKeySpace() };
    for (const kv of response.kvs) {
      const path = kv.key.toString();
      if (path.startsWith("brokers/")) snapshot.brokers.push(parseRecord(path, kv.value.toString()) as BrokerRecord);
      else if (path.startsWith("topics/")) snapshot.topics.push(parseRecord(path, kv.value.toString()) as TopicRecord);
      else if (isSecurityPath(path)) snapshot.security.apply(path, kv.value.toString(), Number(kv.mod_revision));
    }
    return snapshot;
  }

  /**
   * Watches every broker, topic and security key from `afterRevision` + 1. Changes arrive in revision order;
   * `onBroken` is told once when the watch loses etcd (the caller starts over from a snapshot).
   */
  async watch(afterRevision: bigint, onChange: (change: RegistryChange) => void, onBroken: (err: Error) => void): Promise<Watcher> {
    const watcher = await this.call(() =>
      this.keys.watch().prefix("").startRevision(String(afterRevision + 1n)).create(),
    );
    const deliver = (kv: IKeyValue, deleted: boolean): void => {
      const path = kv.key.toString();
      const revision = BigInt(kv.mod_revision);
      if (path.startsWith("brokers/")) {
        const record = deleted ? undefined : (parseRecord(path, kv.value.toString()) as BrokerRecord);
        onChange({ kind: "broker", key: path.slice("brokers/".length), record, revision });
      } else if (path.startsWith("topics/")) {
        const record = deleted ? undefined : (parseRecord(path, kv.value.toString()) as TopicRecord);
        onChange({ kind: "topic", key: path.slice("topics/".length), record, revision });
      } else if (isSecurityPath(path)) {
        onChange({ kind: "security", path, value: deleted ? undefined : kv.value.toString(), revision });
      }
    };
    let broken = false;
    const breakOnce = (err: Error): void => {
      if (broken) return;
      broken = true;
      onBroken(err);
    };
    watcher.on("put", (kv) => deliver(kv, false));
    // A delete's kv carries the deletion's revision in mod_revision.
    watcher.on("delete", (kv) => deliver(kv, true));
    watcher.on("disconnected", (err) => breakOnce(err));
    watcher.on("error", (err) => breakOnce(err));
    return watcher;
  }

  /** Resolves when etcd answers a read; rejects with RegistryUnavailableError otherwise. */
  async ping(): Promise<void> {
    await this.call(() => this.keys.get("topics/").exec());
  }

  private wrote(header: IResponseHeader): void {
    const revision = BigInt(header.revision);
    if (revision > this.writtenRevision) this.writtenRevision = revision;
  }

  private async listPrefix(prefix: string): Promise<unknown[]> {
    const response = await this.call(() => this.keys.getAll().prefix(prefix).exec());
    return response.kvs.map((kv: IKeyValue) => parseRecord(kv.key.toString(), kv.value.toString()));
  }

  /** Runs one etcd call, turning "cannot reach etcd" into RegistryUnavailableError. */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (err) {
      if (isUnreachable(err)) throw new RegistryUnavailableError(this.endpoints, err);
      throw err;
    }
  }
}

function isUnreachable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // etcd3's per-host circuit breaker (cockatiel's BrokenCircuitError, marked by this flag)
  // fails calls fast for a few seconds after repeated failures.
  const brokenCircuit = (err as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true;
  return isRecoverableError(err) || brokenCircuit || err instanceof GRPCDeadlineExceededError;
}

function brokerPath(record: BrokerRecord): string {
  return `brokers/${record.cluster}/${record.group}/${record.brokerId}`;
}

function topicPath(topic: string): string {
  return `topics/${topic}`;
}

function parseRecord(path: string, value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch (err) {
    throw new SluiceError("INTERNAL", `registry key ${path} holds a value that is not JSON: ${JSON.stringify(value.slice(0, 80))}`, {
      cause: err,
    });
  }
}

function parseEndpoints(endpoints: readonly string[]): string[] {
  const parsed = endpoints.map((endpoint) => endpoint.trim()).filter((endpoint) => endpoint !== "");
  if (parsed.length === 0) throw new InvalidConfigError("no etcd endpoint given: pass --etcd http://HOST:2379[,http://HOST:2379]");
  for (const endpoint of parsed) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new InvalidConfigError(`etcd endpoint "${endpoint}" is not a URL; expected e.g. http://127.0.0.1:2379`);
    }
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.port === "") {
      throw new InvalidConfigError(`etcd endpoint "${endpoint}" must be http:// or https:// with a port, e.g. http://127.0.0.1:2379`);
    }
  }
  return parsed;
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new InvalidConfigError(`${name} must be a positive integer number of milliseconds, got ${value}`);
  return value;
}
