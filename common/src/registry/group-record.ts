/**
 * The etcd records that decide who is master of a broker group, shared by the broker (its role
 * manager writes and watches them) and the name server (its controller fails over, and
 * `sluice broker promote` rewrites them). Only the codec and the pure transitions live here:
 * common has no etcd client; each side does its own etcd calls.
 *
 * Keys, relative to the deployment prefix `<root>/<cluster>/` (e.g. `/sluice/prod/`), the same
 * prefix the name server's registry store uses:
 *
 *   groups/<group>          GroupRecord as JSON, changed only by compare-and-swap on its mod revision
 *   alive/<group>/<id>      AliveRecord as JSON, put by broker <id> under its own etcd lease
 *
 * The group record names the master, the group epoch (bumped by every promotion), the lease the
 * master holds its mastership under (`masterLease`), and the in-sync slaves the master recorded
 * before acknowledging anything without a slave it dropped. A master whose alive key is gone or
 * carries another lease than `masterLease` is dead to the controller, which promotes from `inSync`.
 *
 *   GroupRecord JSON: {"master":0,"epoch":3,"masterLease":"7587868585","inSync":[1,2],
 *                      "mode":"sync","quorum":0,"updatedAtMs":1718000000000}
 *   AliveRecord JSON: {"leaseId":"7587868585","address":"10.0.0.5:10911","httpAddress":"10.0.0.5:8080"}
 */
import { InternalError, InvalidConfigError } from "../errors.js";

/** Prefix of every key, as in the name server's etcd registry store. */
export const DEFAULT_REGISTRY_KEY_ROOT = "/sluice";

/** How `acks: "all"` is met in the group: the master's `--replication`, recorded for the controller. */
export type GroupReplicationMode = "async" | "sync" | "quorum";

export interface GroupRecord {
  /** Broker id of the master. */
  master: number;
  /** Group epoch: 1 for a new group, + 1 on every promotion. */
  epoch: number;
  /** The etcd lease (decimal id) the master holds mastership under; "" when none is known. */
  masterLease: string;
  /** Slaves that hold every acknowledged batch, ascending ids (never the master). */
  inSync: number[];
  mode: GroupReplicationMode;
  /** k of `quorum:k`; 0 in the other modes. */
  quorum: number;
  /** When the record was last written (the writer's clock, epoch ms), for operators. */
  updatedAtMs: number;
}

/** What a live broker publishes about itself under its own lease. */
export interface AliveRecord {
  leaseId: string;
  /** gRPC host:port. */
  address: string;
  /** HTTP host:port. */
  httpAddress: string;
}

/** `<root>/<cluster>/`, validated: the prefix every key below is relative to. */
export function registryKeyPrefix(cluster: string, keyRoot: string = DEFAULT_REGISTRY_KEY_ROOT): string {
  if (cluster === "" || cluster.includes("/")) {
    throw new InvalidConfigError(`etcd cluster name "${cluster}" must be non-empty and contain no "/"`);
  }
  return `${keyRoot.replace(/\/+$/, "")}/${cluster}/`;
}

export const GROUPS_KEY_PREFIX = "groups/";
export const ALIVE_KEY_PREFIX = "alive/";

export function groupKey(group: string): string {
  return `${GROUPS_KEY_PREFIX}${group}`;
}

/** Prefix of every alive key of one group. */
export function groupAlivePrefix(group: string): string {
  return `${ALIVE_KEY_PREFIX}${group}/`;
}

export function aliveKey(group: string, brokerId: number): string {
  return `${groupAlivePrefix(group)}${brokerId}`;
}

/** The group of a `groups/<group>` key, or undefined for any other key. */
export function parseGroupKey(key: string): string | undefined {
  if (!key.startsWith(GROUPS_KEY_PREFIX)) return undefined;
  const group = key.slice(GROUPS_KEY_PREFIX.length);
  return group === "" || group.includes("/") ? undefined : group;
}

