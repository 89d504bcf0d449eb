/**
 * The JSON frames of the WebSocket consume endpoint (protocol: ws-consume.ts): parsing and
 * checking what a client sends, and building what the broker sends. Every refusal is an
 * InvalidArgumentError whose message names the field and says what it must be.
 */
import type { DecodedRecord } from "../../../common/src/batch/reader.js";
import { InvalidArgumentError, toSluiceError } from "../../../common/src/errors.js";
import type { SettleError } from "../../../proto/gen/sluice/v1/groups.js";
import { MAX_INVISIBLE_MS } from "../groups/queue-groups.js";
import type { Lease } from "../groups/queue-window.js";

/** Most credit one frame may grant; a client wanting more sends more frames. */
export const MAX_CREDIT_PER_FRAME = 1_000_000;
/** Longest nack reason kept (it travels into the dead letter's headers). */
const MAX_NACK_ERROR_CHARS = 1000;
/** Longest piece of a client's value quoted back in an error. */
const MAX_SHOWN_CHARS = 100;

export interface QueueOpenFrame {
  mode: "queue";
  group: string;
  topic: string;
  /** 0 = the broker's default (queue-groups.ts). */
  invisibleMs: number;
  /** 0 = the broker's default. */
  maxDeliveries: number;
  keyOrdering: boolean;
  fromBeginning: boolean;
  clientId: string;
}

/** Where a tail reader starts: per partition, or everywhere at the log start or end. */
export type TailStart = "latest" | "earliest" | Map<number, number>;

export interface TailOpenFrame {
  mode: "tail";
  topic: string;
  /** Undefined = every partition of the topic hosted on this broker. */
  partitions: number[] | undefined;
  from: TailStart;
  clientId: string;
}

export type SettleVerb = "ack" | "nack" | "extend";

export interface SettleFrame {
  verb: SettleVerb;
  partition: number;
  offset: number;
  leaseId: number;
  /** nack only: redeliver after this long. */
  delayMs: number;
  /** nack only: why (kept in the dead letter's headers). */
  error: string;
  /** extend only; undefined = the session's invisibleMs. */
  extendMs: number | undefined;
  /** Correlation id chosen by the client; undefined = no `settled` answer wanted. */
  id: number | undefined;
}

export type ClientFrame =
  | { op: "open"; open: QueueOpenFrame | TailOpenFrame }
  | { op: "credit"; messages: number }
  | { op: "settle"; settle: SettleFrame };

type Json = Record<string, unknown>;

/** Parses one text frame; throws InvalidArgumentError saying what is wrong. */
export function parseClientFrame(text: string): ClientFrame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`a frame must be a JSON object: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError("a frame must be a JSON object with an `op` field");
  }
  const frame = parsed as Json;
  switch (frame.op) {
    case "open":
      return { op: "open", open: parseOpen(frame) };
    case "credit":
      return { op: "credit", messages: integer(frame, "messages", 1, MAX_CREDIT_PER_FRAME) };
    case "ack":
    case "nack":
    case "extend":
      return { op: "settle", settle: parseSettle(frame.op, frame) };
    default:
      throw new InvalidArgumentError(
        `unknown op ${show(frame.op)}: use "open", "credit", "ack", "nack" or "extend"`,
      );
  }
}

function parseOpen(frame: Json): QueueOpenFrame | TailOpenFrame {
  const clientId = optionalString(frame, "clientId", 200) ?? "websocket";
  if (frame.mode === "queue") {
    return {
      mode: "queue",
      group: string(frame, "group"),
      topic: string(frame, "topic"),
      invisibleMs: optionalInteger(frame, "invisibleMs", 0, MAX_INVISIBLE_MS) ?? 0,
      maxDeliveries: optionalInteger(frame, "maxDeliveries", 0, Number.MAX_SAFE_INTEGER) ?? 0,
      keyOrdering: boolean(frame, "keyOrdering"),
      fromBeginning: boolean(frame, "fromBeginning"),
      clientId,
    };
  }
  if (frame.mode === "tail") {
    let partitions: number[] | undefined;
    if (frame.partitions !== undefined) {
      if (!Array.isArray(frame.partitions) || frame.partitions.length === 0 || !frame.partitions.every(isPartition)) {
        throw new InvalidArgumentError("`partitions` must be a non-empty array of partition numbers (or left out for every partition hosted here)");
      }
      partitions = [...new Set(frame.partitions as number[])].sort((a, b) => a - b);
    }
    return { mode: "tail", topic: string(frame, "topic"), partitions, from: parseTailStart(frame.from), clientId };
  }
  throw new InvalidArgumentError(`unknown mode ${show(frame.mode)}: use "queue" (with a group) or "tail"`);
}

function parseTailStart(from: unknown): TailStart {
  if (from === undefined || from === "latest") return "latest";
  if (from === "earliest") return "earliest";
  if (typeof from === "object" && from !== null && !Array.isArray(from)) {
    const offsets = new Map<number, number>();
    for (const [key, offset] of Object.entries(from)) {
      const partition = Number(key);
      if (!isPartition(partition) || String(partition) !== key || !isOffset(offset)) {
        throw new InvalidArgumentError(`\`from\` must map partition numbers to offsets, e.g. {"0": 42}; got ${show(key)}: ${show(offset)}`);
      }
      offsets.set(partition, offset as number);
    }
    return offsets;
  }
  throw new InvalidArgumentError('`from` must be "latest", "earliest" or an object of offsets per partition, e.g. {"0": 42}');
}

