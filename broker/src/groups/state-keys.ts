/**
 * The group-state records in `%groups`: their keys (also the keys of the memory and LMDB
 * views), values and encoding. A record's key is a UTF-8 string, its value UTF-8 JSON, and
 * a null value deletes the key (a tombstone):
 *
 *   o\0<group>\0<topic>\0<partition>   committed offset   → OffsetRecord
 *   g\0<group>                         membership / queue group settings (the coordinator's GroupRecord)
 *   q\0<group>\0<topic>\0<partition>   queue ack window   → WindowSnapshot (the coordinator's)
 *   s\0snapshot                        end of a compaction snapshot → SnapshotMarker; not state
 *
 * A write of several changes is one record batch (one append, all or nothing); a compaction
 * snapshot is batches of at most SNAPSHOT_BATCH_BYTES restating every live key.
 *
 * NUL separates the parts, so group and topic names cannot contain it (their name patterns
 * in protocol.ts exclude it; the builders refuse it anyway). The partition is written in
 * decimal without leading zeros, so one (group, topic, partition) has exactly one key.
 */
import { encodeBatch, type RecordInput } from "../../../common/src/batch/builder.js";
import { InvalidArgumentError } from "../../../common/src/errors.js";

export { DEFAULT_GROUP_STATE_PARTITIONS, GROUP_STATE_TOPIC } from "../../../common/src/protocol.js";

const SEP = "\u0000";

export type StateKind = "offset" | "group" | "window";

const KIND_LETTER: Readonly<Record<StateKind, string>> = { offset: "o", group: "g", window: "q" };

/** A record value as this module sees it: a JSON object whose shape its kind's owner defines. */
export type StateValue = Record<string, unknown>;

export interface OffsetRecord {
  /** The next offset the group will consume. */
  offset: number;
  metadata: string;
  commitTimeMs: number;
}

/**
 * Last record of a compaction snapshot. Replay skips it: it only tells a reader of the log
 * that the records before it, back to the snapshot's start, restate the whole live state.
 */
export const SNAPSHOT_MARKER_KEY = `s${SEP}snapshot`;

export interface SnapshotMarker {
  /** Live keys the snapshot restated. */
  keys: number;
  createdAtMs: number;
}

export interface ParsedKey {
  kind: StateKind;
  group: string;
  topic?: string;
  partition?: number;
}

function checkName(what: string, name: string): void {
  if (name.length === 0 || name.includes(SEP)) {
    throw new InvalidArgumentError(`${what} name ${JSON.stringify(name)} cannot be empty or contain NUL in a group state key`);
  }
}

function checkPartition(partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new InvalidArgumentError(`partition must be a non-negative integer in a group state key, got ${partition}`);
  }
}

function partitionKey(letter: string, group: string, topic: string, partition: number): string {
  checkName("group", group);
  checkName("topic", topic);
  checkPartition(partition);
  return `${letter}${SEP}${group}${SEP}${topic}${SEP}${partition}`;
}

export function offsetKey(group: string, topic: string, partition: number): string {
  return partitionKey("o", group, topic, partition);
}

export function groupKey(group: string): string {
  checkName("group", group);
  return `g${SEP}${group}`;
}

export function windowKey(group: string, topic: string, partition: number): string {
  return partitionKey("q", group, topic, partition);
}

/** Prefix of every key of one kind, all groups: `g\0` lists every group record. */
export function kindPrefix(kind: StateKind): string {
  return KIND_LETTER[kind] + SEP;
}

/**
 * Prefix of one group's keys of one kind (of one topic when given), for range scans.
 * Only the per-partition kinds: a group has a single `g` key, read with `groupKey`, and
 * `g\0<group>` would also prefix the keys of every group whose name extends this one.
 */
export function groupPrefix(group: string, kind: "offset" | "window", topic?: string): string {
  checkName("group", group);
  const prefix = `${KIND_LETTER[kind]}${SEP}${group}${SEP}`;
  if (topic === undefined) return prefix;
  checkName("topic", topic);
  return `${prefix}${topic}${SEP}`;
}