/** Group and broker id of an `alive/<group>/<id>` key, or undefined for any other key. */
export function parseAliveKey(key: string): { group: string; brokerId: number } | undefined {
  const match = /^alive\/([^/]+)\/(\d+)$/.exec(key);
  if (match === null) return undefined;
  return { group: match[1] as string, brokerId: Number(match[2]) };
}

export function encodeGroupRecord(record: GroupRecord): string {
  return JSON.stringify({
    master: record.master,
    epoch: record.epoch,
    masterLease: record.masterLease,
    inSync: normaliseInSync(record.inSync, record.master),
    mode: record.mode,
    quorum: record.mode === "quorum" ? record.quorum : 0,
    updatedAtMs: record.updatedAtMs,
  });
}

/** Parses a group record; a value nobody could have written throws INTERNAL naming the key. */
export function decodeGroupRecord(value: string, key: string): GroupRecord {
  const raw = parseObject(value, key);
  const { master, epoch, masterLease, inSync, mode, quorum, updatedAtMs } = raw;
  if (!isCount(master) || !isCount(epoch) || epoch < 1) corrupt(key, "master and epoch must be non-negative integers, epoch ≥ 1");
  if (typeof masterLease !== "string") corrupt(key, "masterLease must be a string");
  if (!Array.isArray(inSync) || !inSync.every(isCount)) corrupt(key, "inSync must be a list of broker ids");
  if (mode !== "async" && mode !== "sync" && mode !== "quorum") corrupt(key, `mode "${String(mode)}" is not async, sync or quorum`);
  if (!isCount(quorum)) corrupt(key, "quorum must be a non-negative integer");
  return {
    master,
    epoch,
    masterLease,
    inSync: normaliseInSync(inSync, master),
    mode,
    quorum,
    updatedAtMs: isCount(updatedAtMs) ? updatedAtMs : 0,
  };
}

export function encodeAliveRecord(record: AliveRecord): string {
  return JSON.stringify({ leaseId: record.leaseId, address: record.address, httpAddress: record.httpAddress });
}

export function decodeAliveRecord(value: string, key: string): AliveRecord {
  const raw = parseObject(value, key);
  if (typeof raw.leaseId !== "string" || typeof raw.address !== "string") corrupt(key, "leaseId and address must be strings");
  return { leaseId: raw.leaseId, address: raw.address, httpAddress: typeof raw.httpAddress === "string" ? raw.httpAddress : "" };
}

/** The first record of a new group: broker 0 is its master at epoch 1, nobody in sync yet. */
export function newGroupRecord(masterLease: string, mode: GroupReplicationMode, quorum: number, nowMs: number): GroupRecord {
  return { master: 0, epoch: 1, masterLease, inSync: [], mode, quorum: mode === "quorum" ? quorum : 0, updatedAtMs: nowMs };
}

/**
 * `to` becomes master at the next epoch under `toLease`. The in-sync set keeps the other
 * in-sync slaves (they hold every acknowledged batch, so they can follow the new master without
 * losing one); the old master is out: it must catch up again before it counts.
 */
export function promotedRecord(record: GroupRecord, to: number, toLease: string, nowMs: number): GroupRecord {
  return {
    ...record,
    master: to,
    epoch: record.epoch + 1,
    masterLease: toLease,
    inSync: record.inSync.filter((id) => id !== to && id !== record.master),
    updatedAtMs: nowMs,
  };
}

/** Ascending, unique, never the master. */
function normaliseInSync(ids: readonly number[], master: number): number[] {
  return [...new Set(ids)].filter((id) => id !== master).sort((a, b) => a - b);
}

function parseObject(value: string, key: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    corrupt(key, `not JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) corrupt(key, "not a JSON object");
  return parsed as Record<string, unknown>;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function corrupt(key: string, why: string): never {
  throw new InternalError(`etcd key "${key}" holds a record this version cannot read: ${why}; fix or delete the key`);
}
