/**
 * The name server's etcd calls on broker group records (layout and codec in
 * common/src/registry/group-record.ts): read every group with its alive brokers, read one, swap
 * one by compare-and-swap on its mod revision, and watch them all. The controller and
 * `PromoteBroker` decide; this file only talks to etcd.
 */
import { Etcd3, type IKeyValue, type Namespace, type Watcher } from "etcd3";
import {
  ALIVE_KEY_PREFIX,
  GROUPS_KEY_PREFIX,
  decodeAliveRecord,
  decodeGroupRecord,
  encodeGroupRecord,
  groupAlivePrefix,
  groupKey,
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

  constructor(options: GroupRecordsOptions) {
    this.client = new Etcd3({
      hosts: [...options.endpoints],
      dialTimeout: CALL_TIMEOUT_MS,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    });
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
    const [recordResponse, aliveResponse] = await Promise.all([
      this.keys.get(groupKey(group)).exec(),
      this.keys.getAll().prefix(groupAlivePrefix(group)).exec(),
    ]);
    const kv = recordResponse.kvs[0];
    if (kv === undefined) return undefined;
    return { group, record: decodeGroupRecord(kv.value.toString(), groupKey(group)), modRevision: kv.mod_revision, alive: aliveOf(aliveResponse.kvs) };
  }

  /** Replaces a group's record only if it is still at `modRevision`. */
  async swap(group: string, record: GroupRecord, modRevision: string): Promise<boolean> {
    const key = groupKey(group);
    const result = await this.keys.if(key, "Mod", "==", modRevision).then(this.keys.put(key).value(encodeGroupRecord(record))).commit();
    return result.succeeded;
  }

  /** Calls `onChange` on any change to a group record or alive key (and when a watch reconnects). */
  async watch(onChange: () => void): Promise<Watcher[]> {
    const watchers = await Promise.all([
      this.keys.watch().prefix(GROUPS_KEY_PREFIX).create(),
      this.keys.watch().prefix(ALIVE_KEY_PREFIX).create(),
    ]);
    for (const watcher of watchers) {
      watcher.on("put", onChange);
      watcher.on("delete", onChange);
      watcher.on("connected", onChange);
      watcher.on("error", () => undefined);
    }
    return watchers;
  }

  close(): void {
    this.client.close();
  }
}

function aliveOf(kvs: readonly IKeyValue[]): Map<number, AliveRecord> {
  const alive = new Map<number, AliveRecord>();
  for (const kv of kvs) {
    const key = kv.key.toString();
    const parsed = parseAliveKey(key);
    if (parsed !== undefined) alive.set(parsed.brokerId, decodeAliveRecord(kv.value.toString(), key));
  }
  return alive;
}