function parseSettle(verb: SettleVerb, frame: Json): SettleFrame {
  return {
    verb,
    partition: integer(frame, "partition", 0, 0x7fffffff),
    offset: integer(frame, "offset", 0, Number.MAX_SAFE_INTEGER),
    leaseId: integer(frame, "leaseId", 0, Number.MAX_SAFE_INTEGER),
    delayMs: verb === "nack" ? (optionalInteger(frame, "delayMs", 0, MAX_INVISIBLE_MS) ?? 0) : 0,
    error: verb === "nack" ? (optionalString(frame, "error", MAX_NACK_ERROR_CHARS) ?? "") : "",
    // A zero extension would expire the lease at once: at least 1 ms.
    extendMs: verb === "extend" ? optionalInteger(frame, "extendMs", 1, MAX_INVISIBLE_MS) : undefined,
    id: optionalInteger(frame, "id", 0, Number.MAX_SAFE_INTEGER),
  };
}

/**
 * A client's value for an error message: scalars as JSON, cut short; arrays and objects by
 * kind only. JSON.stringify of a frame's value is no option: a 12 KB frame of nested arrays
 * overflows its stack (RangeError, an untyped INTERNAL answer), and a long one would be
 * echoed whole.
 */
function show(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "object" && value !== null) return "an object";
  const text = typeof value === "string" ? JSON.stringify(value.slice(0, MAX_SHOWN_CHARS)) : String(value);
  return typeof value === "string" && value.length > MAX_SHOWN_CHARS ? `${text.slice(0, -1)}…"` : text;
}

function isPartition(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0x7fffffff;
}

function isOffset(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function string(frame: Json, field: string): string {
  const value = frame[field];
  if (typeof value !== "string" || value === "") throw new InvalidArgumentError(`\`${field}\` is required and must be a non-empty string`);
  return value;
}

function optionalString(frame: Json, field: string, maxChars: number): string | undefined {
  const value = frame[field];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length > maxChars) {
    throw new InvalidArgumentError(`\`${field}\` must be a string of at most ${maxChars} characters`);
  }
  return value;
}

function boolean(frame: Json, field: string): boolean {
  const value = frame[field];
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw new InvalidArgumentError(`\`${field}\` must be true or false`);
  return value;
}

/** A required integer field in [min, max]. */
function integer(frame: Json, field: string, min: number, max: number): number {
  const value = frame[field];
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new InvalidArgumentError(`\`${field}\` is required and must be an integer from ${min} to ${max}, got ${show(value)}`);
  }
  return value as number;
}

function optionalInteger(frame: Json, field: string, min: number, max: number): number | undefined {
  return frame[field] === undefined ? undefined : integer(frame, field, min, max);
}

// ---- broker → client ----

function base64(buffer: Buffer | null): string | null {
  return buffer === null ? null : buffer.toString("base64");
}

/** One message; queue deliveries carry their lease. */
export function messageFrame(topic: string, partition: number, record: DecodedRecord, lease?: Lease): string {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(record.headers)) headers[key] = value.toString("base64");
  const frame: Json = {
    type: "message",
    topic,
    partition,
    offset: record.offset,
    timestamp: record.timestamp,
    key: base64(record.key),
    value: base64(record.value),
    headers,
  };
  if (lease !== undefined) {
    frame.deliveryCount = lease.deliveryCount;
    frame.leaseId = lease.leaseId;
  }
  return JSON.stringify(frame);
}

export function errorFrame(err: unknown): string {
  const e = toSluiceError(err);
  return JSON.stringify({ type: "error", code: e.code, message: e.message, retriable: e.retriable });
}

/** A settle answer; errors name the refused (partition, offset), offset -1 = the whole request. */
export function settledFrame(id: number, errors: readonly SettleError[]): string {
  return JSON.stringify({
    type: "settled",
    id,
    errors: errors.map((e) => ({
      partition: e.partition,
      offset: e.offset,
      code: e.error?.code ?? "INTERNAL",
      message: e.error?.message ?? "",
      retriable: e.error?.retriable ?? false,
    })),
  });
}
