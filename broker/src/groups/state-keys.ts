/**
 * Keys of the group-state records in `%groups` (and of their LMDB view). A record's key is
 * a UTF-8 string, its value UTF-8 JSON, and a null value deletes the key (a tombstone):
 *
 *   o\0<group>\0<topic>\0<partition>   committed offset   → OffsetRecord
 *   g\0<group>                         membership / queue group settings
 *   q\0<group>\0<topic>\0<partition>   queue ack window   → WindowSnapshot
 *
 * NUL separates the parts: group and topic names cannot contain it.
 */
export { GROUP_STATE_TOPIC } from "../../../common/src/protocol.js";

const SEP = "\u0000";

export type StateKind = "offset" | "group" | "window";
const PREFIX: Record<StateKind, string> = { offset: "o", group: "g", window: "q" };

export interface OffsetRecord {
  /** The next offset the group will consume. */
  offset: number;
  metadata: string;
  commitTimeMs: number;
}

export function offsetKey(group: string, topic: string, partition: number): string {
  return `o${SEP}${group}${SEP}${topic}${SEP}${partition}`;
}

export function groupKey(group: string): string {
  return `g${SEP}${group}`;
}

export function windowKey(group: string, topic: string, partition: number): string {
  return `q${SEP}${group}${SEP}${topic}${SEP}${partition}`;
}

/** Prefix of every key of one kind for one group, for range scans. */
export function groupPrefix(group: string, kind: StateKind): string {
  return kind === "group" ? groupKey(group) : `${PREFIX[kind]}${SEP}${group}${SEP}`;
}

export interface ParsedKey {
  kind: StateKind;
  group: string;
  topic?: string;
  partition?: number;
}

export function parseKey(key: string): ParsedKey | undefined {
  const parts = key.split(SEP);
  if (parts[0] === "g" && parts.length === 2) return { kind: "group", group: parts[1]! };
  if ((parts[0] === "o" || parts[0] === "q") && parts.length === 4) {
    const partition = Number(parts[3]);
    if (!Number.isInteger(partition) || partition < 0) return undefined;
    return { kind: parts[0] === "o" ? "offset" : "window", group: parts[1]!, topic: parts[2]!, partition };
  }
  return undefined;
}
