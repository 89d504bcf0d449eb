/**
 * The etcd calls on one broker group's records (layout and codec in group-record.ts): read the
 * group record with its mod revision and the group's alive keys, create or compare-and-swap the
 * record, put a broker's alive key under its lease, and watch both for changes. Shared by the
 * broker's role manager and the name server's controller and PromoteBroker; decisions are
 * theirs, this file only talks to etcd.
 */
import type { Etcd3, IKeyValue, Namespace, Watcher } from "etcd3";
import {
  aliveKey,
  decodeAliveRecord,
  decodeGroupRecord,
  encodeAliveRecord,
  encodeGroupRecord,
  groupAlivePrefix,
  groupKey,
  parseAliveKey,
  type AliveRecord,
  type GroupRecord,
} from "./group-record.js";

/** The group record as read, with what a compare-and-swap needs. */
export interface GroupSnapshot {
  /** Undefined when the group has no record yet. */
  record: GroupRecord | undefined;
  /** Mod revision of the record ("0" when there is none). */
  modRevision: string;
  /** Alive brokers of the group, by id. */
  alive: Map<number, AliveRecord>;
}

export interface GroupRegistryOptions {
  client: Etcd3;
  /** `<root>/<cluster>/`. */
  keyPrefix: string;
  group: string;
}

export class GroupRegistry {
  readonly group: string;
  private readonly keys: Namespace;
  private readonly recordKey: string;

  constructor(options: GroupRegistryOptions) {
    this.group = options.group;
    this.keys = options.client.namespace(options.keyPrefix);
    this.recordKey = groupKey(options.group);
  }

  async read(): Promise<GroupSnapshot> {
    const [recordResponse, aliveResponse] = await Promise.all([
      this.keys.get(this.recordKey).exec(),
      this.keys.getAll().prefix(groupAlivePrefix(this.group)).exec(),
    ]);
    const kv = recordResponse.kvs[0];
    return {
      record: kv === undefined ? undefined : decodeGroupRecord(kv.value.toString(), this.recordKey),
      modRevision: kv === undefined ? "0" : kv.mod_revision,
      alive: aliveByBroker(aliveResponse.kvs),
    };
  }

  /** Writes the group's first record; false when someone else created it first. */
  async create(record: GroupRecord): Promise<boolean> {
    const result = await this.keys
      .if(this.recordKey, "Create", "==", 0)
      .then(this.keys.put(this.recordKey).value(encodeGroupRecord(record)))
      .commit();
    return result.succeeded;
  }

  /** Replaces the record only if it is still at `modRevision`; false when it changed meanwhile. */
  async swap(record: GroupRecord, modRevision: string): Promise<boolean> {
    const result = await this.keys
      .if(this.recordKey, "Mod", "==", modRevision)
      .then(this.keys.put(this.recordKey).value(encodeGroupRecord(record)))
      .commit();
    return result.succeeded;
  }

  /** Puts `alive/<group>/<id>` under `record.leaseId`: it vanishes when the lease does. */
  async putAlive(brokerId: number, record: AliveRecord): Promise<void> {
    await this.keys.put(aliveKey(this.group, brokerId)).value(encodeAliveRecord(record)).lease(record.leaseId).exec();
  }

  /** Calls `onChange` whenever the record or an alive key of the group changes, or a watch reconnects. */
  async watch(onChange: () => void): Promise<Watcher[]> {
    const watchers = await Promise.all([
      this.keys.watch().key(this.recordKey).create(),
      this.keys.watch().prefix(groupAlivePrefix(this.group)).create(),
    ]);
    return onEveryChange(watchers, onChange);
  }
}

/** Calls `onChange` on every put, delete and reconnect of the watchers; returns them. */
export function onEveryChange(watchers: Watcher[], onChange: () => void): Watcher[] {
  for (const watcher of watchers) {
    watcher.on("put", onChange);
    watcher.on("delete", onChange);
    // Events may have been missed while disconnected (or the watch resumed past a compaction).
    watcher.on("connected", onChange);
    watcher.on("error", () => undefined);
  }
  return watchers;
}

export function aliveByBroker(kvs: readonly IKeyValue[]): Map<number, AliveRecord> {
  const alive = new Map<number, AliveRecord>();
  for (const kv of kvs) {
    const key = kv.key.toString();
    const parsed = parseAliveKey(key);
    if (parsed !== undefined) alive.set(parsed.brokerId, decodeAliveRecord(kv.value.toString(), key));
  }
  return alive;
}
