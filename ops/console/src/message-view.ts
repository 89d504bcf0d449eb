/**
 * Messages and dead letters as the admin API answers them: bytes shown as UTF-8 text when
 * they are valid UTF-8, base64 otherwise, and the encoding said next to each, so a client
 * can always get the exact bytes back.
 */
import { isUtf8 } from "node:buffer";
import { RequestValidationError } from "../../../common/src/http/error-replies.js";
import type { ConsumerMessage, DeadLetter } from "../../../clients/src/index.js";

export type BytesEncoding = "utf8" | "base64";

export interface HeaderView {
  name: string;
  value: string;
  encoding: BytesEncoding;
}

export interface MessageView {
  topic: string;
  partition: number;
  offset: number;
  /** ISO 8601. */
  timestamp: string;
  timestampMs: number;
  key: string | null;
  keyEncoding: BytesEncoding | null;
  value: string | null;
  valueEncoding: BytesEncoding | null;
  headers: HeaderView[];
}

/** A dead letter: the stored message (its own DLQ offset and time) and where it came from. */
export interface DeadLetterView extends Omit<MessageView, "topic" | "partition"> {
  source: { topic: string; partition: number; offset: number };
  deliveries: number;
  error: string;
  deadAtMs: number;
}

export function encodeBytes(bytes: Buffer | null): { text: string | null; encoding: BytesEncoding | null } {
  if (bytes === null) return { text: null, encoding: null };
  if (isUtf8(bytes)) return { text: bytes.toString("utf8"), encoding: "utf8" };
  return { text: bytes.toString("base64"), encoding: "base64" };
}

function headerViews(headers: Record<string, Buffer>): HeaderView[] {
  return Object.entries(headers).map(([name, bytes]) => {
    const { text, encoding } = encodeBytes(bytes);
    return { name, value: text ?? "", encoding: encoding ?? "utf8" };
  });
}

export function toMessageView(message: ConsumerMessage): MessageView {
  const key = encodeBytes(message.key);
  const value = encodeBytes(message.value);
  return {
    topic: message.topic,
    partition: message.partition,
    offset: message.offset,
    timestamp: new Date(message.timestamp).toISOString(),
    timestampMs: message.timestamp,
    key: key.text,
    keyEncoding: key.encoding,
    value: value.text,
    valueEncoding: value.encoding,
    headers: headerViews(message.headers),
  };
}

export function toDeadLetterView(letter: DeadLetter): DeadLetterView {
  const key = encodeBytes(letter.key);
  const value = encodeBytes(letter.value);
  return {
    offset: letter.offset,
    timestamp: new Date(letter.timestamp).toISOString(),
    timestampMs: letter.timestamp,
    key: key.text,
    keyEncoding: key.encoding,
    value: value.text,
    valueEncoding: value.encoding,
    headers: headerViews(letter.headers),
    source: { ...letter.source },
    deliveries: letter.deliveries,
    error: letter.error,
    deadAtMs: letter.deadAtMs,
  };
}

/** `timestamp` query parameter: epoch milliseconds, or an ISO 8601 date-time. */
export function parseTimestamp(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RequestValidationError(`query string field "timestamp" must be epoch milliseconds or ISO 8601 (e.g. 2025-01-31T12:00:00Z), got "${text}"`, "timestamp");
  }
  return ms;
}
