/**
 * The name server's etcd calls on broker group records (layout and codec in
 * common/src/registry/group-record.ts): read every group with its alive brokers, read one, swap
 * one by compare-and-swap on its mod revision, and watch them all. The controller and
 * `PromoteBroker` decide; this file only talks to etcd.
 */
import { Etcd3, type Namespace, type Watcher } from "etcd3";
import { GroupRegistry, onEveryChange } from "../../../common/src/registry/group-registry.js";
import {
  ALIVE_KEY_PREFIX,
  GROUPS_KEY_PREFIX,
  decodeAliveRecord,
  decodeGroupRecord,
  parseAliveKey,
  parseGroupKey,
  type AliveRecord,
  type GroupRecord,
} from "../../../common/src/registry/group-record.js";

/** Deadline of one etcd call. */
const CALL_TIMEOUT_MS = 3000;

export interface GroupState {
  group: string;
  record: GroupRecord;
  /** What a compare-and-swap of `record` must match. */
  modRevision: string;
  /** The group's alive brokers, by id. */
  alive: Map<number, AliveRecord>;
}

export interface AllGroups {
  groups: GroupState[];
  /** Keys holding a record this version cannot read (reported, never overwritten). */
  unreadable: Array<{ key: string; error: string }>;
}

export interface GroupRecordsOptions {
  endpoints: readonly string[];
  /** `<root>/<cluster>/`, the name server store's key prefix. */
  keyPrefix: string;
}

export class GroupRecords {
  private readonly client: Etcd3;
  private readonly keys: Namespace;
  private readonly keyPrefix: string;

  constructor(options: GroupRecordsOptions) {
    this.client = new Etcd3({
      hosts: [...options.endpoints],
      dialTimeout: CALL_TIMEOUT_MS,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    });
    this.keyPrefix = options.keyPrefix;
    this.keys = this.client.namespace(options.keyPrefix);
  }

  /** The client, for the controller's election. */
  get etcd(): Etcd3 {
    return this.client;
  }

  get namespace(): Namespace {
    return this.keys;
  }

  async readAll(): Promise<AllGroups> {
    const [groupsResponse, aliveResponse] = await Promise.all([
      this.keys.getAll().prefix(GROUPS_KEY_PREFIX).exec(),
      this.keys.getAll().prefix(ALIVE_KEY_PREFIX).exec(),
    ]);
    const unreadable: AllGroups["unreadable"] = [];
    const aliveByGroup = new Map<string, Map<number, AliveRecord>>();
    for (const kv of aliveResponse.kvs) {
      const key = kv.key.toString();
      const parsed = parseAliveKey(key);
      if (parsed === undefined) continue;
      try {
        const record = decodeAliveRecord(kv.value.toString(), key);
        let alive = aliveByGroup.get(parsed.group);
        if (alive === undefined) aliveByGroup.set(parsed.group, (alive = new Map()));
        alive.set(parsed.brokerId, record);
      } catch (err) {
        unreadable.push({ key, error: (err as Error).message });
      }
    }
    const groups: GroupState[] = [];
    for (const kv of groupsResponse.kvs) {
      const key = kv.key.toString();
      const group = parseGroupKey(key);
      if (group === undefined) continue;
      try {
        groups.push({ group, record: decodeGroupRecord(kv.value.toString(), key), modRevision: kv.mod_revision, alive: aliveByGroup.get(group) ?? new Map() });
      } catch (err) {
        unreadable.push({ key, error: (err as Error).message });
      }
    }
    return { groups, unreadable };
  }

  /** One group's record and alive brokers; undefined when the group has no record. */
  async read(group: string): Promise<GroupState | undefined> {
    const snapshot = await this.registry(group).read();
    return snapshot.record === undefined ? undefined : { group, record: snapshot.record, modRevision: snapshot.modRevision, alive: snapshot.alive };
  }

  /** Replaces a group's record only if it is still at `modRevision`. */
  swap(group: string, record: GroupRecord, modRevision: string): Promise<boolean> {
    return this.registry(group).swap(record, modRevision);
  }

  /** Calls `onChange` on any change to a group record or alive key (and when a watch reconnects). */
  async watch(onChange: () => void): Promise<Watcher[]> {
    const watchers = await Promise.all([
      this.keys.watch().prefix(GROUPS_KEY_PREFIX).create(),
      this.keys.watch().prefix(ALIVE_KEY_PREFIX).create(),
    ]);
    return onEveryChange(watchers, onChange);
  }

  private registry(group: string): GroupRegistry {
    return new GroupRegistry({ client: this.client, keyPrefix: this.keyPrefix, group });
  }

  close(): void {
    this.client.close();
  }
}