const CANONICAL_PARTITION = /^(0|[1-9][0-9]{0,15})$/;

/** The parts of a state key; undefined for anything else (the snapshot marker included). */
export function parseKey(key: string): ParsedKey | undefined {
  const parts = key.split(SEP);
  const group = parts[1];
  if (group === undefined || group.length === 0) return undefined;
  if (parts[0] === "g") return parts.length === 2 ? { kind: "group", group } : undefined;
  if ((parts[0] !== "o" && parts[0] !== "q") || parts.length !== 4) return undefined;
  const topic = parts[2]!;
  const digits = parts[3]!;
  if (topic.length === 0 || !CANONICAL_PARTITION.test(digits)) return undefined;
  const partition = Number(digits);
  if (!Number.isSafeInteger(partition)) return undefined;
  return { kind: parts[0] === "o" ? "offset" : "window", group, topic, partition };
}

/** A change to one key: its new value, or null to delete it (a tombstone). */
export interface StateWrite {
  key: string;
  value: object | null;
}

/** A record's effect on the state: its JSON text and value, both null for a tombstone. */
export interface StateChange {
  key: string;
  text: string | null;
  /** Parsed from `text`, so the state never shares an object with a caller. */
  value: StateValue | null;
}

/** Checks and serialises writes into one record batch; throws before anything is appended. */
export function encodeStateWrites(writes: readonly StateWrite[]): { batch: Buffer; changes: StateChange[] } {
  const changes: StateChange[] = [];
  const records: RecordInput[] = [];
  for (const { key, value } of writes) {
    if (typeof key !== "string" || parseKey(key) === undefined) {
      throw new InvalidArgumentError(`${JSON.stringify(key)} is not a group state key; build keys with state-keys.ts`);
    }
    if (value !== null && (typeof value !== "object" || Array.isArray(value))) {
      throw new InvalidArgumentError(`the value of group state key ${JSON.stringify(key)} must be an object or null`);
    }
    const text = value === null ? null : JSON.stringify(value);
    changes.push({ key, text, value: text === null ? null : (JSON.parse(text) as StateValue) });
    records.push({ key, value: text });
  }
  return { batch: encodeBatch(records), changes };
}

/** A stored value (null: tombstone) as a change; undefined when the text is not a JSON object. */
export function decodeStateChange(key: string, text: string | null): StateChange | undefined {
  if (text === null) return { key, text, value: null };
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return { key, text, value: value as StateValue };
  } catch {
    // not JSON: the caller reports it
  }
  return undefined;
}

/** A snapshot is appended in batches of at most about this many bytes (one record may exceed it). */
export const SNAPSHOT_BATCH_BYTES = 1024 * 1024;
/** A record's framing besides key and value (length, deltas, field lengths), roughly. */
const RECORD_OVERHEAD_BYTES = 16;

/** Approximate bytes of one record in a batch, for sizing state and snapshot batches. */
export function stateRecordBytes(key: string, text: string): number {
  return key.length + text.length + RECORD_OVERHEAD_BYTES;
}

/**
 * A compaction snapshot: every live key restated, in batches of at most SNAPSHOT_BATCH_BYTES,
 * the marker last. Never empty: an empty state is the marker alone, so the snapshot still
 * has a first offset below which everything can go.
 */
export function encodeSnapshot(live: readonly (readonly [string, StateValue])[], createdAtMs: number): Buffer[] {
  const batches: Buffer[] = [];
  let records: RecordInput[] = [];
  let bytes = 0;
  const add = (key: string, text: string): void => {
    const recordBytes = stateRecordBytes(key, text);
    if (records.length > 0 && bytes + recordBytes > SNAPSHOT_BATCH_BYTES) {
      batches.push(encodeBatch(records));
      records = [];
      bytes = 0;
    }
    records.push({ key, value: text });
    bytes += recordBytes;
  };
  for (const [key, value] of live) add(key, JSON.stringify(value));
  const marker: SnapshotMarker = { keys: live.length, createdAtMs };
  add(SNAPSHOT_MARKER_KEY, JSON.stringify(marker));
  batches.push(encodeBatch(records));
  return batches;
}
